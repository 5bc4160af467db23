"""An independent fully connected beta-VAE on procedural dSprites, to check the zoo's training
of the beta-VAE paper's dSprites network against code that shares none of it: plain JAX
layers, loss and Adagrad loop written here, the zoo's renderer for the images and its MIG for
the score (both tested on their own).

  python -m benchmarks.peers.independent_fc_beta_vae --beta=4 --seed=0 [--init=lecun]

The network and optimiser are the `paper` preset's (Higgins et al. 2017, Table 1, 2D shapes):
encoder 4096-1200-1200 ReLU to 10 Gaussian latents, decoder 10-1200-1200-1200 tanh to 4096
Bernoulli logits, Adagrad 1e-2, batch 64 of uniformly drawn factors. `--init` is the weights'
initialisation, which the paper does not give: `lecun` (normal, variance 1 / fan-in, zero
biases: flax's default, the zoo's) or `torch` (uniform within 1 / sqrt(fan-in), biases too:
Torch's and PyTorch's linear layers). Every 1,000 steps prints the step's reconstruction and KL
(nats, that batch's) and MIG on the posterior means of 10,000 fresh images.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags

from experiments import cli
from zoo.data import dsprites
from zoo.metrics import disentanglement

FLAGS = flags.FLAGS
flags.DEFINE_float("beta", 4.0, "The KL weight.")
flags.DEFINE_integer("seed", 0, "The seed of the initialisation, the noise and the batches.")
flags.DEFINE_integer("steps", 5000, "Adagrad steps of batch 64.")
flags.DEFINE_enum("init", "lecun", ["lecun", "torch"], "The weights' initialisation.")

ENCODER = (4096, 1200, 1200, 20)
DECODER = (10, 1200, 1200, 1200, 4096)


def dense(key, fan_in: int, fan_out: int):
  if FLAGS.init == "lecun":
    return jax.random.normal(key, (fan_in, fan_out)) / np.sqrt(fan_in), jnp.zeros(fan_out)
  weight_key, bias_key = jax.random.split(key)
  return (
      jax.random.uniform(weight_key, (fan_in, fan_out), minval=-1, maxval=1) / np.sqrt(fan_in),
      jax.random.uniform(bias_key, (fan_out,), minval=-1, maxval=1) / np.sqrt(fan_in),
  )


def mlp(key, sizes):
  keys = jax.random.split(key, len(sizes) - 1)
  return [dense(k, a, b) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def forward(layers, x, activation):
  for i, (weight, bias) in enumerate(layers):
    x = x @ weight + bias
    if i < len(layers) - 1:
      x = activation(x)
  return x


def loss(params, x, key, beta: float):
  """The negative beta-ELBO of the batch (Higgins et al. eq. 4) and its two terms."""
  mean, log_var = jnp.split(forward(params["encoder"], x, jax.nn.relu), 2, axis=-1)
  z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
  logits = forward(params["decoder"], z, jnp.tanh)
  reconstruction = optax.sigmoid_binary_cross_entropy(logits, x).sum(-1)
  kl = 0.5 * (mean**2 + jnp.exp(log_var) - 1 - log_var).sum(-1)
  return (reconstruction + beta * kl).mean(), (reconstruction.mean(), kl.mean())


def main(argv) -> int:
  FLAGS(argv)
  key = jax.random.key(FLAGS.seed)
  encoder_key, decoder_key, key = jax.random.split(key, 3)
  params = {"encoder": mlp(encoder_key, ENCODER), "decoder": mlp(decoder_key, DECODER)}
  optimizer = optax.adagrad(1e-2)
  state = optimizer.init(params)

  @jax.jit
  def step(params, state, x, key):
    (_, terms), grads = jax.value_and_grad(loss, has_aux=True)(params, x, key, FLAGS.beta)
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state, terms

  rng = np.random.default_rng(FLAGS.seed)
  ground_truth = dsprites.DSprites()

  def images(factors):
    return dsprites.render(factors).reshape(len(factors), -1).astype(np.float32)

  print("| beta | init | seed | step | reconstruction | KL | MIG | seconds |")
  print("|---:|---|---:|---:|---:|---:|---:|---:|")
  started = time.time()
  for i in range(1, FLAGS.steps + 1):
    key, noise = jax.random.split(key)
    x = images(ground_truth.sample_factors(64, rng))
    params, state, (reconstruction, kl) = step(params, state, x, noise)
    if i % 1000 == 0:
      factors = ground_truth.sample_factors(10_000, rng)
      x = images(factors)
      means = np.concatenate(
          [
              forward(params["encoder"], x[j : j + 500], jax.nn.relu)[:, :10]
              for j in range(0, len(x), 500)
          ]
      )
      score = disentanglement.mig(factors, np.asarray(means))["mig"]
      print(
          f"| {FLAGS.beta:g} | {FLAGS.init} | {FLAGS.seed} | {i} | {float(reconstruction):.1f} | "
          f"{float(kl):.2f} | {score:.3f} | {time.time() - started:.0f} |",
          flush=True,
      )
  return 0


if __name__ == "__main__":
  cli.run(main)

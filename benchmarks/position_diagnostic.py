"""Does a short beta-VAE run give position x and position y a latent each?

  python -m benchmarks.position_diagnostic [--seeds=4 --steps=1000 --beta=4]

A diagnostic of whether the data lets position be disentangled: a square (scale 1,
orientation 0) of procedural dSprites at each of the 32 x 32 positions, 1,024 images; a beta-VAE
(the zoo's, narrow layers unless --paper_layers) trained on them for a few thousand steps with
Adam; then, over the 1,024 posterior means, the best single latent's R^2 (squared correlation)
for x and for y. It passes when both reach --threshold on different latents. Prints a table, one
row per seed; nothing is written.
"""

import jax
import numpy as np
from absl import flags

import zoo
from experiments import cli
from zoo import training
from zoo.data import dsprites

FLAGS = flags.FLAGS
flags.DEFINE_integer("seeds", 4, "Seeds to train, 0 to seeds - 1.")
flags.DEFINE_integer("steps", 1000, "Train steps per seed.")
flags.DEFINE_float("beta", 4.0, "The KL weight.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam's learning rate.")
flags.DEFINE_integer("batch_size", 64, "Images per step.")
flags.DEFINE_bool(
    "paper_layers", False, "The papers' layers (32-32-64-64, 256), not 16-16-32-32, 128."
)
flags.DEFINE_float("threshold", 0.75, "The R^2 each of x and y must reach.")

FACTORS = np.array([[0, 5, 0, x, y] for x in range(32) for y in range(32)])


def best_latents(means: np.ndarray, factors: np.ndarray) -> list[tuple[float, int]]:
  """For position x and position y, the largest squared correlation with one latent, and which."""
  best = []
  for column in (3, 4):
    r2 = [
        np.corrcoef(means[:, j], factors[:, column])[0, 1] ** 2 if means[:, j].std() > 0 else 0.0
        for j in range(means.shape[1])
    ]
    best.append((float(np.max(r2)), int(np.argmax(r2))))
  return best


def train_and_score(images: np.ndarray, seed: int) -> list[tuple[float, int]]:
  layers = {} if FLAGS.paper_layers else {"conv_features": (16, 16, 32, 32), "hidden_dim": 128}
  model = zoo.build("beta_vae", beta=FLAGS.beta, **layers)
  config = zoo.get("beta_vae").default_config("default")
  config.optimizer, config.learning_rate = "adam", FLAGS.learning_rate
  train_step, optimizer = training.make_step(model, config, game=False)
  train_step = jax.jit(train_step, donate_argnums=0)
  rng = np.random.default_rng(seed)

  def batch():
    return {"x": images[rng.integers(0, len(images), FLAGS.batch_size)]}

  state = training.init_state(model, optimizer, batch(), jax.random.key(seed))
  for _ in range(FLAGS.steps):
    state, _ = train_step(state, batch(), jax.random.key(seed + 1))
  means, _ = model.apply(training.variables_of(state), images, method="encode")
  return best_latents(np.asarray(means), FACTORS)


def main(argv) -> int:
  FLAGS(argv)
  print("| seed | x: R^2 (latent) | y: R^2 (latent) | passes |")
  print("|---:|---:|---:|---|")
  images = dsprites.render(FACTORS).astype(np.float32)
  for seed in range(FLAGS.seeds):
    (x, x_latent), (y, y_latent) = train_and_score(images, seed)
    passes = min(x, y) >= FLAGS.threshold and x_latent != y_latent
    print(f"| {seed} | {x:.2f} ({x_latent}) | {y:.2f} ({y_latent}) | {'yes' if passes else 'no'} |")
  return 0


if __name__ == "__main__":
  cli.run(main)

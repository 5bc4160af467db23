"""VIMCO: Variational Inference for Monte Carlo Objectives (Mnih & Rezende 2016).

Sigmoid belief networks of binary units, p(h_L) prod_l p(h_{l-1} | h_l) p(x | h_1), each
conditional a layer of Bernoulli units with logits affine in the layer above, trained with an
encoder of the same shape q(h_1 | x) prod_l q(h_{l+1} | h_l) on the K-sample bound (eq. 1).
The gradient estimator is a hyper-parameter: vimco (the paper's), nvil, reinforce or rws, all
from `zoo.estimators`. Evaluation as the paper's: the test bound L_K and an importance-sampled
estimate of log p(x) with many samples.
"""

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import contract
from zoo import domains
from zoo import errors
from zoo import estimators
from zoo import registry
from zoo.metrics import likelihood
from zoo.nn import flows

Estimator = Literal["vimco", "nvil", "reinforce", "rws"]
NVIL_DECAY = 0.8  # of NVIL's running mean and variance of the learning signal (Mnih & Gregor)


class _OutputLayer(nn.Module):
  """The data layer's logits: its width, the data's, is known only at the first call."""

  @nn.compact
  def __call__(self, h, features):
    return nn.Dense(features, name="dense")(h)


@registry.register(
    "vimco",
    family="latent",
    paper="Mnih & Rezende 2016, Variational Inference for Monte Carlo Objectives",
)
class SigmoidBeliefNet(contract.Model):
  """Attributes:
  layer_sizes: binary units per stochastic layer, data side first; the paper's nets are 200,
    200-200 and 200-200-200.
  estimator: one of `Estimator`: `vimco`, `nvil` (Mnih & Gregor), `reinforce`, `rws`.
  num_samples: K of the training objective L_K.
  num_eval_samples: samples of the importance-sampled log-likelihood (a multiple of 100).
  """

  best_by = ("log_prob", "max")
  layer_sizes: domains.Widths = (200, 200, 200)
  estimator: Estimator = "vimco"
  num_samples: domains.PositiveInt = 5
  num_eval_samples: domains.PositiveInt = 1000

  def setup(self):
    if self.estimator == "vimco" and self.num_samples < 2:
      raise errors.HyperparameterError("vimco: the vimco estimator needs num_samples >= 2")
    likelihood.check_num_samples("vimco", self.num_eval_samples)
    self.prior_logits = self.param(
        "prior_logits", nn.initializers.zeros_init(), (self.layer_sizes[-1],)
    )
    self.generative = [nn.Dense(size) for size in self.layer_sizes[:-1]]  # h_{l+1} -> h_l
    self.data_layer = _OutputLayer()
    self.recognition = [nn.Dense(size) for size in self.layer_sizes]  # x -> h_1 -> h_2 ...
    if self.estimator == "nvil":
      self.baseline = nn.Sequential([nn.Dense(100), nn.tanh, nn.Dense(1)])
      self.signal_mean = self.variable("estimator_state", "mean", jnp.zeros, ())
      self.signal_var = self.variable("estimator_state", "var", jnp.ones, ())

  def sample_posterior(self, x, rng, num_samples=1):
    """Samples of every layer from q, each (B, K, size), and log q of them, (B, K)."""
    h = jnp.broadcast_to(x[:, None, :], (x.shape[0], num_samples, x.shape[-1]))
    layers, log_q = [], 0.0
    for layer, key in zip(self.recognition, jax.random.split(rng, len(self.recognition))):
      logits = layer(h)
      h = jax.random.bernoulli(key, jax.nn.sigmoid(logits)).astype(jnp.float32)
      layers.append(h)
      log_q = log_q + likelihood.bernoulli_log_prob(h, logits)
    return layers, log_q

  def decode(self, h1, num_dims=None):
    """The logits of p(x | h_1)."""
    return self.data_layer(h1, num_dims or self._num_dims())

  def log_joint(self, x, layers):
    """log p(x, h_1, ..., h_L) of samples `layers` (each (B, K, size)), (B, K)."""
    log_p = likelihood.bernoulli_log_prob(layers[-1], self.prior_logits)
    for above, below, net in zip(layers[:0:-1], layers[-2::-1], self.generative[::-1]):
      log_p = log_p + likelihood.bernoulli_log_prob(below, net(above))
    return log_p + likelihood.bernoulli_log_prob(x[:, None, :], self.decode(layers[0], x.shape[-1]))

  def log_weights(self, x, rng, num_samples):
    """(log w, log q), each (B, K): log w = log p(x, h) - log q(h | x) for K draws from q."""
    layers, log_q = self.sample_posterior(x, rng, num_samples)
    return self.log_joint(x, layers) - log_q, log_q

  def loss(self, batch, train=True):
    """Minus the estimator's surrogate (plus NVIL's baseline loss); metrics hold L_K."""
    return self._surrogate(batch, train, normalised=True)

  def objective_surrogate(self, batch, train=True):
    """`loss` with NVIL's encoder gradient not divided by the signal's running standard
    deviation: the estimator's own estimate of the gradient of L_K, whose variance the gradient
    statistics report (the division is a step size, the same for every draw)."""
    return self._surrogate(batch, train, normalised=False)

  def _surrogate(self, batch, train, normalised):
    x = flows.flatten(batch["x"])
    log_w, log_q = self.log_weights(x, self.make_rng("sample"), self.num_samples)
    if self.estimator == "nvil":
      out = estimators.nvil(
          log_w,
          log_q,
          self.baseline(x)[:, 0],
          self.signal_mean.value,
          jnp.sqrt(self.signal_var.value) if normalised else 1.0,
      )
      objective = out.surrogate.mean() - out.baseline_loss.mean()
      if train and not self.is_initializing():
        self.signal_mean.value = (
            NVIL_DECAY * self.signal_mean.value + (1 - NVIL_DECAY) * out.signal.mean()
        )
        self.signal_var.value = (
            NVIL_DECAY * self.signal_var.value + (1 - NVIL_DECAY) * out.signal.var()
        )
    else:
      objective = getattr(estimators, self.estimator)(log_w, log_q).mean()
    return -objective, {"bound": estimators.bound(log_w).mean()}

  def evaluate(self, batch):
    """Per example: the bound L_K (K = num_samples) and log p(x) estimated by importance
    sampling with num_eval_samples draws from q, in chunks."""
    x = flows.flatten(batch["x"])
    bound_rng, sampling_rng = jax.random.split(self.make_rng("sample"))
    bound = estimators.bound(self.log_weights(x, bound_rng, self.num_samples)[0])

    log_prob = likelihood.importance_sampled_log_prob(
        lambda key, k: self.log_weights(x, key, k)[0],
        sampling_rng,
        len(x),
        self.num_eval_samples,
    )
    return {"bound": bound, "log_prob": log_prob}

  def sample(self, n):
    """n binary samples of x by ancestral sampling from the prior, drawn with the `sample` RNG."""
    keys = jax.random.split(self.make_rng("sample"), len(self.layer_sizes) + 1)
    h = jax.random.bernoulli(
        keys[0], jax.nn.sigmoid(jnp.broadcast_to(self.prior_logits, (n, self.layer_sizes[-1])))
    ).astype(jnp.float32)
    for net, key in zip(self.generative[::-1], keys[1:]):
      h = jax.random.bernoulli(key, jax.nn.sigmoid(net(h))).astype(jnp.float32)
    return jax.random.bernoulli(keys[-1], jax.nn.sigmoid(self.decode(h))).astype(jnp.float32)

  def _num_dims(self):
    return self.data_layer.variables["params"]["dense"]["kernel"].shape[-1]

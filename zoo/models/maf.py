"""Masked Autoregressive Flow (Papamakarios, Pavlakou, Murray 2017), with its baselines.

One stack covers the paper's Table 1 models:
  MADE            num_layers=1, batch_norm=False        (a Gaussian MADE is a one-layer MAF)
  MADE MoG        num_layers=0, num_components=C        (the MoG MADE is the whole model)
  MAF (K)         num_layers=K                          (MADEs, order reversed, batch norm between)
  MAF MoG (K)     num_layers=K, num_components=C        (a MoG MADE as the base density)
  Real NVP (K)    num_layers=K, layer="coupling"        (the paper's baseline)
and `num_classes > 0` makes it the conditional MAF of section 3.4, conditioned on a one-hot label.
"""

from collections.abc import Sequence
from typing import Literal

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import domains
from zoo import errors
from zoo import registry
from zoo.nn import flows
from zoo.nn import made

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh}


class MADEMixture(nn.Module):
  """MADE MoG: each conditional p(x_i | x_<i) a mixture of C Gaussians (MAF section 4)."""

  hidden_dims: Sequence[int]
  num_components: int
  reverse: bool = False
  activation: str = "relu"

  def setup(self):
    self.made = made.MADE(
        self.hidden_dims,
        outputs_per_dim=3 * self.num_components,
        reverse=self.reverse,
        activation=ACTIVATIONS[self.activation],
        zero_output=False,
    )

  def _conditionals(self, x, context):
    logits, means, log_scales = jnp.split(self.made(x, context), 3, axis=-1)
    return distrax.MixtureSameFamily(
        distrax.Categorical(logits=logits), distrax.Normal(means, jnp.exp(log_scales))
    )

  def log_prob(self, x, context=None):
    return self._conditionals(x, context).log_prob(x).sum(-1)

  def sample(self, rng, n, context=None):
    """D passes with the same noise: pass t leaves dimensions of degree <= t exact."""

    def fix_next_dimension(_, x):
      return self._conditionals(x, context).sample(seed=rng)

    x = jnp.zeros((n, self.event_size))
    return jax.lax.fori_loop(0, self.event_size, fix_next_dimension, x)

  @property
  def event_size(self) -> int:
    return self.made.event_size


@registry.register(
    "maf",
    family="flow",
    paper="Papamakarios, Pavlakou, Murray 2017, Masked Autoregressive Flow for Density Estimation",
)
class MAF(flows.Flow):
  """A stack of autoregressive (or coupling) bijectors on a Gaussian or MoG MADE base density.

  Attributes:
    num_layers: MADEs (or coupling layers) in the stack; the paper uses 5 or 10.
    hidden_dims: hidden units of each MADE or coupling network; the paper uses (100, 100).
    activation: the MADEs' hidden units, `relu` or `tanh` (the authors' GAS runs); Real NVP's
      coupling networks keep the paper's tanh (scale) and ReLU (shift) units.
    num_components: 0 for a standard normal base density, C for a MoG MADE base (MAF MoG).
    layer: "made" for MAF, "coupling" for Real NVP.
    batch_norm: a batch-norm bijector after each layer, as in the paper.
    num_classes: 0 for p(x); K > 0 for the conditional p(x | y) of a one-hot label y of K classes.
  """

  num_layers: domains.NonNegativeInt = 5
  hidden_dims: domains.Widths = (100, 100)
  activation: Literal["relu", "tanh"] = "relu"
  num_components: domains.NonNegativeInt = 0
  layer: Literal["made", "coupling"] = "made"
  batch_norm: bool = True
  num_classes: domains.NonNegativeInt = 0

  def setup(self):
    if self.num_layers == 0 and self.num_components == 0:
      raise errors.HyperparameterError(
          "maf: a flow needs num_layers > 0 or a MoG base (num_components > 0)"
      )
    layers = []
    for i in range(self.num_layers):
      if self.layer == "made":
        layers.append(
            flows.MADELayer(
                self.hidden_dims, reverse=i % 2 == 1, activation=ACTIVATIONS[self.activation]
            )
        )
      else:
        layers.append(flows.Coupling(self.hidden_dims, parity=i % 2))
      if self.batch_norm:
        layers.append(flows.BatchNorm())
    self.layers = layers
    if self.num_components:
      self.base = MADEMixture(
          self.hidden_dims,
          self.num_components,
          reverse=self.num_layers % 2 == 1,
          activation=self.activation,
      )

  def sample(self, n, context=None):
    """n samples; a conditional model without `context` cycles through the labels 0..K-1."""
    if self.num_classes and context is None:
      context = jax.nn.one_hot(jnp.arange(n) % self.num_classes, self.num_classes)
    return super().sample(n, context)

  def base_log_prob(self, u, context):
    if self.num_components:
      return self.base.log_prob(u, context)
    return distrax.MultivariateNormalDiag(jnp.zeros(u.shape[-1])).log_prob(u)

  def base_sample(self, rng, n, context):
    if self.num_components:
      return self.base.sample(rng, n, context)
    return jax.random.normal(rng, (n, self.layers[0].event_size))

  def context(self, batch):
    return jax.nn.one_hot(batch["label"], self.num_classes) if self.num_classes else None

  def evaluate(self, batch):
    """Per-example log p(x); a conditional model also gives log p(x|y), and log p(x) is the
    mixture over a uniform label prior, as the paper reports for its conditional MAFs."""
    if not self.num_classes:
      return super().evaluate(batch)
    x = flows.flatten(batch["x"])
    labels = jnp.eye(self.num_classes)
    log_prob_given = jax.vmap(lambda y: self.log_prob(x, y), out_axes=-1)(labels)
    return {
        "log_prob": jax.nn.logsumexp(log_prob_given, -1) - jnp.log(self.num_classes),
        "log_prob_given_label": jnp.take_along_axis(log_prob_given, batch["label"][:, None], -1)[
            :, 0
        ],
    }

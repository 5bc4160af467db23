"""Flow layers shared by the flow papers.

Each layer is a Flax module whose `bijector(inputs, context, train)` returns a `distrax.Bijector`
in distrax's convention: `forward` maps base noise to data (sampling), `inverse_and_log_det` maps
data to noise with log|det d(inverse)/dx| (density evaluation). `inputs` is an array of the layer's
event shape: the batch entering the layer in the density direction, whose statistics batch norm
uses in training; elsewhere it only carries the shape.
"""
from typing import Callable, Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.nn import made


class MaskedAutoregressive(distrax.Bijector):
  """The MAF layer x_i = u_i exp(alpha_i) + mu_i, (mu_i, alpha_i) = f(x_<i) (MAF eqs. 2-4).

  Density evaluation is one pass of the conditioner; sampling is D passes, each fixing one more
  dimension in the autoregressive order, run as a `lax.fori_loop` so it compiles once.
  """

  def __init__(self, conditioner: Callable[[jax.Array], jax.Array]):
    super().__init__(event_ndims_in=1)
    self._conditioner = conditioner

  def _shift_and_log_scale(self, x):
    params = self._conditioner(x)
    return params[..., 0], params[..., 1]

  def forward_and_log_det(self, u):
    def fix_next_dimension(_, x):
      shift, log_scale = self._shift_and_log_scale(x)
      return u * jnp.exp(log_scale) + shift

    x = jax.lax.fori_loop(0, u.shape[-1], fix_next_dimension, jnp.zeros_like(u))
    _, log_scale = self._shift_and_log_scale(x)
    return x, log_scale.sum(-1)

  def inverse_and_log_det(self, x):
    shift, log_scale = self._shift_and_log_scale(x)
    return (x - shift) * jnp.exp(-log_scale), -log_scale.sum(-1)


class MADELayer(nn.Module):
  """One MAF layer: a Gaussian MADE used as an autoregressive bijector."""
  hidden_dims: Sequence[int]
  reverse: bool = False
  activation: Callable = nn.relu

  def setup(self):
    self.made = made.MADE(self.hidden_dims, outputs_per_dim=2, reverse=self.reverse,
                          activation=self.activation)

  def bijector(self, inputs, context=None, train=False) -> distrax.Bijector:
    del inputs, train
    return MaskedAutoregressive(lambda x: self.made(x, context))

  @property
  def event_size(self) -> int:
    return self.made.event_size


class BatchNorm(nn.Module):
  """Batch normalisation as a bijector (Real NVP section 3.7; MAF section 3.4 and appendix B).

  Density direction: u = (x - m) / sqrt(v + eps) * exp(log_gamma) + beta, with log|det| =
  sum(log_gamma - log(v + eps) / 2). In training (m, v) are the batch's statistics and running
  averages are updated; otherwise the running averages are used.
  """
  momentum: float = 0.9
  epsilon: float = 1e-5

  @nn.compact
  def bijector(self, inputs, context=None, train=False) -> distrax.Bijector:
    del context
    size = inputs.shape[-1]
    log_gamma = self.param("log_gamma", nn.initializers.zeros_init(), (size,))
    beta = self.param("beta", nn.initializers.zeros_init(), (size,))
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, (size,))
    running_var = self.variable("batch_stats", "var", jnp.ones, (size,))
    if train:
      axes = tuple(range(inputs.ndim - 1))
      mean, var = inputs.mean(axes), inputs.var(axes)
      if not self.is_initializing():
        running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
        running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
    else:
      mean, var = running_mean.value, running_var.value
    std = jnp.sqrt(var + self.epsilon)
    scale = std * jnp.exp(-log_gamma)
    return distrax.Block(distrax.ScalarAffine(shift=mean - beta * scale, scale=scale), 1)


class AffineCoupling(nn.Module):
  """Real NVP's affine coupling layer (Dinh, Sohl-Dickstein, Bengio 2017, eqs. 6-9).

  The dimensions of one parity (even or odd, alternating from layer to layer) pass unchanged and
  condition the scale exp(s) and shift t of the others. As in the MAF paper's Real NVP, s is an
  MLP of tanh units and t an MLP of rectified units; both start at zero (the identity).
  """
  hidden_dims: Sequence[int]
  parity: int

  @nn.compact
  def bijector(self, inputs, context=None, train=False) -> distrax.Bijector:
    del train
    size = inputs.shape[-1]
    mask = np.arange(size) % 2 == self.parity
    log_scale_net = _MLP(self.hidden_dims, size, nn.tanh, name="log_scale")
    shift_net = _MLP(self.hidden_dims, size, nn.relu, name="shift")

    def conditioner(x_masked):
      h = x_masked if context is None else jnp.concatenate(
          [x_masked, jnp.broadcast_to(context, x_masked.shape[:-1] + context.shape[-1:])], -1)
      return log_scale_net(h), shift_net(h)

    return distrax.MaskedCoupling(
        mask=jnp.asarray(mask), conditioner=conditioner,
        bijector=lambda params: distrax.ScalarAffine(shift=params[1], log_scale=params[0]))

  @property
  def event_size(self) -> int:
    return self.variables["params"]["shift"]["output"]["kernel"].shape[-1]


class _MLP(nn.Module):
  """Hidden layers of `activation`, then a zero-initialised linear output of `features` units."""
  hidden_dims: Sequence[int]
  features: int
  activation: Callable

  @nn.compact
  def __call__(self, x):
    for units in self.hidden_dims:
      x = self.activation(nn.Dense(units)(x))
    return nn.Dense(self.features, kernel_init=nn.initializers.zeros_init(), name="output")(x)

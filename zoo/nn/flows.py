"""Flow layers shared by the flow papers.

Each layer is a Flax module whose `bijector(inputs, context, train)` returns a `distrax.Bijector`
in distrax's convention: `forward` maps base noise to data (sampling), `inverse_and_log_det` maps
data to noise with log|det d(inverse)/dx| (density evaluation). `inputs` is an array of the layer's
event shape: the batch entering the layer in the density direction, whose statistics batch norm
uses in training; elsewhere it only carries the shape.
"""

from collections.abc import Callable
from collections.abc import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import contract
from zoo import errors
from zoo.nn import made
from zoo.nn import mlp


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
    self.made = made.MADE(
        self.hidden_dims, outputs_per_dim=2, reverse=self.reverse, activation=self.activation
    )

  def bijector(self, inputs, context=None, train=False) -> distrax.Bijector:
    del inputs, train
    return MaskedAutoregressive(lambda x: self.made(x, context))

  @property
  def event_size(self) -> int:
    return self.made.event_size


BATCH_NORM_INPUTS = "batch_norm_inputs"  # the collection BatchNorm sows its inputs into


class BatchNorm(nn.Module):
  """Batch normalisation as a bijector (Real NVP section 3.7; MAF section 3.4 and appendix B).

  Density direction: u = (x - m) / sqrt(v + eps) * exp(log_gamma) + beta, with log|det| =
  sum(log_gamma - log(v + eps) / 2). In training (m, v) are the batch's statistics and running
  averages are updated; otherwise the stored statistics are used, which the runner sets to the
  whole training set's before each evaluation, as the MAF paper's code does (through
  `Flow.batch_norm_inputs`: outside training the layer sows its input into BATCH_NORM_INPUTS).
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
      self.sow(BATCH_NORM_INPUTS, "inputs", inputs)
    std = jnp.sqrt(var + self.epsilon)
    scale = std * jnp.exp(-log_gamma)
    return distrax.Block(distrax.ScalarAffine(shift=mean - beta * scale, scale=scale), 1)


class Coupling(nn.Module):
  """A coupling layer with alternating (even/odd) partitions.

  The dimensions of one parity pass unchanged and condition the others:
  - affine (Real NVP, Dinh, Sohl-Dickstein, Bengio 2017, eqs. 6-9): y_b = x_b exp(s(x_a)) + t(x_a);
    as in the MAF paper's Real NVP, s is an MLP of tanh units and t of rectified units;
  - additive (NICE, Dinh, Krueger, Bengio 2014, eq. 5): y_b = x_b + t(x_a), whose Jacobian has
    determinant one; t is an MLP of rectified units.
  The networks' outputs start at zero, so a fresh layer is the identity.
  """

  hidden_dims: Sequence[int]
  parity: int
  affine: bool = True

  @nn.compact
  def bijector(self, inputs, context=None, train=False) -> distrax.Bijector:
    del train
    size = inputs.shape[-1]
    shift_net = _MLP(self.hidden_dims, size, nn.relu, name="shift")
    log_scale_net = _MLP(self.hidden_dims, size, nn.tanh, name="log_scale") if self.affine else None

    def conditioner(x_masked):
      h = (
          x_masked
          if context is None
          else jnp.concatenate(
              [x_masked, jnp.broadcast_to(context, x_masked.shape[:-1] + context.shape[-1:])], -1
          )
      )
      return shift_net(h), log_scale_net(h) if self.affine else None

    def inner(params):
      shift, log_scale = params
      if self.affine:
        return distrax.ScalarAffine(shift=shift, log_scale=log_scale)
      return distrax.Shift(shift)

    mask = jnp.asarray(np.arange(size) % 2 == self.parity)
    return distrax.MaskedCoupling(mask=mask, conditioner=conditioner, bijector=inner)

  @property
  def event_size(self) -> int:
    return self.variables["params"]["shift"]["output"]["kernel"].shape[-1]


class Rescaling(nn.Module):
  """NICE's diagonal scaling layer (section 3.3): h = exp(s) * x in the density direction, so
  log|det| = sum(s); it lets the volume-preserving couplings weight each dimension."""

  @nn.compact
  def bijector(self, inputs, context=None, train=False) -> distrax.Bijector:
    del context, train
    log_scale = self.param("log_scale", nn.initializers.zeros_init(), (inputs.shape[-1],))
    return distrax.Block(
        distrax.ScalarAffine(shift=jnp.zeros_like(log_scale), log_scale=-log_scale), 1
    )


class Flow(contract.Model):
  """A density model through a stack of flow layers onto a base density, written once.

  A subclass sets `self.layers` in `setup` (density order: data first) and defines
  `base_log_prob(u, context)`, `base_sample(rng, n, context)` and, for conditional models,
  `context(batch)`. Examples are flattened to vectors, as the flow papers model images.
  """

  best_by = ("log_prob", "max")  # the MAF paper's early stopping on validation log-likelihood

  def __call__(self, x, context=None, train=False):
    return self.log_prob(x, context, train)

  def log_prob(self, x, context=None, train=False):
    """log p(x) in nats, one per example: the base density plus the inverse log-determinants.

    Far from the data a MADE's log-scale grows linearly with its input (ReLU units), so
    exp(-log_scale) overflows to inf there (a MAF fitted to two blobs of standard deviation 0.3
    at (2, 2) and (-2, -2) overflowed at (4, 4)) and the next layer computes inf - inf. Such a
    point's density is below what float32 holds (the base term -u^2 / 2 outgrows the
    log-determinant), so a NaN from finite inputs is -inf; every density that float32 holds is
    computed as before."""
    log_prob = self.log_density(x, context, train)
    overflowed = jnp.isnan(log_prob) & jnp.isfinite(x).all(-1)
    return jnp.where(overflowed, -jnp.inf, log_prob)

  def log_density(self, x, context=None, train=False):
    """`log_prob` as computed, a NaN where it overflows: what the loss trains on. There a NaN
    stops a run as -inf would (a non-finite loss), and the program XLA compiles for training
    stays as it was before `log_prob`'s select, which rounded it differently (the default MAF
    run's test log-likelihood moved from -107.7677 to -107.7343 nats through 1,400 steps)."""
    if x.ndim != 2:
      raise errors.UserError(
          f"{self.registry_name}.log_prob takes (batch, dimension) vectors in the space it "
          f"trained in, flattened (x.reshape(len(x), -1)), not an array of shape {x.shape}"
      )
    u, log_det = self.to_base(x, context, train)
    return self.base_log_prob(u, context) + log_det

  def to_base(self, x, context=None, train=False):
    """The flow's inverse x -> u and log|det du/dx|, one per example."""
    log_det = jnp.zeros(x.shape[:-1])
    for layer in self.layers:
      x, layer_log_det = layer.bijector(x, context, train).inverse_and_log_det(x)
      log_det = log_det + layer_log_det
    return x, log_det

  def from_base(self, u, context=None):
    """The flow's forward u -> x: the sampling direction."""
    for layer in reversed(self.layers):
      u = layer.bijector(u, context).forward(u)
    return u

  def sample(self, n, context=None):
    """n samples (flattened), drawn with the `sample` RNG stream."""
    return self.from_base(self.base_sample(self.make_rng("sample"), n, context), context)

  def context(self, batch):
    """What the model is conditioned on for `batch`; None for an unconditional model."""
    del batch
    return None

  def loss(self, batch, train=True):
    """Maximum likelihood: the mean negative log density of the batch, and its metrics."""
    log_prob = self.log_density(flatten(batch["x"]), self.context(batch), train)
    return -log_prob.mean(), {"log_prob": log_prob.mean()}

  def batch_norm_inputs(self, batch):
    """log p(x) of `batch` outside training, applied with BATCH_NORM_INPUTS mutable: it records
    the input of every batch-norm layer under that layer's path, so that a caller can average
    them over a data set and store the averages as the layers' statistics."""
    return self.log_prob(flatten(batch["x"]), self.context(batch))

  def evaluate(self, batch):
    """Per-example log p(x) in nats."""
    return {"log_prob": self.log_prob(flatten(batch["x"]), self.context(batch))}

  def inpaint(self, x, observed, num_steps=1000, low=0.0, high=1.0, context=None):
    """Fill the entries where `observed` is False by projected stochastic gradient ascent on
    log p (NICE section 5.2): x_H <- clip(x_H + a_i (d log p / d x_H + eps)), a_i = 10/(100+i),
    eps ~ N(0, I), starting from uniform noise on [low, high] (both finite); observed entries
    never change. Noise is drawn from the `sample` RNG stream."""
    shape, x, observed = x.shape, flatten(x), flatten(observed)
    start_rng, noise_rng = jax.random.split(self.make_rng("sample"))
    start = jax.random.uniform(start_rng, x.shape, minval=low, maxval=high)
    x = jnp.where(observed, x, start)

    def ascend(i, x):
      grad = jax.grad(lambda v: self.log_prob(v, context).sum())(x)
      eps = jax.random.normal(jax.random.fold_in(noise_rng, i), x.shape)
      step = 10.0 / (100.0 + i) * (grad + eps)
      return jnp.where(observed, x, jnp.clip(x + step, low, high))

    return jax.lax.fori_loop(0, num_steps, ascend, x).reshape(shape)


def flatten(x):
  """Examples as vectors."""
  return x.reshape(x.shape[0], -1)


class _MLP(nn.Module):
  """Hidden layers of `activation`, then a zero-initialised linear output of `features` units."""

  hidden_dims: Sequence[int]
  features: int
  activation: Callable

  @nn.compact
  def __call__(self, x):
    x = mlp.hidden_layers(x, self.hidden_dims, self.activation)
    return nn.Dense(self.features, kernel_init=nn.initializers.zeros_init(), name="output")(x)

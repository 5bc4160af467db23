"""MADE: Masked Autoencoder for Distribution Estimation (Germain, Gregor, Murray, Larochelle 2015).

A MADE is an MLP whose weight matrices are masked so that output i depends only on the inputs that
come before i in a chosen order, which makes it the conditioner of an autoregressive model.
"""

from collections.abc import Callable
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


def input_degrees(size: int, reverse: bool) -> np.ndarray:
  """Degrees 1..size of the inputs, in natural or reversed order (MAF alternates the two)."""
  degrees = np.arange(1, size + 1)
  return degrees[::-1].copy() if reverse else degrees


def hidden_degrees(num_units: int, size: int, previous: np.ndarray) -> np.ndarray:
  """Degrees of a hidden layer, cycling through [min(previous), size - 1] (MADE eq. 12)."""
  low = min(int(previous.min()), size - 1) if size > 1 else 1
  span = max(size - low, 1)
  return low + np.arange(num_units) % span


def hidden_mask(in_degrees: np.ndarray, out_degrees: np.ndarray) -> np.ndarray:
  """Connect unit k to input j when m(k) >= m(j) (MADE eq. 13)."""
  return (out_degrees[None, :] >= in_degrees[:, None]).astype(np.float32)


def output_mask(in_degrees: np.ndarray, out_degrees: np.ndarray) -> np.ndarray:
  """Connect output d to unit k when d > m(k) (MADE eq. 14): the strict inequality."""
  return (out_degrees[None, :] > in_degrees[:, None]).astype(np.float32)


class MaskedDense(nn.Module):
  """A dense layer whose kernel is multiplied by a fixed 0/1 mask of shape (inputs, features)."""

  mask: np.ndarray
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", self.kernel_init, self.mask.shape)
    bias = self.param("bias", self.bias_init, self.mask.shape[1:])
    return x @ (kernel * jnp.asarray(self.mask, kernel.dtype)) + bias


class MADE(nn.Module):
  """A MADE that outputs `outputs_per_dim` numbers for each of the D input dimensions.

  Optional context (conditional MADE, MAF section 3.4) feeds every hidden unit unmasked. With
  `zero_output` the output layer starts at zero, so a flow built of MADEs starts as the identity;
  a mixture's outputs need a random start (kernel and bias: the first dimension's conditional has
  only the bias), or its components get identical gradients and stay identical.

  Returns an array of shape (..., D, outputs_per_dim).
  """

  hidden_dims: Sequence[int]
  outputs_per_dim: int
  reverse: bool = False
  activation: Callable = nn.relu
  zero_output: bool = True

  @nn.compact
  def __call__(self, x, context=None):
    size = x.shape[-1]
    degrees = input_degrees(size, self.reverse)
    h, in_degrees = x, degrees
    for i, units in enumerate(self.hidden_dims):
      out_degrees = hidden_degrees(units, size, in_degrees)
      h_next = MaskedDense(hidden_mask(in_degrees, out_degrees), name=f"hidden_{i}")(h)
      if context is not None and i == 0:
        h_next = h_next + nn.Dense(units, use_bias=False, name="context")(context)
      h, in_degrees = self.activation(h_next), out_degrees
    mask = np.repeat(output_mask(in_degrees, degrees), self.outputs_per_dim, axis=1)
    if self.zero_output:
      init = dict(kernel_init=nn.initializers.zeros_init())
    else:
      init = dict(bias_init=nn.initializers.normal(1.0))
    out = MaskedDense(mask, name="output", **init)(h)
    return out.reshape(*x.shape[:-1], size, self.outputs_per_dim)

  @property
  def event_size(self) -> int:
    """D, read from the trained parameters (inputs' shapes are inferred at `init`)."""
    return self.variables["params"]["output"]["kernel"].shape[-1] // self.outputs_per_dim

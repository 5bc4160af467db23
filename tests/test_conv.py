"""The fast forms of the 4x4 stride-2 convolution and its transpose (zoo.nn.conv) are the same
functions as XLA's own, in value and in both gradients, on even and odd sides."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import conv_layers
from zoo.nn import conv


def strided(x, kernel):
  """`nn.Conv(features, (4, 4), strides=2, padding=1)`'s convolution."""
  return jax.lax.conv_general_dilated(
      x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
  )


def transposed(x, kernel):
  """The transposed convolution, as JAX's own transpose of `strided` (kernel channels swapped)."""
  b, h, w, _ = x.shape
  _, adjoint = jax.vjp(
      lambda y: strided(y, kernel.swapaxes(-1, -2)), jnp.zeros((b, 2 * h, 2 * w, kernel.shape[-1]))
  )
  return adjoint(x)[0]


def assert_same_function(fast, reference, x, kernel):
  np.testing.assert_allclose(fast(x, kernel), reference(x, kernel), atol=1e-5)
  out = reference(x, kernel)
  cotangent = jax.random.normal(jax.random.key(9), out.shape)
  for got, expected in zip(
      jax.vjp(fast, x, kernel)[1](cotangent), jax.vjp(reference, x, kernel)[1](cotangent)
  ):
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("height, width, channels", [(8, 8, 3), (4, 6, 3), (7, 6, 3), (8, 6, 1)])
def test_downsample_is_the_strided_convolution(height, width, channels):
  """One input channel: the kernel gradient is a product of patches."""
  x = jax.random.normal(jax.random.key(0), (2, height, width, channels))
  kernel = jax.random.normal(jax.random.key(1), (4, 4, channels, 5))
  assert_same_function(conv.downsample, strided, x, kernel)


@pytest.mark.parametrize("height, width, features", [(4, 4, 5), (7, 3, 5), (3, 4, 1)])
def test_upsample_is_the_transposed_convolution(height, width, features):
  """One output channel: the kernel gradient is a product of the cotangent's patches."""
  x = jax.random.normal(jax.random.key(0), (2, height, width, 3))
  kernel = jax.random.normal(jax.random.key(1), (4, 4, 3, features))
  assert_same_function(conv.upsample, transposed, x, kernel)


@pytest.mark.parametrize("height", [8, 7])
def test_downsample_layer_is_flax_conv(height):
  x = jax.random.normal(jax.random.key(0), (2, height, height, 3))
  layer, reference = conv.Downsample(5), nn.Conv(5, (4, 4), strides=2, padding=1)
  variables = layer.init(jax.random.key(1), x)
  reference_variables = {
      "params": {"kernel": variables["params"]["kernel"], "bias": variables["params"]["bias"] + 0.5}
  }
  variables["params"]["bias"] += 0.5
  np.testing.assert_allclose(
      layer.apply(variables, x), reference.apply(reference_variables, x), atol=1e-5
  )


@pytest.mark.parametrize("features", [6, 1])
def test_upsample_layer_is_flax_conv_transpose(features):
  """nn.ConvTranspose with `transpose_kernel` is the gradient-of-convolution transpose, with
  padding 2 on each side (kernel - 1 - 1) for an exact doubling. To one channel the layer takes
  XLA's form, to several the four-phase one."""
  x = jax.random.normal(jax.random.key(0), (2, 4, 3, 5))
  layer = conv.Upsample(features)
  reference = nn.ConvTranspose(
      features, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)), transpose_kernel=True
  )
  variables = layer.init(jax.random.key(1), x)
  kernel = variables["params"]["kernel"].swapaxes(-1, -2)
  expected = reference.apply({"params": {"kernel": kernel, "bias": variables["params"]["bias"]}}, x)
  np.testing.assert_allclose(layer.apply(variables, x), expected, atol=1e-5)


@pytest.mark.parametrize(
    "kind, form", [(k, f) for k in conv_layers.FORMS for f in conv_layers.FORMS[k]]
)
def test_the_layer_tables_forms_are_the_same_functions(kind, form):
  """Each form `benchmarks.conv_layers` times computes the layer it names, so that its table
  compares one function's forms."""
  x = jax.random.normal(jax.random.key(0), (2, 8, 6, 3))
  kernel = jax.random.normal(jax.random.key(1), (4, 4, 3, 5))
  assert_same_function(
      conv_layers.FORMS[kind][form], strided if kind == "conv" else transposed, x, kernel
  )

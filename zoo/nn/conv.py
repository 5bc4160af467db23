"""Convolution blocks: DCGAN's transposed convolution (4x4 kernel, stride 2) in the form XLA
computes fast, and the conv encoder and decoder of the VAE papers built on it.

A 4x4 stride-2 transposed convolution is exactly a 3x3 stride-1 convolution to four times the
channels followed by a 2x2 depth-to-space rearrangement (sub-pixel convolution), with the 3x3
kernel a fixed scatter of the 4x4 one. The parameters are the 4x4 kernel either way, so the two
forms are the same model. On 2 CPU cores the gradient of this form took 69-80 ms against
`flax.linen.ConvTranspose`'s 266-281 ms (64 x 16 x 16 x 64 -> 32 channels; BENCHMARKS.md).
The strided 4x4 convolution needs no such rewrite: `nn.Conv` with stride 2 measured faster
than its stride-1 (space-to-depth) form.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import errors


def depth_to_space(x):
  """(B, H, W, 4C) -> (B, 2H, 2W, C); channel (p, q, c) becomes pixel (2i + p, 2j + q, c)."""
  b, h, w, c4 = x.shape
  x = x.reshape(b, h, w, 2, 2, c4 // 4).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, 2 * h, 2 * w, c4 // 4)


def _scatter():
  """S[k, a, q]: output pixel 2m + q receives tap k of the 4x4 kernel from input m + a - 1 (the
  pairs of 2i + k - 1 = 2m + q), so tap k is tap a of a 3x3 kernel for phase q."""
  s = np.zeros((4, 3, 2), np.float32)
  for k, (a, q) in enumerate([(2, 1), (1, 0), (1, 1), (0, 0)]):
    s[k, a, q] = 1
  return s


_SCATTER = _scatter()


class Upsample(nn.Module):
  """A 4x4 transposed convolution with stride 2 and padding 1 (H x W -> 2H x 2W), as DCGAN's
  generator: output pixel j gets w[k] x[i] wherever 2i + k - 1 = j, which is the adjoint of
  `nn.Conv(features, (4, 4), strides=2, padding=1)`."""
  features: int
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features))
    k3 = jnp.einsum("hap,wbq,hwio->abipqo", _SCATTER, _SCATTER, kernel)
    k3 = k3.reshape(3, 3, x.shape[-1], 4 * self.features)
    y = jax.lax.conv_general_dilated(x, k3, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = depth_to_space(y)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return y


def _check_images(shape, num_layers: int) -> None:
  """One clear error for data that `num_layers` stride-2 layers cannot take."""
  if len(shape) != 3:
    raise errors.HyperparameterError(
        f"the conv layers need images (height, width, channels), not examples of shape {shape}")
  scale = 2 ** num_layers
  if shape[0] % scale or shape[1] % scale:
    raise errors.HyperparameterError(
        f"{shape[0]}x{shape[1]} images do not pass through {num_layers} stride-2 layers: their "
        f"sides must be multiples of {scale} (crop or resize the data, or change conv_features)")


class ConvEncoder(nn.Module):
  """x (B, H, W, C) -> features (B, F): 4x4 stride-2 convolutions with `features` channels and
  ReLU, flattened (the conv trunks of the VAE papers: beta-VAE's 32-32-64-64, VLAE's 64-128)."""
  features: tuple[int, ...]

  @nn.compact
  def __call__(self, x):
    _check_images(x.shape[1:], len(self.features))
    for features in self.features:
      x = nn.relu(nn.Conv(features, (4, 4), strides=2, padding=1)(x))
    return x.reshape(len(x), -1)


class ConvDecoder(nn.Module):
  """h (B, F) -> logits (B, H, W, C), the mirror of `ConvEncoder(features)`: a dense layer to
  the smallest feature map, then 4x4 stride-2 transposed convolutions (`Upsample`) with ReLU
  between, the last to the data's channels plus a per-pixel bias. The output shape is given on
  the first call and read off that bias afterwards, so decoding needs no data."""
  features: tuple[int, ...]

  @nn.compact
  def __call__(self, h, shape=None):
    height, width, channels = shape or self.get_variable("params", "output_bias").shape
    _check_images((height, width, channels), len(self.features))
    scale = 2 ** len(self.features)
    x = nn.relu(nn.Dense(height // scale * width // scale * self.features[-1])(h))
    x = x.reshape(len(h), height // scale, width // scale, self.features[-1])
    for features in reversed(self.features[:-1]):
      x = nn.relu(Upsample(features)(x))
    x = Upsample(channels, use_bias=False)(x)
    return x + self.param("output_bias", nn.initializers.zeros_init(), (height, width, channels))

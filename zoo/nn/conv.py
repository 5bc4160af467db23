"""Convolution blocks: DCGAN's 4x4 stride-2 convolution and its transpose in the forms XLA
computes fast, and the conv encoder and decoder of the VAE papers built on them.

The two layers are adjoints of each other: `upsample(x, w)` (the transposed convolution) is the
gradient map of `downsample(., w)` with the kernel's channel axes swapped. Each computes its
forward pass in its fast form and its gradients through the other's, by `jax.custom_vjp`:

- `downsample` is `lax.conv_general_dilated` with stride 2, whose own input gradient XLA:CPU
  computes slowly as an input-dilated convolution (28 ms against 5 ms forward, 64 x 32 x 32 x 32
  -> 32 channels, 2 CPU cores); its input gradient is `upsample` instead.
- `upsample` splits the 4x4 transposed convolution into its four output phases: output pixel
  2m + q takes taps (3, 1) of inputs (m - 1, m) for q = 0 and taps (2, 0) of (m, m + 1) for
  q = 1, so one 2x2 stride-1 convolution of the padded input to 4x the channels computes every
  phase, then a depth-to-space interleaves them; to one output channel it is XLA's own
  transposed convolution, faster there. Its input gradient is `downsample`.
- Both kernel gradients are the strided convolution's at some input: XLA's, or for an input of
  one channel (the grey image into the first layer, the gradient out of the last) the product
  of that input's patches with the cotangent (`_kernel_gradient`).

Both are the same functions as `nn.Conv(strides=2, padding=1)` and `nn.ConvTranspose` of the
same 4x4 kernel (tests/test_conv.py checks values and gradients against them); BENCHMARKS.md has
the measurements that chose these forms.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import errors

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
# _PHASE_TAPS[q, t]: the 4x4 kernel's tap that output phase q applies to its window's t-th input
_PHASE_TAPS = np.array([[3, 1], [2, 0]])


def _swap_channels(kernel):
  return kernel.swapaxes(-1, -2)


def _strided_convolution(x, kernel):
  return jax.lax.conv_general_dilated(
      x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DIMENSIONS
  )


def _dilated_convolution(x, kernel):
  """The transposed convolution as XLA computes it: the strided convolution's input gradient,
  an input-dilated convolution."""
  b, h, w, _ = x.shape
  output = jnp.zeros((b, 2 * h, 2 * w, kernel.shape[-1]), x.dtype)
  swapped = _swap_channels(kernel)
  return jax.vjp(lambda y: _strided_convolution(y, swapped), output)[1](x)[0]


def _transposed_convolution(x, kernel):
  """The transposed convolution in the form XLA:CPU runs faster: the four-phase form, or XLA's
  own for one output channel (the beta-VAE's last layer: XLA's 2.8 ms against the phase form's
  4.4, where to 32 output channels the phase form takes 3.7 against XLA's 29.1; BENCHMARKS.md,
  "Patches and space-to-depth")."""
  if kernel.shape[-1] == 1:
    return _dilated_convolution(x, kernel)
  return _phase_convolution(x, kernel)


def _phase_convolution(x, kernel):
  """The transposed convolution in its four-phase form (the module docstring)."""
  b, h, w, _ = x.shape
  features = kernel.shape[-1]
  taps = kernel[_PHASE_TAPS[:, :, None, None], _PHASE_TAPS[None, None, :, :]]  # p t q u i o
  taps = taps.transpose(1, 3, 4, 0, 2, 5).reshape(2, 2, kernel.shape[-2], 4 * features)
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  y = jax.lax.conv_general_dilated(padded, taps, (1, 1), "VALID", dimension_numbers=_DIMENSIONS)
  y = y.reshape(b, h + 1, w + 1, 2, 2, features)
  # phase (p, q) of output pixel (2i + p, 2j + q) is window (i + p, j + q)
  phases = jnp.stack(
      [jnp.stack([y[:, p : p + h, q : q + w, p, q] for q in range(2)], 3) for p in range(2)], 2
  )  # b h p w q o
  return phases.reshape(b, 2 * h, 2 * w, features)


def _space_to_depth(x):
  """x (B, H, W, I), H and W even, padded by 1 and cut into 2x2 blocks: (B, H/2 + 1, W/2 + 1,
  4I), channels ordered (row in the block, column in the block, I)."""
  b, h, w, i = x.shape
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  x = x.reshape(b, h // 2 + 1, 2, w // 2 + 1, 2, i).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // 2 + 1, w // 2 + 1, 4 * i)


def _patches(x):
  """x's 4x4 stride-2 windows, (B, H/2, W/2, 16I): the 2x2 neighbourhoods (a, c) of
  `_space_to_depth(x)`, so channel (a, c, p, q, i) holds tap (2a + p, 2c + q) of channel i."""
  blocks = _space_to_depth(x)
  h, w = blocks.shape[1] - 1, blocks.shape[2] - 1
  return jnp.concatenate([blocks[:, a : a + h, c : c + w] for a in range(2) for c in range(2)], -1)


def _kernel_gradient(x, kernel, g):
  """The kernel's gradient of <g, strided convolution(x, kernel)>, x with even sides: XLA's,
  but for one input channel x's patches times g, one (16 x N) by (N x O) product: 1.0 ms
  against XLA:CPU's 3.7 for the beta-VAE's first layer, where with 32 channels in the product
  form is 4x slower (BENCHMARKS, "Patches and space-to-depth")."""
  if x.shape[-1] != 1:
    return jax.vjp(lambda k: _strided_convolution(x, k), kernel)[1](g)[0]
  product = _patches(x).reshape(-1, 16).T @ g.reshape(-1, g.shape[-1])
  return product.reshape(2, 2, 2, 2, 1, -1).transpose(0, 2, 1, 3, 4, 5).reshape(kernel.shape)


def downsample(x, kernel):
  """The 4x4 stride-2 convolution with padding 1, (B, H, W, I) -> (B, H', W', O) with
  H' = floor(H/2) and W' = floor(W/2). Odd sides, whose input gradient `upsample` cannot be
  (it makes even sides), are XLA's convolution with XLA's gradient."""
  if x.shape[1] % 2 or x.shape[2] % 2:
    return _strided_convolution(x, kernel)
  return _downsample_even(x, kernel)


@jax.custom_vjp
def _downsample_even(x, kernel):
  return _strided_convolution(x, kernel)


def _downsample_forward(x, kernel):
  return _strided_convolution(x, kernel), (x, kernel)


def _downsample_backward(residuals, g):
  x, kernel = residuals
  return upsample(g, _swap_channels(kernel)), _kernel_gradient(x, kernel, g)


_downsample_even.defvjp(_downsample_forward, _downsample_backward)


@jax.custom_vjp
def upsample(x, kernel):
  """The 4x4 stride-2 transposed convolution with padding 1, (B, H, W, I) -> (B, 2H, 2W, O):
  output pixel j gets w[k] x[i] wherever 2i + k - 1 = j (each spatial axis), the adjoint of
  `downsample` with `kernel`'s channel axes swapped."""
  return _transposed_convolution(x, kernel)


def _upsample_forward(x, kernel):
  return _transposed_convolution(x, kernel), (x, kernel)


def _upsample_backward(residuals, g):
  """<g, upsample(x, w)> = <downsample(g, w'), x> with w' = w's channels swapped: the input
  gradient is downsample(g, w'), the kernel gradient downsample's kernel gradient at input g
  and cotangent x, swapped back."""
  x, kernel = residuals
  swapped = _swap_channels(kernel)
  return downsample(g, swapped), _swap_channels(_kernel_gradient(g, swapped, x))


upsample.defvjp(_upsample_forward, _upsample_backward)


class Downsample(nn.Module):
  """A 4x4 convolution with stride 2 and padding 1 (H x W -> H/2 x W/2), as DCGAN's critic and
  the VAE encoders: `nn.Conv(features, (4, 4), strides=2, padding=1)` computed by `downsample`."""

  features: int

  @nn.compact
  def __call__(self, x):
    kernel = self.param(
        "kernel", nn.initializers.lecun_normal(), (4, 4, x.shape[-1], self.features)
    )
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias)
    return downsample(x, kernel) + bias


class Upsample(nn.Module):
  """A 4x4 transposed convolution with stride 2 and padding 1 (H x W -> 2H x 2W), as DCGAN's
  generator and the VAE decoders, computed by `upsample`."""

  features: int
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features))
    x, kernel = nn.dtypes.promote_dtype(x, kernel)
    y = upsample(x, kernel)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return y


def _check_images(shape, num_layers: int) -> None:
  """One clear error for data that `num_layers` stride-2 layers cannot take."""
  if len(shape) != 3:
    raise errors.HyperparameterError(
        f"the conv layers need images (height, width, channels), not examples of shape {shape}"
    )
  scale = 2**num_layers
  if shape[0] % scale or shape[1] % scale:
    raise errors.HyperparameterError(
        f"{shape[0]}x{shape[1]} images do not pass through {num_layers} stride-2 layers: their "
        f"sides must be multiples of {scale} (crop or resize the data, or change conv_features)"
    )


class ConvEncoder(nn.Module):
  """x (B, H, W, C) -> features (B, F): 4x4 stride-2 convolutions with `features` channels and
  ReLU, flattened (the conv trunks of the VAE papers: beta-VAE's 32-32-64-64, VLAE's 64-128)."""

  features: tuple[int, ...]

  @nn.compact
  def __call__(self, x):
    _check_images(x.shape[1:], len(self.features))
    for features in self.features:
      x = nn.relu(Downsample(features)(x))
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

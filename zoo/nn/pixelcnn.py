"""A conditional gated PixelCNN over discrete images (van den Oord et al. 2016, Conditional Image
Generation with PixelCNN Decoders, section 2.1-2.3 and Figure 2; Pixel Recurrent Neural Networks,
section 3.5 for the channel masks), the decoder of the PixelGAN autoencoder.

Pixels are ordered row by row, and the channels of a pixel one after another (R, then G given R,
then B given R and G). A single stack of masked k x k convolutions has a blind spot: pixels above
and to the right that no depth of it reaches (on 8x8 images with 6 blocks, 28 of the 64 pixels
missed some of their context). So there are two stacks, as in the gated PixelCNN:
- the vertical stack, (k//2 + 1) x k convolutions over the current row and the rows above, whose
  output at row i, shifted down one row, feeds the horizontal stack at row i + 1, so that it
  brings every pixel of the rows above and nothing of the current row;
- the horizontal stack, 1 x (k//2 + 1) convolutions over the current row up to the current pixel,
  masked at the current pixel by channel: every feature belongs to one channel's group (feature
  f to group f % channels); a type A mask lets group c see the groups < c of the pixel, type B
  also group c itself. The first layer is type A, every later one type B.
So the output for channel c of pixel i is a function of every earlier pixel and of the channels
< c of pixel i, and of nothing later.

Each channel takes one of `levels` values, k / (levels - 1) in [0, 1] (k = 0, 1 for binary
images), with a softmax over the levels: p(x | h) = prod_i prod_c p(x_ic | x_<i, x_i,<c, h).

Conditioning (PixelGAN autoencoders, section 2): a vector h (B, D) adds the same bias at every
location, V h; a map h (B, H, W, D) adds a location-dependent bias, V * h (a 1x1 convolution);
both stacks get their own.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def channel_mask(in_features: int, out_features: int, mask_type: str, channels: int) -> np.ndarray:
  """The (in, out) mask at the current pixel: from group g to group c where g < c (type A) or
  g <= c (type B)."""
  group_in = np.arange(in_features)[:, None] % channels
  group_out = np.arange(out_features)[None, :] % channels
  return (group_in < group_out if mask_type == "A" else group_in <= group_out).astype(np.float32)


class VerticalConv(nn.Module):
  """A (k//2 + 1) x k convolution whose output at (i, j) sees rows i - k//2 .. i, columns
  j - k//2 .. j + k//2 (the current row included: the stack is shifted before it is used)."""

  features: int
  kernel_size: int

  @nn.compact
  def __call__(self, x):
    half = self.kernel_size // 2
    return nn.Conv(self.features, (half + 1, self.kernel_size), padding=((half, 0), (half, half)))(
        x
    )


class HorizontalConv(nn.Module):
  """A 1 x (k//2 + 1) convolution whose output at (i, j) sees columns j - k//2 .. j of row i,
  column j through the channel mask of `mask_type`."""

  features: int
  kernel_size: int
  mask_type: str
  channels: int

  @nn.compact
  def __call__(self, x):
    width = self.kernel_size // 2 + 1
    mask = np.ones((1, width, x.shape[-1], self.features), np.float32)
    mask[0, -1] = channel_mask(x.shape[-1], self.features, self.mask_type, self.channels)
    return nn.Conv(
        self.features, (1, width), padding=((0, 0), (width - 1, 0)), mask=jnp.asarray(mask)
    )(x)


def shift_down(x):
  """x moved down one row (a zero row on top): row i then holds what row i - 1 saw."""
  return jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


def pixel_projection(features: int, mask_type: str, channels: int):
  """A 1x1 convolution through the channel mask of `mask_type`."""
  return HorizontalConv(features, 1, mask_type, channels)


def condition_bias(condition, features: int):
  """V h: a (B, 1, 1, features) bias for a vector h, a (B, H, W, features) one for a map h."""
  if condition.ndim == 2:
    return nn.Dense(features)(condition)[:, None, None, :]
  return nn.Conv(features, (1, 1))(condition)


def gate(pre):
  """tanh(value) . sigmoid(gate) of pre-activations holding the values, then the gates."""
  value, gates = jnp.split(pre, 2, axis=-1)
  return jnp.tanh(value) * jax.nn.sigmoid(gates)


class GatedBlock(nn.Module):
  """One layer of both stacks (the paper's Figure 2):
    v' = gate(W_v * v + V_v h),
    h' = h + W_o gate(W_h * h + W_vh shift_down(W_v * v) + V_h h),
  with gate(a) = tanh(a_f) . sigmoid(a_g), W_h type B, and 1x1 W_vh, W_o. Value and gate feature
  f of the horizontal stack share group f % channels because `features` is a multiple of
  `channels`."""

  features: int
  kernel_size: int
  channels: int

  @nn.compact
  def __call__(self, vertical, horizontal, condition):
    vertical_pre = VerticalConv(2 * self.features, self.kernel_size)(vertical)
    link = nn.Conv(2 * self.features, (1, 1), name="vertical_to_horizontal")(
        shift_down(vertical_pre)
    )
    horizontal_pre = (
        HorizontalConv(2 * self.features, self.kernel_size, "B", self.channels)(horizontal)
        + link
        + condition_bias(condition, 2 * self.features)
    )
    vertical = gate(vertical_pre + condition_bias(condition, 2 * self.features))
    horizontal = horizontal + pixel_projection(self.features, "B", self.channels)(
        gate(horizontal_pre)
    )
    return vertical, horizontal


class PixelCNN(nn.Module):
  """The logits (B, H, W, C, levels) of p(x | h): a first layer of both stacks (a 7 x 7
  receptive field: a 4 x 7 vertical and a type A 1 x 4 horizontal convolution, the vertical
  one shifted into the horizontal), `num_blocks` gated blocks of `kernel_size`, and two 1x1
  type B convolutions on the horizontal stack. `features` must be a multiple of C."""

  features: int = 64
  num_blocks: int = 6
  levels: int = 2
  kernel_size: int = 3

  @nn.compact
  def __call__(self, x, condition):
    channels = x.shape[-1]
    vertical = VerticalConv(self.features, 7)(x)
    horizontal = HorizontalConv(self.features, 7, "A", channels)(x) + nn.Conv(
        self.features, (1, 1), name="vertical_to_horizontal"
    )(shift_down(vertical))
    for _ in range(self.num_blocks):
      vertical, horizontal = GatedBlock(self.features, self.kernel_size, channels)(
          vertical, horizontal, condition
      )
    h = nn.relu(pixel_projection(self.features, "B", channels)(nn.relu(horizontal)))
    logits = pixel_projection(self.levels * channels, "B", channels)(h)  # feature l * C + c
    logits = logits.reshape(*x.shape[:3], self.levels, channels)
    return jnp.swapaxes(logits, -1, -2)


def log_likelihood(logits, x):
  """log p(x | h) per image, summed over pixels and channels, for x = k / (levels - 1)."""
  levels = logits.shape[-1]
  k = jnp.round(x * (levels - 1)).astype(jnp.int32)
  log_probs = jnp.take_along_axis(jax.nn.log_softmax(logits), k[..., None], -1)
  return log_probs.reshape(len(x), -1).sum(-1)


def sample(logits_fn, shape, levels: int, rng):
  """Images of `shape` (B, H, W, C) with values k / (levels - 1), drawn pixel by pixel and
  channel by channel from `logits_fn(x) -> (B, H, W, C, levels)` logits, draw i with
  `fold_in(rng, i)`, in one `lax.fori_loop`; each pass recomputes the whole image, so H * W * C
  passes in all."""
  _, height, width, channels = shape

  def draw(i, x):
    pixel, channel = i // channels, i % channels
    start = (0, pixel // width, pixel % width, channel)
    logits = jax.lax.dynamic_slice(logits_fn(x), (*start, 0), (shape[0], 1, 1, 1, levels))
    k = jax.random.categorical(jax.random.fold_in(rng, i), logits)
    return jax.lax.dynamic_update_slice(x, (k / (levels - 1)).astype(x.dtype), start)

  return jax.lax.fori_loop(0, height * width * channels, draw, jnp.zeros(shape, jnp.float32))

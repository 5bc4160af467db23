"""A conditional gated PixelCNN over discrete images (van den Oord et al. 2016, Pixel Recurrent
Neural Networks, section 3.5 for the masks; Conditional Image Generation with PixelCNN Decoders,
eq. 2 and 4 for the gated, conditioned blocks), the decoder of the PixelGAN autoencoder.

Pixels are ordered row by row, and the channels of a pixel one after another (R, then G given R,
then B given R and G). Every feature belongs to one channel's group (feature f to group
f % channels). A type A mask lets group c see the earlier pixels and the groups < c of its own
pixel; type B also group c itself. So a type A layer followed by type B layers (1x1 ones included)
keeps the output for channel c of pixel i a function of the earlier pixels and channels < c.

Each channel takes one of `levels` values, k / (levels - 1) in [0, 1] (k = 0, 1 for binary
images), with a softmax over the levels: p(x | h) = prod_i prod_c p(x_ic | x_<i, x_i,<c, h).

Conditioning (PixelGAN autoencoders, section 2): a vector h (B, D) adds the same bias at every
location, V h; a map h (B, H, W, D) adds a location-dependent bias, V * h (a 1x1 convolution).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def causal_mask(kernel_size: int, in_features: int, out_features: int, mask_type: str,
                channels: int = 1) -> np.ndarray:
  """The (k, k, in, out) weight mask: 1 on the rows above the centre and left of the centre on
  its row; at the centre, from group g to group c where g < c (type A) or g <= c (type B)."""
  centre = kernel_size // 2
  mask = np.zeros((kernel_size, kernel_size, in_features, out_features), np.float32)
  mask[:centre] = 1
  mask[centre, :centre] = 1
  group_in = np.arange(in_features)[:, None] % channels
  group_out = np.arange(out_features)[None, :] % channels
  mask[centre, centre] = group_in < group_out if mask_type == "A" else group_in <= group_out
  return mask


class MaskedConv(nn.Module):
  """A 'SAME' convolution whose kernel is multiplied by `causal_mask`."""
  features: int
  kernel_size: int
  mask_type: str
  channels: int

  @nn.compact
  def __call__(self, x):
    mask = causal_mask(self.kernel_size, x.shape[-1], self.features, self.mask_type,
                       self.channels)
    return nn.Conv(self.features, (self.kernel_size, self.kernel_size), padding="SAME",
                   mask=jnp.asarray(mask))(x)


def condition_bias(condition, features: int):
  """V h: a (B, 1, 1, features) bias for a vector h, a (B, H, W, features) one for a map h."""
  if condition.ndim == 2:
    return nn.Dense(features)(condition)[:, None, None, :]
  return nn.Conv(features, (1, 1))(condition)


class GatedBlock(nn.Module):
  """y = tanh(W_f * x + V_f h) . sigmoid(W_g * x + V_g h), with type B masked W; x + a masked
  1x1 projection of y is returned (the residual connection of the gated PixelCNN). Value and
  gate feature f share group f % channels because `features` is a multiple of `channels`."""
  features: int
  kernel_size: int
  channels: int

  @nn.compact
  def __call__(self, x, condition):
    pre = MaskedConv(2 * self.features, self.kernel_size, "B", self.channels)(x)
    pre = pre + condition_bias(condition, 2 * self.features)
    value, gate = jnp.split(pre, 2, axis=-1)
    y = jnp.tanh(value) * jax.nn.sigmoid(gate)
    return x + MaskedConv(self.features, 1, "B", self.channels)(y)


class PixelCNN(nn.Module):
  """The logits (B, H, W, C, levels) of p(x | h): a 7x7 type A masked convolution, `num_blocks`
  gated blocks and two masked 1x1 convolutions. `features` must be a multiple of C."""
  features: int = 64
  num_blocks: int = 6
  levels: int = 2
  kernel_size: int = 3

  @nn.compact
  def __call__(self, x, condition):
    channels = x.shape[-1]
    h = MaskedConv(self.features, 7, "A", channels)(x)
    for _ in range(self.num_blocks):
      h = GatedBlock(self.features, self.kernel_size, channels)(h, condition)
    h = nn.relu(MaskedConv(self.features, 1, "B", channels)(nn.relu(h)))
    logits = MaskedConv(self.levels * channels, 1, "B", channels)(h)  # feature l * C + c
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

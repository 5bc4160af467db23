"""A conditional gated PixelCNN over binary images (van den Oord et al. 2016, Pixel Recurrent
Neural Networks, section 3.5 for the masks; Conditional Image Generation with PixelCNN Decoders,
eq. 2 and 4 for the gated, conditioned blocks), the decoder of the PixelGAN autoencoder.

Pixels are ordered row by row. A type A mask lets the output at a pixel see only the pixels
before it; type B also the pixel itself, so a type A layer followed by any number of type B
layers and 1x1 convolutions keeps the output at pixel i a function of pixels < i. The channels of
one pixel are predicted together from the earlier pixels (exact for one-channel images).

Conditioning (PixelGAN autoencoders, section 2): a vector h (B, D) adds the same bias at every
location, V h; a map h (B, H, W, D) adds a location-dependent bias, V * h (a 1x1 convolution).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def causal_mask(kernel_size: int, in_features: int, out_features: int,
                mask_type: str) -> np.ndarray:
  """The (k, k, in, out) weight mask: 1 on the rows above the centre and left of the centre on
  its row, and at the centre for type B."""
  centre = kernel_size // 2
  mask = np.zeros((kernel_size, kernel_size, in_features, out_features), np.float32)
  mask[:centre] = 1
  mask[centre, :centre + (mask_type == "B")] = 1
  return mask


class MaskedConv(nn.Module):
  """A 'SAME' convolution whose kernel is multiplied by `causal_mask(mask_type)`."""
  features: int
  kernel_size: int
  mask_type: str

  @nn.compact
  def __call__(self, x):
    mask = causal_mask(self.kernel_size, x.shape[-1], self.features, self.mask_type)
    return nn.Conv(self.features, (self.kernel_size, self.kernel_size), padding="SAME",
                   mask=jnp.asarray(mask))(x)


def condition_bias(condition, features: int):
  """V h: a (B, 1, 1, features) bias for a vector h, a (B, H, W, features) one for a map h."""
  if condition.ndim == 2:
    return nn.Dense(features)(condition)[:, None, None, :]
  return nn.Conv(features, (1, 1))(condition)


class GatedBlock(nn.Module):
  """y = tanh(W_f * x + V_f h) . sigmoid(W_g * x + V_g h), with type B masked W; x + a 1x1
  projection of y is returned (the residual connection of the gated PixelCNN)."""
  features: int
  kernel_size: int = 3

  @nn.compact
  def __call__(self, x, condition):
    pre = MaskedConv(2 * self.features, self.kernel_size, "B")(x)
    pre = pre + condition_bias(condition, 2 * self.features)
    value, gate = jnp.split(pre, 2, axis=-1)
    return x + nn.Conv(self.features, (1, 1))(jnp.tanh(value) * jax.nn.sigmoid(gate))


class PixelCNN(nn.Module):
  """Bernoulli logits of p(x | h) = prod_i p(x_i | x_<i, h): a 7x7 type A masked convolution,
  `num_blocks` gated blocks and two 1x1 convolutions."""
  features: int = 64
  num_blocks: int = 6
  kernel_size: int = 3

  @nn.compact
  def __call__(self, x, condition):
    h = MaskedConv(self.features, 7, "A")(x)
    for _ in range(self.num_blocks):
      h = GatedBlock(self.features, self.kernel_size)(h, condition)
    h = nn.relu(nn.Conv(self.features, (1, 1))(nn.relu(h)))
    return nn.Conv(x.shape[-1], (1, 1))(h)


def sample(logits_fn, shape, rng):
  """Binary images of `shape` (B, H, W, C) drawn pixel by pixel from `logits_fn(x) -> logits`,
  pixel i with `fold_in(rng, i)`, in one `lax.fori_loop`; each pass recomputes the whole image,
  so H * W passes in all."""
  height, width = shape[1:3]

  def draw(i, x):
    row, column = i // width, i % width
    start = (0, row, column, 0)
    logits = jax.lax.dynamic_slice(logits_fn(x), start, (shape[0], 1, 1, shape[3]))
    pixel = jax.random.bernoulli(jax.random.fold_in(rng, i), jax.nn.sigmoid(logits))
    return jax.lax.dynamic_update_slice(x, pixel.astype(x.dtype), start)

  return jax.lax.fori_loop(0, height * width, draw, jnp.zeros(shape, jnp.float32))

"""The generator and critic networks of the GAN papers: DCGAN's convolutional pair (Radford et
al. 2016) for images, and the ReLU MLP pair of the 2-D toy experiments for vectors. The data's
shape picks the architecture."""

from collections.abc import Sequence
from typing import Literal

import flax.linen as nn
import jax

from zoo.nn import conv
from zoo.nn import mlp


def num_halvings(size: int) -> int:
  """How many stride-2 layers take an image side to DCGAN's smallest feature map (4 for 64,
  3 for 32, 2 for 28 -> 7, 1 for 8)."""
  count = 0
  while size % 2 == 0 and size > 4:
    size, count = size // 2, count + 1
  return max(count, 1)


class Generator(nn.Module):
  """z -> x. Images: a dense layer to the smallest feature map (width * 2^(k-1) channels), then
  k 4x4 stride-2 transposed convolutions halving the channels, batch norm and ReLU between, and
  a sigmoid (DCGAN's tanh, for pixels in [0, 1]). Vectors: a ReLU MLP with a linear output.

  The output shape is given on the first call (at `init`); afterwards it is read off the
  per-output bias, so `sample(n)` needs no data.
  """

  hidden_dims: Sequence[int]
  width: int

  @nn.compact
  def __call__(self, z, shape=None, train=False):
    shape = tuple(shape or self.get_variable("params", "output_bias").shape)
    if len(shape) == 1:
      h = mlp.hidden_layers(z, self.hidden_dims)  # first: layers are named in order of creation
      x = nn.Dense(shape[0], use_bias=False)(h)
    else:
      height, width, channels = shape
      k = num_halvings(height)
      features = self.width * 2 ** (k - 1)
      h = nn.Dense((height >> k) * (width >> k) * features)(z)
      h = h.reshape(len(z), height >> k, width >> k, features)
      for _ in range(k - 1):
        h = nn.relu(nn.BatchNorm(use_running_average=not train)(h))
        features //= 2
        h = conv.Upsample(features)(h)
      h = nn.relu(nn.BatchNorm(use_running_average=not train)(h))
      x = conv.Upsample(channels, use_bias=False)(h)
    x = x + self.param("output_bias", nn.initializers.zeros_init(), shape)
    return jax.nn.sigmoid(x) if len(shape) == 3 else x


Norm = Literal["batch", "layer", "none"]


class Critic(nn.Module):
  """x -> one real score per example, unbounded (WGAN's f, or a GAN discriminator's logit).
  Images: k 4x4 stride-2 convolutions doubling the channels from `width`, leaky ReLU (0.2), then
  a linear layer over the smallest map; every convolution but the first normalised by `norm`:
  `batch` (the WGAN and DCGAN critics of the authors' code: martinarjovsky/WassersteinGAN
  models/dcgan.py, DCGAN_D), `layer` over each example's (H, W, C) with a scale and offset per
  channel (WGAN-GP's 64x64 critic: igul222/improved_wgan_training gan_64x64.py, Normalize, as
  the gradient penalty is per example) or `none` (WGAN-GP's MNIST and CIFAR-10 critics). In
  training, batch norm normalises each call's batch by its own statistics, as the authors call
  the critic on the real and the generated batch in turn. Vectors: a ReLU MLP, never
  normalised (the toy critics)."""

  hidden_dims: Sequence[int]
  width: int
  norm: str = "none"

  @nn.compact
  def __call__(self, x, train=False):
    if x.ndim == 2:
      h = mlp.hidden_layers(x, self.hidden_dims)
    else:
      h = x
      for i in range(num_halvings(x.shape[1])):
        h = conv.Downsample(self.width * 2**i)(h)
        if i and self.norm == "batch":
          h = nn.BatchNorm(use_running_average=not train)(h)
        elif i and self.norm == "layer":
          h = nn.LayerNorm(reduction_axes=(1, 2, 3))(h)
        h = nn.leaky_relu(h, 0.2)
      h = h.reshape(len(x), -1)
    return nn.Dense(1)(h)[:, 0]

"""Preprocessing of raw examples, written once for every paper: the transform, its inverse and
its log-Jacobian, so that likelihoods can be reported in pixel space whatever the model saw.

Transforms take a raw batch and uniform noise of the same shape (the pipeline draws the noise so
that it depends on the global batch alone, not on how many hosts read it), as NumPy arrays on
the host or as JAX arrays inside a compiled step (`zoo.data.gather`).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from zoo import errors

KINDS = ("none", "scale", "dequantize", "logit", "zca", "binarize")


def _numpy_of(x):
  """The array module of `x`: jax.numpy for JAX arrays (and tracers), else NumPy."""
  return jnp if isinstance(x, jax.Array) else np


def dequantize(pixels: np.ndarray, noise: np.ndarray, num_levels: int) -> np.ndarray:
  """Uniform dequantisation: (k + u) / L in [0, 1) for integer pixels k in {0..L-1}."""
  return ((pixels.astype(np.float32) + noise) / num_levels).astype(np.float32)


def logit(x: np.ndarray, alpha: float) -> np.ndarray:
  """The flow papers' logit transform (MAF sec. 4.3): y = log s - log(1 - s), s = alpha +
  (1 - 2 alpha) x."""
  xp = _numpy_of(x)
  s = alpha + (1 - 2 * alpha) * x
  return (xp.log(s) - xp.log1p(-s)).astype(np.float32)


def logit_log_det(y, alpha: float):
  """log|det dy/dx| of `logit` at y = logit(x), summed over each example's dimensions.

  A density over y becomes the density over x in [0, 1]^D by adding this:
  dy/dx = (1 - 2 alpha) / (s (1 - s)) with s = sigmoid(y).
  """
  y = np.asarray(y).reshape(len(y), -1)
  log_sigmoid = -np.logaddexp(0, -y)
  log_one_minus_sigmoid = -np.logaddexp(0, y)
  return y.shape[-1] * np.log1p(-2 * alpha) - (log_sigmoid + log_one_minus_sigmoid).sum(-1)


def binarize(pixels: np.ndarray, noise: np.ndarray, num_levels: int) -> np.ndarray:
  """Dynamic binarisation: each pixel is 1 with probability k / (L - 1)."""
  return (noise < pixels.astype(np.float32) / (num_levels - 1)).astype(np.float32)


def fit_zca(pixels: np.ndarray, num_levels: int, epsilon: float, rng: np.random.Generator):
  """(mean, W) of ZCA whitening of the dequantised pixels: W = U diag((lambda + epsilon)^-1/2) U^T
  from the eigendecomposition of their covariance (NICE's preprocessing of SVHN and CIFAR-10)."""
  x = dequantize(pixels, rng.random(pixels.shape, dtype=np.float32), num_levels)
  x = x.reshape(len(x), -1).astype(np.float64)
  mean = x.mean(0)
  eigenvalues, eigenvectors = np.linalg.eigh(np.cov(x - mean, rowvar=False))
  whitening = (eigenvectors / np.sqrt(eigenvalues + epsilon)) @ eigenvectors.T
  return mean.astype(np.float32), whitening.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Framing:
  """Images of any size brought to `size` x `size`, by one of the two recipes the papers' code
  uses, each with PIL's antialiased bilinear resize:

  - crop 0: the shorter side resized to `size`, then the centre square cut: torchvision's
    Resize(size) + CenterCrop(size), as WGAN's code frames LSUN bedrooms
    (martinarjovsky/WassersteinGAN, main.py).
  - crop C: the centre C x C square cut first, then resized to `size` x `size` (the face
    crops of CelebA: the papers of the zoo that show CelebA do not give C; 148 of its 178
    columns is the custom of VAE code, 108 DCGAN's).
  """

  size: int
  crop: int = 0

  def shape(self, stored_shape: tuple) -> tuple[int, int, int]:
    return (self.size, self.size, stored_shape[-1])

  def __call__(self, image: np.ndarray) -> np.ndarray:
    """One (height, width, channels) uint8 image, framed."""
    height, width = image.shape[:2]
    if self.crop > min(height, width):
      raise errors.UserError(
          f"config.center_crop={self.crop} does not fit a {height} x {width} image"
      )
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    if self.crop:
      top, left = _centred(height, self.crop), _centred(width, self.crop)
      picture = picture.crop((left, top, left + self.crop, top + self.crop))
      picture = picture.resize((self.size, self.size), Image.Resampling.BILINEAR)
    else:
      new_height, new_width = (  # torchvision's rounding: the longer side truncated
          (self.size, int(self.size * width / height))
          if height <= width
          else (int(self.size * height / width), self.size)
      )
      picture = picture.resize((new_width, new_height), Image.Resampling.BILINEAR)
      top, left = _centred(new_height, self.size), _centred(new_width, self.size)
      picture = picture.crop((left, top, left + self.size, top + self.size))
    return np.asarray(picture).reshape(self.shape(image.shape))


def _centred(side: int, crop: int) -> int:
  """The first index of the centre `crop` of `side` (torchvision's CenterCrop rounding)."""
  return int(round((side - crop) / 2.0))


@dataclasses.dataclass(frozen=True, eq=False)
class Preprocessing:
  """One of KINDS, applied to raw batches.

  - none: the raw values as floats; binarize: dynamically binarised pixels; scale: pixels k as
    k / (L - 1) in [0, 1], still discrete (what a categorical likelihood over levels reads).
  - dequantize: pixels dequantised to [0, 1]; logit: then the logit transform; zca: then ZCA
    whitening with (mean, whitening) fitted on the training split. For these three the model's
    density over x converts to one over the dequantised pixels v in [0, 1]^D by adding
    `log_det(x)` = log|det dx/dv|, and bits per dimension are defined (`dequantizes`).
  """

  kind: str
  num_levels: int | None = None
  alpha: float = 1e-6
  mean: np.ndarray | None = None
  whitening: np.ndarray | None = None

  @property
  def needs_noise(self) -> bool:
    return self.kind not in ("none", "scale")

  @property
  def levels(self) -> int | None:
    """How many values a pixel takes after preprocessing, where they stay discrete."""
    return {"binarize": 2, "scale": self.num_levels}.get(self.kind)

  @property
  def exact_in_jax(self) -> bool:
    """Whether jax.numpy computes this preprocessing bit for bit as NumPy does, so that a batch
    made inside a compiled step is the host's: the cast of `none`, and a division by a power of
    two. XLA:CPU's float32 division is not NumPy's (IEEE's): by 17 it rounds 6% of these
    quotients differently, by 255 three quarters (2-core CPU, 2026-12-04); and XLA's logarithms
    and fused multiply-adds move a quarter of a digits batch's logit values, by up to 7e-4."""
    if self.kind not in ("scale", "binarize", "dequantize"):
      return self.kind == "none"
    divisor = self.num_levels if self.kind == "dequantize" else self.num_levels - 1
    return divisor & (divisor - 1) == 0

  @property
  def dequantizes(self) -> bool:
    return self.kind in ("dequantize", "logit", "zca")

  @property
  def elementwise(self) -> bool:
    """Whether entry i of x depends on pixel i alone (so pixels can be masked in x)."""
    return self.kind != "zca"

  @property
  def value_range(self) -> tuple[float, float]:
    """(low, high) of a pixel in model space, for the elementwise kinds: the image of [0, 1]
    (of 0..L-1 for `none`), a finite range a search over pixel values can be kept in."""
    if self.kind == "zca":
      raise ValueError("zca mixes pixels: it has no per-pixel range")
    if self.kind == "logit":
      high = float(logit(np.ones((), np.float32), self.alpha))
      return -high, high
    if self.kind == "none":
      return 0.0, float(self.num_levels - 1)
    return 0.0, 1.0

  def __call__(self, raw: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
    if self.kind == "none":
      return raw.astype(np.float32)
    if self.kind == "binarize":
      return binarize(raw, noise, self.num_levels)
    if self.kind == "scale":
      return (raw / (self.num_levels - 1)).astype(np.float32)
    x = dequantize(raw, noise, self.num_levels)
    if self.kind == "logit":
      return logit(x, self.alpha)
    if self.kind == "zca":
      return ((x.reshape(len(x), -1) - self.mean) @ self.whitening).reshape(x.shape)
    return x

  def inverse(self, x: np.ndarray) -> np.ndarray:
    """Model space back to data space: pixels in [0, 1] for the dequantising kinds."""
    x = np.asarray(x)
    if self.kind == "logit":
      return (1 / (1 + np.exp(-x)) - self.alpha) / (1 - 2 * self.alpha)
    if self.kind == "zca":
      flat = np.linalg.solve(self.whitening, x.reshape(len(x), -1).T).T + self.mean
      return flat.reshape(x.shape)
    return x

  def log_det(self, x: np.ndarray) -> np.ndarray:
    """log|det dx/dv| per example, v the dequantised pixels (zero where x = v)."""
    if self.kind == "logit":
      return logit_log_det(x, self.alpha)
    if self.kind == "zca":
      return np.full(len(x), np.linalg.slogdet(self.whitening.astype(np.float64))[1])
    return np.zeros(len(x))

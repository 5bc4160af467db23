"""Per-batch preprocessing, written once for every paper that needs it.

Each transform takes a raw batch of pixels and uniform noise of the same shape (the pipeline draws
the noise so that it depends on the global batch alone, not on how many hosts read it).
"""
import numpy as np


def dequantize(pixels: np.ndarray, noise: np.ndarray, num_levels: int) -> np.ndarray:
  """Uniform dequantisation: (k + u) / L in [0, 1) for integer pixels k in {0..L-1}."""
  return ((pixels.astype(np.float32) + noise) / num_levels).astype(np.float32)


def logit(x: np.ndarray, alpha: float) -> np.ndarray:
  """The logit transform of the flow papers: y = logit(alpha + (1 - 2 alpha) x) (MAF sec. 4.3)."""
  s = alpha + (1 - 2 * alpha) * x
  return (np.log(s) - np.log1p(-s)).astype(np.float32)


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


PREPROCESSORS = ("none", "dequantize", "logit", "binarize")


def preprocess(raw: np.ndarray, noise: np.ndarray, kind: str, num_levels: int | None,
               alpha: float) -> np.ndarray:
  """Apply the preprocessing named `kind` (one of PREPROCESSORS) to a raw batch."""
  if kind == "none":
    return raw.astype(np.float32)
  if num_levels is None:
    raise ValueError(f"preprocessing {kind!r} needs discrete data (pixels), not real values")
  if kind == "binarize":
    return binarize(raw, noise, num_levels)
  x = dequantize(raw, noise, num_levels)
  return logit(x, alpha) if kind == "logit" else x

"""Sample quality on a Gaussian mixture with known components, needing no pretrained network:
the GAN literature's mode-collapse test on the 2-D ring and grid (as tabulated by VEEGAN and
PacGAN), with its definitions stated here.

A sample is of high quality when it lies within `num_std` standard deviations of its nearest
component mean; a component is covered when at least `min_count` high-quality samples are
nearest to it.
"""

import numpy as np

NUM_SAMPLES = 2500  # samples drawn for the statistics, as in the tables that report them
MIN_COUNT = 20


def mode_coverage(
    samples: np.ndarray,
    means: np.ndarray,
    std: float,
    num_std: float = 3.0,
    min_count: int = MIN_COUNT,
) -> dict[str, float]:
  """{"modes_covered": covered components, "high_quality": the share of high-quality samples}
  for `samples` (N, D) against components with `means` (M, D) and common isotropic `std`."""
  distances = np.linalg.norm(samples[:, None, :] - means[None, :, :], axis=-1)
  nearest = distances.argmin(-1)
  good = distances.min(-1) <= num_std * std
  counts = np.bincount(nearest[good], minlength=len(means))
  return {"modes_covered": float((counts >= min_count).sum()), "high_quality": float(good.mean())}

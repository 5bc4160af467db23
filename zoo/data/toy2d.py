"""Two-dimensional toy densities (as popularised by FFJORD and the flow literature), as a TFDS
builder that needs no network: `toy2d/two_moons`, `toy2d/eight_gaussians`, `toy2d/checkerboard`,
`toy2d/pinwheel`, `toy2d/two_spirals`, and the GAN literature's mode-collapse tests
`toy2d/ring_of_8` and `toy2d/grid_of_25` (the narrow 8- and 25-Gaussian mixtures of Gulrajani et
al.'s toy experiments). Each example has `x` (2 floats) and `label`, the mixture component, moon,
arm or cell it was drawn from. `MIXTURES` gives the Gaussian mixtures' means and common standard
deviation, for counting the modes a generator covers."""

import numpy as np
import tensorflow_datasets as tfds

SPLIT_SIZES = {"train": 50_000, "validation": 10_000, "test": 10_000}


def two_moons(rng, n):
  """n points of two interleaved half circles, and which one."""
  labels = rng.integers(0, 2, n)
  angle = rng.uniform(0, np.pi, n)
  x = np.where(labels == 0, np.cos(angle), 1 - np.cos(angle))
  y = np.where(labels == 0, np.sin(angle), 0.5 - np.sin(angle))
  points = np.stack([x, y], -1) + 0.1 * rng.normal(size=(n, 2))
  return points * 2 + np.array([-1.0, -0.2]), labels


def _ring(radius, count=8):
  angles = np.arange(count) * 2 * np.pi / count
  return radius * np.stack([np.cos(angles), np.sin(angles)], -1)


_GRID = np.arange(-2, 3) * 2.0
# name: (component means, the components' common standard deviation)
MIXTURES = {
    "eight_gaussians": (_ring(4 / np.sqrt(2)), 0.5 / np.sqrt(2)),  # FFJORD's, wide
    "ring_of_8": (_ring(2 / 1.414), 0.02 / 1.414),  # Gulrajani et al.'s, narrow
    "grid_of_25": (
        np.stack(np.meshgrid(_GRID, _GRID, indexing="ij"), -1).reshape(-1, 2) / 2.828,
        0.05 / 2.828,
    ),
}


def _mixture(name):
  means, std = MIXTURES[name]

  def sample(rng, n):
    labels = rng.integers(0, len(means), n)
    return means[labels] + std * rng.normal(size=(n, 2)), labels

  sample.__name__ = name
  return sample


def checkerboard(rng, n):
  """n points uniform on the black squares of a 4x4 board, and the square."""
  x1 = rng.uniform(-2, 2, n)
  x2 = rng.uniform(0, 1, n) - 2 * rng.integers(0, 2, n) + np.floor(x1) % 2
  labels = (np.floor(x1) + 2) * 4 + (np.floor(x2) + 2)
  return np.stack([x1, x2], -1) * 2, labels.astype(np.int64)


def pinwheel(rng, n, num_arms=5, radial_std=0.3, tangential_std=0.1, rate=0.25):
  """n points on `num_arms` curved arms, and the arm."""
  labels = rng.integers(0, num_arms, n)
  features = rng.normal(size=(n, 2)) * np.array([radial_std, tangential_std])
  features[:, 0] += 1
  angles = labels * 2 * np.pi / num_arms + rate * np.exp(features[:, 0])
  rotations = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)], -1)
  return 2 * np.einsum("ti,tij->tj", features, rotations.reshape(-1, 2, 2)), labels


def two_spirals(rng, n):
  """n points on two interleaved spirals, and which one."""
  labels = rng.integers(0, 2, n)
  turn = np.sqrt(rng.uniform(size=n)) * 540 * 2 * np.pi / 360
  sign = 1 - 2 * labels
  x = sign * (-np.cos(turn) * turn + 0.5 * rng.uniform(size=n))
  y = sign * (np.sin(turn) * turn + 0.5 * rng.uniform(size=n))
  return np.stack([x, y], -1) / 3 + 0.1 * rng.normal(size=(n, 2)), labels


DENSITIES = {
    f.__name__: f
    for f in (two_moons, checkerboard, pinwheel, two_spirals, *map(_mixture, MIXTURES))
}


class Toy2d(tfds.core.GeneratorBasedBuilder):
  """Samples from a 2-D toy density, a fixed seed per split."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name) for name in DENSITIES]

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(
            {
                "x": tfds.features.Tensor(shape=(2,), dtype=np.float32),
                "label": tfds.features.Scalar(dtype=np.int64),
            }
        ),
        description=__doc__,
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {
        split: self._generate_examples(seed, size)
        for seed, (split, size) in enumerate(SPLIT_SIZES.items())
    }

  def _generate_examples(self, seed, size):
    points, labels = DENSITIES[self.builder_config.name](np.random.default_rng(seed), size)
    for i in range(size):
      yield i, {"x": points[i].astype(np.float32), "label": labels[i]}

"""Procedural dSprites (Matthey et al. 2017): the published generative process, rendered on demand.

Five independent factors, every combination once in the original's 737,280 images:
  shape        3   square, ellipse, heart
  scale        6   linearly spaced in [0.5, 1]
  orientation  40  k * 2 pi / 40, in [0, 2 pi)
  position_x   32  linearly spaced in [0, 1]
  position_y   32  linearly spaced in [0, 1]
Each 64x64 binary image is the set of pixel centres inside the shape, placed, scaled and rotated
by the factors; nothing is downloaded. The geometry (a unit shape 10 pixels across at scale 1,
positions mapped to centres in [12, 52] pixels) is ours; the factor grid is the original's.

`DSprites` is the ground-truth interface the disentanglement metrics take: `factor_names`,
`factor_sizes`, `sample_factors(n, rng)` and `sample_observations_from_factors(factors, rng)`;
`DspritesProcedural` the TFDS builder (`dsprites_procedural/full`, `/coarse`) for training. TFDS's
own `dsprites` (a download) has the same factors and is accepted where it can be had.
"""

import numpy as np
import tensorflow_datasets as tfds

SIZE = 64
FACTOR_NAMES = ("shape", "scale", "orientation", "position_x", "position_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPES = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.arange(40) * 2 * np.pi / 40
POSITIONS = np.linspace(0.0, 1.0, 32)
UNIT_PIXELS = 10.0  # pixels per unit length of the unit shapes at scale 1
MARGIN = 12.0  # pixels between the image border and the extreme shape centres


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Whether points (u, v) of the shape's own frame (unit scale, y up) are inside it."""
  if shape == 0:  # square of side 1.5
    return np.maximum(np.abs(u), np.abs(v)) <= 0.75
  if shape == 1:  # ellipse with semi-axes 1 and 0.5
    return u**2 + (v / 0.5) ** 2 <= 1.0
  x, y = u / 0.9, v / 0.9 + 0.1  # heart curve (x^2 + y^2 - 1)^3 <= x^2 y^3, about 2 units tall
  return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


def render(factors: np.ndarray) -> np.ndarray:
  """(n, 5) factor indices -> (n, 64, 64, 1) uint8 images in {0, 1}."""
  factors = np.asarray(factors).reshape(-1, len(FACTOR_SIZES))
  centres = np.arange(SIZE) + 0.5
  images = np.zeros((len(factors), SIZE, SIZE, 1), np.uint8)
  for i, (shape, scale, orientation, x, y) in enumerate(factors):
    cx = MARGIN + POSITIONS[x] * (SIZE - 2 * MARGIN)
    cy = MARGIN + POSITIONS[y] * (SIZE - 2 * MARGIN)
    dx = (centres[None, :] - cx) / (UNIT_PIXELS * SCALES[scale])
    dy = -(centres[:, None] - cy) / (UNIT_PIXELS * SCALES[scale])  # rows grow downwards
    cos, sin = np.cos(ORIENTATIONS[orientation]), np.sin(ORIENTATIONS[orientation])
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # rotate the point by -orientation
    images[i, :, :, 0] = _inside(int(shape), u, v)
  return images


def factors_of(index: np.ndarray) -> np.ndarray:
  """The factor indices of flat indices into the 737,280 combinations (position_y fastest)."""
  return np.stack(np.unravel_index(np.asarray(index), FACTOR_SIZES), -1)


class DSprites:
  """The ground-truth-factor interface (ARCHITECTURE.md, "Data") over procedural dSprites."""

  factor_names = FACTOR_NAMES
  factor_sizes = FACTOR_SIZES
  observation_shape = (SIZE, SIZE, 1)

  @property
  def num_combinations(self) -> int:
    return int(np.prod(self.factor_sizes))

  def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
    """n factor vectors, each factor uniform over its values: (n, 5) ints."""
    return np.stack([rng.integers(0, size, n) for size in self.factor_sizes], -1)

  def sample_observations_from_factors(
      self, factors: np.ndarray, rng: np.random.Generator
  ) -> np.ndarray:
    """The images of `factors` as floats in {0, 1}, (n, 64, 64, 1); the process is
    deterministic, so `rng` is unused."""
    del rng
    return render(factors).astype(np.float32)


class DspritesProcedural(tfds.core.GeneratorBasedBuilder):
  """Procedural dSprites as a TFDS data set: `image` (64x64x1 uint8 in {0, 1}), `factors` (the
  five factor indices) and `label` (the shape). `train` holds every combination of the config's
  grid; `test` a seeded sample of 5,000 (with repeats) for held-out evaluation."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.1.0": "images stored zlib-compressed (62 bytes each rather than 4,096), so "
      "the full grid's preparation stays in TFDS's in-memory shuffle buffer, "
      "which spills to disk only through TensorFlow"
  }
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name="full", description="all 737,280 combinations"),
      tfds.core.BuilderConfig(name="coarse", description="every 8th position: 11,520"),
  ]
  TEST_SIZE = 5_000

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(
                    shape=(SIZE, SIZE, 1), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB
                ),
                "factors": tfds.features.Tensor(shape=(len(FACTOR_SIZES),), dtype=np.int64),
                "label": tfds.features.ClassLabel(names=SHAPES),
            }
        ),
        description=__doc__,
    )

  def _grid(self) -> np.ndarray:
    factors = factors_of(np.arange(int(np.prod(FACTOR_SIZES))))
    if self.builder_config.name == "coarse":
      factors = factors[(factors[:, 3] % 8 == 0) & (factors[:, 4] % 8 == 0)]
    return factors

  def _split_generators(self, dl_manager):
    del dl_manager
    grid = self._grid()
    test = grid[np.random.default_rng(0).integers(0, len(grid), self.TEST_SIZE)]
    return {"train": self._generate_examples(grid), "test": self._generate_examples(test)}

  def _generate_examples(self, factors, chunk=4096):
    for start in range(0, len(factors), chunk):
      images = render(factors[start : start + chunk])
      for i, (image, f) in enumerate(zip(images, factors[start : start + chunk])):
        yield start + i, {"image": image, "factors": f, "label": int(f[0])}

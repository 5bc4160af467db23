"""Procedural dSprites against the real data set's published frames (`tests/data/dsprites.gif`, its
order in `tests/data/README.md`) and against hand-computed facts."""

import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import RenderedDSpritesSource
from conftest import mocked_tfds
from PIL import Image
from PIL import ImageSequence

import zoo
from benchmarks import position_diagnostic
from zoo.data import dsprites

FRAMES = pathlib.Path(__file__).parent / "data" / "dsprites.gif"
HEART, ELLIPSE, SQUARE = 2, 1, 0
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def frames():
  """The 320 real frames as (320, 64, 64) booleans."""
  return np.stack(
      [np.asarray(f.convert("L")) > 127 for f in ImageSequence.Iterator(Image.open(FRAMES))]
  )


def _iou(a, b):
  return (a & b).sum((-1, -2)) / np.maximum((a | b).sum((-1, -2)), 1)


class Templates:
  """Every (shape, scale, orientation) rendered at position (15, 15): its area and the offset of
  its centroid from the sprite centre."""

  def __init__(self):
    self.factors = dsprites.factors_of(np.arange(np.prod(dsprites.FACTOR_SIZES[:3])) * 32 * 32)
    self.factors[:, 3:] = 15
    images = dsprites.render(self.factors)[..., 0]
    self.areas = images.sum((1, 2))
    low, high = dsprites.CENTRES
    self.step = (high - low) / 31
    self.offsets = _centroids(images) - (low + 15 * self.step)

  def best_match(self, frame):
    """The factor setting whose render best matches `frame`, and its intersection over union.

    The 120 templates nearest the frame in area (three shapes or scales at every orientation) are
    placed where their centroids meet the frame's; the best five are then tried at the eight
    neighbouring positions too."""
    near_area = np.argsort(np.abs(np.log(self.areas / frame.sum())))[:120]
    candidates = self.factors[near_area].copy()
    position = _centroids(frame[None])[0] - self.offsets[near_area] - dsprites.CENTRES[0]
    candidates[:, 3:] = np.clip(np.round(position / self.step), 0, 31)
    ious = _iou(dsprites.render(candidates)[..., 0].astype(bool), frame)
    moves = np.array([[0, 0, 0, dx, dy] for dx in (-1, 0, 1) for dy in (-1, 0, 1)])
    near = (candidates[np.argsort(-ious)[:5], None] + moves).reshape(-1, 5)
    near = np.clip(near, 0, np.array(dsprites.FACTOR_SIZES) - 1)
    near_ious = _iou(dsprites.render(near)[..., 0].astype(bool), frame)
    return near[np.argmax(near_ious)], near_ious.max()


def _centroids(images):
  """(n, 64, 64) -> (n, 2) centroids (x, y) in pixel coordinates (pixel centres at i + 0.5)."""
  rows, cols = np.indices(images.shape[1:]) + 0.5
  areas = images.sum((1, 2))
  return np.stack([(images * c).sum((1, 2)) / areas for c in (cols, rows)], -1)


@pytest.fixture(scope="module")
def matches(frames):
  """For each real frame, the best factor setting found and its intersection over union."""
  templates = Templates()
  found = [templates.best_match(frame) for frame in frames]
  return np.stack([f for f, _ in found]), np.array([iou for _, iou in found])


def test_every_real_frame_is_rendered_by_some_factor_setting(matches):
  _, ious = matches
  assert np.median(ious) >= 0.9 and ious.min() >= 0.8, (np.median(ious), ious.min())


@pytest.mark.parametrize(
    "first, shape, factor, values",
    [
        (0, HEART, "scale", range(6)),
        (192, ELLIPSE, "scale", range(6)),
        (256, SQUARE, "scale", range(6)),
        (18, HEART, "orientation", range(39)),  # orientation 39 repeats 0
        (58, HEART, "position_y", range(32)),
        (90, HEART, "position_x", range(32)),
    ],
)
def test_the_real_sweeps_are_the_renderers_sweeps(matches, first, shape, factor, values):
  """The frames sweeping one factor (tests/data/README.md) match renders that sweep the same
  factor one grid step a frame: a wrong scale, travel or angle step would skip or repeat values."""
  factors, _ = matches
  sweep = factors[first : first + len(values)]
  assert np.all(sweep[:, 0] == shape)
  found = sweep[:, dsprites.FACTOR_NAMES.index(factor)]
  if factor == "orientation":
    found = found % 39  # 2 pi is 0
  np.testing.assert_array_equal(found, list(values))


def test_the_mean_pixel_is_the_real_sets(frames):
  """The real set's mean pixel, from the frames: each shape's area at the six scales (orientation
  0), times its mean over the 40 orientations relative to orientation 0 (at scale 1), over 64^2.
  No sprite touches the border, so position does not change the area."""
  real = []
  for scales, turns in ((0, 18), (192, 210), (256, 274)):  # heart, ellipse, square
    areas = frames[scales : scales + 6].sum((1, 2))
    turning = frames[turns : turns + 40].sum((1, 2))
    real.append(areas * turning.mean() / turning[0])
  real_mean = np.mean(real) / 64**2
  data = dsprites.DSprites()
  rendered = data.sample_observations_from_factors(data.sample_factors(5_000, RNG), RNG).mean()
  np.testing.assert_allclose(rendered, real_mean, rtol=0.03)


def test_dsprites_has_the_published_factor_grid():
  """dSprites' README: 6 scales linearly spaced in [0.5, 1], 40 orientations in [0, 2 pi], 32
  positions in [0, 1]; the flat index runs over the factors with position y fastest."""
  data = dsprites.DSprites()
  assert data.num_combinations == 737_280
  assert dict(zip(data.factor_names, data.factor_sizes)) == {
      "shape": 3,
      "scale": 6,
      "orientation": 40,
      "position_x": 32,
      "position_y": 32,
  }
  np.testing.assert_allclose(dsprites.SCALES[[0, -1]], [0.5, 1.0])
  np.testing.assert_allclose(dsprites.ORIENTATIONS[[0, -1]], [0.0, 2 * np.pi])
  index = np.arange(0, 737_280, 9973)
  np.testing.assert_array_equal(
      np.ravel_multi_index(dsprites.factors_of(index).T, dsprites.FACTOR_SIZES), index
  )
  images = data.sample_observations_from_factors(data.sample_factors(5, RNG), RNG)
  assert images.shape == (5, 64, 64, 1) and set(np.unique(images)) <= {0.0, 1.0}


def test_the_square_is_20_pixels_across_at_scale_1():
  """The real frames 256-261: an unturned square at position (0, 0) is 10, 12, ..., 20
  pixels across."""
  areas = dsprites.render([[SQUARE, s, 0, 0, 0] for s in range(6)]).sum((1, 2, 3))
  np.testing.assert_array_equal(areas, (20 * dsprites.SCALES) ** 2)


def test_the_centroid_moves_32_pixels_in_equal_steps():
  """The real frames 58-121: the sprite centre goes from pixel 16 to 48 in 31 equal steps."""
  images = dsprites.render([[ELLIPSE, 3, 7, x, 10] for x in range(0, 32, 5)])[..., 0]
  x, y = _centroids(images).T
  np.testing.assert_allclose(np.diff(x), 32 / 31 * 5, atol=0.3)
  np.testing.assert_allclose(y, y[0], atol=0.2)
  images = dsprites.render([[ELLIPSE, 3, 7, 10, y] for y in (0, 31)])[..., 0]
  np.testing.assert_allclose(np.diff(_centroids(images)[:, 1]), 32, atol=0.5)


def test_orientation_2_pi_is_orientation_0():
  factors = [[shape, 4, o, 9, 22] for shape in range(3) for o in (0, 39)]
  images = dsprites.render(factors)
  np.testing.assert_array_equal(images[0::2], images[1::2])


def test_dsprites_builder_stores_the_renders_of_its_factors(data_dir):
  dataset = zoo.data.load("dsprites_procedural/coarse", data_dir)
  assert dataset.num_examples("train") == 3 * 6 * 40 * 4 * 4
  assert dataset.num_examples("test") == dsprites.DspritesProcedural.TEST_SIZE
  assert isinstance(dataset.ground_truth, dsprites.DSprites)
  source = dataset.builder.as_data_source(split="train")
  records = [source[i] for i in (0, 777, len(source) - 1)]
  factors = np.stack([r["factors"] for r in records])
  np.testing.assert_array_equal(np.stack([r["image"] for r in records]), dsprites.render(factors))
  assert [r["label"] for r in records] == list(factors[:, 0])
  assert set(np.unique(factors[:, 3])) <= set(range(0, 32, 8))


def test_the_position_diagnostic_finds_the_latent_that_is_a_position():
  """A code whose latent 3 is position x rescaled and latent 0 position y squared, the rest
  noise. For y uniform on 0..31, corr(y, y^2)^2 = 0.9339 (from the sums of k, k^2, k^3, k^4)."""
  factors = position_diagnostic.FACTORS
  x, y = factors[:, 3].astype(float), factors[:, 4].astype(float)
  noise = RNG.normal(size=(len(factors), 4))
  code = np.c_[y**2, noise[:, :2], -3 * x + 1, noise[:, 2:]]
  (x_r2, x_latent), (y_r2, y_latent) = position_diagnostic.best_latents(code, factors)
  assert (x_latent, y_latent) == (3, 0)
  np.testing.assert_allclose(x_r2, 1.0)
  np.testing.assert_allclose(y_r2, 0.9339, atol=1e-4)


def test_tfds_dsprites_has_the_renderers_factors_in_its_order(tmp_path):
  features = tfds.builder("dsprites", data_dir=str(tmp_path)).info.features  # no data needed
  sizes = tuple(features[key].num_classes for key in dsprites.TFDS_FACTOR_KEYS)
  assert sizes == dsprites.FACTOR_SIZES == (3, 6, 40, 32, 32)


def test_the_published_sets_ground_truth_finds_the_image_of_each_factor_setting(tmp_path):
  """On TFDS's `dsprites` serving the renderer's images as the published set holds them (by
  their latents_classes, in a shuffled order): the image it finds for a factor setting is the
  one the renderer draws for it."""
  with mocked_tfds(0, sources={"dsprites": RenderedDSpritesSource}):
    ground_truth = zoo.data.load("dsprites", str(tmp_path), {"test": "train"}).ground_truth
  rng = np.random.default_rng(0)
  factors = ground_truth.sample_factors(200, rng)
  np.testing.assert_array_equal(
      ground_truth.sample_observations_from_factors(factors, rng),
      dsprites.render(factors).astype(np.float32),
  )


def test_a_set_without_every_factor_combination_has_no_ground_truth(tmp_path):
  with mocked_tfds(64):  # 64 records of random labels
    dataset = zoo.data.load("dsprites", str(tmp_path), {"test": "train"})
    with pytest.raises(zoo.errors.UserError, match="holds 64 images, not the 737,280"):
      assert dataset.ground_truth is None

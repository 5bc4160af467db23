"""The data layer: embedded builders, the MAF paper's tabular builders on files the tests write,
the offline errors, the deterministic sharded stream, and the preprocessing's Jacobians."""

import socket

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import tensorflow_datasets as tfds
from conftest import mocked_tfds
from conftest import write_maf_archive

from zoo import data
from zoo import errors
from zoo.data import pipeline
from zoo.data import records
from zoo.data import toy2d
from zoo.data import transforms
from zoo.metrics import likelihood


def test_preparing_an_embedded_set_writes_nothing(tmp_path, capfd):
  """Standard output is kept for results and standard error for one-line errors; TFDS's
  "Downloading and preparing" would be in both, and false (nothing is downloaded)."""
  data.load("toy2d/two_moons", str(tmp_path))
  assert capfd.readouterr() == ("", "")


def test_digits_builder(data_dir):
  digits = data.load("digits", data_dir)
  sizes = {s: digits.num_examples(s) for s in ("train", "validation", "test")}
  assert sizes == {"train": 1257, "validation": 180, "test": 360}
  batch = digits.read("test", np.arange(360))
  assert batch["x"].shape == (360, 8, 8, 1) and batch["x"].dtype == np.uint8
  assert batch["x"].max() == 16 and set(np.unique(batch["label"])) == set(range(10))
  assert digits.is_image and digits.num_levels == 17 and digits.num_classes == 10


def test_a_validation_split_carved_from_train_is_its_tail(data_dir):
  whole = data.load("digits", data_dir)
  assert whole.splits == {"train": "train", "validation": "validation", "test": "test"}
  carved = data.load("digits", data_dir, {"train": "train[:1000]", "validation": "train[1000:]"})
  sizes = {role: carved.num_examples(role) for role in data.SPLIT_ROLES}
  assert sizes == {"train": 1000, "validation": 257, "test": 360}
  train = whole.read("train", np.arange(1257))
  np.testing.assert_array_equal(carved.read("validation", np.arange(257))["x"], train["x"][1000:])
  np.testing.assert_array_equal(carved.read("train", np.arange(1000))["x"], train["x"][:1000])
  for splits, message in (
      ({"train": "train[:2000]"}, "no split 'train\\[:2000\\]' for its train examples"),
      ({"holdout": "test"}, "roles train, validation, test, not holdout"),
  ):
    with pytest.raises(errors.UserError, match=message):
      data.load("digits", data_dir, splits)


@pytest.mark.parametrize("name", sorted(toy2d.DENSITIES))
def test_toy_densities(name):
  points, labels = toy2d.DENSITIES[name](np.random.default_rng(0), 5000)
  assert points.shape == (5000, 2) and labels.shape == (5000,)
  assert np.all(np.isfinite(points)) and np.abs(points).max() < 10
  assert len(np.unique(labels)) > 1


def test_eight_gaussians_modes_are_where_they_should_be():
  points, labels = toy2d.DENSITIES["eight_gaussians"](np.random.default_rng(0), 8000)
  for k in range(8):
    center = 4 * np.array([np.cos(k * np.pi / 4), np.sin(k * np.pi / 4)]) / np.sqrt(2)
    np.testing.assert_allclose(points[labels == k].mean(0), center, atol=0.05)


def test_toy2d_builder(data_dir):
  moons = data.load("toy2d/two_moons", data_dir)
  assert moons.example_shape == (2,) and moons.num_levels is None and not moons.is_image
  assert moons.num_examples("train") == toy2d.SPLIT_SIZES["train"]


def _paper_split_sizes(rows: int) -> dict:
  """The MAF paper's split of `rows` (its loaders): the last 10% for test, then the last 10% of
  the rest for validation."""
  test = int(0.1 * rows)
  validation = int(0.1 * (rows - test))
  return {"train": rows - test - validation, "validation": validation, "test": test}


@pytest.mark.parametrize(
    "name, dims", [("power", 6), ("gas", 8), ("hepmass", 21), ("miniboone", 43), ("bsds300", 63)]
)
def test_maf_tabular_builders_apply_the_papers_preprocessing(tmp_path, name, dims):
  manual = tmp_path / "downloads" / "manual"
  write_maf_archive(manual, np.random.default_rng(0))
  dataset = data.load(f"maf_tabular/{name}", str(tmp_path))
  assert dataset.example_shape == (dims,)
  sizes = {s: dataset.num_examples(s) for s in ("train", "validation", "test")}
  if name == "hepmass":  # signal events only; the test file is split off already
    signal = [
        int((pd.read_csv(manual / "hepmass" / f"1000_{s}.csv").iloc[:, 0] == 1).sum())
        for s in ("train", "test")
    ]
    validation = int(0.1 * signal[0])
    expected = {"train": signal[0] - validation, "validation": validation, "test": signal[1]}
  elif name == "bsds300":  # its file holds its splits as the paper prepared them
    expected = {"train": 500, "validation": 100, "test": 200}
  else:
    expected = _paper_split_sizes(2000)
  assert sizes == expected
  train = dataset.read("train", np.arange(sizes["train"]))["x"]
  assert train.dtype == np.float32 and train.shape == (sizes["train"], dims)
  if name != "bsds300":
    np.testing.assert_allclose(train.mean(0), 0, atol=0.15)
    np.testing.assert_allclose(train.std(0), 1, atol=0.15)


def test_binary_sets_have_two_levels_and_binarizing_keeps_their_pixels(tmp_path):
  for name in ("binarized_mnist", "dsprites"):  # TFDS's builders: their features, no data
    dataset = data.Dataset(name, tfds.builder(name, data_dir=str(tmp_path)))
    assert dataset.num_levels == 2, name
    pixels = np.tile(np.array([0, 1], np.uint8), (1000, 1))
    noise = np.random.default_rng(0).random(pixels.shape, dtype=np.float32)
    np.testing.assert_array_equal(data.preprocessing(dataset, "binarize")(pixels, noise), pixels)


def test_missing_manual_files_say_where_to_put_them(tmp_path):
  with pytest.raises(errors.DatasetUnavailableError, match="miniboone/data.npy.*zenodo"):
    data.load("maf_tabular/miniboone", str(tmp_path))


def test_offline_tfds_name_is_one_clear_error(tmp_path, monkeypatch):
  def refuse(*args, **kwargs):
    raise OSError("network is unreachable")

  monkeypatch.setattr(socket, "create_connection", refuse)
  with pytest.raises(errors.DatasetUnavailableError, match="cannot be downloaded here"):
    data.load("mnist", str(tmp_path))


def test_small_norb_by_its_tfds_name_labels_its_examples_by_category(tmp_path):
  # TFDS's own builder (its features, no download); the records are made here
  norb = data.Dataset("smallnorb", tfds.builder("smallnorb", data_dir=str(tmp_path)))
  assert norb.num_classes == 5 and norb.example_shape == (96, 96, 1) and norb.num_levels == 256
  record = {
      "image": np.zeros((96, 96, 1), np.uint8),
      "image2": np.ones((96, 96, 1), np.uint8),
      "instance": 7,
      "label_azimuth": 3,
      "label_category": 2,
      "label_elevation": 1,
      "label_lighting": 0,
  }
  batch = norb._stack([record, {**record, "label_category": 4}])
  assert batch["x"].shape == (2, 96, 96, 1) and batch["label"].tolist() == [2, 4]


def _smooth_image(height, width, channels, seed=0):
  """An image of smooth random content (low frequencies), so that two correct resamplers agree
  to rounding."""
  rows, cols = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
  rng = np.random.default_rng(seed)
  waves = [
      np.sin(2 * np.pi * (a * rows + b * cols) + c)
      for a, b, c in rng.uniform(0, 3, size=(channels, 3))
  ]
  return np.round(127.5 + 100 * np.stack(waves, -1)).astype(np.uint8)


def _resized(image, height, width):
  """An independent resampler: JAX's antialiased linear (triangle-filter) resize."""
  shape = (height, width, image.shape[-1])
  return np.asarray(jax.image.resize(image.astype(np.float32), shape, "linear", antialias=True))


@pytest.mark.parametrize("stored", [(256, 341, 3), (341, 256, 3), (240, 240, 1)])
def test_framing_resizes_the_shorter_side_then_cuts_the_centre_as_torchvision(stored):
  """WGAN's LSUN frames: torchvision's Resize(64) (shorter side 64, the longer truncated) then
  CenterCrop(64) (offset round((side - 64) / 2)), the sides computed here from that recipe."""
  image = _smooth_image(*stored)
  framed = transforms.Framing(64)(image)
  short, long = sorted(stored[:2])
  resized = (64, int(64 * long / short))
  if stored[0] > stored[1]:
    resized = resized[::-1]
  top, left = (round((side - 64) / 2) for side in resized)
  expected = _resized(image, *resized)[top : top + 64, left : left + 64]
  assert framed.shape == (64, 64, stored[2]) and framed.dtype == np.uint8
  interior = np.s_[2:-2, 2:-2]  # the resamplers treat the image's edge differently
  np.testing.assert_allclose(framed[interior], expected[interior], atol=1.5)


def test_framing_with_a_crop_cuts_the_centre_square_then_resizes():
  """CelebA's face crop: the centre 148 x 148 of a 218 x 178 image (rows 35..182, columns
  15..162), resized to 64 x 64."""
  image = _smooth_image(218, 178, 3, seed=1)
  framed = transforms.Framing(64, crop=148)(image)
  expected = _resized(image[35:183, 15:163], 64, 64)
  np.testing.assert_allclose(framed[2:-2, 2:-2], expected[2:-2, 2:-2], atol=1.5)
  with pytest.raises(errors.UserError, match="center_crop=200 does not fit a 218 x 178 image"):
    transforms.Framing(64, crop=200)(image)


def test_the_papers_photographs_are_read_framed(tmp_path):
  """TFDS's lsun/bedroom (JPEGs of any size) and celeb_a (218 x 178) on mocked examples: LSUN
  refused unframed with one line, both read at 64 x 64 when framed."""
  with mocked_tfds(8):
    with pytest.raises(errors.UserError, match="varying sizes.*config.image_size"):
      data.load("lsun/bedroom", str(tmp_path))
    bedrooms = data.load("lsun/bedroom", str(tmp_path), {"test": "validation"}, data.Framing(64))
    faces = data.load("celeb_a", str(tmp_path), framing=data.Framing(64, crop=148))
    for photographs in (bedrooms, faces):
      assert photographs.example_shape == (64, 64, 3)
      assert photographs.read("train", np.arange(8))["x"].shape == (8, 64, 64, 3)
  with pytest.raises(errors.UserError, match="frames images; data set 'toy2d/two_moons'"):
    data.load("toy2d/two_moons", str(tmp_path), framing=data.Framing(64))


def test_unknown_data_set(tmp_path):
  with pytest.raises(errors.UserError, match="unknown data set 'no_such_set'.*digits"):
    data.load("no_such_set", str(tmp_path))


def test_stream_resumes_exactly_and_splits_over_processes(data_dir):
  digits = data.load("digits", data_dir)
  logit = data.preprocessing(digits, "logit")
  kwargs = dict(batch_size=16, seed=3)
  stream = data.train_batches(digits, logit, **kwargs)
  first_ten = [next(stream) for _ in range(10)]
  resumed = next(data.train_batches(digits, logit, start_step=7, **kwargs))
  np.testing.assert_array_equal(resumed["x"], first_ten[7]["x"])
  halves = [
      next(data.train_batches(digits, logit, process_index=i, process_count=2, **kwargs))
      for i in range(2)
  ]
  np.testing.assert_array_equal(np.concatenate([h["x"] for h in halves]), first_ten[0]["x"])
  np.testing.assert_array_equal(np.concatenate([h["label"] for h in halves]), first_ten[0]["label"])


def test_each_epoch_is_a_fresh_permutation():
  shuffle = pipeline._EpochShuffle(num_examples=50, batch_size=8, seed=0)
  positions = np.concatenate([shuffle(step) for step in range(25)])  # 4 epochs
  epochs = positions.reshape(4, 50)
  for epoch in epochs:
    np.testing.assert_array_equal(np.sort(epoch), np.arange(50))
  assert not np.array_equal(epochs[0], epochs[1])


def test_eval_batches_cover_the_split_once_with_a_mask(data_dir):
  digits = data.load("digits", data_dir)
  batches = list(
      data.eval_batches(digits, data.preprocessing(digits, "none"), "test", batch_size=100, seed=0)
  )
  assert [len(b["x"]) for b in batches] == [100] * 4
  assert sum(int(b["mask"].sum()) for b in batches) == 360
  labels = np.concatenate([b["label"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(labels, digits.read("test", np.arange(360))["label"])


def test_logit_log_det_is_the_jacobian_of_the_transform():
  x = np.random.default_rng(0).uniform(size=(3, 5)).astype(np.float32)
  alpha = 0.05
  y = transforms.logit(x, alpha)

  def forward(xi):
    s = alpha + (1 - 2 * alpha) * xi
    return jnp.log(s) - jnp.log1p(-s)

  for i in range(3):
    expected = jnp.linalg.slogdet(jax.jacfwd(forward)(jnp.asarray(x[i])))[1]
    np.testing.assert_allclose(
        transforms.logit_log_det(y[i : i + 1], alpha)[0], expected, rtol=1e-5
    )


def test_dequantize_binarize_and_scale():
  pixels = np.array([[0, 8, 16]], np.uint8)
  noise = np.array([[0.0, 0.5, 0.999]], np.float32)
  scale = transforms.Preprocessing("scale", 17)
  np.testing.assert_array_equal(scale(pixels, None), [[0, 0.5, 1]])
  assert scale.levels == 17 and transforms.Preprocessing("binarize", 17).levels == 2
  np.testing.assert_allclose(
      transforms.dequantize(pixels, noise, 17), [[0.0, 8.5 / 17, 16.999 / 17]], rtol=1e-6
  )
  np.testing.assert_array_equal(transforms.binarize(pixels, noise, 17), [[0, 0, 1]])


def test_bits_per_dim_of_the_uniform_density_is_log2_of_the_levels():
  np.testing.assert_allclose(likelihood.bits_per_dim(0.0, 64, 17), np.log2(17))
  np.testing.assert_allclose(likelihood.bits_per_dim(-64 * np.log(2), 64), 1.0)


@pytest.mark.parametrize("kind", ["dequantize", "logit", "zca"])
def test_preprocessing_inverts_and_its_log_det_is_the_jacobian(data_dir, kind):
  digits = data.load("digits", data_dir)
  preprocessing = data.preprocessing(digits, kind, alpha=0.05, zca_epsilon=1e-2)
  raw = digits.read("test", np.arange(3))["x"]
  noise = np.random.default_rng(0).random(raw.shape, dtype=np.float32)
  x = preprocessing(raw, noise)
  pixels = transforms.dequantize(raw, noise, 17)
  np.testing.assert_allclose(preprocessing.inverse(x), pixels, atol=2e-4)
  if kind == "zca":
    forward = lambda v: (v - preprocessing.mean) @ preprocessing.whitening
  elif kind == "logit":
    forward = lambda v: jnp.log(0.05 + 0.9 * v) - jnp.log1p(-(0.05 + 0.9 * v))
  else:
    forward = lambda v: v
  for i in range(3):
    jacobian = jax.jacfwd(forward)(jnp.asarray(pixels[i].reshape(-1)))
    np.testing.assert_allclose(
        preprocessing.log_det(x[i : i + 1])[0],
        np.linalg.slogdet(np.asarray(jacobian, np.float64))[1],
        rtol=1e-3,
    )


def test_zca_whitens_the_training_split(data_dir):
  digits = data.load("digits", data_dir)
  zca = data.preprocessing(digits, "zca", zca_epsilon=1e-6)
  raw = digits.read("train", np.arange(digits.num_examples("train")))["x"]
  x = zca(raw, np.random.default_rng(0).random(raw.shape, dtype=np.float32))
  covariance = np.cov(x.reshape(len(x), -1), rowvar=False)
  np.testing.assert_allclose(covariance, np.eye(64), atol=0.02)


class _EveryTensor(tfds.core.GeneratorBasedBuilder):
  """A set of each kind of feature `records.reader` decodes itself, and a text it leaves to
  TFDS."""

  VERSION = tfds.core.Version("1.0.0")
  RECORDS = 3_000

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict(
            {
                "floats": tfds.features.Tensor(shape=(3, 2), dtype=np.float64),
                "ints": tfds.features.Tensor(shape=(2,), dtype=np.int32),
                "flags": tfds.features.Tensor(shape=(2,), dtype=np.bool_),
                "raw": tfds.features.Tensor(
                    shape=(2,), dtype=np.int16, encoding=tfds.features.Encoding.BYTES
                ),
                "packed": tfds.features.Tensor(
                    shape=(4, 4, 1), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB
                ),
                "scalar": tfds.features.Scalar(dtype=np.float32),
                "label": tfds.features.ClassLabel(num_classes=5),
                "text": tfds.features.Text(),
            }
        ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    rng = np.random.default_rng(0)
    for i in range(self.RECORDS):
      yield i, {
          "floats": rng.normal(size=(3, 2)),
          "ints": rng.integers(-(2**31), 2**31, 2).astype(np.int32),
          "flags": rng.integers(0, 2, 2).astype(bool),
          "raw": rng.integers(-(2**15), 2**15, 2).astype(np.int16),
          "packed": rng.integers(0, 256, (4, 4, 1)).astype(np.uint8),
          "scalar": np.float32(rng.normal()),
          "label": int(rng.integers(5)),
          "text": str(i),
      }


def test_records_are_read_as_tfds_decodes_them(tmp_path, monkeypatch):
  """`records.reader` against TFDS's own decoding of the same records, for every kind of feature
  it decodes, at indices out of order, repeated, over several chunks and a part of one."""
  monkeypatch.setattr(records, "_CHUNK", 1_000)
  builder = _EveryTensor(data_dir=str(tmp_path))
  builder.download_and_prepare(file_format="array_record")
  source = builder.as_data_source(split="train")
  keys = ["floats", "ints", "flags", "raw", "packed", "scalar", "label"]
  indices = np.random.default_rng(1).integers(0, _EveryTensor.RECORDS, 2_500)
  indices[:3] = [7, 7, 0]
  read = records.reader(source, keys)(indices)
  examples = source.__getitems__(indices.tolist())
  for key in keys:
    assert read[key].dtype == source.dataset_info.features[key].np_dtype, key
    np.testing.assert_array_equal(read[key], np.stack([e[key] for e in examples]), err_msg=key)
  assert records.reader(source, ["text"]) is None


@pytest.mark.parametrize("name", ["digits", "toy2d/eight_gaussians", "dsprites_procedural/coarse"])
def test_the_embedded_sets_are_read_without_tfds_decoding_each_example(data_dir, name, monkeypatch):
  """Reading a split whole (as the runner puts one on the device) decodes the records directly,
  not example by example through TFDS's feature tree (67 s for procedural dSprites' 737,280),
  and gives what TFDS's decoding gives."""
  dataset = data.load(name, data_dir)
  indices = np.arange(dataset.num_examples("train"))[::-7]
  source = dataset.builder.as_data_source(split="train")
  examples = source.__getitems__(indices.tolist())
  x_key = "image" if "image" in examples[0] else "x"
  monkeypatch.setattr(tfds.features.FeaturesDict, "deserialize_example_np", _decoding_each_example)
  batch = dataset.read("train", indices)
  np.testing.assert_array_equal(batch["x"], np.stack([e[x_key] for e in examples]))
  if "label" in batch:
    np.testing.assert_array_equal(batch["label"], [e["label"] for e in examples])


def _decoding_each_example(*args, **kwargs):
  raise AssertionError("TFDS decoded an example")

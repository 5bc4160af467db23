"""Every test sees 4 emulated CPU devices, so sharded code paths run everywhere. A test run
compiles each slow-to-compile program once (`JAX_COMPILATION_CACHE_DIR`), and compiles with
XLA's backend (LLVM) optimisation off, in the commands the tests start too: the programs are
the same and compute the same up to rounding, in half the compile time (the beta-VAE smoke
run's 132 programs: 4.2 s against 9.8 s; the fast suite, 2 cores, 2026-12-02: 578 s against
617 s). Users' commands compile at XLA's default level."""

import os

os.environ["XLA_FLAGS"] = (
    f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
    " --xla_backend_optimization_level=0"
).strip()

import contextlib  # pylint: disable=wrong-import-position
import shutil  # pylint: disable=wrong-import-position
import struct  # pylint: disable=wrong-import-position
import subprocess  # pylint: disable=wrong-import-position
import sys  # pylint: disable=wrong-import-position
import tempfile  # pylint: disable=wrong-import-position
import types  # pylint: disable=wrong-import-position
from unittest import mock  # pylint: disable=wrong-import-position

import h5py  # pylint: disable=wrong-import-position
import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import pandas as pd  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position
import tensorflow_datasets as tfds  # pylint: disable=wrong-import-position

import zoo  # pylint: disable=wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
  """One persistent compilation cache for the whole test run, made by the pytest process that
  starts the xdist workers and inherited by them and by the runs they start: a step that several
  tests compile (a smoke run, its resume, its compile count, its multi-process twin) is compiled
  once; programs that compile in under 0.2 s (the many small eager ones) are not kept. A fresh
  cache each run, so nothing is reused from a run of other code."""
  if "PYTEST_XDIST_WORKER" in os.environ or "JAX_COMPILATION_CACHE_DIR" in os.environ:
    return
  config.own_cache = tempfile.mkdtemp(prefix="zoo-tests-jax-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = config.own_cache
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
  jax.config.update("jax_compilation_cache_dir", config.own_cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def pytest_unconfigure(config):
  if hasattr(config, "own_cache"):
    shutil.rmtree(config.own_cache, ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A TFDS data dir of this test process; the embedded sets are prepared into it on first use."""
  return str(tmp_path_factory.mktemp("tensorflow_datasets"))


# The disentanglement scores a dSprites run adds to its test metrics, each in [0, 1].
DISENTANGLEMENT_SCORES = (
    "beta_vae_score",
    "beta_vae_score_paper",
    "factor_vae_score",
    "mig",
    "sap",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
)


def perturbed(variables, rng, scale=0.3):
  """The variables plus Gaussian noise: zero-initialised output layers make a fresh flow the
  identity, which would let wrong log-determinants pass unnoticed."""
  leaves, treedef = jax.tree.flatten(variables)
  keys = jax.random.split(rng, len(leaves))
  return jax.tree.unflatten(
      treedef,
      [
          leaf + scale * jax.random.normal(k, leaf.shape) if leaf.dtype.kind == "f" else leaf
          for leaf, k in zip(leaves, keys)
      ],
  )


def density_on_grid(log_prob_fn, half_width, points):
  """(grid points, cell area, log density) on a square 2-D grid."""
  axis = np.linspace(-half_width, half_width, points, dtype=np.float32)
  xs, ys = np.meshgrid(axis, axis, indexing="ij")
  grid = np.stack([xs.ravel(), ys.ravel()], -1)
  return grid, float(axis[1] - axis[0]) ** 2, np.asarray(jax.jit(log_prob_fn)(grid))


def assert_integrates_to_one(log_prob_fn, half_width=40.0, points=1601):
  _, cell, log_prob = density_on_grid(log_prob_fn, half_width, points)
  np.testing.assert_allclose(np.exp(log_prob).sum() * cell, 1.0, atol=2e-2)


def assert_samples_follow(log_prob_fn, samples, half_width=20.0):
  """Total variation between the samples and the density over 1-unit bins plus everything outside
  them (coarse bins keep the sampling noise of the distance near 0.01 for 200,000 samples)."""
  n = len(samples)
  edges = np.linspace(-half_width, half_width, int(2 * half_width) + 1)
  counts, _, _ = np.histogram2d(*np.asarray(samples).T, bins=[edges, edges])
  grid, cell, log_prob = density_on_grid(log_prob_fn, half_width, 1601)
  mass, _, _ = np.histogram2d(*grid.T, bins=[edges, edges], weights=np.exp(log_prob) * cell)
  outside_samples, outside_mass = 1 - counts.sum() / n, 1 - mass.sum()
  assert outside_mass < 0.05
  total_variation = 0.5 * (np.abs(counts / n - mass).sum() + abs(outside_samples - outside_mass))
  assert total_variation < 0.03


def command_env(xla_flags: str = "") -> dict:
  """The environment of a command a test starts: the tests' XLA flags, but one CPU device
  unless `xla_flags` says otherwise."""
  kept = [
      flag
      for flag in os.environ["XLA_FLAGS"].split()
      if not flag.startswith("--xla_force_host_platform_device_count")
  ]
  return {**os.environ, "XLA_FLAGS": " ".join([*kept, xla_flags]).strip()}


def run_cli(*args, timeout=300, module="experiments.run"):
  """`python -m MODULE ARGS` in a subprocess: (return code, stdout, stderr)."""
  result = subprocess.run(
      [sys.executable, "-m", module, *args],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=timeout,
      env=command_env(),
  )
  return result.returncode, result.stdout, result.stderr


class _MockedSource:
  """A TFDS data source of TFDS's own fake examples (`tfds.testing.mock_data`'s generator,
  which follows the builder's feature spec); its own batched read, which the mock's source gets
  wrong (its `__getitems__` is bound without the source)."""

  def __init__(self, generator, size):
    self.generator, self.size = generator, size

  def __len__(self):
    return self.size

  def __getitem__(self, key):
    return self.generator[int(key)]

  def __getitems__(self, keys):
    return [self.generator[int(k)] for k in keys]


class RenderedDSpritesSource:
  """TFDS's `dsprites` as its data source serves it, with the procedural renderer's images in
  the place of the published ones: every factor combination once, in a shuffled order, each
  record holding the published latents_classes under the names TFDS's builder gives them
  (`dsprites_dataset_builder.py`: classes[1] label_shape, [2] label_scale, [3]
  label_orientation, [4] label_x_position, [5] label_y_position; column 0 is the colour).
  (The `value_*` features, which the zoo does not read, are left out.) Images are rendered when
  read; with TFDS's `SkipDecoding` for `image` they stay encoded (here:
  unrendered), as TFDS returns an undecoded feature."""

  def __init__(self, split="train", decoders=None):
    self.skip_images = isinstance((decoders or {}).get("image"), tfds.decode.SkipDecoding)
    whole = {"train": types.SimpleNamespace(num_examples=737_280)}  # as TFDS's SplitInfo
    (part,) = tfds.core.ReadInstruction.from_spec(split).to_absolute(whole)
    self.order = np.random.default_rng(0).permutation(737_280)[part.from_ : part.to]

  def __len__(self):
    return len(self.order)

  def __getitems__(self, keys):
    classes = np.concatenate(
        [np.zeros((len(keys), 1), np.int64), zoo.data.dsprites.factors_of(self.order[keys])], 1
    )
    images = [b""] * len(keys) if self.skip_images else zoo.data.dsprites.render(classes[:, 1:])
    names = ("shape", "scale", "orientation", "x_position", "y_position")
    return [
        {
            "image": image,
            **{f"label_{name}": c[i + 1] for i, name in enumerate(names)},
        }
        for image, c in zip(images, classes)
    ]

  def __getitem__(self, key):
    return self.__getitems__([key])[0]


@contextlib.contextmanager
def mocked_tfds(num_examples: int, max_value: int | None = None, sources=None):
  """TFDS mocked as `tfds.testing.mock_data` mocks it: any registered builder is "prepared"
  without a download and serves `num_examples` fake examples per split, their integers below
  `max_value` (2 for a set of binary pixels), or where `sources` names the builder, the data
  source `sources[name](split, decoders)` makes; the zoo's check for download hosts is off."""

  def as_data_source(builder, split, decoders=None, deserialize_method=None, **kwargs):
    del deserialize_method, kwargs
    if builder.name in (sources or {}):
      return sources[builder.name](split, decoders)
    generator = tfds.testing.mocking.RandomFakeGenerator(
        builder.info.features, num_examples, max_value=max_value
    )
    return _MockedSource(generator, num_examples)

  with mock.patch.object(zoo.data, "_unreachable_hosts", lambda *_, **__: []):
    with tfds.testing.mock_data(num_examples=num_examples, as_data_source_fn=as_data_source):
      yield


def write_maf_archive(manual, rng):
  """Small files in the formats of the MAF paper's archive, with the structure its
  preprocessing relies on (correlated gas sensors, discrete HEPMASS features, ...)."""
  os.makedirs(manual / "power")
  np.save(manual / "power" / "data.npy", rng.normal(size=(2000, 8)))
  os.makedirs(manual / "gas")
  sensors = rng.normal(size=(2000, 8))
  copies = sensors + 0.01 * rng.normal(size=sensors.shape)  # correlated > 0.98: dropped
  columns = {f"s{i}": sensors[:, i] for i in range(8)}
  columns.update({f"c{i}": copies[:, i] for i in range(8)})
  columns.update(Meth=rng.normal(size=2000), Eth=rng.normal(size=2000), Time=np.arange(2000.0))
  pd.DataFrame(columns).to_pickle(manual / "gas" / "ethylene_CO.pickle")
  os.makedirs(manual / "hepmass")
  names = ["# label"] + [f"f{i}" for i in range(27)]

  def hepmass(n, extra):
    values = rng.normal(size=(n, 27))
    values[:, 21:] = rng.integers(0, 3, size=(n, 6))  # repeated values: dropped
    frame = pd.DataFrame(values, columns=names[1:])
    frame.insert(0, names[0], rng.integers(0, 2, n).astype(float))
    if extra:
      frame["mass"] = 500.0
    return frame

  hepmass(3000, False).to_csv(manual / "hepmass" / "1000_train.csv", index=False)
  hepmass(1000, True).to_csv(manual / "hepmass" / "1000_test.csv", index=False)
  os.makedirs(manual / "miniboone")
  np.save(manual / "miniboone" / "data.npy", rng.normal(size=(2000, 43)) * 3 + 1)
  os.makedirs(manual / "BSDS300")
  with h5py.File(manual / "BSDS300" / "BSDS300.hdf5", "w") as f:
    for split, n in (("train", 500), ("validation", 100), ("test", 200)):
      f[split] = rng.normal(size=(n, 63))


def tensorboard_events(directory: str) -> list:
  """The events of the TensorBoard event files in `directory`, read as the TFRecord format
  frames them (length, its CRC, the Event proto, its CRC), independently of the writer."""
  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel

  events = []
  for name in sorted(os.listdir(directory)):
    if not name.startswith("events.out.tfevents."):
      continue
    with open(os.path.join(directory, name), "rb") as f:
      data = f.read()
    position = 0
    while position < len(data):
      (length,) = struct.unpack("<Q", data[position : position + 8])
      event = event_pb2.Event()
      event.ParseFromString(data[position + 12 : position + 12 + length])
      events.append(event)
      position += 12 + length + 4
  return events

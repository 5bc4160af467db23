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

import shutil  # pylint: disable=wrong-import-position
import subprocess  # pylint: disable=wrong-import-position
import sys  # pylint: disable=wrong-import-position
import tempfile  # pylint: disable=wrong-import-position

import h5py  # pylint: disable=wrong-import-position
import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import pandas as pd  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position

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

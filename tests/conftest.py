"""Every test sees 4 emulated CPU devices, so sharded code paths run everywhere."""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=4").strip()

import subprocess  # pylint: disable=wrong-import-position
import sys  # pylint: disable=wrong-import-position

import jax  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A TFDS data dir of this test process; the embedded sets are prepared into it on first use."""
  return str(tmp_path_factory.mktemp("tensorflow_datasets"))


def perturbed(variables, rng, scale=0.3):
  """The variables plus Gaussian noise: zero-initialised output layers make a fresh flow the
  identity, which would let wrong log-determinants pass unnoticed."""
  leaves, treedef = jax.tree.flatten(variables)
  keys = jax.random.split(rng, len(leaves))
  return jax.tree.unflatten(treedef, [
      leaf + scale * jax.random.normal(k, leaf.shape) if leaf.dtype.kind == "f" else leaf
      for leaf, k in zip(leaves, keys)])


def run_cli(*args, timeout=300):
  """`python -m experiments.run ARGS` in a subprocess: (return code, stdout, stderr)."""
  result = subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "XLA_FLAGS": ""})
  return result.returncode, result.stdout, result.stderr

"""Longer checks, run with `make test-slow`."""

import json
import os

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image


@pytest.mark.slow
def test_make_run_configuration_learns_digits(tmp_path, data_dir):
  """The default preset (what `make run` trains) ends well below the 4.09 bits/dim of a uniform
  density over 17 grey levels, and writes a grid of 64 samples."""
  code, _, stderr = run_cli(
      "--model=maf", f"--workdir={tmp_path}", f"--config.data_dir={data_dir}", timeout=900
  )
  assert code == 0, stderr
  with open(os.path.join(tmp_path, "results.json")) as f:
    results = json.load(f)
  assert results["test"]["bits_per_dim"] < 2.5
  samples = np.asarray(Image.open(os.path.join(tmp_path, "samples.png")))
  assert samples.ndim == 2 and samples.std() > 0.1 * 255

"""One's own arrays as a data set (`zoo.data.from_arrays`, a `.npz` file by name): read,
preprocessed and trained on exactly as the named set that holds the same arrays."""

import jax
import numpy as np
import pytest
from conftest import run_cli

import zoo
from zoo import data
from zoo import errors

ROLES = ("train", "validation", "test")


def arrays_of(dataset) -> dict:
  """Each role's examples and labels, read whole."""
  out = {}
  for role in ROLES:
    read = dataset.read(role, np.arange(dataset.num_examples(role)))
    out[role] = read["x"]
    if "label" in read:
      out[f"{role}_label"] = read["label"]
  return out


@pytest.mark.parametrize(
    "name, levels, classes", [("toy2d/two_moons", {}, 2), ("digits", {"num_levels": 17}, 10)]
)
def test_a_set_from_its_own_arrays_reads_as_the_named_set(name, levels, classes, data_dir):
  """Vectors and uint8 images of 17 grey levels, with labels: the same sizes, shape and
  levels, the labels' classes, and the same examples, batch by batch through the training
  stream."""
  named = data.load(name, data_dir)
  own = data.from_arrays(**arrays_of(named), **levels)
  for role in ROLES:
    assert own.num_examples(role) == named.num_examples(role)
  assert (own.example_shape, own.num_levels, own.is_image) == (
      named.example_shape,
      named.num_levels,
      named.is_image,
  )
  assert own.num_classes == classes
  kind = "dequantize" if named.num_levels else "none"
  streams = [
      data.TrainStream(d, data.preprocessing(d, kind), batch_size=32, seed=3) for d in (named, own)
  ]
  for step in (0, 7):
    want, got = (s.batch(s.plan(step)) for s in streams)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])


def test_fit_on_the_arrays_is_fit_on_the_named_set(data_dir):
  config = zoo.get("maf").default_config("smoke")
  config.data_dir = data_dir
  named = data.load("toy2d/two_moons", data_dir)
  by_name = zoo.fit("maf", named, config)
  by_arrays = zoo.fit("maf", data.from_arrays(**arrays_of(named)), config)
  for want, got in zip(jax.tree.leaves(by_name.replicas), jax.tree.leaves(by_arrays.replicas)):
    np.testing.assert_array_equal(got, want)


def test_the_runner_trains_on_a_npz_file(data_dir, tmp_path):
  path = tmp_path / "moons.npz"
  np.savez(path, **arrays_of(data.load("toy2d/two_moons", data_dir)))
  code, stdout, stderr = run_cli(
      "--model=maf",
      "--preset=smoke",
      f"--config.dataset={path}",
      f"--workdir={tmp_path / 'run'}",
  )
  assert code == 0, stderr
  assert f"maf on {path}: test log_prob" in stdout


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"train": np.zeros((4, 2))}, "arrays: test arrays are needed"),
        ({"train": np.zeros((4, 2)), "test": np.zeros((4, 3))}, "test's examples are float32"),
        ({"train": np.zeros(4), "test": np.zeros(4)}, "must be examples stacked on a first axis"),
        (
            {"train": np.zeros((4, 2)), "test": np.zeros((2, 2)), "train_label": np.ones(4)},
            "train_label must be one non-negative int per example",
        ),
        (
            {"train": np.zeros((4, 2)), "test": np.zeros((2, 2)), "train_label": np.ones(4, int)},
            "labels must be given for every split or for none",
        ),
    ],
)
def test_arrays_that_do_not_fit_are_one_line(arrays, message):
  with pytest.raises(errors.UserError) as error:
    data.from_arrays(**{"test": None, **arrays})
  assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "name, closest", [("toy2d/two_moon", "toy2d/two_moons"), ("digit", "digits")]
)
def test_a_name_one_letter_off_is_one_line_naming_the_closest(name, closest, tmp_path):
  with pytest.raises(errors.UserError, match=f"did you mean '{closest}'"):
    data.load(name, str(tmp_path))


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x_train": np.zeros((4, 2)), "test": np.zeros((2, 2))}, "holds x_train; its arrays"),
        ({"train": np.zeros((4, 2))}, "test arrays are needed"),
    ],
)
def test_a_npz_file_that_does_not_fit_is_one_line(arrays, message, tmp_path):
  path = tmp_path / "own.npz"
  np.savez(path, **arrays)
  with pytest.raises(errors.UserError) as error:
    data.load(str(path))
  assert message in str(error.value) and "\n" not in str(error.value)


def test_pixels_of_fewer_than_two_levels_are_one_line():
  with pytest.raises(errors.UserError, match="num_levels must be in 2 ... 256, not 1"):
    data.from_arrays(np.zeros((4, 2), np.uint8), np.zeros((2, 2), np.uint8), num_levels=1)

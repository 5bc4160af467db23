"""The training input: a split held on the devices gives the batches the host reads, bit for bit;
a compiled window of K steps is K steps; where the data are is not in a run's results."""

import json
import os

import jax
import numpy as np
import optax
import pytest

import zoo
from experiments import loop
from zoo import training
from zoo.data import pipeline
from zoo.data import transforms


class _Pixels:
  """A split of random uint8 images of `levels` grey levels, with labels: what a TrainStream
  reads (`zoo.data.Dataset`'s size, shape and read)."""

  example_shape = (5, 4, 1)

  def __init__(self, levels: int, size: int = 50):
    rng = np.random.default_rng(levels)
    self.arrays = {
        "x": rng.integers(0, levels, (size, *self.example_shape), dtype=np.uint8),
        "label": rng.integers(0, 10, size).astype(np.int32),
    }

  def num_examples(self, split):
    del split
    return len(self.arrays["x"])

  def read(self, split, indices):
    del split
    return {k: v[indices] for k, v in self.arrays.items()}


EXACT = [("none", 256), ("scale", 17), ("binarize", 17), ("dequantize", 256), ("dequantize", 2)]


@pytest.mark.parametrize("kind, levels", EXACT)
def test_the_devices_make_the_batches_the_host_reads_bit_for_bit(kind, levels):
  """Where the preprocessing is exact in jax.numpy (none; a division by a power of two):
  epochs wrap inside the batches (50 examples, batches of 16), two processes' halves, and the
  labelled part of a semi-supervised stream."""
  dataset = _Pixels(levels)
  preprocessing = transforms.Preprocessing(kind, levels)
  assert preprocessing.exact_in_jax
  gather = jax.jit(lambda arrays, plan: pipeline.gather(arrays, plan, preprocessing))
  for process in (0, 1):
    stream = pipeline.TrainStream(
        dataset,
        preprocessing,
        batch_size=16,
        seed=3,
        process_index=process,
        process_count=2,
        labeled=np.arange(0, 50, 5),
        labeled_batch_size=4,
    )
    for step in (0, 3, 7):
      plan = stream.plan(step)
      host, device = stream.batch(plan), jax.device_get(gather(dataset.arrays, plan))
      assert host.keys() == device.keys()
      for key in host:
        assert host[key].dtype == device[key].dtype, key
        np.testing.assert_array_equal(host[key], device[key], err_msg=key)


def test_the_devices_do_not_make_what_they_would_round_otherwise():
  """The kinds `exact_in_jax` leaves to the host do round differently in jax.numpy here (so
  the rule is not stricter than it needs to be): binarize by 255 with 256 levels compares its
  noise with scale's quotients, which differ."""
  assert not transforms.Preprocessing("binarize", 256).exact_in_jax
  for kind, levels in (("scale", 256), ("dequantize", 17), ("logit", 256)):
    dataset = _Pixels(levels, size=400)
    preprocessing = transforms.Preprocessing(kind, levels)
    assert not preprocessing.exact_in_jax, kind
    stream = pipeline.TrainStream(dataset, preprocessing, batch_size=400, seed=0)
    plan = stream.plan(0)
    device = jax.jit(lambda arrays, plan: pipeline.gather(arrays, plan, preprocessing))
    assert (stream.batch(plan)["x"] != device(dataset.arrays, plan)["x"]).any(), kind
  assert not transforms.Preprocessing("zca", 256).exact_in_jax


def test_a_window_of_k_steps_is_k_steps_and_a_short_one_stops_where_it_ends():
  """MAF's step, 3 replicas, 4 steps as one compiled window against 4 steps one at a time (the
  same to rounding: 1e-6 relative), and a window of which only 2 steps are live against 2."""
  model = zoo.build("maf", num_layers=2, hidden_dims=(8,), batch_norm=False)
  optimizer = optax.adam(1e-2)
  step = training.make_replicated_step(training.make_train_step(model, optimizer), 3)
  batches = {"x": jax.random.normal(jax.random.key(0), (4, 3, 16, 2))}
  init_rngs, rngs = training.replica_keys([0, 1, 2])
  state = training.init_replicas(model, optimizer, {"x": batches["x"][0]}, init_rngs)
  active = np.array([True, False, True])
  window = jax.jit(training.make_window(step, lambda arrays, x: x, 4))
  jitted = jax.jit(step)
  for live in (4, 2):
    windowed, metrics = window(state, {}, batches, rngs, active, np.arange(4) < live)
    stepped, losses = state, []
    for k in range(live):
      stepped, one = jitted(stepped, jax.tree.map(lambda x, k=k: x[k], batches), rngs, active)
      losses.append(one["loss"])
    assert int(windowed.step[0]) == live and int(windowed.step[1]) == 0
    for a, b in zip(jax.tree.leaves(windowed), jax.tree.leaves(stepped)):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(metrics["loss"][:live], np.stack(losses), rtol=1e-6)


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_a_run_is_the_same_whether_its_split_is_on_the_devices_or_over_the_budget(
    tmp_path, data_dir, capfd
):
  """The smoke MAF (two moons, no preprocessing), two seeds on 4 devices, trained from its split
  on the devices, and with a budget it is over: a one-line note says so, and the run is the
  same, its metrics and results."""
  results = {}
  for fraction in (0.25, 1e-9):
    config = zoo.get("maf").default_config("smoke")
    config.update(data_dir=data_dir, device_data_fraction=fraction, num_seeds=2, num_steps=20)
    workdir = str(tmp_path / str(fraction))
    capfd.readouterr()
    results[fraction] = loop.train_and_evaluate(config, workdir)
    notes = [line for line in capfd.readouterr().err.splitlines() if "split" in line]
    if fraction == 0.25:
      assert not notes
    else:
      assert len(notes) == 1 and notes[0].startswith("the training split ("), notes
      assert "is read on the host: it is over config.device_data_fraction=1e-09" in notes[0]
  assert _metrics(tmp_path / "0.25") == _metrics(tmp_path / "1e-09")
  for key in ("test", "validation", "per_seed", "steps"):
    assert results[0.25].get(key) == results[1e-9].get(key), key

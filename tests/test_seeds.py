"""Several seeds in one step: each replica is exactly the single-seed run of its seed; and of a
sweep of hyper-parameters over the replicas, the single run of its setting and seed."""

import gc
import itertools
import json
import os
import sys
import threading

import jax
import numpy as np
import pytest
from conftest import tensorboard_events
from PIL import Image

import zoo
from experiments import loop
from experiments import outputs
from experiments import report
from experiments import results
from zoo import training


def read(workdir, name):
  with open(os.path.join(workdir, name)) as f:
    return [json.loads(line) for line in f] if name.endswith(".jsonl") else json.load(f)


def config_of(model, data_dir, **overrides):
  config = zoo.get(model).default_config("smoke")
  config.data_dir = data_dir
  # Without batch norm: with it, the loss does not depend on the MADEs' output biases, whose
  # gradients are then rounding noise that Adam scales up to whole steps, so batched and
  # unbatched arithmetic part there (by 0.1 in 10 steps, 1% in validation log-likelihood).
  if model == "maf":
    config.model.batch_norm = False
  for key, value in overrides.items():
    config[key] = value
  return config


def assert_replica_is_the_run(rows, single_rows, replica, rtol, atol=1e-6):
  """Replica `replica`'s entries in the metrics of a run of several seeds equal the metrics of
  the single-seed run, where that run logged them, and are None where it had stopped."""
  single = {}  # a step's training and evaluation metrics are separate lines
  for row in single_rows:
    single.setdefault(row["step"], {}).update(row)
  for row in rows:
    for key, values in row.items():
      if key == "step" or key.startswith("test/"):  # logged at the run's last step; the
        continue  # results compare them
      value = values[replica]
      if row["step"] in single and key in single[row["step"]]:
        np.testing.assert_allclose(
            value,
            single[row["step"]][key],
            rtol=rtol.get(key, rtol["default"]),
            atol=atol,
            err_msg=f"{key} at step {row['step']}",
        )
      else:
        assert value is None, f"{key} at step {row['step']}: the single run had stopped"


# Early stopping with patience 1 on validation stops the seeds at different steps.
MAF_RUN = {
    "num_steps": 80,
    "log_every": 10,
    "eval_every": 10,
    "checkpoint_every": 40,
    "early_stopping_patience": 1,
    "learning_rate": 3e-2,
}


@pytest.fixture(scope="module")
def single_maf_runs(tmp_path_factory, data_dir):
  """The single-seed MAF runs of seeds 3 to 6: workdir of each."""
  runs = {}
  for seed in (3, 4, 5, 6):
    workdir = str(tmp_path_factory.mktemp(f"seed{seed}"))
    loop.train_and_evaluate(config_of("maf", data_dir, seed=seed, **MAF_RUN), workdir)
    runs[seed] = workdir
  return runs


@pytest.mark.xdist_group("single_maf_runs")  # one worker trains the fixture's runs for both
@pytest.mark.parametrize(
    "unrolled",
    [pytest.param(True, marks=pytest.mark.slow), False],  # vmapped: MAF's way on a CPU
    ids=["unrolled", "vmapped"],
)
def test_each_replica_equals_the_single_seed_run(
    single_maf_runs, tmp_path, data_dir, monkeypatch, unrolled
):
  monkeypatch.setattr(training, "_unroll_replicas", lambda *_: unrolled)
  if unrolled:  # as replicas are, on CPU, where the step convolves: one step at a time
    monkeypatch.setattr(loop, "window_length", lambda *_: 1)
  workdir = str(tmp_path / "seeds")
  results = loop.train_and_evaluate(
      config_of("maf", data_dir, seed=3, num_seeds=4, **MAF_RUN), workdir
  )
  rows = read(workdir, "metrics.jsonl")
  # Unrolled, a replica runs the single run's very operations. Vmapped, batched ones that round
  # differently, by about 1e-7 a step: the loss stays that close; Adam amplifies the difference
  # in the smallest gradients, which shows in their norm.
  rtol = {"default": 1e-6} if unrolled else {"loss": 1e-4, "default": 1e-3}
  stopped = []
  for replica, seed in enumerate((3, 4, 5, 6)):
    single = read(single_maf_runs[seed], "results.json")
    assert_replica_is_the_run(rows, read(single_maf_runs[seed], "metrics.jsonl"), replica, rtol)
    mine = results["per_seed"][replica]
    assert (mine["seed"], mine["steps"], mine["best_step"]) == (
        seed,
        single["steps"],
        single["best_step"],
    )
    for split in ("test", "validation"):
      for key, value in single[split].items():
        np.testing.assert_allclose(mine[split][key], value, rtol=rtol["default"], err_msg=key)
    stopped.append(mine["steps"])
    _, variables, _ = zoo.load(workdir, replica=replica)
    _, single_variables, _ = zoo.load(single_maf_runs[seed])
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(single_variables)):
      np.testing.assert_allclose(a, b, rtol=rtol["default"], atol=1e-4)
  with pytest.raises(ValueError, match="replica 4 of a run of 4 replicas"):
    zoo.load(workdir, replica=4)  # JAX would clamp the index, silently
  for replica, seed in enumerate((3, 4, 5, 6)):  # the test metrics at the step they measured
    best = results["per_seed"][replica]["best_step"]
    assert [r["step"] for r in rows if (r.get("test/log_prob") or [None] * 4)[replica]] == [best]
    assert [
        r["step"] for r in read(single_maf_runs[seed], "metrics.jsonl") if "test/log_prob" in r
    ] == [best]
  redrawn = outputs.redraw(workdir, 0, str(tmp_path / "redrawn"))  # replica 0's are the run's own
  assert np.array_equal(redrawn["samples.png"], Image.open(os.path.join(workdir, "samples.png")))
  assert (
      outputs.redraw(workdir, 3, str(tmp_path / "seed6"))["samples.png"].size
      == redrawn["samples.png"].size
  )
  (line,) = report.final_lines(results, workdir)
  mean, stderr = results["test"]["log_prob"], results["test_stderr"]["log_prob"]
  assert f"mean ± standard error of 4 seeds: test log_prob {mean:.4f} ± {stderr:.4f} nats" in line
  assert (
      len(set(stopped)) > 1 and min(stopped) < MAF_RUN["num_steps"]
  ), "the seeds should stop early at different steps, to test that a stopped replica is frozen"
  assert results["steps"] == max(stopped)
  per_seed = np.array([r["test"]["log_prob"] for r in results["per_seed"]])
  np.testing.assert_allclose(results["test"]["log_prob"], per_seed.mean(), rtol=1e-6)
  np.testing.assert_allclose(
      results["test_stderr"]["log_prob"], per_seed.std(ddof=1) / np.sqrt(4), rtol=1e-6
  )
  row = report.table(os.path.join(workdir, "results.json")).splitlines()[-1]
  mean, stderr = results["test"]["log_prob"], results["test_stderr"]["log_prob"]
  assert f"| 4 | {mean:.2f} ± {stderr:.2f} |" in row


@pytest.mark.xdist_group("single_maf_runs")
def test_a_swept_learning_rate_replica_equals_its_single_run(single_maf_runs, tmp_path, data_dir):
  """Two learning rates crossed with two seeds, vmapped (MAF's way on a CPU), trained to step
  40 and resumed to 80: each replica is the single run of its learning rate and seed, which
  for 3e-2 are the fixture's. The results and the report summarise each setting's seeds."""
  singles = {(3e-2, seed): single_maf_runs[seed] for seed in (3, 4)}
  for seed in (3, 4):
    singles[1e-2, seed] = str(tmp_path / f"single-{seed}")
    loop.train_and_evaluate(
        config_of("maf", data_dir, seed=seed, **{**MAF_RUN, "learning_rate": 1e-2}),
        singles[1e-2, seed],
    )
  config = config_of("maf", data_dir, seed=3, num_seeds=2, **{**MAF_RUN, "num_steps": 40})
  config.replicas.learning_rate = (3e-2, 1e-2)
  workdir = str(tmp_path / "swept")
  loop.train_and_evaluate(config, workdir)
  config.num_steps = 80
  results = loop.train_and_evaluate(config, workdir, allow_config_change=True)
  rows = read(workdir, "metrics.jsonl")
  rtol = {"loss": 1e-4, "default": 1e-3}  # vmapped: as test_each_replica_equals_the_single_...
  replicas = [(3e-2, 3), (3e-2, 4), (1e-2, 3), (1e-2, 4)]
  for replica, (learning_rate, seed) in enumerate(replicas):
    single = read(singles[learning_rate, seed], "results.json")
    assert_replica_is_the_run(
        rows, read(singles[learning_rate, seed], "metrics.jsonl"), replica, rtol
    )
    mine = results["per_seed"][replica]
    assert mine["setting"] == {"learning_rate": learning_rate} and mine["seed"] == seed
    assert (mine["steps"], mine["best_step"]) == (single["steps"], single["best_step"])
    np.testing.assert_allclose(mine["test"]["log_prob"], single["test"]["log_prob"], rtol=1e-3)
  assert "test" not in results  # a mean over settings is no figure of any of them
  table = report.table(os.path.join(workdir, "results.json")).splitlines()
  for part, learning_rate, row in zip(results["settings"], (3e-2, 1e-2), table[-2:]):
    assert part["setting"] == {"learning_rate": learning_rate}
    per_seed = [
        r["test"]["log_prob"] for r in results["per_seed"] if r["setting"] == part["setting"]
    ]
    np.testing.assert_allclose(part["test"]["log_prob"], np.mean(per_seed), rtol=1e-6)
    mean, stderr = part["test"]["log_prob"], part["test_stderr"]["log_prob"]
    assert (
        f"; learning_rate={learning_rate} |" in row and f"| 2 | {mean:.2f} ± {stderr:.2f} |" in row
    )
  for setting, seed in itertools.product(("learning_rate=0.03", "learning_rate=0.01"), (3, 4)):
    events = tensorboard_events(os.path.join(workdir, "tensorboard", setting, f"seed={seed}"))
    tags = {value.tag for event in events for value in event.summary.value}
    assert {"loss", "validation/log_prob", "test/log_prob", "config/text_summary"} <= tags, tags
    assert ("samples.png" in tags) == (seed == 3)  # each setting's figures are its first seed's


@pytest.mark.slow  # 75 s; the MAF replicas below are tested in the fast suite
def test_a_game_replica_equals_the_single_seed_run(tmp_path, data_dir, monkeypatch):
  """WGAN: each step stacks critic batches per replica (data sharded on the third axis).
  Unrolled, so that the replica runs the single run's very operations: vmapped, RMSProp on the
  clipped critic's tiny gradients amplifies batched rounding to 10% in gradient norms."""
  monkeypatch.setattr(training, "_unroll_replicas", lambda *_: True)
  run = {"num_steps": 6, "log_every": 2, "eval_every": 6, "checkpoint_every": 6, "burst_updates": 0}
  single, seeds = str(tmp_path / "single"), str(tmp_path / "seeds")
  loop.train_and_evaluate(config_of("wgan", data_dir, seed=8, **run), single)
  loop.train_and_evaluate(config_of("wgan", data_dir, seed=7, num_seeds=2, **run), seeds)
  assert_replica_is_the_run(
      read(seeds, "metrics.jsonl"), read(single, "metrics.jsonl"), 1, rtol={"default": 1e-6}
  )


def test_summary_is_the_mean_and_its_standard_error():
  summary = results.summary("test", [{"a": 1.0}, {"a": 2.0}, {"a": 3.0}, {"a": 4.0}])
  assert summary["test"] == {"a": 2.5}
  # sample standard deviation sqrt(5/3), over sqrt(4)
  np.testing.assert_allclose(summary["test_stderr"]["a"], np.sqrt(5 / 3) / 2)
  assert results.summary("test", [{"a": 1.0}]) == {"test": {"a": 1.0}}


def test_resuming_with_another_number_of_seeds_is_one_clear_error(tmp_path, data_dir, monkeypatch):
  """Refused by the config, and where there is none (a checkpoint copied without it), by the
  checkpoint's arrays. And the refusal leaves nothing running: every thread the refused run
  started ends (the metric log's too), and no exception is left unraisable (as is one raised
  into an event loop of a checkpoint read that was left half done)."""
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config_of("maf", data_dir, num_steps=20), workdir)
  threads, unraisable = set(threading.enumerate()), []
  monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
  two_seeds = config_of("maf", data_dir, num_steps=20, num_seeds=2)
  with pytest.raises(zoo.errors.UserError, match=r"num_seeds 1 -> 2\); num_seeds cannot change"):
    loop.train_and_evaluate(two_seeds, workdir)
  os.remove(os.path.join(workdir, "config.json"))
  with pytest.raises(
      zoo.errors.UserError, match=r"does not fit this config .*\w+\[1(, \d+)*\] there, \w+\[2"
  ):  # an array with the seed axis: one replica saved, two wanted
    loop.train_and_evaluate(two_seeds, workdir)
  gc.collect()
  for thread in set(threading.enumerate()) - threads:
    thread.join(timeout=5)
    assert not thread.is_alive(), thread
  assert not unraisable, [u.exc_value for u in unraisable]


def test_replicas_are_unrolled_on_cpu_only_where_the_step_convolves():
  for name, shape, convolves in (("maf", (2, 3), False), ("beta_vae", (2, 64, 64, 1), True)):
    model, batch = zoo.build(name), {"x": np.zeros(shape, np.float32)}
    variables = jax.eval_shape(lambda m=model: m.init(jax.random.key(0), batch, method="loss"))

    def gradient(v, m=model):
      return jax.grad(
          lambda p: m.apply(
              v | {"params": p},
              batch,
              method="loss",
              mutable=True,
              rngs={"sample": jax.random.key(1)},
          )[0][0]
      )(v["params"])

    assert training._unroll_replicas(gradient, variables) == convolves, name


def test_no_two_random_streams_of_a_five_seed_run_share_a_key():
  """Every key a run of seeds 0-4 draws from: each replica's init and step keys, each named
  stream's, and the per-batch folds of the evaluation streams (`Evaluator` folds in the batch
  index, 0, 1, ...). Seeds offset by a constant (the evaluation's seed + 4) made replica 0's
  evaluation batches 0 and 1 replica 4's init and step keys."""
  seeds = range(5)
  init, step = training.replica_keys(seeds)
  keys = [*init, *step]
  for seed in seeds:
    for stream in training.STREAMS:
      key = training.stream_key(seed, stream)
      keys += [key, *(jax.random.fold_in(key, batch) for batch in range(4))]
  words = [tuple(np.asarray(jax.random.key_data(k)).tolist()) for k in keys]
  assert len(set(words)) == len(words) == 10 + 5 * len(training.STREAMS) * 5

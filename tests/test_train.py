"""The runner: one train step under jit and sharding, exact resume, divergence, outputs."""

import contextlib
import errno
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from conftest import ROOT
from conftest import command_env
from conftest import perturbed

import zoo
from experiments import checkpointing
from experiments import feed
from experiments import logs
from experiments import loop
from experiments import runs
from zoo import errors
from zoo import evaluation
from zoo import training
from zoo.nn import games


def smoke_config(data_dir, **overrides):
  config = zoo.get("maf").default_config("smoke")
  config.data_dir = data_dir
  for key, value in overrides.items():
    config[key] = value
  return config


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_train_step_is_the_same_under_jit():
  model = zoo.build("maf", num_layers=2, hidden_dims=(16,))
  optimizer = optax.sgd(0.1)  # linear in the gradient: Adam's first step would amplify rounding
  batch = {"x": jax.random.normal(jax.random.key(0), (32, 3))}
  state = training.init_state(model, optimizer, batch, jax.random.key(1))
  # Away from initialisation, where the shifts' gradients are rounding noise (batch norm makes
  # the loss shift-invariant).
  state = state.replace(params=perturbed(state.params, jax.random.key(3), scale=0.1))
  step = training.make_train_step(model, optimizer)
  with jax.disable_jit():
    eager, eager_metrics = step(state, batch, jax.random.key(2))
  jitted, jitted_metrics = jax.jit(step)(state, batch, jax.random.key(2))
  assert int(jitted.step) == 1
  np.testing.assert_allclose(jitted_metrics["loss"], eager_metrics["loss"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_bfloat16_keeps_float32_state_and_follows_the_float32_gradient():
  """Mixed precision: the parameters, optimiser state and metrics stay float32, and the step's
  update (SGD: the gradient itself) points where float32's does."""
  model = zoo.build("maf", num_layers=2, hidden_dims=(16,), batch_norm=False)
  optimizer = optax.sgd(1.0)
  batch = {"x": jax.random.normal(jax.random.key(0), (256, 3))}
  state = training.init_state(model, optimizer, batch, jax.random.key(1))
  state = state.replace(params=perturbed(state.params, jax.random.key(3), scale=0.1))
  updates = {}
  for bfloat16 in (False, True):
    new, metrics = jax.jit(training.make_train_step(model, optimizer, bfloat16))(
        state, batch, jax.random.key(2)
    )
    assert {
        x.dtype
        for x in jax.tree.leaves((new.params, new.opt_state, metrics))
        if jnp.issubdtype(x.dtype, jnp.floating)
    } == {np.dtype(np.float32)}
    updates[bfloat16] = jnp.concatenate(
        [u.ravel() for u in jax.tree.leaves(new.params)]
    ) - jnp.concatenate([p.ravel() for p in jax.tree.leaves(state.params)])
    updates[bfloat16, "loss"] = metrics["loss"]
  cosine = (
      updates[True]
      @ updates[False]
      / (jnp.linalg.norm(updates[True]) * jnp.linalg.norm(updates[False]))
  )
  assert cosine > 0.99
  np.testing.assert_allclose(updates[True, "loss"], updates[False, "loss"], rtol=2e-2)
  assert not np.array_equal(updates[True], updates[False])  # it did compute in bfloat16


def test_prefetch_keeps_the_order_passes_errors_on_and_its_thread_ends_when_closed():
  def make(step):
    if step == 5:
      raise ValueError("no batch 5")
    return step

  batches = feed.prefetch(make, itertools.count(2))
  assert [next(batches) for _ in range(3)] == [2, 3, 4]
  with pytest.raises(ValueError, match="no batch 5"):
    next(batches)

  def make_slowly(step):
    time.sleep(0.2)
    return step

  before = set(threading.enumerate())
  batches = feed.prefetch(make_slowly, itertools.count(0))
  assert next(batches) == 0
  producers = set(threading.enumerate()) - before
  assert producers
  batches.close()  # while the thread is inside make_slowly: close waits for it to end
  assert not any(thread.is_alive() for thread in producers)


def test_one_and_four_devices_train_the_same(tmp_path, data_dir):
  assert jax.device_count() == 4
  runs = {}
  for count in (1, 4):
    workdir = str(tmp_path / f"devices{count}")
    loop.train_and_evaluate(
        smoke_config(data_dir, num_steps=20), workdir, devices=jax.devices()[:count]
    )
    runs[count] = read_metrics(workdir)
  assert [r["step"] for r in runs[1]] == [r["step"] for r in runs[4]]
  for one, four in zip(runs[1], runs[4]):
    assert one.keys() == four.keys()
    for key in one:
      # Equal up to the order of floating-point reductions across devices.
      np.testing.assert_allclose(one[key], four[key], rtol=1e-3, err_msg=key)


def test_a_finished_run_writes_every_output(tmp_path, data_dir, monkeypatch):
  workdir = str(tmp_path / "run")
  evaluate, final_evaluation = evaluation.Evaluator.__call__, 3.0

  def slow_test_evaluation(self, variables, split):
    if split == "test":
      time.sleep(final_evaluation)
    return evaluate(self, variables, split)

  monkeypatch.setattr(evaluation.Evaluator, "__call__", slow_test_evaluation)
  results = loop.train_and_evaluate(smoke_config(data_dir), workdir)
  with open(os.path.join(workdir, checkpointing.PROGRESS)) as f:
    at_last_checkpoint = json.load(f)["train_seconds"]
  # the training time leaves out the final evaluation
  assert at_last_checkpoint <= results["train_seconds"] < at_last_checkpoint + final_evaluation
  for name in ("config.json", "metrics.jsonl", "results.json", "samples.png", "tensorboard"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert np.isfinite(results["test"]["log_prob"])
  rows = read_metrics(workdir)
  assert rows[0]["step"] == 10 and "loss" in rows[0]
  assert any("validation/log_prob" in r for r in rows)
  model, variables, config = zoo.load(workdir)
  assert config.model_name == "maf"
  x = jnp.zeros((3, 2))
  assert model.apply(variables, x, method="log_prob").shape == (3,)


KILLED_RUN = {"num_steps": 400, "checkpoint_every": 20, "log_every": 10, "eval_every": 100}


def _cli(workdir, data_dir, *extra, settings=None):
  """The command of a smoke MAF run of `settings` (KILLED_RUN's by default) into `workdir`."""
  return [
      sys.executable,
      "-m",
      "experiments.run",
      "--model=maf",
      "--preset=smoke",
      f"--workdir={workdir}",
      f"--config.data_dir={data_dir}",
      *(f"--config.{key}={value}" for key, value in (settings or KILLED_RUN).items()),
      *extra,
  ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
  """The workdir of KILLED_RUN trained without a break, here, on one device as the command sees
  one: the same arithmetic."""
  whole = str(tmp_path_factory.mktemp("uninterrupted"))
  loop.train_and_evaluate(smoke_config(data_dir, **KILLED_RUN), whole, devices=jax.devices()[:1])
  return whole


def _steps(checkpoint_dir):
  """The finished checkpoints' steps (orbax names them by the step alone)."""
  if not os.path.isdir(checkpoint_dir):
    return []
  return [d for d in os.listdir(checkpoint_dir) if d.isdigit()]


def _start_and_stop(workdir, data_dir, stop_signal):
  """The command of KILLED_RUN started on `workdir` and sent `stop_signal` once it has
  checkpointed step 40: (its exit status, its stderr, the seconds from the signal to its
  exit)."""
  process = subprocess.Popen(
      _cli(workdir, data_dir),
      cwd=ROOT,
      env=command_env(),
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      text=True,
  )
  deadline = time.time() + 240
  checkpoint_dir = os.path.join(workdir, "checkpoints")
  while time.time() < deadline and process.poll() is None:
    if max(map(int, _steps(checkpoint_dir)), default=0) >= 40:
      break
    time.sleep(0.05)
  signalled = time.time()
  process.send_signal(stop_signal)
  _, stderr = process.communicate()
  assert read_metrics(workdir)[-1]["step"] < KILLED_RUN["num_steps"], "it finished first"
  return process.returncode, stderr, time.time() - signalled


def _results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


@pytest.mark.slow  # 50 s; the preemption test below resumes as exactly in the fast suite
@pytest.mark.xdist_group("uninterrupted_maf")
def test_resume_after_kill_equals_the_uninterrupted_run(tmp_path, data_dir, uninterrupted):
  killed = str(tmp_path / "killed")
  _start_and_stop(killed, data_dir, signal.SIGKILL)
  subprocess.run(_cli(killed, data_dir), cwd=ROOT, env=command_env(), check=True)
  assert read_metrics(killed) == read_metrics(uninterrupted)
  assert _results(killed)["test"] == _results(uninterrupted)["test"]


@pytest.mark.slow
@pytest.mark.xdist_group("uninterrupted_maf")
def test_kills_during_checkpoint_writes_lose_nothing_before_the_last_complete_one(
    tmp_path, data_dir, uninterrupted
):
  """kill -9 at eight random moments of a run that checkpoints every 10 steps (orbax writes
  each into a temporary directory, renamed when complete): every start resumes from a complete
  checkpoint, some kills leave a save half written, and the run ends as the uninterrupted one."""
  workdir = str(tmp_path / "killed")
  command = [*_cli(workdir, data_dir), "--config.checkpoint_every=10"]
  checkpoint_dir = os.path.join(workdir, "checkpoints")
  rng = np.random.default_rng(0)
  half_written = 0
  for _ in range(8):
    process = subprocess.Popen(
        command, cwd=ROOT, env=command_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    started = max(map(int, _steps(checkpoint_dir)), default=0)
    while process.poll() is None and max(map(int, _steps(checkpoint_dir)), default=0) == started:
      time.sleep(0.01)
    time.sleep(rng.uniform(0, 0.5))
    process.kill()
    _, stderr = process.communicate()
    assert b"Traceback" not in stderr, stderr.decode()
    half_written += any("tmp" in name for name in os.listdir(checkpoint_dir))
  subprocess.run(command, cwd=ROOT, env=command_env(), check=True)
  assert half_written, "no kill landed in a save"
  assert _results(workdir)["test"] == _results(uninterrupted)["test"]


@pytest.mark.xdist_group("uninterrupted_maf")
def test_sigterm_saves_the_step_it_stops_at_and_the_next_start_resumes_exactly(
    tmp_path, data_dir, uninterrupted
):
  """A scheduler's notice: the run stops after the step it is in, checkpoints that step (not a
  multiple of checkpoint_every but where it was), says so in one line and exits 143; started
  again it ends as the uninterrupted run. Its metric log has a row at the step it stopped (the
  steps of the window so far) and the window after it holds the rest."""
  preempted = str(tmp_path / "preempted")
  status, stderr, _ = _start_and_stop(preempted, data_dir, signal.SIGTERM)
  last = stderr.strip().splitlines()[-1]  # after the progress lines
  assert status == 143 and "Traceback" not in stderr, (status, stderr)
  assert last.startswith("stopped by SIGTERM at step") and "run the same command" in last, last
  stopped = int(last.split(" at step ")[1].split(",")[0])
  checkpoints = zoo.checkpoints.manager(os.path.join(preempted, "checkpoints"))
  assert checkpoints.latest_step() == stopped == read_metrics(preempted)[-1]["step"]
  subprocess.run(_cli(preempted, data_dir), cwd=ROOT, env=command_env(), check=True)
  assert _results(preempted)["test"] == _results(uninterrupted)["test"]
  every = KILLED_RUN["log_every"]
  window = range(stopped - stopped % every, stopped - stopped % every + every + 1)
  assert [r for r in read_metrics(preempted) if r["step"] not in window] == [
      r for r in read_metrics(uninterrupted) if r["step"] not in window
  ]


def test_ctrl_c_stops_at_a_saved_step_with_the_shells_status_for_sigint(tmp_path, data_dir):
  """Ctrl-C (SIGINT) stops the run as a notice does, with a checkpoint at the step it stopped,
  but exits 130, the shell's status for SIGINT, not SIGTERM's 143 on which a requeueing wrapper
  would start again a job that a person stopped."""
  workdir = str(tmp_path / "interrupted")
  status, stderr, _ = _start_and_stop(workdir, data_dir, signal.SIGINT)
  last = stderr.strip().splitlines()[-1]
  assert status == 130 and "Traceback" not in stderr, (status, stderr)
  assert last.startswith("stopped by SIGINT at step"), last
  stopped = int(last.split(" at step ")[1].split(",")[0])
  assert zoo.checkpoints.manager(os.path.join(workdir, "checkpoints")).latest_step() == stopped


@contextlib.contextmanager
def _small_file_system(path, size):
  """A file system of `size` (a tmpfs) mounted at `path` while the block runs; mounting needs
  root (or CAP_SYS_ADMIN), without which the test is skipped."""
  os.makedirs(path)
  if (
      os.geteuid() != 0
      or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path]).returncode
  ):
    pytest.skip("mounting a small file system needs root")
  try:
    yield
  finally:
    subprocess.run(["umount", "--lazy", path], check=True)


@pytest.mark.xdist_group("uninterrupted_maf")
def test_a_full_disk_ends_the_run_in_one_line_and_keeps_its_last_good_checkpoint(
    tmp_path, data_dir, uninterrupted
):
  """A file system that fills: a 512 KiB tmpfs, which this run fills at its step-60 save when
  nothing checks the room (orbax's threads then print tracebacks of ENOSPC). The run stops
  before a save that may not fit, saying so in one line (exit status 2) that names the last
  good checkpoint; once the file system is grown, the same command resumes from it and ends as
  the uninterrupted run."""
  workdir = str(tmp_path / "small")
  with _small_file_system(workdir, "512k"):
    full = subprocess.run(
        _cli(workdir, data_dir), cwd=ROOT, env=command_env(), capture_output=True, text=True
    )
    last = full.stderr.strip().splitlines()[-1]  # after the progress lines
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    assert last.startswith("error: no room for the checkpoint at step "), last
    kept = int(last.split("the last good checkpoint, step ")[1].split(",")[0])
    assert max(map(int, _steps(os.path.join(workdir, "checkpoints")))) == kept
    assert kept < KILLED_RUN["num_steps"]
    subprocess.run(["mount", "-o", "remount,size=64m", workdir], check=True)
    subprocess.run(_cli(workdir, data_dir), cwd=ROOT, env=command_env(), check=True)
    assert read_metrics(workdir) == read_metrics(uninterrupted)
    assert _results(workdir)["test"] == _results(uninterrupted)["test"]


class _FailedWrite:
  """An orbax commit future whose write failed: what a file system remounted read-only under a
  save in flight gives (found there: orbax's save returns, its background write raises EROFS)."""

  def result(self, timeout=None):
    del timeout
    raise OSError(errno.EROFS, "Read-only file system")


def test_a_save_that_fails_leaves_the_progress_record_at_the_last_complete_checkpoint(
    tmp_path, data_dir, monkeypatch
):
  """The step-40 checkpoint's write fails after its save began: the run ends in one line naming
  the step-20 checkpoint it keeps, and progress.json describes that checkpoint (it said step 40,
  whose seconds no checkpoint holds); started again, the run resumes from it and finishes."""
  write = ocp.StandardCheckpointHandler.async_save

  async def failing_at_step_40(self, directory, *args, **kwargs):
    futures = await write(self, directory, *args, **kwargs)
    failed = f"{os.sep}checkpoints{os.sep}40." in str(directory)
    return [*futures, _FailedWrite()] if failed else futures

  monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", failing_at_step_40)
  config = smoke_config(data_dir, num_steps=40, checkpoint_every=20, eval_every=20)
  workdir = str(tmp_path / "run")
  with pytest.raises(
      errors.UserError, match=r"could not be written .*Read-only file system.* step 20, is kept"
  ):
    loop.train_and_evaluate(config, workdir)
  saved = zoo.checkpoints.manager(os.path.join(workdir, "checkpoints"))
  with open(os.path.join(workdir, checkpointing.PROGRESS)) as f:
    progress = json.load(f)
  assert saved.latest_step() == progress["step"] == 20
  monkeypatch.undo()
  assert loop.train_and_evaluate(config, workdir)["steps"] == 40


def _files(directory, containing=""):
  """The files under `directory` whose paths contain `containing`."""
  paths = [os.path.join(d, f) for d, _, files in os.walk(directory) for f in files]
  return [p for p in paths if containing in p]


def _largest_file(directory):
  """The largest file under `directory`."""
  return max(_files(directory), key=os.path.getsize)


def test_a_damaged_checkpoint_is_named_set_aside_and_the_one_before_it_resumes(
    tmp_path, data_dir, capfd
):
  """The latest checkpoint damaged as a failing disk leaves it, its largest file truncated: one
  line names it, nothing else reaches stderr, and the run started again resumes from the
  checkpoint before and ends as the uninterrupted run. The best checkpoint with its largest file
  missing is named and set aside in the same way, and the run started again ends without it."""
  config = smoke_config(data_dir, num_steps=40, checkpoint_every=20, eval_every=20)
  damaged = str(tmp_path / "damaged")
  expected = loop.train_and_evaluate(config, damaged)["test"]  # before the damage
  path = _largest_file(os.path.join(damaged, "checkpoints", "40"))
  os.truncate(path, os.path.getsize(path) // 2)
  capfd.readouterr()
  with pytest.raises(
      errors.UserError,
      match=r"checkpoint at step 40 in .* is damaged \(.* holds .* of its .* bytes\).* step 20",
  ):
    loop.train_and_evaluate(config, damaged)
  assert "Traceback" not in capfd.readouterr().err
  assert loop.train_and_evaluate(config, damaged)["test"] == expected
  (best,) = [d for d in os.listdir(os.path.join(damaged, "best")) if d.isdigit()]
  os.remove(_largest_file(os.path.join(damaged, "best", best)))
  with pytest.raises(
      errors.UserError, match=f"best checkpoint, of step {best}, in .* is damaged \\(.* is missing"
  ):
    loop.train_and_evaluate(config, damaged)
  assert loop.train_and_evaluate(config, damaged)["best_step"] is None  # no evaluation came
  assert "Traceback" not in capfd.readouterr().err


def test_a_damaged_checkpoint_without_its_size_record_is_named_and_set_aside(tmp_path, data_dir):
  """A run killed between a save and its size record leaves a checkpoint nothing has checked.
  Damaged afterwards, its tree's metadata or its array files cut in half, it was resumed
  regardless: a JSONDecodeError traceback, or TensorStore's. (All the array files: which of them
  orbax still reads depends on how its writes were batched, and once its largest held only nodes
  that the merged tree no longer uses, cut alone it changed nothing.) Now reading it is the
  check: one line names it, and the run started again resumes from the checkpoint before and
  ends as the undamaged run. (Each run is its own process: one process's TensorStore cache would
  serve the damaged file's bytes from memory.) After damaged array files, orbax's other reads,
  which it abandons, may still print "Event loop is closed" tracebacks from TensorStore's
  threads (in 1 of 2 tries here): that case asserts the line and the exit status, not a quiet
  stderr."""
  workdir = str(tmp_path / "run")
  command = _cli(workdir, data_dir, settings={"num_steps": 40, "checkpoint_every": 20})
  run = lambda: subprocess.run(command, cwd=ROOT, env=command_env(), capture_output=True, text=True)
  assert run().returncode == 0
  expected = _results(workdir)["test"]
  checkpoint = os.path.join(workdir, "checkpoints", "40")
  for damaged in ("_METADATA", os.path.join("ocdbt.process_0", "d", "")):
    os.remove(f"{checkpoint}{checkpointing.SIZES}")
    for path in _files(os.path.join(checkpoint, "default"), damaged):
      os.truncate(path, os.path.getsize(path) // 2)
    refused = run()
    lines = refused.stderr.strip().splitlines()
    said = [line for line in lines if line.startswith("error: ")]
    assert refused.returncode == 2 and len(said) == 1, refused.stderr[-3000:]
    assert re.fullmatch(
        r"error: the checkpoint at step 40 in .* is damaged \(unreadable: .*\); .* resumes from "
        r"step 20",
        said[0],
    ), said[0]
    if damaged == "_METADATA":
      assert "Traceback" not in refused.stderr and lines[-1] == said[0], refused.stderr[-3000:]
    assert run().returncode == 0
    assert _results(workdir)["test"] == expected


def test_a_second_run_on_a_workdir_in_use_is_refused_until_its_holder_ends(tmp_path, data_dir):
  """A run in progress (a real process holding the workdir) refuses a second one with one line
  naming it, before the second writes anything; killed, it leaves no lock behind."""
  workdir = str(tmp_path / "run")
  holder = subprocess.Popen(
      [
          sys.executable,
          "-c",
          "import sys, time\n"
          "from experiments import checkpointing\n"
          "with checkpointing.workdir_lock(sys.argv[1]):\n"
          "  print('holding', flush=True)\n"
          "  time.sleep(600)\n",
          workdir,
      ],
      cwd=ROOT,
      env=command_env(),
      stdout=subprocess.PIPE,
      text=True,
  )
  assert holder.stdout.readline().strip() == "holding"
  with pytest.raises(errors.UserError, match=f"is in use by the run of process {holder.pid} on "):
    loop.train_and_evaluate(smoke_config(data_dir, num_steps=10), workdir)
  assert os.listdir(workdir) == ["run.lock"]  # no config.json, no checkpoint of the refused run
  holder.kill()
  holder.wait()
  assert loop.train_and_evaluate(smoke_config(data_dir, num_steps=10), workdir)["steps"] == 10


def test_divergence_names_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path, data_dir, monkeypatch
):
  """Poisoned batches from step 25 on (made on the host, where a test can reach them): the
  window that holds them ends the run, naming the first step whose loss is not finite."""
  workdir = str(tmp_path / "run")
  plan, batch = zoo.data.TrainStream.plan, zoo.data.TrainStream.batch

  def poisoned_from_step_25(self, step_plan):
    clean = batch(self, {k: v for k, v in step_plan.items() if k != "step"})
    return {**clean, "x": clean["x"] * np.nan} if step_plan["step"] >= 25 else clean

  monkeypatch.setattr(zoo.data.TrainStream, "plan", lambda self, s: {**plan(self, s), "step": s})
  monkeypatch.setattr(zoo.data.TrainStream, "batch", poisoned_from_step_25)
  config = smoke_config(data_dir, num_steps=40, checkpoint_every=20, device_data_fraction=0.0)
  with pytest.raises(
      loop.NonFiniteLossError, match="non-finite at step 26; .*checkpoint, step 20, is kept"
  ):
    loop.train_and_evaluate(config, workdir)
  checkpoints = zoo.checkpoints.manager(os.path.join(workdir, "checkpoints"))
  assert checkpoints.latest_step() == 20
  restored = zoo.checkpoints.restore_local(checkpoints, 20)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored["params"]))


def test_a_changed_config_resumes_only_where_it_leaves_the_steps_as_they_were(tmp_path, data_dir):
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(smoke_config(data_dir, num_steps=20), workdir)
  wider = smoke_config(data_dir, num_steps=20)
  wider.model.hidden_dims = (64, 64)
  for allowed in (False, True):
    with pytest.raises(
        zoo.errors.UserError, match=r"model\.hidden_dims \[32, 32\] -> \[64, 64\]\); .*new workdir"
    ):
      loop.train_and_evaluate(wider, workdir, allow_config_change=allowed)
  longer = smoke_config(data_dir, num_steps=40)
  with pytest.raises(
      zoo.errors.UserError, match="num_steps 20 -> 40\\); pass --allow_config_change"
  ):
    loop.train_and_evaluate(longer, workdir)
  assert loop.train_and_evaluate(longer, workdir, allow_config_change=True)["steps"] == 40
  assert [r["step"] for r in read_metrics(workdir) if "loss" in r] == [10, 20, 30, 40]
  assert zoo.checkpoints.read_config(workdir).num_steps == 40


def test_metric_log_drops_lines_past_the_resumed_step_and_an_earlier_finishs_test(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 10, "loss": 1}\n{"step": 20, "loss": 2}\n{"step": 10, "test/a": 1}\n')
  log = logs.MetricLog(str(tmp_path), is_writer=True, resume_step=20)
  log.close()
  assert [json.loads(l)["step"] for l in path.read_text().splitlines()] == [10, 20]
  path.write_text('{"step": 10, "loss": 1}\n{"step": 20, "loss": 2}\n{"step": 30, "lo')
  log = logs.MetricLog(str(tmp_path), is_writer=True, resume_step=20)
  log.write(30, {"loss": 3.0})
  log.close()
  assert [json.loads(l)["step"] for l in path.read_text().splitlines()] == [10, 20, 30]


def test_a_workdir_from_before_later_fields_resumes_with_their_defaults(tmp_path, data_dir):
  """A config.json written before `model.activation` and `preset` existed: MAF trained with ReLU
  then, and the preset is a label; the same command resumes it. Another change is refused."""
  config = smoke_config(data_dir)
  older = json.loads(config.to_json())
  del older["model"]["activation"]
  older.pop("preset")
  (tmp_path / zoo.checkpoints.CHECKPOINTS / "20").mkdir(parents=True)
  (tmp_path / zoo.checkpoints.CONFIG).write_text(json.dumps(older))
  checkpointing.check_config(str(tmp_path), config.to_dict())
  config.model.activation = "tanh"
  with pytest.raises(zoo.errors.UserError, match="model.activation unset -> tanh"):
    checkpointing.check_config(str(tmp_path), config.to_dict())


def test_the_progress_rate_is_that_of_the_recent_windows_not_the_last_interval():
  """Windows dispatched ahead of the host come back in pairs, one after a wait, one at once:
  the printed rate is the steps over the time of the recent updates, the first (compiling)
  left out."""
  progress = logs.Progress(100, enabled=False)
  progress.start(0)
  progress.marks += [(10, 5.0)]  # compiled
  assert progress.rate() is None
  progress.marks += [(20 + 10 * i, 6.0 + (i // 2) + (0.001 if i % 2 else 0)) for i in range(8)]
  (first, t0), (last, t1) = progress.marks[1], progress.marks[-1]  # from the compiled one's end
  np.testing.assert_allclose(progress.rate(), (last - first) / (t1 - t0))
  assert 15 < progress.rate() < 25  # 20 steps a second; single intervals give 10 or 10000


def test_a_set_without_the_split_a_role_names_is_refused_before_training(tmp_path, data_dir):
  config = smoke_config(data_dir)
  config.splits.test = "holdout"  # as TFDS's dsprites, which has only `train`
  with pytest.raises(zoo.errors.UserError, match="no split 'holdout' for its test examples"):
    loop.train_and_evaluate(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")


class TwoPhases(games.Game):
  """A game whose phases share a submodule, as the PixelGAN autoencoder's encoder."""

  phases = {"fit": ("shared", "head"), "shrink": ("shared",)}

  def setup(self):
    self.shared = nn.Dense(2)
    self.head = nn.Dense(1)

  def fit_loss(self, batch, train=True):
    return jnp.mean((self.head(self.shared(batch["x"])) - 1) ** 2), {}

  def shrink_loss(self, batch, train=True):
    return jnp.mean(self.shared(batch["x"]) ** 2), {}


def test_game_phases_update_in_order_each_its_own_submodules():
  model, learning_rate = TwoPhases(), 0.1
  batch = {"x": jax.random.normal(jax.random.key(0), (8, 3))}
  optimizers = {phase: optax.sgd(learning_rate) for phase in model.phases}
  state = training.init_state(model, optimizers, batch, jax.random.key(1))
  new, metrics = jax.jit(training.make_game_step(model, optimizers))(
      state, jax.tree.map(lambda x: x[None], batch), jax.random.key(2)
  )

  def sgd(params, loss):
    grads = jax.grad(lambda p: model.apply({"params": p}, batch, method=loss)[0])(params)
    return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)

  after_fit = sgd(state.params, "fit_loss")
  after_shrink = sgd(after_fit, "shrink_loss")
  expected = {"shared": after_shrink["shared"], "head": after_fit["head"]}
  for got, want in zip(jax.tree.leaves(new.params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert set(new.opt_state) == {"fit", "shrink"} and {"fit/loss", "shrink/loss"} <= set(metrics)


def test_evaluation_every_epoch_counts_the_patience_in_epochs(tmp_path, data_dir):
  """The MAF paper's protocol (its preset's eval_every_epochs = 1): an evaluation every
  ceil(N / batch) steps, N the training examples, and patience counted in those. At learning
  rate 0 nothing improves after the first, so patience 2 stops at the third epoch's end."""
  config = smoke_config(
      data_dir,
      eval_every_epochs=1,
      early_stopping_patience=2,
      learning_rate=0.0,
      num_steps=10_000,
      batch_size=64,
  )
  epoch = -(-feed.load_data(config).num_examples("train") // 64)
  results = loop.train_and_evaluate(config, str(tmp_path))
  evaluated = [m["step"] for m in read_metrics(str(tmp_path)) if "validation/log_prob" in m]
  assert evaluated == [epoch, 2 * epoch, 3 * epoch]
  assert results["steps"] == 3 * epoch
  runs.setup(config, str(tmp_path))  # the same command resumes: its steps are derived again

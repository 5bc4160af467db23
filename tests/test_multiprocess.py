"""Multi-process training on JAX's distributed runtime, over loopback with the gloo collectives:
2 processes of 2 emulated CPU devices each train as 1 process of 4 devices does; a pair that a
scheduler's notice stops, or that loses a process, ends well and resumes exactly."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import ROOT
from conftest import command_env

import zoo
from experiments import feed
from experiments import loop
from experiments import supervision
from zoo import configs
from zoo import training


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


SLURM_PORTS = range(61440, 65536)  # JAX's coordinator port under SLURM: 61440 + job id % 4096


def free_port(candidates=(0,)):
  for port in candidates:
    with socket.socket() as s:
      try:
        s.bind(("localhost", port))
      except OSError:
        continue
      return s.getsockname()[1]
  raise RuntimeError("no free port")


FAULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "faults")


def launch(workdir, data_dir, model, *extra, slurm=False, log="process", faults=None):
  """The same command on 2 processes of 2 devices each, as on 2 hosts: told where process 0
  is by flags, or (`slurm`) finding it in the environment a SLURM job step of 2 tasks sets.
  Process i appends its stderr to `{log}{i}.log` in the workdir; `faults` ({i: "KIND:STEP"})
  injects a fault into process i (tests/faults/sitecustomize.py; its files are
  `{log}{i}.fault.*` in the workdir)."""
  env = command_env("--xla_force_host_platform_device_count=2")
  os.makedirs(workdir, exist_ok=True)
  port = free_port(random.sample(SLURM_PORTS, 100) if slurm else (0,))
  processes = []
  for i in range(2):
    if slurm:
      where = []
      env.update(
          SLURM_JOB_ID=str(port - SLURM_PORTS.start),
          SLURM_STEP_NODELIST="localhost",
          SLURM_NTASKS="2",
          SLURM_PROCID=str(i),
          SLURM_LOCALID=str(i),
      )
    else:
      where = [f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}"]
    processes.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "experiments.run",
                f"--model={model}",
                "--preset=smoke",
                f"--workdir={workdir}",
                f"--config.data_dir={data_dir}",
                *where,
                *extra,
            ],
            cwd=ROOT,
            env=(
                {
                    **env,
                    "ZOO_FAULT": faults[i],
                    "ZOO_FAULT_FILE": os.path.join(workdir, f"{log}{i}.fault"),
                    "PYTHONPATH": os.pathsep.join([FAULTS, ROOT]),
                }
                if faults and i in faults
                else env
            ),
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(workdir, f"{log}{i}.log"), "a"),
        )
    )
  return processes


def finish(processes, workdir, log="process", timeout=600):
  for i, process in enumerate(processes):
    if process.wait(timeout=timeout):
      with open(os.path.join(workdir, f"{log}{i}.log")) as f:
        pytest.fail(f"process {i} exited with {process.returncode}: {f.read()[-3000:]}")


def assert_equal_up_to_reduction_order(one, two):
  """Metric logs equal up to the order of floating-point reductions (in-process against gloo's
  all-reduce)."""
  assert [r["step"] for r in one] == [r["step"] for r in two]
  for a, b in zip(one, two):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_allclose(a[key], b[key], rtol=1e-3, err_msg=key)


def assert_trained_by_two_processes_of_four_devices(workdir, num_steps):
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert results["steps"] == num_steps
  assert results["processes"] == 2 and results["devices"] == 4


@pytest.mark.slow  # the game's twin of the test below (which shares its runs with the kill)
def test_two_processes_of_two_devices_train_a_game_as_one_of_four(tmp_path, data_dir):
  config = zoo.get("wgan").default_config("smoke")
  config.data_dir = data_dir
  loop.train_and_evaluate(config, str(tmp_path / "one"))  # this process: 4 devices
  finish(launch(str(tmp_path / "two"), data_dir, "wgan"), str(tmp_path / "two"))
  assert_equal_up_to_reduction_order(read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two"))
  assert_trained_by_two_processes_of_four_devices(tmp_path / "two", config.num_steps)


@pytest.mark.slow  # ~1 min on 2 cores: one two-process launch of 300 steps
def test_a_pair_that_dispatches_many_steps_ahead_finishes(tmp_path, data_dir):
  """Between two logging points (300 steps apart here) the host dispatches steps ahead of the
  devices. Two steps in flight deadlocked XLA:CPU's gloo all-reduces: this run hung in 3 of 3
  tries, in about 35 s since the loop runs one step at a time on CPU processes."""
  workdir = str(tmp_path / "pair")
  keys = ("num_steps", "log_every", "eval_every", "checkpoint_every")
  processes = launch(workdir, data_dir, "maf", *(f"--config.{key}=300" for key in keys))
  try:
    finish(processes, workdir, timeout=240)
  finally:
    for process in processes:
      process.kill()
  assert_trained_by_two_processes_of_four_devices(workdir, 300)


class _LocalDevices:
  """`training.Devices`' batch placement without the devices: the process's part as it is."""

  def shard_batch(self, local_batch, leading_axes=0):
    del leading_axes
    return local_batch


def test_each_process_stacks_its_slice_of_the_games_global_batches(data_dir, monkeypatch):
  """What a game adds to a run of several processes (its step, sharded, is tested on 4 devices
  in test_wgan; the whole game on 2 processes is a slow test): every process stacks its own
  slice of the same batches, so that the slices laid side by side on the batch axis, after the
  replica and stack axes, are the one process's stack."""
  config = zoo.get("wgan").default_config("smoke")
  config.update(data_dir=data_dir, num_seeds=2)
  config = configs.finalize(config)
  dataset = feed.load_data(config)
  preprocessing = zoo.data.preprocessing(dataset, config.preprocess, config.alpha, 0.0)

  def batches(index, count):
    monkeypatch.setattr(jax, "process_index", lambda: index)
    monkeypatch.setattr(jax, "process_count", lambda: count)
    start = 1  # the last step of the smoke preset's burst (100 critic updates), and one of 5
    stream = feed.TrainFeed(
        dataset, preprocessing, config, _LocalDevices(), [5, 6], [{}, {}], start, training.GAME
    )
    windows = [stream.window(range(step, step + 1)) for step in range(start, start + 2)]
    return [jax.tree.map(lambda x: x[0], window) for window in windows]  # one step each

  alone, parts = batches(0, 1), [batches(i, 2) for i in (0, 1)]
  for step, whole in enumerate(alone):
    assert whole["x"].shape[:2] == (2, training.first_phase_updates_at(config, 1 + step))
    np.testing.assert_array_equal(
        np.concatenate([part[step]["x"] for part in parts], axis=2), whole["x"]
    )


# What JAX 0.10.2's runtime wrote, on loopback here, as it ended the survivor of a pair (its
# F line, cut): process 1 killed, then process 0, the coordinator.
ABORTS = {
    "lost process 1 of this run (it stopped sending heartbeats)": (
        b"F1203 18:05:22.938767    6756 client.h:80] Terminating process because the JAX "
        b"distributed service detected fatal errors. This most likely indicates that another "
        b"task died; see the other task logs for more details. absl::Status: UNAVAILABLE: The "
        b"following tasks are unhealthy (stopped sending heartbeats):\n1\nThe tasks have "
        b"crashed. Check the task logs for an earlier error\n*** Check failure stack trace: ***\n"
    ),
    "lost process 0 of this run (it ran the run's coordination service)": (
        b"F1203 18:07:46.562754    9045 client.h:80] Terminating process because the JAX "
        b"distributed service detected fatal errors. This most likely indicates that another "
        b"task died; see the other task logs for more details. absl::Status: UNAVAILABLE: "
        b"Failed to send RPC to coordination service. Either the leader task was "
        b"preempted/died/restarted unexpectedly or this task is experiencing network issues.\n"
    ),
}


@pytest.mark.parametrize("said", ABORTS)
def test_the_supervisor_names_the_lost_process_as_jaxs_runtime_reports_it(said):
  assert supervision._lost(ABORTS[said]) == said  # pylint: disable=protected-access


def _once_checkpointed_after(processes, workdir, step):
  """Wait until the run in `workdir` has saved a checkpoint after `step`; the time."""
  deadline, checkpoint_dir = time.time() + 300, os.path.join(workdir, "checkpoints")
  while time.time() < deadline and all(p.poll() is None for p in processes):
    steps = os.listdir(checkpoint_dir) if os.path.isdir(checkpoint_dir) else []
    if max((int(d) for d in steps if d.isdigit()), default=0) > step:
      break
    time.sleep(0.05)
  return time.time()


def _last_line(workdir, log, i):
  with open(os.path.join(workdir, f"{log}{i}.log")) as f:
    text = f.read()
  assert "Traceback" not in text and "stack trace" not in text, text[-3000:]
  return text.strip().splitlines()[-1]


@pytest.mark.slow  # 5-6 min on 2 cores: seven two-process launches
def test_two_processes_train_as_one_and_end_well_when_preempted_or_a_peer_dies(tmp_path, data_dir):
  """Two processes of two devices each, finding each other as a SLURM job step's tasks do,
  train as this process does on four devices. The same pair, told where process 0 is by flags,
  then meets a scheduler's notice sent to process 1 alone while the pair waits after its step-20
  checkpoint, so that the run cannot end first (both stop at the same step, step 25, with its
  checkpoint, exit 143; orbax's save had asked JAX's sync point about step 20, and the notice
  was lost when the loop counted its windows instead of its steps) and, resumed, the death of
  process 1 (process 0 ends within the heartbeat timeout with one line naming it, exit 75);
  resumed again, it ends as the uninterrupted pair, outside the logging window it was
  preempted in."""
  # windows of 5 steps: a notice needs a few of them to reach every process before the end
  settings = {"num_steps": 80, "checkpoint_every": 20, "log_every": 5, "eval_every": 40}
  flags = [f"--config.{key}={value}" for key, value in settings.items()]
  flags.append("--heartbeat_timeout=5")
  one, whole, faulted = (str(tmp_path / name) for name in ("one", "whole", "faulted"))
  config = zoo.get("maf").default_config("smoke")
  config.update(data_dir=data_dir, **settings)
  config.num_steps = 40  # rounding apart, the pair's first 40 steps (later, it is amplified)
  loop.train_and_evaluate(config, one)  # this process: 4 devices
  finish(launch(whole, data_dir, "maf", *flags, slurm=True), whole)
  assert_equal_up_to_reduction_order(
      [r for r in read_metrics(one) if not any(k.startswith("test/") for k in r)],
      [r for r in read_metrics(whole) if r["step"] <= config.num_steps],
  )
  assert_trained_by_two_processes_of_four_devices(whole, settings["num_steps"])

  processes = launch(faulted, data_dir, "maf", *flags, log="preempted", faults={1: "hold:20"})
  held = os.path.join(faulted, "preempted1.fault")
  _once_checkpointed_after(processes, faulted, 0)
  while not os.path.exists(f"{held}.held"):  # the pair waits for process 1's step-20 window
    assert all(p.poll() is None for p in processes), "the pair ended before step 20"
    time.sleep(0.05)
  processes[1].send_signal(signal.SIGTERM)  # the notice, at a known step: it cannot finish first
  time.sleep(1)  # for the supervisor to pass it on to its child (milliseconds)
  with open(f"{held}.release", "w"):
    pass
  assert [p.wait(timeout=120) for p in processes] == [143, 143]
  lines = [_last_line(faulted, "preempted", i) for i in (0, 1)]
  assert all(line.startswith("stopped by SIGTERM at step ") for line in lines), lines
  stopped = int(lines[0].split(" at step ")[1].split(",")[0])
  assert lines[0] == lines[1] and stopped == 25, lines
  assert zoo.checkpoints.manager(os.path.join(faulted, "checkpoints")).latest_step() == stopped

  processes = launch(faulted, data_dir, "maf", *flags, log="lost")
  _once_checkpointed_after(processes, faulted, stopped)
  processes[1].send_signal(signal.SIGKILL)  # its child, the trainer, dies with it
  killed = time.time()
  assert processes[0].wait(timeout=120) == 75
  assert time.time() - killed < 30  # the heartbeat timeout, 5 s, and the time to notice
  processes[1].wait()
  line = _last_line(faulted, "lost", 0)
  assert line.startswith("error: lost process 1 of this run") and "is kept in" in line, line
  assert read_metrics(faulted)[-1]["step"] < settings["num_steps"], "it finished first"

  finish(launch(faulted, data_dir, "maf", *flags), faulted)
  every = settings["log_every"]
  window = range(stopped - stopped % every + 1, stopped - stopped % every + every + 1)
  assert [r for r in read_metrics(faulted) if r["step"] not in window] == [
      r for r in read_metrics(whole) if r["step"] not in window
  ]
  with open(os.path.join(faulted, "results.json")) as f, open(
      os.path.join(whole, "results.json")
  ) as g:
    assert json.load(f)["test"] == json.load(g)["test"]


PAIR_RUN = (
    "--config.num_steps=60",
    "--config.checkpoint_every=20",
    "--config.log_every=5",
    "--config.eval_every=20",
    "--heartbeat_timeout=5",
)


@pytest.fixture(scope="module")
def uninterrupted_pair(tmp_path_factory, data_dir):
  """The workdir of PAIR_RUN trained by a pair without a fault."""
  workdir = str(tmp_path_factory.mktemp("pair") / "whole")
  finish(launch(workdir, data_dir, "maf", *PAIR_RUN), workdir)
  return workdir


def _statuses_of_a_pair_that_ends_as_one(processes) -> list[int]:
  """The exit statuses of a pair, once both ended within the heartbeat timeout (5 s) of each
  other (both are killed if they have not within 300 s)."""
  ended = {}
  deadline = time.time() + 300
  while len(ended) < 2 and time.time() < deadline:
    for i, process in enumerate(processes):
      if i not in ended and process.poll() is not None:
        ended[i] = time.time()
    time.sleep(0.05)
  for process in processes:
    process.kill()
  assert len(ended) == 2, "the pair did not end"
  assert max(ended.values()) - min(ended.values()) < 5
  return [process.returncode for process in processes]


@pytest.mark.slow  # ~1.5 min each on 2 cores: two two-process launches
@pytest.mark.parametrize("fault", ["feed", "feed_and_stay"])
def test_an_exception_in_one_process_ends_both_with_its_status_and_the_run_resumes(
    tmp_path, data_dir, uninterrupted_pair, fault
):
  """Process 1's data feed raises at step 30 while process 0 waits for it in the step's
  all-reduce (`feed`), or raises and a thread keeps it alive past its main thread
  (`feed_and_stay`): both hung until someone noticed (process 1's exit waited for process 0 in
  `jax.distributed.shutdown`, or for its thread). Now both end within the heartbeat timeout of
  each other, each with one line naming process 1 and its error, and the status of an error
  that is not a lost process (1, not 75); started again, the pair resumes from the step-20
  checkpoint and ends as the pair without the fault."""
  workdir = str(tmp_path / "run")
  processes = launch(workdir, data_dir, "maf", *PAIR_RUN, log="failed", faults={1: f"{fault}:30"})
  assert _statuses_of_a_pair_that_ends_as_one(processes) == [1, 1]
  lines = [_last_line(workdir, "failed", i) for i in (0, 1)]
  error = "OSError: injected: the data feed failed at step 30"
  assert lines[0].startswith(f"error: process 1 of this run failed: {error}; this process "), lines
  assert lines[1].startswith(f"error: {error} (in process 1 of this run; every process "), lines
  assert all("the last good checkpoint, step 20, is kept" in line for line in lines), lines
  finish(launch(workdir, data_dir, "maf", *PAIR_RUN), workdir)
  assert read_metrics(workdir) == read_metrics(uninterrupted_pair)


@pytest.mark.slow  # ~1 min on 2 cores: two two-process launches
def test_a_full_disk_on_one_host_stops_both_before_the_save(tmp_path, data_dir, uninterrupted_pair):
  """Process 1's file system has no room (its `os.statvfs` says so) while process 0's has:
  process 1's own check stops it before the step-40 save, and process 0 with it, each with one
  line naming process 1 and the room it lacks (exit status 2); with room again, the pair resumes
  from the step-20 checkpoint and ends as the pair that had room."""
  workdir = str(tmp_path / "run")
  processes = launch(workdir, data_dir, "maf", *PAIR_RUN, log="full", faults={1: "full_disk"})
  assert _statuses_of_a_pair_that_ends_as_one(processes) == [2, 2]
  lines = [_last_line(workdir, "full", i) for i in (0, 1)]
  room = "no room for the checkpoint at step 40 in "
  assert lines[0].startswith(f"error: process 1 of this run failed: {room}"), lines
  assert lines[1].startswith(f"error: {room}") and "(in process 1 of this run; " in lines[1], lines
  assert zoo.checkpoints.manager(os.path.join(workdir, "checkpoints")).latest_step() == 20
  finish(launch(workdir, data_dir, "maf", *PAIR_RUN), workdir)
  assert read_metrics(workdir) == read_metrics(uninterrupted_pair)

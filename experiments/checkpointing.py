"""A run's checkpoints (the layout of `zoo.checkpoints`): the latest train state, from which a
run started again resumes exactly, and each replica's best evaluation so far, from which its
final evaluation, images and `zoo.load` take the model."""

import contextlib
import fcntl
import json
import os
import shutil
import socket
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from experiments import logs
from zoo import checkpoints
from zoo import errors
from zoo import training

PROGRESS = "progress.json"  # the training seconds spent up to the last checkpoint
LOCK = "run.lock"  # held by the run training in the workdir (`workdir_lock`)
# Beside checkpoint <step>/: the size of each of its files once it is finished, so that a
# resume finds a truncated or missing file before orbax reads it (a read orbax abandons half
# done leaves tracebacks of its event loop on stderr, even when its error is caught).
SIZES = ".sizes.json"

# The config's top-level keys that a resumed run may change (with --allow_config_change): every
# step computes what it did (the model, data, optimiser and seeds are as they were); only how
# long the run trains, how often it logs, evaluates and checkpoints, and what it measures and
# draws at the end differ.
RESUMABLE_CHANGES = (
    "num_steps",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "early_stopping_patience",
    "eval_batch_size",
    "gradient_statistics_draws",
    "num_images",
    "figures",
    "scores",
    "disentanglement",
    "data_dir",
)


@contextlib.contextmanager
def workdir_lock(workdir: str, is_writer: bool = True):
  """Hold `workdir` for this run while it trains: a second run started on it is refused with one
  `UserError` naming the holder. The lock is the kernel's (flock on LOCK), released however the
  holding process ends, so a crashed run leaves nothing stuck; it holds across the hosts of a
  shared file system that supports flock (NFSv4; Lustre mounted with `flock`). Only the writing
  process of a multi-process run takes it."""
  if not is_writer:
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, LOCK), "a+") as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      lock.seek(0)
      holder = lock.read().strip() or "another run"
      raise errors.UserError(
          f"{workdir} is in use by {holder}; wait for it to end or train into another workdir"
      ) from None
    lock.seek(0)
    lock.truncate()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    lock.write(f"the run of process {os.getpid()} on {socket.gethostname()} (since {started})")
    lock.flush()
    yield


def has_checkpoint(workdir: str) -> bool:
  """Whether the run in `workdir` has saved a train state (orbax names a finished step's
  directory by the step alone)."""
  path = os.path.join(workdir, checkpoints.CHECKPOINTS)
  return os.path.isdir(path) and any(name.isdigit() for name in os.listdir(path))


def check_config(workdir: str, config: dict, allow_changes: bool = False) -> None:
  """Refuse to resume the run in `workdir` with a config other than its config.json: one
  `UserError` naming each changed key. With `allow_changes` a run continues where only
  `RESUMABLE_CHANGES` changed. A workdir with no checkpoint has trained nothing to keep."""
  path = os.path.join(workdir, checkpoints.CONFIG)
  if not has_checkpoint(workdir) or not os.path.exists(path):
    return
  with open(path) as f:
    saved = _flat(json.load(f))
  wanted = _flat(json.loads(json.dumps(config)))  # as config.json holds it: tuples as lists
  changed = sorted(
      k for k in set(saved) | set(wanted) if saved.get(k, "unset") != wanted.get(k, "unset")
  )
  if not changed:
    return
  fixed = [k for k in changed if k.split(".")[0] not in RESUMABLE_CHANGES]
  if allow_changes and not fixed:
    return
  what = ", ".join(f"{k} {saved.get(k, 'unset')} -> {wanted.get(k, 'unset')}" for k in changed)
  if fixed:
    advice = (
        f"{', '.join(fixed)} cannot change in a resumed run (only "
        f"{', '.join(RESUMABLE_CHANGES)} can): train into a new workdir"
    )
  else:
    advice = "pass --allow_config_change to continue with these changes, or use a new workdir"
  raise errors.UserError(f"{workdir} holds a run trained with another config ({what}); {advice}")


def _flat(tree: dict, prefix: str = "") -> dict:
  """A nested dict's leaves by dotted key."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flat(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


class Checkpoints:
  """The latest and the best checkpoints of the run in `workdir`, of `num_replicas` replicas.

  `best_variables`, `best_value` and `best_step` are each replica's best evaluation so far
  (None, -inf and -1 where there has been none); `update_best` records a new evaluation.
  """

  def __init__(self, workdir: str, devices: training.Devices, num_replicas: int, is_writer: bool):
    self.workdir, self.devices, self.is_writer = workdir, devices, is_writer
    self.latest = checkpoints.manager(os.path.join(workdir, checkpoints.CHECKPOINTS), max_to_keep=2)
    self.best = checkpoints.manager(os.path.join(workdir, checkpoints.BEST), max_to_keep=1)
    self.start_step = self.latest.latest_step() or 0
    if self.best.latest_step() is None:
      self.best_variables = None
      self.best_value = np.full(num_replicas, -np.inf, np.float32)
      self.best_step = np.full(num_replicas, -1)
    else:
      saved = devices.restore(self.best, self.best.latest_step())
      self.best_variables = saved["variables"]
      self.best_value, self.best_step = np.asarray(saved["value"]), np.asarray(saved["step"])

  def resume(self, state: training.TrainState) -> training.TrainState:
    """The state of the latest checkpoint, which must have the arrays of `state`; `state`
    itself where there is none. A checkpoint that does not fit is refused before it is read
    (a read that orbax abandons half done leaves callbacks to an event loop it has closed)."""
    if not self.start_step:
      return state
    damage = self._damage(self.start_step)
    if damage:
      raise self._unreadable(damage)
    difference = _first_difference(
        ocp.tree.to_flat_dict(self.latest.item_metadata(self.start_step).tree),
        ocp.tree.to_flat_dict(state),
    )
    if difference:
      raise errors.UserError(
          f"the checkpoint at step {self.start_step} in {self.latest.directory} does not fit "
          f"this config (a different model, num_seeds or zoo version wrote it; {difference}); "
          f"train into a new workdir"
      )
    return self.latest.restore(self.start_step, args=ocp.args.StandardRestore(state))

  def seconds_trained(self) -> float:
    """The wall-clock seconds the run had trained when it saved the checkpoint it resumes
    from, so that a resumed run reports its whole training time."""
    path = os.path.join(self.workdir, PROGRESS)
    if not self.start_step or not os.path.exists(path):
      return 0.0
    with open(path) as f:
      progress = json.load(f)
    return progress["train_seconds"] if progress["step"] == self.start_step else 0.0

  def update_best(self, step: int, values: np.ndarray, active: np.ndarray, variables) -> None:
    """Record the evaluation `values` (one per replica, larger is better) at `step`: the
    active replicas that improved keep `variables` as their best, saved to `best/`."""
    values = values.astype(np.float32)  # as saved, so that a resumed run ranks as the first
    improved = active & (values > self.best_value)  # False for NaN: models that report neither
    if not improved.any():
      return
    self.best_value = np.where(improved, values, self.best_value)
    self.best_step = np.where(improved, step, self.best_step)
    self.best_variables = jax.jit(training.select_replicas)(
        improved, variables, variables if self.best_variables is None else self.best_variables
    )
    self.best.save(
        step,
        args=ocp.args.StandardSave(
            {
                "variables": self.best_variables,
                "value": self.devices.replicate(self.best_value),
                "step": self.devices.replicate(self.best_step),
            }
        ),
    )

  def _sizes_path(self, step: int) -> str:
    return os.path.join(self.latest.directory, f"{step}{SIZES}")

  def _record_sizes(self) -> None:
    """Wait for the saves in flight, then write the size of every file of each finished
    checkpoint that has no record yet (and drop the records of checkpoints orbax removed)."""
    self.latest.wait_until_finished()
    if not self.is_writer:
      return
    directory = str(self.latest.directory)
    if not os.path.isdir(directory):
      return
    steps = set(self.latest.all_steps(read=True))
    for name in os.listdir(directory):
      if name.endswith(SIZES) and int(name[: -len(SIZES)]) not in steps:
        os.remove(os.path.join(directory, name))
    for step in sorted(steps):
      root = os.path.join(directory, str(step))
      if os.path.exists(self._sizes_path(step)) or not os.path.isdir(root):
        continue
      sizes = {
          os.path.relpath(os.path.join(folder, name), root): os.path.getsize(
              os.path.join(folder, name)
          )
          for folder, _, names in os.walk(root)
          for name in names
      }
      logs.write_json(self._sizes_path(step), sizes)

  def _damage(self, step: int) -> str | None:
    """What is missing or cut short in checkpoint `step`, by its size record (None where it
    is whole, or has no record: a run killed between a save and its record)."""
    if not os.path.exists(self._sizes_path(step)):
      return None
    with open(self._sizes_path(step)) as f:
      sizes = json.load(f)
    root = os.path.join(self.latest.directory, str(step))
    for name, size in sorted(sizes.items()):
      path = os.path.join(root, name)
      if not os.path.exists(path):
        return f"{name} is missing"
      if os.path.getsize(path) != size:
        return f"{name} holds {os.path.getsize(path)} of its {size} bytes"
    return None

  def _unreadable(self, damage: str) -> errors.UserError:
    """The error of a latest checkpoint that is damaged: it is moved aside, to
    `<step>.unreadable` (which orbax does not take for a step), so that the run started again
    resumes from the checkpoint before it."""
    step = self.start_step
    path = os.path.join(self.latest.directory, str(step))
    if self.is_writer:
      shutil.rmtree(f"{path}.unreadable", ignore_errors=True)  # an earlier damage of this step
      os.replace(path, f"{path}.unreadable")
      os.remove(self._sizes_path(step))
    older = [s for s in self.latest.all_steps(read=True) if s < step]
    then = f"resumes from step {max(older)}" if older else "starts from step 0"
    return errors.UserError(
        f"the checkpoint at step {step} in {self.latest.directory} is damaged ({damage}); it is "
        f"moved to {step}.unreadable, and the same command started again {then}"
    )

  def save(self, step: int, state: training.TrainState, train_seconds: float) -> None:
    """Checkpoint `state` at `step`, with the training seconds spent so far; the checkpoint
    before it, finished, has its files' sizes recorded."""
    self._record_sizes()
    self.latest.save(step, args=ocp.args.StandardSave(state), force=True)
    if self.is_writer:
      logs.write_json(
          os.path.join(self.workdir, PROGRESS), {"step": step, "train_seconds": train_seconds}
      )

  def kept(self) -> str:
    """What a run that stops now keeps, in words."""
    if self.latest.latest_step():
      return (
          f"the last good checkpoint, step {self.latest.latest_step()}, is kept in "
          f"{self.latest.directory}"
      )
    return "no checkpoint was written yet"

  def close(self) -> None:
    """Wait for the saves in flight and record them, then release the managers' threads and
    event loops."""
    self._record_sizes()
    self.latest.close()
    self.best.close()


def _first_difference(saved: dict, wanted: dict) -> str | None:
  """The first array of the flat trees `saved` and `wanted` that differs, in words."""
  for path in sorted(set(saved) | set(wanted)):
    name = "/".join(map(str, path))
    if path not in wanted:
      return f"{name} is only in the checkpoint"
    if path not in saved:
      return f"{name} is not in the checkpoint"
    was, now = saved[path], wanted[path]
    if (tuple(was.shape), was.dtype) != (tuple(now.shape), now.dtype):
      return f"{name} is {was.dtype}{list(was.shape)} there, {now.dtype}{list(now.shape)} here"
  return None

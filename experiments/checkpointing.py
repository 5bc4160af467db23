"""A run's checkpoints (the layout of `zoo.checkpoints`): the latest train state, from which a
run started again resumes exactly, and each replica's best evaluation so far, from which its
final evaluation, images and `zoo.load` take the model."""

import contextlib
import fcntl
import json
import os
import shutil
import socket
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from experiments import logs
from zoo import checkpoints
from zoo import configs
from zoo import errors
from zoo import training

# The training seconds spent up to the last complete checkpoint, written once it is complete
# from what the checkpoint itself records (`Checkpoints.save`).
PROGRESS = "progress.json"
LOCK = "run.lock"  # held by the run training in the workdir (`workdir_lock`)
# Beside checkpoint <step>/: the size of each of its files once it is finished, so that a
# resume finds a truncated or missing file before orbax reads it (a read orbax abandons half
# done leaves tracebacks of its event loop on stderr, even when its error is caught).
SIZES = ".sizes.json"
ROOM_TO_SPARE = 2**20  # bytes a save leaves free beside its checkpoint: the logs' next lines

# The config's top-level keys that a resumed run may change (with --allow_config_change): every
# step computes what it did (the model, data, optimiser and seeds are as they were); only how
# long the run trains, how often it logs, evaluates and checkpoints, and what it measures and
# draws at the end differ.
RESUMABLE_CHANGES = (
    "num_steps",
    "log_every",
    "eval_every",
    "eval_every_epochs",
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
  process of a multi-process run takes it. Not `filelock`: the zoo does not depend on it, and
  where flock is missing it falls back to a lock file that a crashed run leaves behind."""
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


def saved_steps(workdir: str) -> list[int]:
  """The steps at which the run in `workdir` has saved a train state, in order (orbax names a
  finished step's directory by the step alone)."""
  path = os.path.join(workdir, checkpoints.CHECKPOINTS)
  return (
      sorted(int(name) for name in os.listdir(path) if name.isdigit())
      if os.path.isdir(path)
      else []
  )


def kept(workdir: str) -> str:
  """What the run in `workdir`, stopped, keeps, in words (its finished checkpoints)."""
  steps = saved_steps(workdir)
  return _kept(os.path.join(workdir, checkpoints.CHECKPOINTS), steps[-1] if steps else None)


def _kept(directory: str, step: int | None) -> str:
  if step is None:
    return "no checkpoint was written yet"
  return f"the last good checkpoint, step {step}, is kept in {directory}"


def check_config(workdir: str, config: dict, allow_changes: bool = False) -> None:
  """Refuse to resume the run in `workdir` with a config other than its config.json: one
  `UserError` naming each changed key. With `allow_changes` a run continues where only
  `RESUMABLE_CHANGES` changed. A workdir with no checkpoint has trained nothing to keep."""
  path = os.path.join(workdir, checkpoints.CONFIG)
  if not saved_steps(workdir) or not os.path.exists(path):
    return
  with open(path) as f:
    saved = _without_later_defaults(configs.flat(json.load(f)))
  wanted = _without_later_defaults(
      configs.flat(json.loads(json.dumps(config)))
  )  # as config.json: tuples as lists
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


# The step counts a run derives from `eval_every_epochs` (`zoo.configs.in_steps`), which its
# config.json holds derived and its command line does not.
DERIVED_FROM_EPOCHS = ("eval_every", "log_every", "checkpoint_every")


# Fields added after runs had trained, at the value those runs trained with.
LATER_DEFAULTS = {"eval_every_epochs": 0, "model.activation": "relu"}


def _without_later_defaults(flat: dict) -> dict:
  """A flat config as two runs of it compare: without the fields a run from before them trained
  without (the `replicas` fields that sweep nothing, LATER_DEFAULTS at their values), without
  the `preset` label, and without the step counts that epochs set (DERIVED_FROM_EPOCHS, where
  `eval_every_epochs` is on)."""
  epochs = flat.get("eval_every_epochs", 0)
  return {
      k: v
      for k, v in flat.items()
      if not (
          (k.startswith("replicas.") and v == [])
          or (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])
          or k == "preset"
          or (epochs and k in DERIVED_FROM_EPOCHS)
      )
  }


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
    best = self.best.latest_step()
    damage = best is not None and _damage(self.best, best)
    if damage:
      self._set_aside(self.best, best)
      self.close()
      raise errors.UserError(
          f"the best checkpoint, of step {best}, in {self.best.directory} is damaged ({damage}); "
          f"it is moved to {best}.unreadable, and the same command started again resumes "
          f"without it, choosing each replica's best model among the evaluations to come"
      )
    if best is None:
      self.best_variables = None
      self.best_value = np.full(num_replicas, -np.inf, np.float32)
      self.best_step = np.full(num_replicas, -1)
    else:
      saved = devices.restore(self.best, best)
      self.best_variables = saved["variables"]
      self.best_value, self.best_step = np.asarray(saved["value"]), np.asarray(saved["step"])

  def resume(self, state: training.TrainState) -> training.TrainState:
    """The state of the latest checkpoint, which must have the arrays of `state`; `state`
    itself where there is none. A checkpoint that does not fit is refused before it is read
    (a read that orbax abandons half done leaves callbacks to an event loop it has closed).
    One whose size record finds it damaged, or that cannot be read (a run killed between its
    save and its record leaves it unrecorded), is set aside with one line."""
    if not self.start_step:
      return state
    damage = _damage(self.latest, self.start_step)
    try:
      if not damage:
        difference = _first_difference(
            ocp.tree.to_flat_dict(self.latest.item_metadata(self.start_step).tree),
            ocp.tree.to_flat_dict(state),
        )
        if difference:
          raise errors.UserError(
              f"the checkpoint at step {self.start_step} in {self.latest.directory} does not "
              f"fit this config (a different model, num_seeds, replicas or zoo version wrote "
              f"it; {difference}); train into a new workdir"
          )
        return self.latest.restore(self.start_step, args=ocp.args.StandardRestore(state))
    except (errors.UserError, MemoryError, jax.errors.JaxRuntimeError):
      raise  # a config that does not fit, or no memory for it: not the checkpoint's fault
    except Exception as e:  # pylint: disable=broad-except: whatever reading it raised
      damage = f"unreadable: {_reason(e)}"
      _silence_abandoned_reads()
    self._set_aside(self.latest, self.start_step)
    self.latest.reload()
    older = [s for s in self.latest.all_steps() if s < self.start_step]
    then = f"resumes from step {max(older)}" if older else "starts from step 0"
    raise errors.UserError(
        f"the checkpoint at step {self.start_step} in {self.latest.directory} is damaged "
        f"({damage}); it is moved to {self.start_step}.unreadable, and the same command "
        f"started again {then}"
    )

  def seconds_trained(self) -> float:
    """The wall-clock seconds the run had trained when it saved the checkpoint it resumes
    from, so that a resumed run reports its whole training time."""
    if not self.start_step:
      return 0.0
    recorded = _train_seconds(self.latest, self.start_step)
    if recorded is not None:
      return recorded
    path = os.path.join(self.workdir, PROGRESS)  # a checkpoint saved before they recorded it
    if not os.path.exists(path):
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
    self._check_room(step)
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

  def _finished(self, manager: ocp.CheckpointManager) -> None:
    """Wait for `manager`'s save in flight. One that failed (a full disk, a quota, a file size
    limit: orbax's threads raise the write's error) is a `UserError` saying what is kept."""
    try:
      manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except: whatever the write raised
      raise errors.UserError(
          f"a checkpoint could not be written in {manager.directory} ({_reason(e)}); "
          f"{kept(self.workdir)}: make room and run the same command again to resume"
      ) from None

  def _check_room(self, step: int) -> None:
    """Refuse a save at `step` that the disk has no room for, before orbax writes anything (a
    write orbax abandons half done leaves tracebacks of its threads on stderr, even when its
    error is caught): room for a checkpoint as large as the last one, in whole blocks, and
    ROOM_TO_SPARE. The first save, before any size is recorded, is not checked. Every process
    of a run checks the disk it writes its shards to, against the size the writing process
    read from its record (the others could look before the record is written: a process whose
    disk was full then saved unchecked); one that lacks room stops them all
    (`supervision.failures_end_the_run`)."""
    disk = os.statvfs(self.workdir)
    needed = 0
    recorded = [s for s in self.latest.all_steps() if os.path.exists(_sizes_path(self.latest, s))]
    if self.is_writer and recorded:
      with open(_sizes_path(self.latest, max(recorded))) as f:
        needed = sum(-(-size // disk.f_bsize) * disk.f_bsize for size in json.load(f).values())
    if jax.process_count() > 1:  # in KiB: an int32, as JAX broadcasts it, holds 2 TiB
      needed = int(multihost_utils.broadcast_one_to_all(np.int32(-(-needed // 1024)))) * 1024
    if not needed:
      return
    free = disk.f_bavail * disk.f_frsize
    if free < needed + ROOM_TO_SPARE:
      raise errors.UserError(
          f"no room for the checkpoint at step {step} in {self.workdir}: it needs about "
          f"{needed / 2**20:.2f} MiB and {ROOM_TO_SPARE / 2**20:.2f} MiB to spare, "
          f"{free / 2**20:.2f} MiB are free; {self.kept()}: make room and run the same "
          f"command again to resume"
      )

  def _record_finished(self) -> None:
    """Wait for the saves in flight, then write the size of every file of each finished
    checkpoint, latest and best, that has no record yet (and drop the records of checkpoints
    orbax removed), and PROGRESS for the latest."""
    self._finished(self.latest)
    self._finished(self.best)
    if not self.is_writer:
      return
    for manager in (self.latest, self.best):
      directory = str(manager.directory)
      if not os.path.isdir(directory):
        continue
      manager.reload()
      steps = set(manager.all_steps())
      for name in os.listdir(directory):
        if name.endswith(SIZES) and int(name[: -len(SIZES)]) not in steps:
          os.remove(os.path.join(directory, name))
      for step in sorted(steps):
        root = os.path.join(directory, str(step))
        if os.path.exists(_sizes_path(manager, step)) or not os.path.isdir(root):
          continue
        sizes = {
            os.path.relpath(os.path.join(folder, name), root): os.path.getsize(
                os.path.join(folder, name)
            )
            for folder, _, names in os.walk(root)
            for name in names
        }
        logs.write_json(_sizes_path(manager, step), sizes)
    last = self.latest.latest_step()
    seconds = None if last is None else _train_seconds(self.latest, last)
    if seconds is not None:
      logs.write_json(
          os.path.join(self.workdir, PROGRESS), {"step": last, "train_seconds": seconds}
      )

  def _set_aside(self, manager: ocp.CheckpointManager, step: int) -> None:
    """Move checkpoint `step` of `manager` to `<step>.unreadable` (which orbax does not take
    for a step; an earlier one of the same step is replaced)."""
    if self.is_writer:
      path = os.path.join(manager.directory, str(step))
      shutil.rmtree(f"{path}.unreadable", ignore_errors=True)
      os.replace(path, f"{path}.unreadable")
      with contextlib.suppress(FileNotFoundError):  # a checkpoint without its record
        os.remove(_sizes_path(manager, step))

  def save(self, step: int, state: training.TrainState, train_seconds: float) -> None:
    """Checkpoint `state` at `step`, with the training seconds spent so far in the checkpoint's
    own metadata, written in its atomic commit; the checkpoint before it, finished, has its
    files' sizes and PROGRESS recorded."""
    self._record_finished()
    self._check_room(step)
    self.latest.save(
        step,
        args=ocp.args.StandardSave(state),
        force=True,
        custom_metadata={"train_seconds": train_seconds},
    )

  def kept(self) -> str:
    """What the run keeps if it stops now, in words: the save in flight, finished on `close`,
    included."""
    return _kept(str(self.latest.directory), self.latest.latest_step())

  def close(self) -> None:
    """Wait for the saves in flight and record them, then release the managers' threads and
    event loops (after a save that failed too)."""
    try:
      self._record_finished()
    finally:
      for manager in (self.latest, self.best):
        with contextlib.suppress(Exception):  # the failed save's error, raised again
          manager.close()


def _train_seconds(manager: ocp.CheckpointManager, step: int) -> float | None:
  """The training seconds checkpoint `step` of `manager` records (None for one saved before
  checkpoints recorded them)."""
  return manager.metadata(step).custom_metadata.get("train_seconds")


def _sizes_path(manager: ocp.CheckpointManager, step: int) -> str:
  return os.path.join(manager.directory, f"{step}{SIZES}")


def _damage(manager: ocp.CheckpointManager, step: int) -> str | None:
  """What is missing or cut short in checkpoint `step` of `manager`, by its size record (None
  where it is whole, or has no record: a run killed between a save and its record)."""
  if not os.path.exists(_sizes_path(manager, step)):
    return None
  with open(_sizes_path(manager, step)) as f:
    sizes = json.load(f)
  root = os.path.join(manager.directory, str(step))
  for name, size in sorted(sizes.items()):
    path = os.path.join(root, name)
    if not os.path.exists(path):
      return f"{name} is missing"
    if os.path.getsize(path) != size:
      return f"{name} holds {os.path.getsize(path)} of its {size} bytes"
  return None


def _reason(error: Exception) -> str:
  """An error in a few words: the system's for an OSError ("No space left on device"), else
  its message's first line, without the TensorStore spec that orbax's read errors append."""
  if isinstance(error, OSError) and error.strerror:
    return error.strerror
  first = (str(error).splitlines() or [""])[0]
  return first.split(". See full TensorStore")[0] or type(error).__name__


def _silence_abandoned_reads() -> None:
  """Keep quiet the reads of a checkpoint that orbax abandons when one of them fails: each
  coroutine still reading raises its own error as it is collected, which Python prints as
  "Exception ignored in" with a traceback (`sys.unraisablehook`). Others still print."""
  previous = sys.unraisablehook

  def hook(unraisable):
    code = getattr(unraisable.object, "cr_code", None)
    if code is None or f"{os.sep}orbax{os.sep}" not in code.co_filename:
      previous(unraisable)

  sys.unraisablehook = hook


def _first_difference(saved: dict, wanted: dict) -> str | None:
  """The first array of the flat trees `saved` and `wanted` that differs, in words (where the
  trees' keys differ, chex's tree assertions print both structures over several lines instead)."""
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

"""Ending a run on a scheduler's notice: SIGTERM (what SLURM and preemptible TPU VMs send before
they kill) or SIGINT stops the run at a step that every process agrees on, after a checkpoint
at that step, so that the next start resumes exactly where it stopped.

One process notes the signal itself. Several agree on the step through JAX's preemption sync
point (`multihost_utils.reached_preemption_sync_point`): its service, started with the
distributed runtime, catches SIGTERM in any process and has all of them stop at the call after
the furthest any had made. SIGINT is passed on to it as SIGTERM: the process that was sent
Ctrl-C ends with SIGINT's status (130), the others with SIGTERM's (143). Its calls are counted
by step, every step, because orbax's `CheckpointManager.save` asks it too, about the step it
saves: with the loop's windows counted instead, a notice after a save set the stop at the saved
step + 1, a count the windows never reached, and the run did not stop.
"""

import os
import signal
import threading

import jax
from jax.experimental import multihost_utils


class Preempted(Exception):
  """The run stopped on a notice, its checkpoint at the step it stopped saved. Its exit status
  is the shell's for the signal, 128 + its number: 143 for SIGTERM, which requeueing wrappers
  (SLURM's `--requeue` scripts, Kubernetes' pod failure policies) read as "preempted", and 130
  for SIGINT, a person's Ctrl-C, which they must not requeue."""

  def __init__(self, message: str, signal_name: str):
    super().__init__(message)
    self.exit_status = 128 + signal.Signals[signal_name]


class Notice:
  """`reached()`: whether the run stops here, with the same answer in every process; every
  process asks at the same points (the ends of the loop's compiled windows).

  A context manager: the signal handlers are this run's while it trains (only where it runs on
  the main thread, the only one Python delivers signals to), the earlier ones afterwards.
  """

  def __init__(self, start_step: int = 0):
    self.signal_name: str | None = None
    self._previous: dict = {}
    self._asked = start_step  # the last step JAX's sync point was asked about

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      several = jax.process_count() > 1
      for signum in (signal.SIGINT,) if several else (signal.SIGTERM, signal.SIGINT):
        self._previous[signum] = signal.signal(signum, self._noted)
    return self

  def __exit__(self, *_):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def _noted(self, signum, frame):
    del frame
    if self.signal_name and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C: stop now, keeping the last checkpoint
    self.signal_name = signal.Signals(signum).name
    if jax.process_count() > 1:  # JAX's service catches SIGTERM and tells every process
      os.kill(os.getpid(), signal.SIGTERM)

  def reached(self, step: int) -> bool:
    """Whether the run, having trained up to `step`, stops there."""
    if jax.process_count() > 1:
      # JAX's sync point is a count of the calls: the service stops all processes at the call
      # after the furthest any has made. Asked about every step the window trained, each
      # process meets it in the same window, which ends at the same step everywhere.
      asked = range(self._asked + 1, step + 1)
      self._asked = step
      # a list, not a generator: every step is asked, past the one that is reached too
      if any([multihost_utils.reached_preemption_sync_point(s) for s in asked]):
        self.signal_name = self.signal_name or "SIGTERM"
        return True
      return False
    return self.signal_name is not None

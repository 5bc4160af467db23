"""Each process of a multi-process run trains under a supervisor: the same command, started
again as its child, whose stderr it relays.

When a process of the run dies, JAX's distributed runtime ends every other one: within its
heartbeat timeout where the lost process was a peer, at once where it was process 0 (which
runs the coordination service). It ends them with an abort: E and F log lines, a C++ stack
trace, and often a Python traceback from the collective that broke. The runtime gives Python
no say (jaxlib 0.10 accepts a `missed_heartbeat_callback` but fails converting the status it
passes: `std::bad_cast`). So the supervisor holds the child's stderr back from its first
warning or error line on; if the child ends in that abort, it says in one line which process
was lost and exits with `LOST_PEER`; otherwise it writes what it held and exits with the
child's status.

A process that fails while the others wait for it in a collective (a data error, a `UserError`
on one host only, an out-of-memory) would hold them there until someone noticed, and itself
too: Python's exit waits in `jax.distributed.shutdown` for the others. So each child trains
inside `failures_end_the_run`: a process that raises says so to the others through the
coordination service's key-value store and exits at once with its status; every other process
watches that key, says which process failed and why in one line, and exits with the same
status (2 a mistake, 3 a diverged loss, 1 anything else, 130 a Ctrl-C outside training; one
while it trains is a notice, 130 where it was pressed and 143 elsewhere): not 75, which invites
a scheduler to requeue the job.
"""

import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import jax

from experiments import preemption
from zoo import errors

SUPERVISED = "ZOO_SUPERVISED"  # in the child's environment
# sysexits' EX_TEMPFAIL, "a temporary failure; the user is invited to retry": requeue the job.
LOST_PEER = 75
_ABORT = b"Terminating process because the JAX distributed service detected fatal errors"
# The first line of what the supervisor holds back: a W, E or F line of JAX's C++ runtime
# (absl's "E1203 18:05:22.937799 6745 file.cc:1549] "; a lost coordinator's first is a W) or a
# Python traceback.
_HELD_FROM = re.compile(rb"^([WEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] |Traceback )")
_UNHEALTHY = re.compile(rb"stopped sending heartbeats\):\s*(.*?)\s*The tasks", re.DOTALL)


def is_supervised() -> bool:
  """Whether this process is a supervisor's child."""
  return os.environ.get(SUPERVISED) == "1"


def supervise(argv: list[str], kept: Callable[[], str]) -> int:
  """Run `python -m experiments.run argv[1:]` as a child and relay its stderr; its exit status,
  or `LOST_PEER` with one line (ending with `kept()`: what the run keeps) where JAX's runtime
  ended it for a lost process. SIGTERM is passed on to the child; SIGINT is not (a terminal's
  Ctrl-C reaches the child itself, which shares the supervisor's process group); the child is
  killed with the supervisor."""
  child = subprocess.Popen(
      [sys.executable, "-m", "experiments.run", *argv[1:]],
      env={**os.environ, SUPERVISED: "1"},
      stderr=subprocess.PIPE,
      preexec_fn=_die_with_parent,
  )
  signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # after the start: the child would inherit it
  assert child.stderr is not None
  held: list[bytes] = []
  for line in child.stderr:
    if held or _HELD_FROM.match(line):
      held.append(line)
    else:
      sys.stderr.buffer.write(line)
      sys.stderr.flush()
  status = child.wait()
  text = b"".join(held)
  if _ABORT in text:
    print(
        f"error: {_lost(text)}; this process stopped too, and {kept()}; start all of the "
        f"run's processes again to resume",
        file=sys.stderr,
    )
    return LOST_PEER
  sys.stderr.buffer.write(text)
  return 128 - status if status < 0 else status


def _lost(text: bytes) -> str:
  """Which process JAX's runtime found lost, in words, from what it wrote."""
  unhealthy = _UNHEALTHY.search(text)
  if unhealthy:
    ids = re.findall(rb"task:(\d+)", unhealthy[1]) or re.findall(rb"\d+", unhealthy[1])
    processes = ", ".join(i.decode() for i in ids)
    return f"lost process {processes} of this run (it stopped sending heartbeats)"
  if b"leader task" in text:
    return "lost process 0 of this run (it ran the run's coordination service)"
  return "lost another process of this run"


def _die_with_parent() -> None:
  """In the child, before it starts: be killed when the supervisor dies (Linux), so that a
  `kill -9` of the command a scheduler started leaves no trainer behind."""
  if sys.platform == "linux":
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


FAILED = "zoo/failed"  # the key the first failing process sets: its index, status and words
_SEEN = "zoo/failed_seen/"  # + a process's index: set once it has read FAILED and is ending
_POLL_SECONDS = 0.2


def _client():
  """This process's client of JAX's coordination service (`jax.distributed.initialize`'s; JAX
  has no public name for it)."""
  from jax._src import distributed  # pylint: disable=import-outside-toplevel

  return distributed.global_state.client


def _described(error: BaseException) -> tuple[str, int]:
  """An exception in a few words, and the exit status it ends the run with."""
  if isinstance(error, errors.UserError):
    return str(error), error.exit_status
  if isinstance(error, KeyboardInterrupt):
    return "interrupted (Ctrl-C)", 130
  first = (str(error).splitlines() or [""])[0]
  return f"{type(error).__name__}: {first}" if first else type(error).__name__, 1


def _end(line: str, status: int) -> None:
  """Say `line` and end this process now, without Python's exit (which would wait for the
  other processes in `jax.distributed.shutdown`)."""
  print(line, file=sys.stderr)
  sys.stderr.flush()
  sys.stdout.flush()
  os._exit(status)  # pylint: disable=protected-access


def _end_with(failure: dict, kept: Callable[[], str]) -> None:
  """End this process as one that another's `failure` stopped."""
  _client().key_value_set(f"{_SEEN}{jax.process_index()}", "1")
  _end(
      f"error: process {failure['process']} of this run failed: {failure['what']}; this process "
      f"stopped too, and {kept()}",
      failure["status"],
  )


@contextlib.contextmanager
def failures_end_the_run(kept: Callable[[], str], wait_seconds: float):
  """Run the body (a process's training) so that an exception in it ends every process of the
  run, each with one line, where it would leave the others waiting in a collective.

  Args:
    kept: what the run keeps, in words (`checkpointing.kept`).
    wait_seconds: how long a failing process waits for the others to read its failure before
      it ends regardless (the heartbeat timeout: a process that never reads it is lost).
  """
  client, me = _client(), jax.process_index()
  stop = threading.Event()

  def watch():
    """End this process once another has failed."""
    while not stop.wait(_POLL_SECONDS):
      try:
        failure = json.loads(client.key_value_try_get(FAILED))
      except jax.errors.JaxRuntimeError:  # not set
        continue
      if failure["process"] != me:
        _end_with(failure, kept)

  watcher = threading.Thread(target=watch, daemon=True)
  watcher.start()
  try:
    yield
  except preemption.Preempted:
    raise  # every process stops at the same step on its own
  except BaseException as error:  # pylint: disable=broad-except: any failure ends them all
    what, status = _described(error)
    try:
      client.key_value_set(FAILED, json.dumps({"process": me, "what": what, "status": status}))
    except jax.errors.JaxRuntimeError:  # another process failed first: this one's is its echo
      _end_with(json.loads(client.key_value_try_get(FAILED)), kept)
    deadline = time.monotonic() + wait_seconds
    for other in range(jax.process_count()):
      left_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
      if other != me and left_ms:
        with contextlib.suppress(jax.errors.JaxRuntimeError):  # lost, or too slow to read it
          client.blocking_key_value_get(f"{_SEEN}{other}", left_ms)
    _end(
        f"error: {what} (in process {me} of this run; every process stopped, and {kept()})", status
    )
  finally:
    stop.set()
    watcher.join()

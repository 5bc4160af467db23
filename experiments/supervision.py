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
"""

import ctypes
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable

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

"""How long the survivor of a two-process run takes to end once the other process is lost:
seconds from the `kill -9` of one process (its supervisor, and with it its trainer) to the
other's exit, with its exit status and last line. Both run `make run`'s MAF on 2 CPU devices
each, over loopback, at the default --heartbeat_timeout.

  python -m benchmarks.lost_process 1 0    # kill process 1, then (a new pair) process 0
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def seconds_to_end(victim: int, workdir: str, data_dir: str) -> tuple[float, int, str]:
  """(seconds from the kill of process `victim` to the other's exit, its exit status, its last
  line on stderr), the kill a second after the pair logged its first metrics."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  processes = [
      subprocess.Popen(
          [
              sys.executable,
              "-m",
              "experiments.run",
              "--model=maf",
              f"--workdir={workdir}",
              f"--config.data_dir={data_dir}",
              f"--coordinator_address=localhost:{port}",
              "--num_processes=2",
              f"--process_id={i}",
          ],
          env=env,
          stdout=subprocess.DEVNULL,
          stderr=subprocess.PIPE,
          text=True,
      )
      for i in range(2)
  ]
  metrics = os.path.join(workdir, "metrics.jsonl")
  while all(p.poll() is None for p in processes) and not (
      os.path.exists(metrics) and os.path.getsize(metrics)
  ):
    time.sleep(0.05)
  time.sleep(1.0)
  killed = time.time()
  processes[victim].send_signal(signal.SIGKILL)
  survivor = processes[1 - victim]
  _, stderr = survivor.communicate()
  seconds = time.time() - killed
  processes[victim].wait()
  return seconds, survivor.returncode, (stderr.strip().splitlines() or [""])[-1]


def main(victims: list[int]) -> None:
  scratch = tempfile.mkdtemp(prefix="lost-process-")
  try:
    for victim in victims:
      workdir = os.path.join(scratch, f"killed-{victim}")
      seconds, status, last = seconds_to_end(victim, workdir, os.path.join(scratch, "data"))
      print(
          f"process {victim} killed: the other ended {seconds:.1f} s later, exit {status}: {last}"
      )
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
  main([int(v) for v in sys.argv[1:]] or [1])

"""The grace period a run needs: seconds from SIGTERM to the exit of `python -m experiments.run`
stopped mid-training (it finishes the step or evaluation in flight, saves a checkpoint there
and exits 143).

  python -m benchmarks.grace_period maf vlae    # each model's default preset, 3 trials each
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def seconds_to_stop(model: str, workdir: str, data_dir: str) -> tuple[float, int, str]:
  """(seconds from SIGTERM to exit, exit status, last line on stderr) of one run of `model`,
  signalled a second after it logged its first metrics."""
  process = subprocess.Popen(
      [
          sys.executable,
          "-m",
          "experiments.run",
          f"--model={model}",
          f"--workdir={workdir}",
          f"--config.data_dir={data_dir}",
      ],
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      text=True,
  )
  metrics = os.path.join(workdir, "metrics.jsonl")
  while process.poll() is None and not (os.path.exists(metrics) and os.path.getsize(metrics)):
    time.sleep(0.05)
  time.sleep(1.0)
  signalled = time.time()
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate()
  return time.time() - signalled, process.returncode, (stderr.strip().splitlines() or [""])[-1]


def main(models: list[str]) -> None:
  scratch = tempfile.mkdtemp(prefix="grace-period-")
  try:
    for model in models:
      for trial in range(3):
        workdir = os.path.join(scratch, f"{model}-{trial}")
        seconds, status, last = seconds_to_stop(model, workdir, os.path.join(scratch, "data"))
        print(f"{model} trial {trial}: {seconds:.2f} s, exit {status}: {last}", flush=True)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
  main(sys.argv[1:] or ["maf"])

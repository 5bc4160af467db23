"""What a run logs: JSON files written atomically, the metrics log with its TensorBoard events,
and the progress line. Not `clu.metric_writers`: its TensorBoard writers need TensorFlow or
PyTorch, which the zoo runs without; tensorboardX writes the same events alone."""

import json
import os
import sys
import time

import tqdm
from tensorboardX import SummaryWriter


def write_text(path: str, text: str) -> None:
  """Write atomically (to a temporary file, then renamed): a reader never sees half a file, a
  crash never leaves one."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, value) -> None:
  write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


class MetricLog:
  """`metrics.jsonl` (one JSON object a line: `step` and named scalars, or of a run of several
  seeds a list per name, one value per seed) and TensorBoard events.

  Resuming at step s first drops the lines after s (a killed run may have logged past its last
  checkpoint, or died mid-line), so the file reads as if the run had never stopped.
  """

  def __init__(self, workdir: str, is_writer: bool, resume_step: int = 0):
    self.is_writer = is_writer
    if not is_writer:
      return
    self.path = os.path.join(workdir, "metrics.jsonl")
    kept = []
    if os.path.exists(self.path):
      with open(self.path) as f:
        for line in f:
          try:
            row = json.loads(line)
          except json.JSONDecodeError:
            break
          if row["step"] > resume_step:
            break
          kept.append(line if line.endswith("\n") else line + "\n")
    write_text(self.path, "".join(kept))
    self.file = open(self.path, "a")
    self.tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: dict) -> None:
    if not self.is_writer:
      return
    self.file.write(json.dumps({"step": int(step), **scalars}) + "\n")
    self.file.flush()
    for name, value in scalars.items():
      if isinstance(value, list):  # one per seed, None where a seed has stopped
        for replica, v in enumerate(value):
          if v is not None:
            self.tensorboard.add_scalar(f"{name}/replica_{replica}", v, step)
      else:
        self.tensorboard.add_scalar(name, value, step)

  def close(self) -> None:
    if self.is_writer:
      self.file.close()
      self.tensorboard.close()


class Progress:
  """A progress bar with steps/s, loss and ETA on a terminal; plain log lines otherwise."""

  def __init__(self, num_steps: int, enabled: bool, stream=None):
    self.num_steps, self.enabled = num_steps, enabled
    self.stream = stream or sys.stderr
    self.bar = None

  def start(self, step: int) -> None:
    self.last_step, self.last_time = step, time.time()
    if self.enabled and self.stream.isatty():
      self.bar = tqdm.tqdm(
          total=self.num_steps, initial=step, file=self.stream, unit="step", dynamic_ncols=True
      )
    elif self.enabled and step:
      self.note(f"resuming at step {step}")

  def update(self, step: int, row: dict) -> None:
    if not self.enabled:
      return
    now = time.time()
    rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
    self.last_step, self.last_time = step, now
    if self.bar is not None:
      self.bar.update(step - self.bar.n)
      self.bar.set_postfix(loss=f"{row['loss']:.4g}", refresh=False)
      return
    eta = (self.num_steps - step) / rate if rate > 0 else float("inf")
    self.note(
        f"step {step}/{self.num_steps}  loss {row['loss']:.4f}  {rate:.1f} steps/s  "
        f"eta {time.strftime('%H:%M:%S', time.gmtime(min(eta, 86399)))}"
    )

  def note(self, message: str) -> None:
    if not self.enabled:
      return
    if self.bar is not None:
      self.bar.write(message, file=self.stream)
    else:
      print(message, file=self.stream, flush=True)

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()

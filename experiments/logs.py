"""What a run logs: JSON files written atomically, the metrics log with its TensorBoard events,
and the progress line. Not `clu.metric_writers`: its TensorBoard writers need TensorFlow or
PyTorch, which the zoo runs without; tensorboardX writes the same events alone."""

import json
import os
import sys
import time

import numpy as np
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
  seeds a list per name, one value per seed) and TensorBoard events: a directory a replica
  under `tensorboard/`, named by its setting and seed (`beta=4.0/seed=1`), so that TensorBoard
  draws each metric as one chart with a line per replica; the config as text, the figures as
  images.

  Resuming at step s first drops the lines after s (a killed run may have logged past its last
  checkpoint, or died mid-line) and the test metrics of an earlier finish (every finish logs
  them again), so the file reads as if the run had never stopped.
  """

  def __init__(self, workdir: str, is_writer: bool, resume_step: int = 0, replicas=("",)):
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
          if not any(k.startswith("test/") for k in row):
            kept.append(line if line.endswith("\n") else line + "\n")
    write_text(self.path, "".join(kept))
    self.file = open(self.path, "a")
    self.tensorboard = [
        SummaryWriter(os.path.join(workdir, "tensorboard", name)) for name in replicas
    ]

  def write(self, step: int, scalars: dict) -> None:
    if not self.is_writer:
      return
    self.file.write(json.dumps({"step": int(step), **scalars}) + "\n")
    self.file.flush()
    for name, value in scalars.items():
      values = value if isinstance(value, list) else [value]  # one per seed, None once stopped
      for writer, v in zip(self.tensorboard, values):
        if v is not None:
          writer.add_scalar(name, v, step)

  def text(self, name: str, text: str) -> None:
    """`text` (Markdown) in every replica's TensorBoard."""
    if self.is_writer:
      for writer in self.tensorboard:
        writer.add_text(name, text)

  def image(self, name: str, image, step: int, replica: int = 0) -> None:
    """A PIL image in replica `replica`'s TensorBoard at `step`."""
    if self.is_writer:
      pixels = np.asarray(image.convert("RGB"))
      self.tensorboard[replica].add_image(name, pixels, step, dataformats="HWC")

  def close(self) -> None:
    if self.is_writer:
      self.file.close()
      for writer in self.tensorboard:
        writer.close()


class Progress:
  """A progress bar with steps/s, the losses and ETA on a terminal; plain log lines otherwise.
  The rate is that of the last RATE_UPDATES updates (the first, which compiles, left out):
  with the steps dispatched ahead of the host, single intervals alternate between a window's
  wait and its prefetched successor's (a MAF smoke run's: 8 and 3462 steps/s)."""

  RATE_UPDATES = 10

  def __init__(self, num_steps: int, enabled: bool, stream=None):
    self.num_steps, self.enabled = num_steps, enabled
    self.stream = stream or sys.stderr
    self.bar = None

  def start(self, step: int) -> None:
    self.marks = []  # (step, time) of each update, the start's included
    self.marks.append((step, time.time()))
    if self.enabled and self.stream.isatty():
      self.bar = tqdm.tqdm(
          total=self.num_steps, initial=step, file=self.stream, unit="step", dynamic_ncols=True
      )
    elif self.enabled and step:
      self.note(f"resuming at step {step}")

  def rate(self) -> float | None:
    """Steps a second over the recent updates; None until two updates past the first."""
    recent = self.marks[1:][-self.RATE_UPDATES - 1 :]
    if len(recent) < 2:
      return None
    (first, started), (last, now) = recent[0], recent[-1]
    return (last - first) / max(now - started, 1e-9)

  def update(self, step: int, losses: dict[str, float], seeds: int = 1) -> None:
    """After `step`: each loss (`loss`, or a game's `<phase>/loss`) as the mean over the
    `seeds` seeds still training."""
    if not self.enabled:
      return
    self.marks.append((step, time.time()))
    shown = (f"mean of {seeds} seeds: " if seeds > 1 else "") + "  ".join(
        f"{name} {value:.4g}" for name, value in losses.items()
    )
    if self.bar is not None:
      self.bar.update(step - self.bar.n)
      self.bar.set_postfix_str(shown, refresh=False)
      return
    rate = self.rate()
    speed = "" if rate is None else f"  {rate:.1f} steps/s"
    if rate:
      eta = min((self.num_steps - step) / rate, 86399)
      speed += f"  eta {time.strftime('%H:%M:%S', time.gmtime(eta))}"
    self.note(f"step {step}/{self.num_steps}  {shown}{speed}")

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

"""What the peer scripts share: their flags, the timing loop of benchmarks.bench, their JSON."""

import argparse
import platform

import numpy as np

from benchmarks import timing


def parse_args():
  parser = argparse.ArgumentParser()
  parser.add_argument("--seconds", type=float, default=3.0)
  parser.add_argument("--repeats", type=int, default=5)
  return parser.parse_args()


def time_step(step, wait, args) -> list[float]:
  return timing.steps_per_second(step, wait, seconds=args.seconds, repeats=args.repeats)


def result(case: str, rates: list[float], batch_size: int, args, device: str = "") -> dict:
  """The JSON of a peer's step; `device` names an accelerator it ran on (else the CPU)."""
  steps_per_sec = float(np.median(rates))
  return {
      "case": case,
      "steps_per_sec": round(steps_per_sec, 2),
      "examples_per_sec": round(steps_per_sec * batch_size, 1),
      "steps_per_sec_min_max": [round(min(rates), 2), round(max(rates), 2)],
      "device": device or f"cpu:{platform.processor() or platform.machine()}",
      "seconds": args.seconds,
      "repeats": args.repeats,
  }


def torch_device():
  """PyTorch's GPU where there is one, else the CPU: the peers run where ours does."""
  import torch  # pylint: disable=import-outside-toplevel

  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_wait(device) -> None:
  """Wait for the work queued on `device`."""
  import torch  # pylint: disable=import-outside-toplevel

  if device.type == "cuda":
    torch.cuda.synchronize()


def time_torch(case: str, loss, optimizer, batch_size: int, args, device) -> dict:
  """The result of a PyTorch train step on `device`: `loss()`, its backward pass, one
  optimiser step."""
  import torch  # pylint: disable=import-outside-toplevel

  def step():
    value = loss()
    optimizer.zero_grad()
    value.backward()
    optimizer.step()

  name = torch.cuda.get_device_name() if device.type == "cuda" else ""
  return result(case, time_step(step, lambda: torch_wait(device), args), batch_size, args, name)

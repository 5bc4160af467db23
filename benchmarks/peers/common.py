"""What the peer scripts share: their flags, the timing loop of experiments.bench, their JSON."""

import argparse
import platform

import numpy as np

from experiments import timing


def parse_args():
  parser = argparse.ArgumentParser()
  parser.add_argument("--seconds", type=float, default=3.0)
  parser.add_argument("--repeats", type=int, default=5)
  return parser.parse_args()


def time_step(step, wait, args) -> list[float]:
  return timing.steps_per_second(step, wait, seconds=args.seconds, repeats=args.repeats)


def result(case: str, rates: list[float], batch_size: int, args) -> dict:
  steps_per_sec = float(np.median(rates))
  return {
      "case": case,
      "steps_per_sec": round(steps_per_sec, 2),
      "examples_per_sec": round(steps_per_sec * batch_size, 1),
      "steps_per_sec_min_max": [round(min(rates), 2), round(max(rates), 2)],
      "device": f"cpu:{platform.processor() or platform.machine()}",
      "seconds": args.seconds,
      "repeats": args.repeats,
  }


def time_torch(case: str, loss, optimizer, batch_size: int, args) -> dict:
  """The result of a PyTorch train step: `loss()`, its backward pass, one optimiser step."""

  def step():
    value = loss()
    optimizer.zero_grad()
    value.backward()
    optimizer.step()

  return result(case, time_step(step, lambda: None, args), batch_size, args)

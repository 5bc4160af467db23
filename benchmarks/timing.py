"""The timing loop of every speed figure: ours (benchmarks.bench) and the peers'
(benchmarks/peers), so that both sides of a ratio are measured the same way."""

import time


def steps_per_second(step, wait, *, seconds: float, repeats: int, warmup: int = 20) -> list[float]:
  """Steps/s of `repeats` windows of at least `seconds` each, after `warmup` steps. `step()`
  runs one train step (possibly asynchronously); `wait()` blocks until the steps run so far
  have finished. Steps are issued 10 at a time between waits, as a training loop would."""
  for _ in range(warmup):
    step()
  wait()
  rates = []
  for _ in range(repeats):
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
      for _ in range(10):
        step()
      count += 10
      wait()
    rates.append(count / (time.perf_counter() - started))
  return rates

"""Faults a test injects into a runner's process, from its environment (tests/faults on its
PYTHONPATH; Python imports this module as it starts). `ZOO_FAULT=KIND:STEP` in the trainer
(the supervisor's child) of one process:

  feed           its data feed raises from the window at STEP on (an OSError, as a failed read).
  feed_and_stay  the same, and a thread that never ends keeps the process alive past its main
                 thread, as a library's worker thread can (Python's exit waits for it).
"""

import os
import threading
import time

if os.environ.get("ZOO_FAULT") and os.environ.get("ZOO_SUPERVISED") == "1":
  from experiments import feed

  kind, step = os.environ["ZOO_FAULT"].split(":")
  window = feed.TrainFeed.window

  def failing_window(self, steps):
    if steps.start >= int(step):
      if kind == "feed_and_stay":
        threading.Thread(target=lambda: time.sleep(3600)).start()
      raise OSError(f"injected: the data feed failed at step {steps.start}")
    return window(self, steps)

  feed.TrainFeed.window = failing_window

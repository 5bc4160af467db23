"""Faults a test injects into a runner's process, from its environment (tests/faults on its
PYTHONPATH; Python imports this module as it starts). `ZOO_FAULT=KIND[:STEP]` in the trainer
(the supervisor's child) of one process:

  feed           its data feed raises from the window at STEP on (an OSError, as a failed read).
  feed_and_stay  the same, and a thread that never ends keeps the process alive past its main
                 thread, as a library's worker thread can (Python's exit waits for it).
  full_disk      its file system has no free block left (`os.statvfs` says so), as a host's
                 own full disk would.
  hold           its data feed waits at the window that holds STEP, having written
                 $ZOO_FAULT_FILE.held, until $ZOO_FAULT_FILE.release exists: the training
                 loop stops there once it has trained the windows the feed made ahead, and a
                 test knows where the run is when it sends a notice.
"""

import os
import threading
import time

KIND, _, STEP = os.environ.get("ZOO_FAULT", "").partition(":")

if KIND and os.environ.get("ZOO_SUPERVISED") == "1":
  from experiments import feed

  window, statvfs = feed.TrainFeed.window, os.statvfs

  def held_window(self, steps):
    if int(STEP) in steps:
      base = os.environ["ZOO_FAULT_FILE"]
      with open(f"{base}.held", "w"):
        pass
      while not os.path.exists(f"{base}.release"):
        time.sleep(0.05)
    return window(self, steps)

  def failing_window(self, steps):
    if steps.start >= int(STEP):
      if KIND == "feed_and_stay":
        threading.Thread(target=lambda: time.sleep(3600)).start()
      raise OSError(f"injected: the data feed failed at step {steps.start}")
    return window(self, steps)

  def full_disk(path):
    real = statvfs(path)
    return os.statvfs_result((*real[:4], 0, *real[5:]))  # f_bavail: no block free

  if KIND == "full_disk":
    os.statvfs = full_disk
  elif KIND == "hold":
    feed.TrainFeed.window = held_window
  else:
    feed.TrainFeed.window = failing_window

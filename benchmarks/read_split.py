"""Reading a split whole, as the runner does to hold it on the device: the zoo's read
(`zoo.data.Dataset.read`, records decoded straight into arrays where it can) against TFDS's
own per-example decoding stacked afterwards, the two in turn in one process.

  python -m benchmarks.read_split [--dataset=dsprites_procedural/full] [--rounds=1]

Prints one JSON line: each side's seconds per round, and the process's peak memory after each
side's first read (the zoo's goes first, so its figure is its own).
"""

import json
import resource
import time

import numpy as np
from absl import app
from absl import flags

import zoo
from benchmarks import bench

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "dsprites_procedural/full", "The data set, as --config.dataset.")
flags.DEFINE_string("role", "train", "The split's role.")
flags.DEFINE_integer("rounds", 1, "Reads of each side, taken in turn.")


def main(argv):
  del argv
  dataset = zoo.data.load(FLAGS.dataset)
  indices = np.arange(dataset.num_examples(FLAGS.role))
  source = dataset.builder.as_data_source(split=dataset.splits[FLAGS.role])
  sides = {
      "zoo": lambda: dataset.read(FLAGS.role, indices),
      "tfds": lambda: dataset._stack(source.__getitems__(indices.tolist())),  # pylint: disable=protected-access
  }
  seconds = {side: [] for side in sides}
  peak_memory_gb = {}
  for _ in range(FLAGS.rounds):
    for side, read in sides.items():
      started = time.perf_counter()
      read()
      seconds[side].append(round(time.perf_counter() - started, 2))
      peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
      peak_memory_gb.setdefault(side, round(peak, 1))
  print(
      json.dumps(
          {
              "machine": bench.machine(),
              "dataset": FLAGS.dataset,
              "role": FLAGS.role,
              "examples": len(indices),
              "seconds": seconds,
              "peak_memory_gb": peak_memory_gb,
          }
      )
  )


if __name__ == "__main__":
  app.run(main)

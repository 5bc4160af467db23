"""The runner's input: the data set, each replica's stream of training batches, and a thread
that makes the next windows' inputs and puts them on the devices while the current one trains.

The stream of a seed is a function of (seed, step) (`zoo.data.TrainStream`), so a resumed run
reads exactly the batches the uninterrupted one would have. A training split that fits
`config.device_data_fraction` of a device's memory is held on the devices in its stored dtype
(`resident_split`): the host then sends only each step's example indices (and the noise of
preprocessing that draws some, from the same generator as the host's), and the compiled window
gathers and preprocesses the batches (`zoo.data.gather`). Other splits are read and
preprocessed on the host: from memory for a split small once decoded, else by grain's threads.
"""

import functools
import os
import queue
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils

import zoo
from zoo import fitting
from zoo import training


def prefetch(make, keys, size: int = 2):
  """make(key) for each of `keys` in order: made, sharded and sent to the devices by a
  background thread up to `size` ahead, so that the host's data work and the transfer overlap
  the device's steps. Exceptions reach the consumer; the thread stops when the generator is
  closed (use it in `contextlib.closing`, so that errors close it too)."""
  ready, stop = queue.Queue(size), threading.Event()

  def offer(item) -> bool:
    """Queue `item` once there is room; False if the consumer stopped first."""
    while not stop.is_set():
      try:
        ready.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def produce():
    try:
      for key in keys:
        if not offer(make(key)):
          return
    except Exception as error:  # pylint: disable=broad-except
      offer(error)

  producer = threading.Thread(target=produce, daemon=True)
  producer.start()
  try:
    while True:
      item = ready.get()
      if isinstance(item, Exception):
        raise item
      yield item
  finally:
    stop.set()
    # joined, not abandoned: a daemon thread still inside the runtime's C++ code when the
    # interpreter exits aborts the process ("FATAL: exception not rethrown")
    producer.join()


def load_data(config):
  """`zoo.fitting.load_data`; in a multi-process run process 0 prepares the data set while the
  others wait, so that no two write it at once."""
  load = functools.partial(fitting.load_data, config)
  if jax.process_index() == 0:
    dataset = load()
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("data set prepared")
  if jax.process_index() != 0:
    dataset = load()
  return dataset


def memory_budget(fraction: float, devices: training.Devices) -> int:
  """`fraction` of a device's memory in bytes, the least of any process's first device (so
  that every process decides alike); a CPU device's memory is the host's."""
  stats = devices.mesh.local_devices[0].memory_stats() or {}
  memory = stats.get("bytes_limit") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  if jax.process_count() > 1:  # in MiB: int32, as JAX gathers it
    memory = int(multihost_utils.process_allgather(np.int32(memory >> 20)).min()) << 20
  return int(fraction * memory)


def resident_split(
    dataset, preprocessing, config, devices: training.Devices
) -> tuple[dict | None, str]:
  """The training split, whole as `Dataset.read` gives it (its stored dtype), replicated on
  every device, if it fits `config.device_data_fraction` of a device's memory and the devices
  preprocess it as the host does (`Preprocessing.exact_in_jax`, so that a run's batches do not
  depend on where they were made): (its arrays, ""), or where it does not (None, a line saying
  so where the split is over the budget)."""
  if not preprocessing.exact_in_jax or not config.device_data_fraction:
    return None, ""
  local = devices.mesh.local_devices
  copies = len(local) if local[0].platform == "cpu" else 1  # CPU devices share host memory
  size, budget = dataset.nbytes("train"), memory_budget(config.device_data_fraction, devices)
  if copies * size > budget:
    return None, (
        f"the training split ({size / 2**20:,.0f} MiB"
        f"{f', a copy per device, {copies} here' if copies > 1 else ''}) is read on the host: "
        f"it is over config.device_data_fraction={config.device_data_fraction} of a device's "
        f"memory ({budget / 2**20:,.0f} MiB)"
    )
  arrays = dataset.read("train", np.arange(dataset.num_examples("train")))
  return devices.replicate(arrays), ""


class TrainFeed:
  """`window(steps)`: the inputs of a compiled window of `length` steps, of which `steps` (a
  range, at most `length` long) are trained and the rest, repeating the last, are not; every
  replica's, stacked on an axis after the window's, sharded over the devices. A step's input is
  its batch, or with `arrays` (the `resident_split`) its plan (`zoo.data.TrainStream.plan`),
  which `make_batch` turns into the batch inside the compiled step; a step takes `kind`'s
  `updates_at(step)` of them per replica (a game's stack). `labeled` is each seed's labelled set
  (`zoo.fitting.labeled_parts`); streams resume at `start_step`."""

  def __init__(
      self,
      dataset,
      preprocessing,
      config,
      devices: training.Devices,
      seeds,
      labeled: list[dict],
      start_step: int,
      kind: training.StepKind,
      arrays: dict | None = None,
      length: int = 1,
  ):
    self.config, self.devices, self.kind, self.length = config, devices, kind, length
    self.preprocessing, self.arrays, self.start_step = preprocessing, arrays, start_step
    stream = {
        "batch_size": config.batch_size,
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
    }
    self.position = kind.batches_before(config, start_step)
    self.plans = [
        zoo.data.TrainStream(dataset, preprocessing, seed=seed, **stream, **part)
        for seed, part in zip(seeds, labeled)
    ]
    self.readers = None  # grain's, for a split read from disk (zoo.data.Dataset.read)
    if arrays is None and not dataset.in_memory("train"):
      self.readers = [
          zoo.data.train_batches(
              dataset, preprocessing, seed=seed, start_step=self.position, **stream, **part
          )
          for seed, part in zip(seeds, labeled)
      ]

  def close(self) -> None:
    """Stop the host readers' threads."""
    for reader in self.readers or ():
      reader.close()

  def _inputs(self, step: int, position: int, take):
    """Step `step`'s input, every replica's, its batches from `position` on, each made by
    `take(replica, position)`."""
    per_replica = [
        [take(r, position + u) for u in range(self.kind.updates_at(self.config, step))]
        for r in range(len(self.plans))
    ]
    return training.stack([self.kind.step_input(parts) for parts in per_replica])

  def _made(self, replica: int, position: int):
    """Replica `replica`'s input at stream position `position`, made here."""
    plan = self.plans[replica].plan(position)
    return plan if self.arrays is not None else self.plans[replica].batch(plan)

  def _take(self, replica: int, position: int):
    if self.readers is None:
      return self._made(replica, position)
    return next(self.readers[replica])

  def first_input(self):
    """The input of the feed's first step, made aside: the streams do not move on."""
    return self._inputs(self.start_step, self.position, self._made)

  def window(self, steps: range):
    """The window's inputs (this process's part of them, sharded)."""
    inputs = []
    for step in steps:
      inputs.append(self._inputs(step, self.position, self._take))
      self.position += self.kind.updates_at(self.config, step)
    inputs += inputs[-1:] * (self.length - len(inputs))
    return self.devices.shard_batch(training.stack(inputs), leading_axes=1 + self.kind.leading_axes)

  def make_batch(self, arrays, step_input):
    """A step's batches from its input (every replica's), inside the compiled step, sharded
    as a batch sent in is: left to XLA, the gathered batch of 4 MAF replicas on 4 devices was
    not split over them, and rounded differently (3e-4 in a gradient norm after 50 steps)."""
    if self.arrays is None:
      return step_input
    batch = zoo.data.gather(arrays, step_input, self.preprocessing)
    sharding = self.devices.batch_sharding(leading_axes=self.kind.leading_axes)
    return jax.lax.with_sharding_constraint(batch, sharding)

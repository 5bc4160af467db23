"""The runner's input: the data set, each replica's stream of training batches, and a thread
that makes the next steps' batches and puts them on the devices while the current step runs.

The stream of a seed is a function of (seed, step) (`zoo.data.train_batches`), so a resumed run
reads exactly the batches the uninterrupted one would have.
"""

import functools
import itertools
import queue
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils

import zoo
from zoo import errors
from zoo import training


def prefetch(make_batch, start: int, size: int = 2):
  """make_batch(start), make_batch(start + 1), ...: made, sharded and sent to the devices by a
  background thread up to `size` steps ahead, so that the host's data work and the transfer
  overlap the device's steps. Exceptions reach the consumer; the thread stops when the
  generator is closed (use it in `contextlib.closing`, so that errors close it too)."""
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
      for step in itertools.count(start):
        if not offer(make_batch(step)):
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


def labeled_parts(model, dataset, config, devices, seeds) -> list[dict]:
  """For a semi-supervised model, `train_batches`' labelled set of each seed: `config.num_labels`
  training examples, as many of each class, chosen by the seed; a batch holds min(num_labels,
  batch_size) of them."""
  if not model.semi_supervised:
    return [{} for _ in seeds]
  classes = dataset.num_classes
  if not classes or config.num_labels <= 0 or config.num_labels % classes:
    raise errors.UserError(
        f"config.num_labels ({config.num_labels}) must be a positive "
        f"multiple of the data set's classes ({classes})"
    )
  if model.num_clusters != classes:
    raise errors.UserError(
        f"a semi-supervised code needs one category per class: "
        f"config.model.latent_dim={classes}, not {model.num_clusters}"
    )
  size = min(config.num_labels, config.batch_size)
  if size % devices.size:
    raise errors.UserError(
        f"the labelled batch ({size}) must be divisible by the " f"{devices.size} devices"
    )
  labels = dataset.read("train", np.arange(dataset.num_examples("train")))["label"]
  return [
      {
          "labeled": zoo.data.balanced_subset(labels, config.num_labels, seed),
          "labeled_batch_size": size,
      }
      for seed in seeds
  ]


def load_data(config):
  """`zoo.data.load`; in a multi-process run process 0 prepares the data set while the others
  wait, so that no two write it at once."""
  framing = zoo.data.Framing(config.image_size, config.center_crop) if config.image_size else None
  load = functools.partial(
      zoo.data.load, config.dataset, config.data_dir or None, config.splits.to_dict(), framing
  )
  if jax.process_index() == 0:
    dataset = load()
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("data set prepared")
  if jax.process_index() != 0:
    dataset = load()
  return dataset


def stack(trees):
  """The trees' arrays stacked on a new leading axis."""
  return jax.tree.map(lambda *x: np.stack(x), *trees)


class TrainFeed:
  """`batch(step)`: the step's batch of every replica, stacked on a leading replica axis and
  sharded over the devices; a game's step takes a stack of `first_phase_updates_at(step)`
  batches per replica. `labeled` is each seed's labelled set (`labeled_parts`); streams resume
  at `start_step`."""

  def __init__(
      self,
      dataset,
      preprocessing,
      config,
      devices: training.Devices,
      seeds,
      labeled: list[dict],
      start_step: int,
      game: bool,
  ):
    self.config, self.devices, self.game = config, devices, game
    start = training.batches_before(config, start_step) if game else start_step
    self.streams = [
        zoo.data.train_batches(
            dataset,
            preprocessing,
            batch_size=config.batch_size,
            seed=seed,
            start_step=start,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            **part,
        )
        for seed, part in zip(seeds, labeled)
    ]

  def close(self) -> None:
    """Stop the streams' reading threads."""
    for stream in self.streams:
      stream.close()

  def batch(self, step: int):
    if not self.game:
      return self.devices.shard_batch(stack([next(s) for s in self.streams]), leading_axes=1)
    updates = training.first_phase_updates_at(self.config, step)
    return self.devices.shard_batch(
        stack([stack([next(s) for _ in range(updates)]) for s in self.streams]), leading_axes=2
    )

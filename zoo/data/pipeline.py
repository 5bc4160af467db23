"""grain pipelines over a `zoo.data.Dataset`.

The training stream is a pure function of (seed, step): batch s holds positions [sB, (s+1)B) of
an endless sequence of per-epoch permutations, and its dequantisation or binarisation noise is
drawn for the whole global batch from an RNG seeded by (seed, s). Each process keeps its
contiguous slice, so the global batch does not depend on the number of processes, and resuming at
step s is starting the stream at s: the data position needs no state of its own.
"""

import functools
from collections.abc import Iterator

import grain
import numpy as np

from zoo.data import transforms


def _make_batch(dataset, split, indices, rng, *, preprocessing, process_index, process_count):
  local = len(indices) // process_count
  mine = slice(process_index * local, (process_index + 1) * local)
  batch = dataset.read(split, indices[mine])
  noise = None
  if preprocessing.needs_noise:
    noise = rng.random((len(indices), *dataset.example_shape), dtype=np.float32)[mine]
  batch["x"] = preprocessing(batch["x"], noise)
  return batch


class _EpochShuffle:
  """Indices of global batch `step`: positions of a fresh permutation of the split each epoch."""

  def __init__(self, num_examples, batch_size, seed):
    self.num_examples, self.batch_size, self.seed = num_examples, batch_size, seed

  @functools.lru_cache(maxsize=4)  # noqa: B019 (a few epochs' permutations, per stream)
  def _permutation(self, epoch):
    return np.random.default_rng((self.seed, epoch)).permutation(self.num_examples)

  def __call__(self, step):
    positions = step * self.batch_size + np.arange(self.batch_size)
    epochs, offsets = np.divmod(positions, self.num_examples)
    return np.concatenate([self._permutation(e)[offsets[epochs == e]] for e in np.unique(epochs)])


def train_batches(
    dataset,
    preprocessing: transforms.Preprocessing,
    *,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    split: str = "train",
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 2,
    labeled: np.ndarray | None = None,
    labeled_batch_size: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
  """This process's part of the global training batches from `start_step` on, prefetched.
  With `labeled` (indices into `split`, the semi-supervised labelled set), each batch also
  holds `labeled_x` and `labeled_label`: `labeled_batch_size` of them, drawn afresh each step."""
  if batch_size % process_count:
    raise ValueError(f"batch_size {batch_size} is not divisible by {process_count} processes")
  indices_of = _EpochShuffle(dataset.num_examples(split), batch_size, seed)

  def batch_at(step):
    make = functools.partial(
        _make_batch,
        dataset,
        split,
        preprocessing=preprocessing,
        process_index=process_index,
        process_count=process_count,
    )
    batch = make(indices_of(step), np.random.default_rng((seed, step)))
    if labeled is not None:
      rng = np.random.default_rng((seed, step, 1))
      part = make(labeled[rng.permutation(len(labeled))[:labeled_batch_size]], rng)
      batch["labeled_x"], batch["labeled_label"] = part["x"], part["label"]
    return batch

  steps = grain.MapDataset.range(start_step, np.iinfo(np.int64).max).map(batch_at)
  return iter(
      steps.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4))
  )


def balanced_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
  """`size` indices into `labels`, the same number of each class, chosen by `seed`: the
  labelled set of a semi-supervised run (e.g. 100 MNIST labels, 10 per digit)."""
  classes = np.unique(labels)
  rng = np.random.default_rng(seed)
  return np.sort(
      np.concatenate(
          [
              rng.choice(np.flatnonzero(labels == c), size // len(classes), replace=False)
              for c in classes
          ]
      )
  )


EVAL_SEED = 1


def eval_batches(
    dataset,
    preprocessing: transforms.Preprocessing,
    split: str,
    *,
    batch_size: int,
    seed: int = EVAL_SEED,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
  """One pass over `split` in order, in full batches: the last is padded, and `mask` marks the
  real examples. Noise is fixed by `seed`, by default the same for every run, so every
  evaluation of every seed sees the same data."""
  n = dataset.num_examples(split)
  for step, start in enumerate(range(0, n, batch_size)):
    indices = np.arange(start, start + batch_size)
    mask = indices < n
    batch = _make_batch(
        dataset,
        split,
        np.where(mask, indices, 0),
        np.random.default_rng((seed, step)),
        preprocessing=preprocessing,
        process_index=process_index,
        process_count=process_count,
    )
    local = batch_size // process_count
    batch["mask"] = mask[process_index * local : (process_index + 1) * local]
    yield batch

"""The training and evaluation streams over a `zoo.data.Dataset`: read on the host (by grain's
threads for a split read from disk), or gathered inside a compiled step from a split held on
the devices (`gather`).

The training stream is a pure function of (seed, step): batch s holds positions [sB, (s+1)B) of
an endless sequence of per-epoch permutations, and its dequantisation or binarisation noise is
drawn for the whole global batch from an RNG seeded by (seed, s). Each process keeps its
contiguous slice, so the global batch does not depend on the number of processes, and resuming at
step s is starting the stream at s: the data position needs no state of its own.
"""

import functools
from collections.abc import Iterator

import grain
import jax.numpy as jnp
import numpy as np

from zoo.data import transforms


def _make_batch(dataset, split, plan, *, preprocessing):
  """The examples a `plan` (`TrainStream.plan`'s, or an evaluation's) names, read and
  preprocessed on the host."""
  batch = dataset.read(split, plan["index"])
  batch["x"] = preprocessing(batch["x"], plan.get("noise"))
  return batch


def _process_part(indices, rng, dataset, preprocessing, process_index, process_count):
  """This process's slice of a global batch of `indices`, with its slice of the noise drawn
  from `rng` for the whole global batch (so that a batch does not depend on the number of
  processes that read it)."""
  local = len(indices) // process_count
  mine = slice(process_index * local, (process_index + 1) * local)
  part = {"index": indices[mine]}
  if preprocessing.needs_noise:
    shape = (len(indices), *dataset.example_shape)
    part["noise"] = rng.random(shape, dtype=np.float32)[mine]
  return part


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


class TrainStream:
  """The training batches of one seed as a function of the step: `plan(step)` names this
  process's part of the global batch (its example indices and, for preprocessing that draws
  noise, the noise), which `batch` reads and preprocesses on the host or `zoo.data.gather`
  takes from a split held on the device. With `labeled` (indices into `split`, the
  semi-supervised labelled set), a plan also names `labeled_batch_size` of them, drawn afresh
  each step (`labeled_index`, `labeled_noise`)."""

  def __init__(
      self,
      dataset,
      preprocessing: transforms.Preprocessing,
      *,
      batch_size: int,
      seed: int,
      split: str = "train",
      process_index: int = 0,
      process_count: int = 1,
      labeled: np.ndarray | None = None,
      labeled_batch_size: int = 0,
  ):
    if batch_size % process_count:
      raise ValueError(f"batch_size {batch_size} is not divisible by {process_count} processes")
    self.dataset, self.preprocessing, self.split, self.seed = dataset, preprocessing, split, seed
    self.process_index, self.process_count = process_index, process_count
    self.labeled, self.labeled_batch_size = labeled, labeled_batch_size
    self._indices_of = _EpochShuffle(dataset.num_examples(split), batch_size, seed)

  def _part(self, indices, rng) -> dict[str, np.ndarray]:
    return _process_part(
        indices, rng, self.dataset, self.preprocessing, self.process_index, self.process_count
    )

  def plan(self, step: int) -> dict[str, np.ndarray]:
    plan = self._part(self._indices_of(step), np.random.default_rng((self.seed, step)))
    if self.labeled is not None:
      rng = np.random.default_rng((self.seed, step, 1))
      labeled = self._part(
          self.labeled[rng.permutation(len(self.labeled))[: self.labeled_batch_size]], rng
      )
      plan.update({f"labeled_{k}": v for k, v in labeled.items()})
    return plan

  def batch(self, plan: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The batch `plan` names, read and preprocessed here."""
    batch = _make_batch(self.dataset, self.split, plan, preprocessing=self.preprocessing)
    if self.labeled is not None:
      labeled = {k[len("labeled_") :]: v for k, v in plan.items() if k.startswith("labeled_")}
      part = _make_batch(self.dataset, self.split, labeled, preprocessing=self.preprocessing)
      batch["labeled_x"], batch["labeled_label"] = part["x"], part["label"]
    return batch


def gather(arrays: dict, plan: dict, preprocessing: transforms.Preprocessing) -> dict:
  """`TrainStream.batch` of `plan` from `arrays`, the whole split as `Dataset.read` gives it,
  held on the devices: for use inside a compiled step. The plan's arrays may have leading axes
  before the batch's (replicas, a game's stack), which the batch keeps. The batch is the host's
  bit for bit where `preprocessing.exact_in_jax` (tests/test_feed.py), the only kinds the
  runner makes on the devices."""

  def part(prefix):
    index = plan[f"{prefix}index"]
    batch = {k: jnp.take(v, index.reshape(-1), axis=0) for k, v in arrays.items()}
    noise = plan.get(f"{prefix}noise")
    batch["x"] = preprocessing(
        batch["x"], None if noise is None else noise.reshape(batch["x"].shape)
    )
    return {k: v.reshape(index.shape + v.shape[1:]) for k, v in batch.items()}

  batch = part("")
  if "labeled_index" in plan:
    labeled = part("labeled_")
    batch["labeled_x"], batch["labeled_label"] = labeled["x"], labeled["label"]
  return batch


def train_batches(
    dataset,
    preprocessing: transforms.Preprocessing,
    *,
    start_step: int = 0,
    num_threads: int = 2,
    **stream,
) -> Iterator[dict[str, np.ndarray]]:
  """This process's part of the global training batches from `start_step` on, read on the host
  by `num_threads` threads and prefetched; `stream` as `TrainStream` takes it."""
  batches = TrainStream(dataset, preprocessing, **stream)
  steps = grain.MapDataset.range(start_step, np.iinfo(np.int64).max)
  steps = steps.map(lambda step: batches.batch(batches.plan(step)))
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
    rng = np.random.default_rng((seed, step))
    plan = _process_part(
        np.where(mask, indices, 0), rng, dataset, preprocessing, process_index, process_count
    )
    batch = _make_batch(dataset, split, plan, preprocessing=preprocessing)
    local = batch_size // process_count
    batch["mask"] = mask[process_index * local : (process_index + 1) * local]
    yield batch

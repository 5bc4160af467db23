"""The data layer: TFDS builders read without TensorFlow, fed by grain.

`load(name, data_dir)` resolves any TFDS name. The zoo's own builders (`digits`, `toy2d/<density>`,
`maf_tabular/<set>`) are prepared locally on first use and never download; any other TFDS name
(`mnist`, `cifar10`, ...) is prepared by TFDS where the machine can download it, and otherwise fails
with one `DatasetUnavailableError` that says so.
"""

import contextlib
import dataclasses
import functools
import os
import socket
import sys
import urllib.parse

import numpy as np
import tensorflow_datasets as tfds

from zoo import errors
from zoo.data import digits  # registers the builder with TFDS
from zoo.data import dsprites  # registers the builder with TFDS
from zoo.data import tabular  # registers the builder with TFDS
from zoo.data import toy2d  # registers the builder with TFDS
from zoo.data import transforms
from zoo.data.pipeline import balanced_subset
from zoo.data.pipeline import eval_batches
from zoo.data.pipeline import train_batches
from zoo.data.transforms import KINDS as PREPROCESSING_KINDS
from zoo.data.transforms import Preprocessing

_EMBEDDED = ("digits", "toy2d", "maf_tabular", "dsprites_procedural")
EMBEDDED_NAMES = (
    "digits",
    "dsprites_procedural/full",
    "dsprites_procedural/coarse",
    *(f"toy2d/{n}" for n in toy2d.DENSITIES),
)
_IN_MEMORY_BYTES = 2 << 30
_LABEL_KEYS = {"smallnorb": "label_category"}  # the class where a set names it otherwise


@dataclasses.dataclass(eq=False)
class Dataset:
  """A prepared TFDS data set: its splits' sizes, example shape, and batched random access.

  Examples are dicts with `x` (the image or vector, as stored) and, where the set has one, `label`
  (small NORB's `label_category`).
  """

  name: str
  builder: tfds.core.DatasetBuilder

  @property
  def _features(self):
    return self.builder.info.features

  @property
  def _x_key(self) -> str:
    return "image" if "image" in self._features else "x"

  @property
  def _label_key(self) -> str | None:
    key = _LABEL_KEYS.get(self.builder.name, "label")
    return key if key in self._features else None

  @property
  def example_shape(self) -> tuple[int, ...]:
    return tuple(self._features[self._x_key].shape)

  @property
  def is_image(self) -> bool:
    return len(self.example_shape) == 3

  @property
  def num_levels(self) -> int | None:
    """The number of grey levels of discrete pixels, or None for real-valued data."""
    if self.name == "digits":
      return digits.NUM_LEVELS
    return 256 if self._features[self._x_key].np_dtype == np.uint8 else None

  @property
  def num_classes(self) -> int | None:
    label = self._features[self._label_key] if self._label_key else None
    return getattr(label, "num_classes", None)

  @property
  def mixture(self) -> tuple[np.ndarray, float] | None:
    """(component means, common std) of a Gaussian-mixture toy set, None for any other set."""
    family, _, config = self.name.partition("/")
    return toy2d.MIXTURES.get(config) if family == "toy2d" else None

  @property
  def ground_truth(self) -> dsprites.DSprites | None:
    """The ground-truth-factor object (ARCHITECTURE.md, "Data") of a set rendered from known
    factors, procedural dSprites; None for any other set."""
    return dsprites.DSprites() if self.name.partition("/")[0] == "dsprites_procedural" else None

  def num_examples(self, split: str) -> int:
    return self.builder.info.splits[split].num_examples

  @functools.cache  # noqa: B019 (a Dataset lives as long as its run)
  def _source(self, split):
    return self.builder.as_data_source(split=split)

  @functools.cache  # noqa: B019 (a Dataset lives as long as its run)
  def _in_memory(self, split):
    source = self._source(split)
    records = source.__getitems__(range(len(source)))
    return self._stack(records)

  def _stack(self, records):
    batch = {"x": np.stack([r[self._x_key] for r in records])}
    if self._label_key:
      batch["label"] = np.asarray([r[self._label_key] for r in records], np.int32)
    return batch

  def read(self, split: str, indices: np.ndarray) -> dict[str, np.ndarray]:
    """The examples at `indices` of `split`, stacked; splits small once decoded are read once
    into memory."""
    x = self._features[self._x_key]
    decoded_bytes = self.num_examples(split) * int(np.prod(x.shape)) * np.dtype(x.np_dtype).itemsize
    if decoded_bytes < _IN_MEMORY_BYTES:
      return {k: v[indices] for k, v in self._in_memory(split).items()}
    return self._stack(self._source(split).__getitems__(list(indices)))


def load(name: str, data_dir: str | None = None) -> Dataset:
  """The data set `name`, prepared in `data_dir` (TFDS's default when None)."""
  data_dir = os.path.expanduser(data_dir) if data_dir else None
  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except tfds.core.registered.DatasetNotFoundError:
    raise errors.UserError(
        f"unknown data set {name!r}; embedded: {', '.join(EMBEDDED_NAMES)}, "
        f"maf_tabular/<{'|'.join(c.name for c in tabular.MafTabular.BUILDER_CONFIGS)}>; "
        "or any TFDS name"
    ) from None
  if builder.is_prepared():
    return Dataset(name=name, builder=builder)
  with contextlib.redirect_stdout(sys.stderr):  # TFDS says what it prepares on stdout
    if builder.name in _EMBEDDED:
      manual_dir = os.path.join(builder.data_dir_root, "downloads", "manual")
      if isinstance(builder, tabular.MafTabular):
        builder.check_manual_files(manual_dir)
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
      )
    else:
      _prepare_by_download(name, builder)
  return Dataset(name=name, builder=builder)


def _unreachable_hosts(builder, timeout=5.0):
  """The download hosts of `builder` that do not accept a connection within `timeout` seconds.

  TFDS retries an unreachable host for minutes; this answers in seconds."""
  hosts = {urllib.parse.urlparse(url).hostname for url in builder.url_infos or ()}
  unreachable = []
  for host in sorted(h for h in hosts if h):
    try:
      socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
      unreachable.append(host)
  return unreachable


def _prepare_by_download(name, builder):
  try:
    unreachable = _unreachable_hosts(builder)
    if unreachable:
      raise ConnectionError(f"cannot reach {', '.join(unreachable)}")
    builder.download_and_prepare()
  except Exception as e:  # TFDS fails offline in many ways; each means the same to the user.
    reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    raise errors.DatasetUnavailableError(
        f"data set {name!r} is not prepared in {builder.data_dir_root} and cannot be downloaded "
        f"here ({type(e).__name__}: {reason}); prepare it where the network is reachable "
        f"(`tfds build {name} --data_dir=DIR`) and pass --config.data_dir=DIR"
    ) from None


def preprocessing(
    dataset: Dataset, kind: str, alpha: float = 1e-6, zca_epsilon: float = 1e-4
) -> Preprocessing:
  """The preprocessing `kind` for `dataset`. ZCA is fitted on its training split with fixed
  dequantisation noise: a property of the data set, the same for every run and seed."""
  if kind not in PREPROCESSING_KINDS:
    raise errors.UserError(
        f"preprocessing must be one of {', '.join(PREPROCESSING_KINDS)}, not {kind!r}"
    )
  if kind != "none" and dataset.num_levels is None:
    raise errors.UserError(
        f"preprocessing {kind} needs pixels, and {dataset.name} is "
        "real-valued: use preprocessing none"
    )
  if kind != "zca":
    return Preprocessing(kind, dataset.num_levels, alpha)
  pixels = dataset.read("train", np.arange(dataset.num_examples("train")))["x"]
  mean, whitening = transforms.fit_zca(
      pixels, dataset.num_levels, zca_epsilon, np.random.default_rng(0)
  )
  return Preprocessing(kind, dataset.num_levels, mean=mean, whitening=whitening)


__all__ = [
    "Dataset",
    "Preprocessing",
    "PREPROCESSING_KINDS",
    "load",
    "preprocessing",
    "train_batches",
    "eval_batches",
    "balanced_subset",
    "EMBEDDED_NAMES",
]

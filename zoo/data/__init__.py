"""The data layer: TFDS builders read without TensorFlow, fed by grain.

`load(name, data_dir, splits)` resolves any TFDS name. A data set is read by role: `train`,
`validation` (optional) and `test`, each any TFDS split or slice of one (`train[50000:]`), so that
a set without a validation split (MNIST) has one carved from its training split as the papers did.
The zoo's own builders (`digits`, `toy2d/<density>`, `maf_tabular/<set>`) are prepared locally on
first use and never download; any other TFDS name (`mnist`, `cifar10`, ...) is prepared by TFDS
where the machine can download it, and otherwise fails with one `DatasetUnavailableError` that
says so.
"""

import contextlib
import dataclasses
import difflib
import functools
import io
import os
import socket
import sys
import urllib.parse

import numpy as np
import tensorflow_datasets as tfds

from zoo import errors
from zoo.data import arrays
from zoo.data import digits  # registers the builder with TFDS
from zoo.data import dsprites  # registers the builder with TFDS
from zoo.data import records
from zoo.data import tabular  # registers the builder with TFDS
from zoo.data import toy2d  # registers the builder with TFDS
from zoo.data import transforms
from zoo.data.pipeline import TrainStream
from zoo.data.pipeline import balanced_subset
from zoo.data.pipeline import eval_batches
from zoo.data.pipeline import gather
from zoo.data.pipeline import train_batches
from zoo.data.transforms import KINDS as PREPROCESSING_KINDS
from zoo.data.transforms import Framing
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
# Grey levels of the sets whose uint8 pixels take fewer than 256 values.
_NUM_LEVELS = {
    "digits": digits.NUM_LEVELS,
    "binarized_mnist": 2,
    "dsprites": 2,
    "dsprites_procedural": 2,
}


SPLIT_ROLES = ("train", "validation", "test")


@dataclasses.dataclass(eq=False)
class Dataset:
  """A prepared TFDS data set read by role (`SPLIT_ROLES`): each role's size, the example shape,
  and batched random access. `splits` maps each role the set has to its TFDS split.

  Examples are dicts with `x` (the image or vector, as stored, or as `framing` frames it) and,
  where the set has one, `label` (small NORB's `label_category`).
  """

  name: str
  builder: tfds.core.DatasetBuilder | arrays.ArraysBuilder
  splits: dict[str, str] = dataclasses.field(
      default_factory=lambda: {"train": "train", "test": "test"}
  )
  framing: Framing | None = None

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
    """The shape of `x` as read: as stored, or as framed."""
    stored = tuple(self._features[self._x_key].shape)
    return self.framing.shape(stored) if self.framing else stored

  @property
  def is_image(self) -> bool:
    return len(self.example_shape) == 3

  @property
  def num_levels(self) -> int | None:
    """The number of grey levels of discrete pixels, or None for real-valued data."""
    if self._features[self._x_key].np_dtype != np.uint8:
      return None
    return getattr(self.builder, "num_levels", 0) or _NUM_LEVELS.get(self.builder.name, 256)

  @property
  def num_classes(self) -> int | None:
    label = self._features[self._label_key] if self._label_key else None
    return getattr(label, "num_classes", None)

  @property
  def mixture(self) -> tuple[np.ndarray, float] | None:
    """(component means, common std) of a Gaussian-mixture toy set, None for any other set."""
    family, _, config = self.name.partition("/")
    return toy2d.MIXTURES.get(config) if family == "toy2d" else None

  @functools.cached_property
  def ground_truth(self) -> dsprites.DSprites | dsprites.LabelledDSprites | None:
    """The ground-truth-factor object (ARCHITECTURE.md, "Data") of a set of known factors:
    procedural dSprites, or TFDS's `dsprites` by its labels (all of its one split, whatever
    the roles hold out); None for any other set."""
    if self.builder.name == "dsprites_procedural":
      return dsprites.DSprites()
    if self.builder.name == "dsprites":
      return dsprites.LabelledDSprites(self.builder)
    return None

  def has(self, role: str) -> bool:
    return role in self.splits

  def num_examples(self, role: str) -> int:
    """The size of the role's split, as read (`len` of its source: what TFDS's metadata says
    for a prepared set)."""
    return len(self._source(role))

  @functools.cache  # noqa: B019 (a Dataset lives as long as its run)
  def _source(self, role):
    return self.builder.as_data_source(split=self.splits[role])

  @functools.cache  # noqa: B019 (a Dataset lives as long as its run)
  def _in_memory(self, role):
    return self._examples(role, np.arange(self.num_examples(role)))

  @functools.cache  # noqa: B019 (a Dataset lives as long as its run)
  def _records_reader(self, role):
    """`records.reader` of the role's split where it can decode it (and nothing is framed)."""
    keys = [self._x_key, self._label_key] if self._label_key else [self._x_key]
    return None if self.framing else records.reader(self._source(role), keys)

  def _examples(self, role, indices):
    """The examples at `indices`, stacked: {"x": ..., "label": int32 (where labelled)}."""
    read = self._records_reader(role)
    if read:
      columns = read(indices)
      batch = {"x": columns[self._x_key]}
      if self._label_key:
        batch["label"] = columns[self._label_key].astype(np.int32)
      return batch
    return self._stack(self._source(role).__getitems__(list(indices)))

  def _stack(self, examples):
    """TFDS's decoded examples, framed where the set is, stacked as `_examples` gives them."""
    frame = self.framing or (lambda x: x)
    batch = {"x": np.stack([frame(e[self._x_key]) for e in examples])}
    if self._label_key:
      batch["label"] = np.asarray([e[self._label_key] for e in examples], np.int32)
    return batch

  def nbytes(self, role: str) -> int:
    """The bytes of the role's split as `read` gives it whole: `x` in its stored dtype and the
    int32 labels."""
    itemsize = np.dtype(self._features[self._x_key].np_dtype).itemsize
    per_example = int(np.prod(self.example_shape)) * itemsize + (4 if self._label_key else 0)
    return self.num_examples(role) * per_example

  def in_memory(self, role: str) -> bool:
    """Whether `read` reads the role's split into memory once (it is small once decoded),
    rather than its examples from disk at each call."""
    return self.nbytes(role) < _IN_MEMORY_BYTES

  def read(self, role: str, indices: np.ndarray) -> dict[str, np.ndarray]:
    """The examples at `indices` of the role's split, stacked; splits small once decoded are
    read once into memory."""
    if self.in_memory(role):
      return {k: v[indices] for k, v in self._in_memory(role).items()}
    return self._examples(role, indices)


def load(
    name: str,
    data_dir: str | None = None,
    splits: dict[str, str] | None = None,
    framing: Framing | None = None,
) -> Dataset:
  """A data set by name, prepared where it is not yet (embedded sets are generated, others
  downloaded where the network is reachable).

  Args:
    name: an embedded set (`EMBEDDED_NAMES`, `maf_tabular/<name>`), any TFDS name, or a `.npz`
      file of arrays (`from_arrays`'s keywords).
    data_dir: where TFDS sets are prepared; TFDS's default (~/tensorflow_datasets) when None.
    splits: {role: TFDS split or slice} for the roles `train`, `validation`, `test`; a role
      left out or empty is the split of its own name, and `validation` only where the set has
      one (`train[50000:]` holds one out).
    framing: images read cropped and resized (`Framing`), where given.

  Returns:
    The `Dataset`: examples by role, `{"x": (N, *example_shape), "label": (N,)}`.

  Raises:
    zoo.errors.UserError: an unknown name (with the closest known one), a split the set does
      not have, or a set that cannot be prepared here (`DatasetUnavailableError`).
  """
  given = {role: split for role, split in (splits or {}).items() if split}
  if name.endswith(".npz"):
    if any(split != role for role, split in given.items()):
      raise errors.UserError(
          f"data set {name!r}: the splits of a .npz file are its arrays (train, validation, "
          f"test), not {given}"
      )
    dataset = from_arrays(**arrays.read_npz(os.path.expanduser(name)), name=name)
  else:
    data_dir = os.path.expanduser(data_dir) if data_dir else None
    builder = _prepared_builder(name, data_dir)
    dataset = Dataset(name=name, builder=builder, splits=_splits_by_role(builder, given))
  if framing:
    if not dataset.is_image:
      raise errors.UserError(f"config.image_size frames images; data set {name!r} holds vectors")
    dataset = dataclasses.replace(dataset, framing=framing)
  if None in dataset.example_shape:
    raise errors.UserError(
        f"data set {name!r} holds images of varying sizes {dataset.example_shape}; frame them "
        "with config.image_size (and config.center_crop)"
    )
  for role, split in dataset.splits.items():
    try:
      dataset.num_examples(role)
    except ValueError as e:  # TFDS's unknown split or slice out of range
      raise errors.UserError(
          f"data set {name!r} has no split {split!r} for its {role} examples ({e}); "
          f"name one with splits.{role}, e.g. a held-out slice: train[:10000]"
      ) from None
  return dataset


def from_arrays(
    train,
    test,
    validation=None,
    *,
    train_label=None,
    validation_label=None,
    test_label=None,
    num_levels: int = 256,
    name: str = "arrays",
) -> Dataset:
  """One's own arrays as a data set, read by role, preprocessed, batched and evaluated as a
  named set is (`zoo.fit(model, zoo.data.from_arrays(...))`; the runner reads a `.npz` file of
  them named as its data set, `--config.dataset=path/to/file.npz`).

  Args:
    train: (N, *example_shape) training examples. Real values are stored as float32
      (preprocessing `none`); uint8 arrays are pixels of 256 levels, images as (N, H, W, C).
    test: the test examples, alike.
    validation: the validation examples, alike, or None (they are what early stopping and the
      best checkpoint watch).
    train_label: (N,) non-negative int labels of `train`, or None; labels are given for every
      split or for none.
    validation_label: those of `validation`.
    test_label: those of `test`.
    num_levels: the values uint8 pixels take, 0 to num_levels - 1 (the digits' 17, say).
    name: the data set's name in messages and results.

  Returns:
    The `Dataset`.

  Raises:
    zoo.errors.UserError: a missing split, or arrays whose shapes, dtypes or labels disagree.
  """
  splits = arrays.checked_splits(
      name,
      {"train": train, "validation": validation, "test": test},
      {"train": train_label, "validation": validation_label, "test": test_label},
      num_levels,
  )
  return Dataset(
      name=name,
      builder=arrays.ArraysBuilder(name, splits, num_levels),
      splits={r: r for r in splits},
  )


def _splits_by_role(builder, given: dict[str, str]) -> dict[str, str]:
  unknown = set(given) - set(SPLIT_ROLES)
  if unknown:
    raise errors.UserError(
        f"splits are named for the roles {', '.join(SPLIT_ROLES)}, not {', '.join(sorted(unknown))}"
    )
  splits = {"train": "train", "test": "test", **given}
  if "validation" not in splits and "validation" in builder.info.splits:
    splits["validation"] = "validation"
  return splits


def _unknown(name: str) -> errors.UserError:
  """The error of a data set name that is not known, with the closest known name."""
  configs = "|".join(c.name for c in tabular.MafTabular.BUILDER_CONFIGS)
  known = [
      *EMBEDDED_NAMES,
      *(f"maf_tabular/{c}" for c in configs.split("|")),
      *tfds.list_builders(with_community_datasets=False),
  ]
  closest = difflib.get_close_matches(name, known, n=1)
  return errors.UserError(
      f"unknown data set {name!r}{f' (did you mean {closest[0]!r}?)' if closest else ''}; "
      f"embedded: {', '.join(EMBEDDED_NAMES)}, maf_tabular/<{configs}>; a .npz file of "
      "arrays; or any TFDS name"
  )


def _prepared_builder(name: str, data_dir: str | None):
  """The TFDS builder of `name`, prepared in `data_dir`: the zoo's own from local files, any
  other by TFDS's download where it can reach the network."""
  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except tfds.core.registered.DatasetNotFoundError:
    raise _unknown(name) from None
  except ValueError as e:  # a known builder, an unknown config of it
    if "BuilderConfig" not in str(e):
      raise
    raise _unknown(name) from None
  if builder.is_prepared():
    return builder
  if builder.name in _EMBEDDED:
    manual_dir = os.path.join(builder.data_dir_root, "downloads", "manual")
    if isinstance(builder, tabular.MafTabular):
      builder.check_manual_files(manual_dir)
    # TFDS announces "Downloading and preparing" on stdout and draws progress bars on stderr; an
    # embedded set downloads nothing and is written in seconds, so both are dropped rather than
    # mixed into results and one-line errors.
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
      )
  else:
    with contextlib.redirect_stdout(sys.stderr):  # a download's progress is worth seeing
      _prepare_by_download(name, builder)
  return builder


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
  dequantisation noise: a property of the data set, the same for every run and seed.

  Args:
    dataset: a `Dataset`.
    kind: one of `PREPROCESSING_KINDS`.
    alpha: the logit transform's boundary shrinkage, x -> alpha + (1 - 2 alpha) x (MAF paper: 1e-6).
    zca_epsilon: added to the covariance's eigenvalues before ZCA's inverse square root.

  Returns:
    The `Preprocessing`: its map of a batch into the model's space, its inverse and the
    log-determinant that puts a density back in pixel space.

  Raises:
    zoo.errors.UserError: an unknown kind, or a pixel preprocessing of real-valued data.
  """
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
    "from_arrays",
    "preprocessing",
    "TrainStream",
    "train_batches",
    "gather",
    "eval_batches",
    "balanced_subset",
    "EMBEDDED_NAMES",
    "SPLIT_ROLES",
]

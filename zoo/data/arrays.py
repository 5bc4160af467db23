"""One's own arrays as a zoo data set, read by role as a TFDS set is: `zoo.data.from_arrays`,
or a `.npz` file of them named as the data set (`--config.dataset=path/to/file.npz`).

`ArraysBuilder` is the part of a TFDS builder that `zoo.data.Dataset` reads (`name`,
`info.features`, `as_data_source`), over arrays in memory, so that preprocessing, batch
streams, evaluation and checkpoints treat the arrays exactly as a named set.
"""

import dataclasses
import os
import types

import numpy as np
import tensorflow_datasets as tfds

from zoo import errors

ROLES = ("train", "validation", "test")


@dataclasses.dataclass
class _Records:
  """A split's examples as TFDS's data source gives them: `len` and `__getitems__`."""

  x_key: str
  x: np.ndarray
  label: np.ndarray | None

  def __len__(self) -> int:
    return len(self.x)

  def __getitems__(self, indices) -> list[dict]:
    indices = np.asarray(list(indices), np.int64)
    return [
        {self.x_key: self.x[i], **({"label": self.label[i]} if self.label is not None else {})}
        for i in indices
    ]


class ArraysBuilder:
  """`name`, `info.features` (`x`, or `image` for (H, W, C) examples, and `label` where labels
  are given) and `as_data_source(split)` over the splits' arrays; `num_levels`, the values of
  uint8 pixels."""

  def __init__(
      self, name: str, splits: dict[str, tuple[np.ndarray, np.ndarray | None]], num_levels: int
  ):
    x, labels = next(iter(splits.values()))
    x_key = "image" if x.ndim == 4 else "x"
    features = {x_key: tfds.features.Tensor(shape=x.shape[1:], dtype=x.dtype)}
    if labels is not None:
      classes = 1 + max(int(label.max(initial=0)) for _, label in splits.values())
      features["label"] = tfds.features.ClassLabel(num_classes=classes)
    self.name, self.num_levels = name, num_levels
    self.info = types.SimpleNamespace(features=tfds.features.FeaturesDict(features))
    self._sources = {role: _Records(x_key, x, label) for role, (x, label) in splits.items()}

  def as_data_source(self, split: str, decoders=None) -> _Records:
    del decoders  # nothing is encoded
    return self._sources[split]


def checked_splits(name: str, arrays: dict, labels: dict, num_levels: int = 256) -> dict:
  """{role: (x, labels or None)} of the roles given, each checked: `train` and `test` are
  needed; `num_levels` is a uint8 pixel's; every split's examples have one shape and dtype
  (float32 values, or uint8 pixels); labels, given for every split or none, are one
  non-negative int per example."""
  if not 2 <= num_levels <= 256:
    raise errors.UserError(f"{name}: num_levels must be in 2 ... 256, not {num_levels}")
  missing = [role for role in ("train", "test") if arrays.get(role) is None]
  if missing:
    raise errors.UserError(f"{name}: {' and '.join(missing)} arrays are needed")
  splits = {}
  for role in ROLES:
    if arrays.get(role) is None:
      continue
    x = np.asarray(arrays[role])
    if x.dtype != np.uint8:
      x = x.astype(np.float32)
    if x.ndim < 2 or not len(x):
      raise errors.UserError(
          f"{name}: {role} must be examples stacked on a first axis, not shape {x.shape}"
      )
    label = labels.get(role)
    if label is not None:
      label = np.asarray(label)
      if (
          label.shape != (len(x),)
          or not np.issubdtype(label.dtype, np.integer)
          or (label < 0).any()
      ):
        raise errors.UserError(
            f"{name}: {role}_label must be one non-negative int per example ({len(x)}), "
            f"not {label.dtype} of shape {label.shape}"
        )
      label = label.astype(np.int64)
    splits[role] = (x, label)
  first_x, first_label = splits["train"]
  for role, (x, label) in splits.items():
    if x.shape[1:] != first_x.shape[1:] or x.dtype != first_x.dtype:
      raise errors.UserError(
          f"{name}: {role}'s examples are {x.dtype} of shape {x.shape[1:]}, train's "
          f"{first_x.dtype} of shape {first_x.shape[1:]}"
      )
    if (label is None) != (first_label is None):
      raise errors.UserError(f"{name}: labels must be given for every split or for none")
  return splits


KEYS = (*ROLES, *(f"{role}_label" for role in ROLES))


def read_npz(path: str) -> dict:
  """The arrays of a `.npz` file by key, each of `KEYS` (`train`, `validation`, `test`, and
  `<role>_label`), None where the file has none; a `UserError` for a file that is missing or
  holds other keys."""
  if not os.path.exists(path):
    raise errors.UserError(f"data set {path!r}: no such file")
  with np.load(path) as saved:
    unknown = sorted(set(saved.files) - set(KEYS))
    if unknown:
      raise errors.UserError(
          f"data set {path!r} holds {', '.join(unknown)}; its arrays are named "
          f"{', '.join(KEYS)}"
      )
    return {key: saved[key] if key in saved.files else None for key in KEYS}

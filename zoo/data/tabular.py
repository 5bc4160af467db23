"""The MAF paper's tabular data sets, with the paper's preprocessing (its section 4.2 and the
authors' published loaders), read from the files of the paper's data archive placed in TFDS's
manual directory: `maf_tabular/power`, `gas`, `hepmass`, `miniboone`, `bsds300`."""

import collections
import dataclasses
import os
from collections.abc import Callable

import numpy as np
import tensorflow_datasets as tfds

from zoo import errors

ARCHIVE_URL = "https://zenodo.org/record/1161203/files/data.tar.gz"


def _split_off(data, fraction):
  """(head, tail) with the last `fraction` of the rows as the tail."""
  n_tail = int(fraction * data.shape[0])
  return data[:-n_tail], data[-n_tail:]


def _normalise(train, *others):
  mean, std = train.mean(0), train.std(0)
  return tuple((d - mean) / std for d in (train, *others))


def load_power(directory):
  """Household power: drop the date/time columns, add the paper's jitter, split 81/9/10."""
  rng = np.random.RandomState(42)
  data = np.load(os.path.join(directory, "power", "data.npy"))
  rng.shuffle(data)
  n = data.shape[0]
  data = np.delete(data, 3, axis=1)
  data = np.delete(data, 1, axis=1)
  noise = np.hstack(
      (0.001 * rng.rand(n, 1), 0.01 * rng.rand(n, 1), rng.rand(n, 3), np.zeros((n, 1)))
  )
  rest, test = _split_off(data + noise, 0.1)
  train, validation = _split_off(rest, 0.1)
  train_and_validation = np.vstack((train, validation))
  mean, std = train_and_validation.mean(0), train_and_validation.std(0)
  return tuple((d - mean) / std for d in (train, validation, test))


def load_gas(directory):
  """Gas sensors (ethylene/CO): drop labels and time, then drop columns until no two correlate
  above 0.98, standardise, split 81/9/10."""
  import pandas as pd  # pylint: disable=import-outside-toplevel

  data = pd.read_pickle(os.path.join(directory, "gas", "ethylene_CO.pickle"))
  data = data.drop(columns=["Meth", "Eth", "Time"])

  def correlated_counts(frame):
    return (frame.corr() > 0.98).values.sum(axis=1)

  counts = correlated_counts(data)
  while np.any(counts > 1):
    data = data.drop(columns=data.columns[np.where(counts > 1)[0][0]])
    counts = correlated_counts(data)
  data = ((data - data.mean()) / data.std()).values
  rest, test = _split_off(data, 0.1)
  train, validation = _split_off(rest, 0.1)
  return train, validation, test


def load_hepmass(directory):
  """HEPMASS: signal events only, the test file's stray last column dropped, standardised by the
  training set, features with a value repeated more than 5 times removed, 10% of train held out."""
  import pandas as pd  # pylint: disable=import-outside-toplevel

  train = pd.read_csv(os.path.join(directory, "hepmass", "1000_train.csv"), index_col=False)
  test = pd.read_csv(os.path.join(directory, "hepmass", "1000_test.csv"), index_col=False)
  train = train[train[train.columns[0]] == 1].drop(columns=train.columns[0])
  test = test[test[test.columns[0]] == 1].drop(columns=test.columns[0])
  test = test.drop(columns=test.columns[-1])
  mean, std = train.mean(), train.std()
  train, test = ((train - mean) / std).values, ((test - mean) / std).values
  keep = [
      i
      for i, feature in enumerate(train.T)
      if sorted(collections.Counter(feature).items())[0][1] <= 5
  ]
  train, test = train[:, keep], test[:, keep]
  train, validation = _split_off(train, 0.1)
  return train, validation, test


def load_miniboone(directory):
  """MiniBooNE particle identification: split 81/9/10, standardised by train + validation."""
  data = np.load(os.path.join(directory, "miniboone", "data.npy"))
  rest, test = _split_off(data, 0.1)
  train, validation = _split_off(rest, 0.1)
  train_and_validation = np.vstack((train, validation))
  mean, std = train_and_validation.mean(0), train_and_validation.std(0)
  return tuple((d - mean) / std for d in (train, validation, test))


def load_bsds300(directory):
  """8x8 patches of BSDS300 natural images (63 dims: the bottom-right pixel is dropped), as
  prepared in the paper's HDF5 file."""
  import h5py  # pylint: disable=import-outside-toplevel

  with h5py.File(os.path.join(directory, "BSDS300", "BSDS300.hdf5"), "r") as f:
    return tuple(np.asarray(f[split]) for split in ("train", "validation", "test"))


@dataclasses.dataclass
class TabularConfig(tfds.core.BuilderConfig):
  """One of the MAF paper's sets: its dimension and the files it is read from."""

  dims: int = 0
  files: tuple[str, ...] = ()
  load: Callable | None = None


class MafTabular(tfds.core.GeneratorBasedBuilder):
  """The five UCI/BSDS300 sets of the MAF paper, preprocessed as the paper did."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [
      TabularConfig(name="power", dims=6, files=("power/data.npy",), load=load_power),
      TabularConfig(name="gas", dims=8, files=("gas/ethylene_CO.pickle",), load=load_gas),
      TabularConfig(
          name="hepmass",
          dims=21,
          files=("hepmass/1000_train.csv", "hepmass/1000_test.csv"),
          load=load_hepmass,
      ),
      TabularConfig(name="miniboone", dims=43, files=("miniboone/data.npy",), load=load_miniboone),
      TabularConfig(name="bsds300", dims=63, files=("BSDS300/BSDS300.hdf5",), load=load_bsds300),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Download the MAF paper's data archive {ARCHIVE_URL}, unpack it, and place the folders "
      "power/, gas/, hepmass/, miniboone/ and BSDS300/ from its data/ folder in the manual "
      "directory (by default DATA_DIR/downloads/manual/)."
  )

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(
            {"x": tfds.features.Tensor(shape=(self.builder_config.dims,), dtype=np.float32)}
        ),
        description=__doc__,
    )

  def check_manual_files(self, manual_dir: str):
    """Raise a `DatasetUnavailableError` naming the files missing from `manual_dir`."""
    missing = [
        f for f in self.builder_config.files if not os.path.exists(os.path.join(manual_dir, f))
    ]
    if missing:
      raise errors.DatasetUnavailableError(
          f"{self.builder_config.name} needs {', '.join(missing)} in the manual directory "
          f"{manual_dir}: unpack the MAF paper's archive {ARCHIVE_URL} there"
      )

  def _split_generators(self, dl_manager):
    directory = os.fspath(dl_manager.manual_dir)
    self.check_manual_files(directory)
    splits = self.builder_config.load(directory)
    return {
        name: self._generate_examples(data)
        for name, data in zip(("train", "validation", "test"), splits)
    }

  def _generate_examples(self, data):
    for i, row in enumerate(np.asarray(data, np.float32)):
      yield i, {"x": row}

"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 17 grey levels 0..16) as a TFDS
builder that needs no network: a fixed shuffle split into train 1,257 / validation 180 / test
360."""

import numpy as np
import tensorflow_datasets as tfds

NUM_LEVELS = 17
SPLITS = {"train": slice(0, 1257), "validation": slice(1257, 1437), "test": slice(1437, None)}


class Digits(tfds.core.GeneratorBasedBuilder):
  """UCI/scikit-learn optical digits, 8x8x1 uint8 in [0, 16] with labels 0-9."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=10),
            }
        ),
        description=__doc__,
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    # imported here, once the set is prepared: scikit-learn takes a second to import
    from sklearn import datasets as sklearn_datasets  # pylint: disable=import-outside-toplevel

    digits = sklearn_datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    images = digits.images[order].astype(np.uint8)[..., None]
    labels = digits.target[order]
    return {split: self._generate_examples(images[s], labels[s]) for split, s in SPLITS.items()}

  def _generate_examples(self, images, labels):
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image, "label": int(label)}

"""PixelGAN autoencoders (Makhzani & Frey 2017).

  smoke    seconds: a small encoder and PixelCNN on the embedded digits.
  default  the categorical prior with K = 30 clusters (the paper's unsupervised MNIST setting) on
           the embedded 8x8 digits, dynamically binarised.
  paper    the same on binarised MNIST (TFDS `mnist`, where it can be downloaded), with 10,000
           training images held out (`MNIST_SPLITS`): the clustering protocol labels each
           cluster by its most confident validation example.
Each step runs the paper's phases in order, each with its own Adam state: reconstruction
(encoder and PixelCNN), discriminator, regularisation (the encoder against the discriminator).
--config.model.prior=gaussian --config.scores=() for the global/local decomposition;
--config.model.semi_supervised=True --config.model.latent_dim=10 for the semi-supervised
setting: a fourth phase fits the code to `num_labels` labels (the paper's 100 on MNIST).
8-bit images keep their 256 levels, each channel a softmax over them, for the paper's other sets
(TFDS names, where they can be downloaded; NORB at its stored 96x96, not downsampled):
  --config.dataset=svhn_cropped --config.preprocess=scale --config.model.num_levels=256
    --config.model.features=96 --config.num_labels=1000   (features: a multiple of 3 channels)
  --config.dataset=smallnorb --config.preprocess=scale --config.model.num_levels=256
    --config.model.latent_dim=5 --config.num_labels=1000  (its 5 categories)
"""

from zoo.configs import MNIST_SPLITS
from zoo.configs import base


def get_config(preset: str = "default"):
  config = base("pixelgan_ae", preset)
  config.model.prior = "categorical"
  config.model.latent_dim = 30
  config.model.encoder_dims = (1000, 1000)
  config.model.discriminator_dims = (1000, 1000)
  config.model.noise_dim = 0
  config.model.features = 64
  config.model.num_blocks = 6
  config.model.semi_supervised = False
  config.num_labels = 100  # the labelled examples of a semi-supervised run, as many per class
  config.dataset = "digits"
  config.preprocess = "binarize"
  config.batch_size = 100
  config.learning_rate = 1e-4
  config.first_phase_updates = 1  # the reconstruction phase once per step, as each other
  config.burst_updates = 0
  config.burst_first = 0
  config.burst_every = 1
  config.figures = ("samples", "decomposition")
  config.scores = ("clustering",)
  config.num_images = 100
  if preset == "smoke":
    config.model.encoder_dims = (32,)
    config.model.discriminator_dims = (32,)
    config.model.features = 8
    config.model.num_blocks = 1
    config.update(num_steps=10, log_every=5, eval_every=10, checkpoint_every=10)
    config.num_images = 4
  elif preset == "default":
    config.update(num_steps=10_000, log_every=100, eval_every=1000, checkpoint_every=1000)
  else:
    config.dataset = "mnist"
    config.splits.update(MNIST_SPLITS)
    config.update(num_steps=100_000, log_every=100, eval_every=5000, checkpoint_every=5000)
  return config


def describe(model) -> str:
  """The paper's name for the variant of `model` (its config): its prior and training."""
  prior = (
      f"categorical prior (K={model.latent_dim})"
      if model.prior == "categorical"
      else f"Gaussian prior (d={model.latent_dim})"
  )
  return f"PixelGAN AE, {prior}{', semi-supervised' if model.semi_supervised else ''}"

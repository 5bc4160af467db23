"""VLAE (Zhao, Song & Ermon 2017) and the hierarchical VAE it is contrasted with.

  smoke    seconds: a small ladder on the embedded digits, dynamically binarised.
  default  minutes on 2 CPU cores: three 2-D codes (the paper's MNIST ladder) with narrower
           layers on the embedded 8x8 digits, dynamically binarised.
  paper    the paper's MNIST model: three 2-D codes, conv 64-128 and 1024-unit dense layers,
           Adam 2e-4, batch 100, on TFDS `binarized_mnist` (where it can be downloaded).
Switch to the hierarchical VAE with --config.model.hierarchy=markov.
"""

from zoo.configs import base


def get_config(preset: str = "default"):
  config = base("vlae", preset)
  config.model.latent_dims = (2, 2, 2)
  config.model.hidden_dim = 1024
  config.model.conv_features = (64, 128)
  config.model.hierarchy = "ladder"
  config.model.num_eval_samples = 1000
  config.preprocess = "binarize"
  config.batch_size = 100
  config.eval_batch_size = 100  # x num_eval_samples codes per evaluation pass
  config.num_images = 64
  config.figures = ("samples", "layer_grids")
  if preset == "smoke":
    config.dataset = "digits"
    config.model.hidden_dim = 32
    config.model.conv_features = (8, 16)
    config.model.num_eval_samples = 100
    config.update(num_steps=20, log_every=10, eval_every=10, checkpoint_every=10)
  elif preset == "default":
    config.dataset = "digits"
    config.model.hidden_dim = 256
    config.model.conv_features = (32, 64)
    config.learning_rate = 1e-3
    config.update(num_steps=10_000, log_every=100, eval_every=2000, checkpoint_every=1000)
  else:
    config.dataset = "binarized_mnist"
    config.preprocess = "none"  # already binary
    config.learning_rate = 2e-4
    config.update(num_steps=200_000, log_every=1000, eval_every=10_000, checkpoint_every=10_000)
  return config


def describe(model) -> str:
  """The paper's name for the variant of `model` (its config)."""
  return "VLAE" if model.hierarchy == "ladder" else "hierarchical VAE"

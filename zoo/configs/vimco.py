"""VIMCO on sigmoid belief networks (Mnih & Rezende 2016).

  smoke    seconds: a one-layer SBN on the embedded digits, dynamically binarised.
  default  minutes on 2 CPU cores: a 200-unit SBN on binarised digits, VIMCO with K = 5.
  paper    the paper's 200-200-200 SBN on TFDS binarized_mnist (downloaded where possible),
           VIMCO with K = 5; the paper's sweep is K in {1, 2, 5, 10, 50} for each estimator.
Switch with --config.model.estimator={vimco,nvil,reinforce,rws} and --config.model.num_samples=K.
"""

from zoo.configs import base


def get_config(preset: str = "default"):
  config = base("vimco", preset)
  config.model.layer_sizes = (200, 200, 200)
  config.model.estimator = "vimco"
  config.model.num_samples = 5
  config.model.num_eval_samples = 1000
  config.preprocess = "binarize"
  config.learning_rate = 3e-4
  config.num_images = 64
  config.gradient_statistics_draws = 16
  if preset == "smoke":
    config.dataset = "digits"
    config.model.layer_sizes = (16,)
    config.model.num_eval_samples = 100
    config.batch_size = 64
    config.update(num_steps=20, log_every=10, eval_every=10, checkpoint_every=10)
  elif preset == "default":
    config.dataset = "digits"
    config.model.layer_sizes = (200,)
    config.batch_size = 100
    config.learning_rate = 1e-3
    config.update(num_steps=5000, log_every=100, eval_every=500, checkpoint_every=500)
  else:
    config.dataset = "binarized_mnist"
    config.preprocess = "none"  # already binary
    config.batch_size = 24
    config.update(num_steps=1_000_000, log_every=1000, eval_every=20_000, checkpoint_every=20_000)
  return config


def describe(model) -> str:
  """The paper's name for the estimator of `model` (its config) and its K samples."""
  return f"{model.estimator.upper()} (K={model.num_samples})"

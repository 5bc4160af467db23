"""Training configurations, one file per model: `get_config(preset)` for smoke, default, paper."""
import importlib

import ml_collections

PRESETS = ("smoke", "default", "paper")


def base(model_name: str, preset: str) -> ml_collections.ConfigDict:
  """The fields every model's config has, with values that every preset overrides as needed."""
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r}; presets are {', '.join(PRESETS)}")
  config = ml_collections.ConfigDict()
  config.model_name = model_name
  config.seed = 0
  config.num_seeds = 1  # replicas trained at once in one step, of seeds seed, seed + 1, ...
  config.dataset = ""
  config.data_dir = ""  # TFDS's default (~/tensorflow_datasets) when empty
  config.preprocess = "none"  # one of zoo.data.transforms.KINDS: none, scale, binarize, ...
  config.alpha = 1e-6  # of the logit transform
  config.zca_epsilon = 1e-4  # added to the covariance's eigenvalues before ZCA whitening
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.optimizer = "adam"  # adam | rmsprop (experiments.train.make_optimizer)
  config.learning_rate = 1e-3
  config.adam_b1 = 0.9
  config.adam_b2 = 0.999
  config.adam_eps = 1e-8
  config.weight_decay = 0.0  # L2 penalty on all parameters, added to the gradient
  config.num_steps = 1000
  config.log_every = 50
  config.eval_every = 500
  config.checkpoint_every = 500
  config.early_stopping_patience = 0  # evaluations without improvement; 0 trains all steps
  config.num_samples = 64
  config.bfloat16 = False  # mixed precision: compute in bfloat16, keep float32 parameters
  config.gradient_statistics_draws = 0  # >0: log the estimator's variance and SNR per group
  config.model = ml_collections.ConfigDict()
  return config


def finalize(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` with the settings that its model's config module derives from other
  fields filled in (by that module's `finalize`, where it has one: WGAN's optimiser follows
  its variant unless given)."""
  module = importlib.import_module(f"experiments.configs.{config.model_name}")
  config = config.copy_and_resolve_references()
  return module.finalize(config) if hasattr(module, "finalize") else config

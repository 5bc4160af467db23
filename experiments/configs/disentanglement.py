"""What the beta-VAE and DIP-VAE configs share: the papers' 64x64 setting on procedural dSprites.

  smoke    seconds: narrow layers on dsprites_procedural/coarse (11,520 images).
  default  tens of minutes on 2 CPU cores: the papers' architecture on dsprites_procedural/full
           (all 737,280 images, prepared once on first use: some ten minutes here, by
           the coarse grid's rate of about 1,100 images/s).
  paper    the papers' architecture and optimiser as disentanglement_lib fixes them: Adam 1e-4,
           batch 64, 300,000 steps.
"""
from experiments.configs import base


def get_config(model_name: str, preset: str):
  config = base(model_name, preset)
  config.model.latent_dim = 10
  config.model.conv_features = (32, 32, 64, 64)
  config.model.hidden_dim = 256
  config.preprocess = "none"  # binary pixels
  config.batch_size = 64
  config.eval_batch_size = 500
  config.num_samples = 64
  if preset == "smoke":
    config.dataset = "dsprites_procedural/coarse"
    config.model.conv_features = (8, 8, 16, 16)
    config.model.hidden_dim = 32
    config.num_steps = 10
    config.log_every = 5
    config.eval_every = 10
    config.checkpoint_every = 10
  elif preset == "default":
    config.dataset = "dsprites_procedural/full"
    config.learning_rate = 5e-4
    config.num_steps = 5000
    config.log_every = 100
    config.eval_every = 5000
    config.checkpoint_every = 500
  else:
    config.dataset = "dsprites_procedural/full"
    config.learning_rate = 1e-4
    config.num_steps = 300_000
    config.log_every = 1000
    config.eval_every = 50_000
    config.checkpoint_every = 10_000
  return config

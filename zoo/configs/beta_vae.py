"""beta-VAE (Higgins et al. 2017): presets as zoo/configs/disentanglement.py.
--config.model.beta=1 is the plain VAE; the paper's dSprites model uses beta = 4."""

from zoo.configs import disentanglement


def get_config(preset: str = "default"):
  config = disentanglement.get_config("beta_vae", preset)
  config.model.beta = 4.0
  return config

"""DIP-VAE (Kumar et al. 2018): presets as zoo/configs/disentanglement.py, without `paper`:
the paper's own 2D-shapes network and optimiser (its section 6 and appendix) could not be read
on these machines, so `study` (disentanglement_lib's protocol, whose DIP-VAE follows the
paper's eq. 6 and 7) is the published setting the zoo offers.
--config.model.variant=ii for DIP-VAE-II; lambda_d follows the variant (10 lambda_od for I,
lambda_od for II: disentanglement_lib's unsupervised_study_v1/sweep.py, lambda_d_factor)
unless given."""

from ml_collections import config_dict

from zoo import domains
from zoo import errors
from zoo.configs import disentanglement
from zoo.models import dip_vae

PRESETS = ("smoke", "default", "study")
LAMBDA_D_FACTOR = {"i": 10.0, "ii": 1.0}


def get_config(preset: str = "default"):
  if preset == "paper":
    raise errors.UserError(
        "--preset=paper: dip_vae has none yet (Kumar et al. 2018's own dSprites network and "
        "optimiser could not be read here); --preset=study is disentanglement_lib's protocol"
    )
  config = disentanglement.get_config("dip_vae", preset, PRESETS)
  config.model.variant = "i"
  config.model.lambda_od = 10.0
  config.model.lambda_d = config_dict.placeholder(float)
  return config


def finalize(config):
  """lambda_d from the variant, unless given."""
  domains.check("dip_vae: variant", config.model.variant, dip_vae.Variant)
  if config.model.lambda_d is None:
    config.model.lambda_d = LAMBDA_D_FACTOR[config.model.variant] * config.model.lambda_od
  return config


def describe(model) -> str:
  """The paper's name for the variant of `model` (its config), with its two weights."""
  return (
      f"DIP-VAE-{model.variant.upper()} (lambda_od={model.lambda_od:g}, "
      f"lambda_d={model.lambda_d:g})"
  )

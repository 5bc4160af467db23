"""WGAN (Arjovsky et al. 2017), WGAN-GP and the standard GAN.

  smoke    seconds: small MLP players on toy2d/ring_of_8.
  default  minutes on 2 CPU cores: the paper's WGAN (clipping c = 0.01, RMSProp 5e-5,
           n_critic = 5 and 100 for the first 25 and every 500th generator step, batch 64) with
           the toy experiments' 3 x 512 ReLU players on the 8-Gaussian mixture
           (toy2d/eight_gaussians; the narrower toy2d/ring_of_8 and toy2d/grid_of_25 are the
           harder tests).
  paper    the paper's DCGAN setting on its LSUN bedrooms (TFDS `lsun/bedroom`, prepared where
           it can be downloaded), framed to 64 x 64 as its code does; WGAN-GP's lambda = 10.
Switch the objective with --config.model.variant={wgan,wgan_gp,gan}: the optimiser and critic
schedule left unset below follow the variant's paper (`TRAINING`), unless given on the command
line. Pick the data with --config.dataset (toy2d/grid_of_25, digits, mnist, ...).
"""

from ml_collections import config_dict

from zoo import domains
from zoo.configs import base
from zoo.models import wgan

# The papers' training settings per variant, from the authors' released code for the
# experiments the presets mirror:
# - wgan: WGAN's Algorithm 1 and martinarjovsky/WassersteinGAN main.py (RMSProp 5e-5, clip
#   0.01, 5 critic steps, 100 for the first 25 generator steps and every 500th).
# - wgan_gp: Adam 1e-4, beta1 0.5, beta2 0.9, 5 critic steps, as igul222/improved_wgan_training
#   trains its toy, MNIST and CIFAR-10 models (gan_toy.py, gan_mnist.py, gan_cifar.py); the
#   paper's Algorithm 1 lists beta1 = 0 as its default, which the code uses for its 64x64 models
#   alone (gan_64x64.py).
# - gan: the DCGAN baseline of the same code (gan_cifar.py, gan_mnist.py): Adam 2e-4, beta1 0.5,
#   beta2 TensorFlow's 0.999, one discriminator step per generator step.
# At 64 x 64 (config.image_size 64: the paper preset's LSUN) `WIDE_IMAGES` replaces these where
# the 64x64 script differs, and the image critic's normalisation follows `finalize`.
TRAINING = {
    "wgan": dict(optimizer="rmsprop", learning_rate=5e-5, first_phase_updates=5, burst_updates=100),
    "wgan_gp": dict(
        optimizer="adam",
        learning_rate=1e-4,
        adam_b1=0.5,
        adam_b2=0.9,
        first_phase_updates=5,
        burst_updates=0,
    ),
    "gan": dict(
        optimizer="adam",
        learning_rate=2e-4,
        adam_b1=0.5,
        adam_b2=0.999,
        first_phase_updates=1,
        burst_updates=0,
    ),
}


# WGAN-GP's 64x64 script (gan_64x64.py: AdamOptimizer(1e-4, beta1=0., beta2=0.9)).
WIDE_IMAGES = {"wgan_gp": dict(adam_b1=0.0)}
# The batch of WGAN-GP's toy script (gan_toy.py: BATCH_SIZE = 256); the others train on 64.
TOY_BATCH = {"wgan_gp": 256}


def get_config(preset: str = "default"):
  config = base("wgan", preset)
  config.model.variant = "wgan"
  config.model.latent_dim = 2
  config.model.hidden_dims = (512, 512, 512)
  config.model.width = 64
  config.model.weight_clip = 0.01
  config.model.penalty_weight = 10.0
  config.model.critic_norm = ""  # the authors' for the variant unless given (finalize)
  config.batch_size = config_dict.placeholder(int)  # 64, or TOY_BATCH on toy2d, unless given
  for key, kind in (
      ("optimizer", str),
      ("learning_rate", float),
      ("adam_b1", float),
      ("adam_b2", float),
      ("first_phase_updates", int),
      ("burst_updates", int),
  ):
    config[key] = config_dict.placeholder(kind)  # from TRAINING[variant] unless given
  config.burst_first = 25
  config.burst_every = 500
  config.eval_batch_size = 1000
  if preset != "paper":
    # WGAN-GP's own toy experiments use lambda = 0.1 ("smaller lambda seems to help for toy
    # tasks"); with the image setting's 10 it oscillated on toy2d/eight_gaussians here.
    config.model.penalty_weight = 0.1
  if preset == "smoke":
    config.dataset = "toy2d/ring_of_8"
    config.model.hidden_dims = (32, 32)
    config.num_steps = 20
    config.burst_first = 2
    config.update(log_every=10, eval_every=10, checkpoint_every=10)
  elif preset == "default":
    config.dataset = "toy2d/eight_gaussians"
    config.update(num_steps=5000, log_every=100, eval_every=500, checkpoint_every=500)
  else:
    # martinarjovsky/WassersteinGAN main.py: --dataset lsun (bedroom_train), --imageSize 64
    # through Resize(64) + CenterCrop(64); TFDS's lsun/bedroom holds train and validation only,
    # and its 300 validation images are the test role's.
    config.dataset = "lsun/bedroom"
    config.splits.test = "validation"
    config.image_size = 64
    config.preprocess = "dequantize"
    config.model.latent_dim = 100
    config.update(num_steps=100_000, log_every=100, eval_every=5000, checkpoint_every=5000)
  return config


def finalize(config):
  """Fill the settings left unset from the variant's paper and its authors' code: the training
  settings (`TRAINING`, at 64 x 64 `WIDE_IMAGES`), the batch (`TOY_BATCH` on toy2d sets) and
  the image critic's normalisation (batch norm for wgan and gan, as DCGAN_D; for wgan_gp layer
  norm at 64 x 64 and none on smaller images, as gan_64x64.py and gan_mnist.py /
  gan_cifar.py)."""
  variant = config.model.variant
  domains.check("wgan: variant", variant, wgan.Variant)
  wide = config.image_size == 64
  settings = {**TRAINING[variant], **(WIDE_IMAGES.get(variant, {}) if wide else {})}
  for key, value in settings.items():
    if config[key] is None:
      config[key] = value
  if config.batch_size is None:
    toy = config.dataset.startswith("toy2d")
    config.batch_size = TOY_BATCH.get(variant, 64) if toy else 64
  if not config.model.critic_norm:
    config.model.critic_norm = "batch" if variant != "wgan_gp" else "layer" if wide else "none"
  for key in ("adam_b1", "adam_b2"):
    if config[key] is None:
      config[key] = base("wgan", "default")[key]
  return config


def describe(model) -> str:
  """The paper's name for the objective of `model` (its config)."""
  return {"wgan": "WGAN", "wgan_gp": "WGAN-GP", "gan": "GAN"}[model.variant]

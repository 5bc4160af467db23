"""What the beta-VAE and DIP-VAE configs share: dSprites, 10 latents, binary pixels, the metrics.

smoke    seconds: narrow conv layers on dsprites_procedural/coarse (11,520 images).
default  minutes on 2 CPU cores: the model's paper network and optimiser where the model file
         sets them (beta-VAE: Higgins et al.'s fully connected network), else the conv network,
         on dsprites_procedural/full (all 737,280 images, prepared once on first use: under 2
         minutes on this 2-core CPU).
paper    the paper's own dSprites setting (in the model's config file), on TFDS's `dsprites`
         (the published 737,280 images, where they can be downloaded;
         --config.dataset=dsprites_procedural/full offline).
study    Locatello et al. 2019's protocol (disentanglement_lib, config/unsupervised_study_v1/
         model_configs/shared.gin: batch 64, Adam 1e-4 with beta1 0.9, beta2 0.999, eps 1e-8,
         300,000 steps, 10 latents, Bernoulli pixels, its conv network), on TFDS's `dsprites`.
         It is neither paper's: the later study that compared both models on it.
paper and study divide the published set's one split: 10,000 images held out for the test
metrics and the reconstruction figures, the other 727,280 trained on (disentanglement_lib trains
on all of them); the metrics' ground truth reads every image by its labels.
"""

import ml_collections

from zoo.configs import base

PRESETS = ("smoke", "default", "paper", "study")


def get_config(model_name: str, preset: str, presets=PRESETS):
  config = base(model_name, preset, presets)
  config.model.latent_dim = 10
  config.model.network = "conv"
  config.model.fc_encoder = (1200, 1200)
  config.model.fc_decoder = (1200, 1200, 1200)
  config.model.conv_features = (32, 32, 64, 64)
  config.model.hidden_dim = 256
  config.preprocess = "none"  # binary pixels
  config.batch_size = 64
  config.eval_batch_size = 500
  config.num_images = 64
  config.figures = ("samples", "traversals")
  config.scores = ("disentanglement",)
  # Sample counts of the metrics at the final evaluation (zoo.evaluation.disentanglement_
  # metrics); paper and study keep the published ones, the others use fewer for speed.
  config.disentanglement = ml_collections.ConfigDict(
      {"num_points": 15_000, "score_train": 1_000, "score_eval": 500}
  )
  if preset == "smoke":
    config.dataset = "dsprites_procedural/coarse"
    config.model.conv_features = (8, 8, 16, 16)
    config.model.hidden_dim = 32
    config.update(num_steps=10, log_every=5, eval_every=10, checkpoint_every=10)
    config.disentanglement.update(num_points=300, score_train=20, score_eval=10)
  elif preset == "default":
    config.dataset = "dsprites_procedural/full"
    config.learning_rate = 5e-4
    config.update(num_steps=5000, log_every=100, eval_every=5000, checkpoint_every=500)
  else:
    config.dataset = "dsprites"
    # TFDS stores the images in an order shuffled when it prepared them, so its first 10,000
    # are a fixed sample of the factor grid.
    config.splits.update(train="train[10000:]", test="train[:10000]")
    config.learning_rate = 1e-4
    config.update(num_steps=300_000, log_every=1000, eval_every=50_000, checkpoint_every=10_000)
    config.disentanglement.update(score_train=10_000, score_eval=5_000)
  return config


def use_fc_network(config, steps: int):
  """Higgins et al. 2017's dSprites network and optimiser (appendix A, Table 1, "2D shapes
  (VAE)": fully connected 1200-1200 ReLU encoder, 10 latents, 1200-1200-1200 tanh decoder to
  4096 Bernoulli logits, Adagrad 1e-2; zoo/nn/vae.py), trained `steps` steps."""
  config.model.network = "fc"
  config.optimizer = "adagrad"
  config.learning_rate = 1e-2
  config.num_steps = steps

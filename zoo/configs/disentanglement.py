"""What the beta-VAE and DIP-VAE configs share: the papers' 64x64 setting on dSprites.

smoke    seconds: narrow layers on dsprites_procedural/coarse (11,520 images).
default  tens of minutes on 2 CPU cores: the papers' architecture on dsprites_procedural/full
         (all 737,280 images, prepared once on first use: under 2 minutes on this 2-core CPU).
paper    the papers' architecture and optimiser as disentanglement_lib fixes them: Adam 1e-4,
         batch 64, 300,000 steps, on TFDS's `dsprites` (the published 737,280 images, where
         they can be downloaded; --config.dataset=dsprites_procedural/full offline). Its one
         split is divided: 10,000 images held out for the test metrics and the reconstruction
         figures, the other 727,280 trained on (disentanglement_lib trains on all of them);
         the metrics' ground truth reads every image by its labels.
"""

import ml_collections

from zoo.configs import base


def get_config(model_name: str, preset: str):
  config = base(model_name, preset)
  config.model.latent_dim = 10
  config.model.conv_features = (32, 32, 64, 64)
  config.model.hidden_dim = 256
  config.preprocess = "none"  # binary pixels
  config.batch_size = 64
  config.eval_batch_size = 500
  config.num_images = 64
  config.figures = ("samples", "traversals")
  config.scores = ("disentanglement",)
  # Sample counts of the metrics at the final evaluation (zoo.evaluation.disentanglement_
  # metrics); the paper preset keeps disentanglement_lib's, the others use fewer for speed.
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

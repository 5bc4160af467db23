"""NICE (Dinh, Krueger, Bengio 2014).

  smoke    seconds: a small NICE on the embedded digits, with a short inpainting.
  default  about a minute on 2 CPU cores: 4 additive couplings of 5x256 ReLU units on the
           embedded 8x8 digits, dequantised to [0, 1] as the paper's reported likelihoods. Adam's
           usual b2 = 0.999 (an earlier run with optax b2 = 0.01, the paper's figure misread as
           a decay, diverged at step 3945).
  paper    the paper's MNIST setting (section 5.1): 4 couplings of 5x1000 ReLU units, each
           moving the pixels of one parity by a function of the others (the paper's I1 / I2;
           the released exp/nice_mnist.yaml's Reordering 'tile' and split at 392 make the same
           partition, tests/test_nice.py), logistic prior, Adam with the paper's lr 1e-3,
           momentum 0.9, beta2 0.01, lambda 1, epsilon 1e-4, in optax's terms (below), the best
           model by validation log-likelihood "after 1500 epochs" (375,000 steps of batch 200
           on 50,000 images), validated on 10,000 training images held out (`MNIST_SPLITS`) as
           the authors' MonitorBasedSaveBest. The paper gives no batch size; 200 is the
           released yaml's. MNIST is loaded by TFDS name and needs a machine that can download
           it (or a prepared --config.data_dir).
All presets write inpainting.png: test images with hidden pixels filled by projected gradient
ascent on log p (the paper's section 5.2); --config.figures=samples skips it.
"""

from zoo.configs import MNIST_SPLITS
from zoo.configs import base


def get_config(preset: str = "default"):
  config = base("nice", preset)
  config.model.num_couplings = 4
  config.model.hidden_dims = (1000,) * 5
  config.model.prior = "logistic"
  config.preprocess = "dequantize"
  config.learning_rate = 1e-3
  # NICE section 4.1 gives Adam's settings in the first Adam draft's convention, where beta is
  # one minus the averaging decay and lambda decays beta1 (1: no decay), as code of that time
  # writes it (Blocks' Adam: beta1=0.1, beta2=0.001, variance = beta2 g^2 + (1 - beta2) v):
  # "momentum 0.9" is optax b1 = 0.9 and "beta2 = 0.01" is b2 = 1 - 0.01 = 0.99. (The authors'
  # released configs, laurent-dinh/nice exp/nice_mnist.yaml, train instead with RMSProp and
  # momentum, lr 1e-3 decayed by 1.0005 to 1e-4; the preset follows the paper's text.)
  config.adam_b1 = 0.9
  config.adam_b2 = 0.99
  config.adam_eps = 1e-4
  config.figures = ("samples", "inpainting")
  config.inpaint_steps = 1000
  if preset == "smoke":
    config.dataset = "digits"
    config.model.hidden_dims = (32, 32)
    config.batch_size = 64
    config.update(num_steps=20, log_every=10, eval_every=10, checkpoint_every=10)
    config.inpaint_steps = 20
  elif preset == "default":
    config.dataset = "digits"
    config.model.hidden_dims = (256,) * 5
    config.batch_size = 100
    config.update(num_steps=5000, log_every=100, eval_every=500, checkpoint_every=500)
    config.early_stopping_patience = 4
    config.adam_b2 = 0.999
  else:
    config.dataset = "mnist"
    config.splits.update(MNIST_SPLITS)
    config.batch_size = 200
    config.update(num_steps=375_000, log_every=500, eval_every=10_000, checkpoint_every=10_000)
  return config


# Test log-likelihood in nats of the paper's Table 2 (data dequantised and rescaled to [0, 1]).
PAPER_METRIC = "log_prob"  # what PAPER_RESULTS holds, in nats
PAPER_RESULTS = {"NICE": {"mnist": 1980.50, "svhn_cropped": 11496.55, "cifar10": 5371.78}}


def describe(model) -> str:
  """The paper's name for the variant of `model` (its config)."""
  del model
  return "NICE"

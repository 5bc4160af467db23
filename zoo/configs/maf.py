"""MAF (Papamakarios et al. 2017).

  smoke    seconds: a small MAF on toy2d/two_moons, for tests.
  default  minutes on 2 CPU cores: MAF(5) on the embedded 8x8 digits, logit space as the paper's
           image experiments, early stopping on validation.
  paper    the authors' UCI setting: MAF(5) of MADEs with two hidden layers and batch norm,
           the units per data set as `PAPER_NETWORKS`, Adam (1e-4 for the flows, 1e-3 for MADE
           and MADE MoG, as `PAPER_LEARNING_RATES`), batch 100, L2 1e-6, validated once an
           epoch and stopped after 30 epochs without improvement (gpapamak/maf,
           experiments.py: minibatch = 100, monitor_every = 1, patience = 30; ml/trainers.py
           counts monitor_every in epochs of ceil(N / minibatch) steps).
           Put the paper's files in the manual directory (see zoo/data/tabular.py) and pick the
           set with --config.dataset=maf_tabular/{power,gas,hepmass,miniboone,bsds300}.
Switch the paper's variants with --config.model.*: num_layers (MADE: 1 with batch_norm=False),
num_components (MoG base), layer=coupling (Real NVP), num_classes (conditional).
"""

from ml_collections import config_dict

from zoo.configs import base

# The MAF authors' experiments (gpapamak/maf, experiments.py: a_made = 1.0e-3, a_flow = 1.0e-4):
# MADE and MADE MoG train at 1e-3, the flows (MAF, MAF MoG, Real NVP) at 1e-4.
PAPER_LEARNING_RATES = {"made": 1e-3, "flow": 1e-4}
# The MADEs' hidden units and activation per data set in the authors' runs (gpapamak/maf,
# run_experiments.py: n_hiddens 100 for POWER and GAS, 512 for HEPMASS, MINIBOONE and BSDS300,
# act_fun 'tanh' for GAS and 'relu' elsewhere). They ran each with one and with two hidden
# layers, and BSDS300 also with 1024 units; the preset takes two layers and 512
# (--config.model.hidden_dims=1024,1024 for the other).
PAPER_NETWORKS = {
    "power": (100, "relu"),
    "gas": (100, "tanh"),
    "hepmass": (512, "relu"),
    "miniboone": (512, "relu"),
    "bsds300": (512, "relu"),
}


def get_config(preset: str = "default"):
  config = base("maf", preset)
  config.model.num_layers = 5
  config.model.hidden_dims = (100, 100)
  config.model.activation = "relu"
  config.model.num_components = 0
  config.model.layer = "made"
  config.model.batch_norm = True
  config.model.num_classes = 0
  if preset == "smoke":
    config.dataset = "toy2d/two_moons"
    config.model.num_layers = 2
    config.model.hidden_dims = (32, 32)
    config.batch_size = 64
    config.update(num_steps=40, log_every=10, eval_every=20, checkpoint_every=20)
    config.eval_batch_size = 2000
    config.num_images = 2000
  elif preset == "default":
    config.dataset = "digits"
    config.preprocess = "logit"
    config.alpha = 1e-6
    config.model.hidden_dims = (512, 512)
    config.batch_size = 100
    config.learning_rate = 1e-3
    config.weight_decay = 1e-6
    config.update(num_steps=3000, log_every=100, eval_every=100, checkpoint_every=500)
    config.early_stopping_patience = 10
  else:
    config.dataset = "maf_tabular/power"
    config.model.hidden_dims = ()  # by data set unless given (finalize)
    config.model.activation = ""
    config.batch_size = 100
    config.learning_rate = config_dict.placeholder(float)  # by variant unless given (finalize)
    config.weight_decay = 1e-6
    config.update(num_steps=2_000_000, log_every=1000, eval_every=5000, checkpoint_every=5000)
    config.eval_every_epochs = 1
    config.early_stopping_patience = 30
    config.eval_batch_size = 10_000
    config.num_images = 10_000
  return config


def finalize(config):
  """The paper preset's settings left unset: the MADEs' units and activation from the data set
  (PAPER_NETWORKS; POWER's for a set the authors did not run) and the learning rate from the
  variant (PAPER_LEARNING_RATES)."""
  units, activation = PAPER_NETWORKS.get(config.dataset.split("/")[-1], PAPER_NETWORKS["power"])
  if not config.model.hidden_dims:
    config.model.hidden_dims = (units, units)
  if not config.model.activation:
    config.model.activation = activation
  if config.learning_rate is None:
    made = describe(config.model).endswith(("MADE", "MADE MoG"))
    config.learning_rate = PAPER_LEARNING_RATES["made" if made else "flow"]
  return config


# Average test log-likelihood in nats of the paper's Table 1 (the paper adds 2 standard errors).
PAPER_METRIC = "log_prob"  # what PAPER_RESULTS holds, in nats
PAPER_RESULTS = {
    "MADE": {
        "power": -3.08,
        "gas": 3.56,
        "hepmass": -20.98,
        "miniboone": -15.59,
        "bsds300": 148.85,
    },
    "MADE MoG": {
        "power": 0.40,
        "gas": 8.47,
        "hepmass": -15.15,
        "miniboone": -12.27,
        "bsds300": 153.71,
    },
    "Real NVP (5)": {
        "power": -0.02,
        "gas": 4.78,
        "hepmass": -19.62,
        "miniboone": -13.55,
        "bsds300": 152.97,
    },
    "Real NVP (10)": {
        "power": 0.17,
        "gas": 8.33,
        "hepmass": -18.71,
        "miniboone": -13.84,
        "bsds300": 153.28,
    },
    "MAF (5)": {
        "power": 0.14,
        "gas": 9.07,
        "hepmass": -17.70,
        "miniboone": -11.75,
        "bsds300": 155.69,
    },
    "MAF (10)": {
        "power": 0.24,
        "gas": 10.08,
        "hepmass": -17.73,
        "miniboone": -12.24,
        "bsds300": 154.93,
    },
    "MAF MoG (5)": {
        "power": 0.30,
        "gas": 9.59,
        "hepmass": -17.39,
        "miniboone": -11.68,
        "bsds300": 156.36,
    },
}


def describe(model) -> str:
  """The paper's name for the variant that the hyper-parameters `model` select."""
  k = model.num_layers
  if model.layer == "coupling":
    name = f"Real NVP ({k})"
  elif k == 0:
    name = "MADE MoG"
  elif k == 1 and not model.batch_norm and not model.num_components:
    name = "MADE"
  else:
    name = f"MAF MoG ({k})" if model.num_components else f"MAF ({k})"
  return f"Conditional {name}" if model.num_classes else name

"""Training configurations, one file per model: `get_config(preset)` for smoke, default, paper
(and a model's own, as the disentanglement models' `study`).

`validate` rejects a configuration that cannot run, with a message naming the field; `lookup`
resolves a dotted key (`model.num_layers`) the way the command line names one; `settings` gives
the hyper-parameter settings that a run's replicas sweep (`config.replicas`).
"""

import difflib
import importlib
import itertools
import math
from typing import Annotated
from typing import Literal

import flax
import ml_collections

from zoo import domains
from zoo import errors

PRESETS = ("smoke", "default", "paper")

# MNIST's customary validation set, which TFDS's `mnist` (train and test only) lacks: the last
# 10,000 of the 60,000 training images held out, as NICE's released config does
# (laurent-dinh/nice, exp/nice_mnist.yaml: train start 0 stop 50000, valid start 50000 stop
# 60000) and the 50,000 / 10,000 / 10,000 files of its time. TFDS stores the training images in
# an order shuffled once when it prepares them, so these are 10,000 fixed images, not the same
# ones as pylearn2's.
MNIST_SPLITS = {"train": "train[:50000]", "validation": "train[50000:]", "test": "test"}


def base(model_name: str, preset: str, presets=PRESETS) -> ml_collections.ConfigDict:
  """The fields every model's config has, with values that every preset overrides as needed;
  `presets` are the model's (a `UserError` names them for any other)."""
  if preset not in presets:
    raise errors.UserError(f"--preset={preset}: {model_name} has the presets {', '.join(presets)}")
  config = ml_collections.ConfigDict()
  config.model_name = model_name
  config.preset = preset  # the preset it started from: a label of reports, not a setting
  config.seed = 0
  config.num_seeds = 1  # replicas trained at once in one step, of seeds seed, seed + 1, ...
  config.dataset = ""
  config.data_dir = ""  # TFDS's default (~/tensorflow_datasets) when empty
  # The TFDS split (or slice: "train[50000:]") of each role; validation "": the set's own where
  # it has one (evaluated every eval_every steps, for early stopping and the best checkpoint).
  config.splits = ml_collections.ConfigDict({"train": "train", "validation": "", "test": "test"})
  # Images framed to image_size x image_size (0: as stored), by zoo.data.Framing: the shorter
  # side resized and the centre cut (center_crop 0), or the centre center_crop square resized.
  config.image_size = 0
  config.center_crop = 0
  config.preprocess = "none"  # one of zoo.data.transforms.KINDS: none, scale, binarize, ...
  config.alpha = 1e-6  # of the logit transform
  config.zca_epsilon = 1e-4  # added to the covariance's eigenvalues before ZCA whitening
  config.batch_size = 128
  # The training split is held on the devices (in its stored dtype; each step's batch gathered
  # there) where it takes at most this fraction of one device's memory (a CPU's: the host's),
  # leaving the rest to the model; else, or at 0, it is read on the host. dSprites' 3.0 GB of
  # uint8 fit a quarter of an H200's 141 GB and of this project's 24 GiB CPU machines.
  config.device_data_fraction = 0.25
  config.eval_batch_size = 1000
  config.optimizer = "adam"  # adam | rmsprop | adagrad (zoo.training.make_optimizer)
  config.learning_rate = 1e-3
  config.adam_b1 = 0.9
  config.adam_b2 = 0.999
  config.adam_eps = 1e-8
  config.weight_decay = 0.0  # L2 penalty on all parameters, added to the gradient
  config.update(num_steps=1000, log_every=50, eval_every=500, checkpoint_every=500)
  config.early_stopping_patience = 0  # evaluations without improvement; 0 trains all steps
  # >0: evaluate and checkpoint every this many epochs of the training split instead of
  # eval_every and checkpoint_every steps (`in_steps`), so that patience counts epochs
  config.eval_every_epochs = 0
  config.num_images = 64  # drawn for samples.png
  config.figures = ("samples",)  # the PNGs a run writes (experiments/outputs.py)
  config.scores = ()  # the final scores beside the test metrics (the same)
  config.bfloat16 = False  # mixed precision: compute in bfloat16, keep float32 parameters
  config.gradient_statistics_draws = 0  # >0: log the estimator's variance and SNR per group
  config.model = ml_collections.ConfigDict()
  return config


def finalize(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` with the settings that its model's config module derives from other
  fields filled in (by that module's `finalize`, where it has one: WGAN's optimiser follows
  its variant unless given), and the figures and scores as tuples of names."""
  module = importlib.import_module(f"zoo.configs.{config.model_name}")
  config = config.copy_and_resolve_references()
  for key in ("figures", "scores"):  # the command line's --config.figures=samples,traversals
    config[key] = tuple(name for entry in config[key] for name in entry.split(",") if name)
  return module.finalize(config) if hasattr(module, "finalize") else config


def check_finished(config: ml_collections.ConfigDict) -> None:
  """A `UserError` naming the fields a config leaves unset (None: WGAN's optimiser, which
  `finalize` fills from its variant), where a step would otherwise be built without them."""
  unset = [key for key, value in flat(config.to_dict()).items() if value is None]
  if unset:
    raise errors.UserError(
        f"config.{', config.'.join(unset)} unset: finish the config with "
        "zoo.configs.finalize(config), as the runner and zoo.fit do"
    )


def replicas_of(float_fields) -> ml_collections.ConfigDict:
  """`config.replicas`: the values of each continuous hyper-parameter that a run trains as
  replicas in one program, crossed with each other and with the seeds (`settings`), each
  replica the single run of its setting to rounding (tests/test_swept.py measures how close).
  Empty: the single setting of the config. The learning rate and the model's `float_fields`
  (its loss weights: beta, DIP's lambdas, the KL warm-up) can be swept; a field that sets a
  shape or a structure cannot."""
  return ml_collections.ConfigDict(
      {"learning_rate": (), "model": {name: () for name in float_fields}}
  )


def settings(config) -> list[dict[str, float]]:
  """The settings `config.replicas` sweeps, {dotted key: value} each, in the order of the
  product of its fields' values (the last field's varying fastest); [{}] for none. A value
  that is not a number (or a learning rate that is not positive) is a `UserError`."""
  axes = []
  for key, values in _flat_replicas(config.get("replicas")):
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
      raise errors.UserError(
          f"config.replicas.{key} must be numbers (--config.replicas.{key}=1,2,4), not {values}"
      )
    if key == "learning_rate" and min(values, default=1) <= 0:
      raise errors.UserError(f"config.replicas.learning_rate must be positive, not {values}")
    if values:
      axes.append([(key, float(value)) for value in values])
  return [dict(point) for point in itertools.product(*axes)]


def single_run(config, setting: dict) -> ml_collections.ConfigDict:
  """The config of the single run of `setting` (one of `settings(config)`): `config` with the
  setting's values and no sweep, finalized (so with what `finalize` derives from them)."""
  single = config.copy_and_resolve_references()
  for key, value in setting.items():
    if key.startswith("model."):  # a field of the model, maybe at its default, not in config
      single.model[key[len("model.") :]] = value
    else:
      node, leaf = lookup(single, key)
      node[leaf] = value
  for key, _ in _flat_replicas(single.get("replicas")):
    node, leaf = lookup(single.replicas, key)
    node[leaf] = ()
  return finalize(single)


def swept_values(config) -> list[dict[str, float]]:
  """For each setting of `config.replicas`, the values its replicas train with that differ
  between the settings' single runs (`single_run`): the swept ones and those `finalize`
  derives from them (DIP-VAE's lambda_d from lambda_od), {dotted key: value}; [{}] without a
  sweep. A `UserError` where the single runs also differ in a key that is not continuous, which
  one program cannot vary over its replicas."""
  grid = settings(config)
  if grid == [{}]:
    return grid
  runs = [flat(single_run(config, setting).to_dict()) for setting in grid]
  differ = sorted(k for k in runs[0] if any(run[k] != runs[0][k] for run in runs))
  continuous = {key for key, _ in _flat_replicas(config.replicas)}
  fixed = [k for k in differ if k not in continuous]
  if fixed:
    raise errors.UserError(
        f"config.replicas: the settings' runs differ in {', '.join(fixed)}, which the "
        "replicas of one program cannot vary; sweep it with experiments.sweep"
    )
  return [{k: float(run[k]) for k in differ} for run in runs]


def in_steps(config, num_train_examples: int):
  """`config` with `eval_every_epochs` (> 0) in steps: evaluations and checkpoints every that
  many epochs of ceil(num_train_examples / batch_size) steps, as the MAF paper's trainer counts
  an epoch (gpapamak/maf, ml/trainers.py), and logs at the divisor of that nearest log_every by
  ratio (GAS's epoch of 8,522 steps has only 1, 2, 4,261 and 8,522: at log_every 1,000 it logs
  every 4,261); as it is without."""
  if not config.get("eval_every_epochs"):
    return config
  config = config.copy_and_resolve_references()
  every = config.eval_every_epochs * -(-num_train_examples // config.batch_size)
  divisors = [d for d in range(1, every + 1) if every % d == 0]
  config.log_every = min(divisors, key=lambda d: (abs(math.log(d / config.log_every)), d))
  config.eval_every = config.checkpoint_every = every
  return config


def flat(tree: dict) -> dict:
  """A nested dict's leaves by dotted key (`model.beta`)."""
  return flax.traverse_util.flatten_dict(tree, sep=".")


def num_replicas(config) -> int:
  """The replicas a run of `config` trains: each setting once per seed."""
  return len(settings(config)) * config.num_seeds


def model_fields(setting: dict) -> dict[str, float]:
  """The model's fields among a setting's values, by field name."""
  return {k[len("model.") :]: v for k, v in setting.items() if k.startswith("model.")}


def setting_name(setting: dict) -> str:
  """A setting in a few characters, for a directory name or a table: `beta=4.0,lambda_d=10`."""
  return ",".join(f"{key.split('.')[-1]}={value}" for key, value in setting.items())


def _flat_replicas(replicas, prefix: str = ""):
  """(dotted key, values) of each field of `config.replicas`."""
  for key, value in (replicas or {}).items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _flat_replicas(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def lookup(config: ml_collections.ConfigDict, key: str):
  """(the ConfigDict holding `key`, its last part) of a dotted key; an unknown key is a
  `UserError` that lists what the level it stops at has."""
  *parents, leaf = key.split(".")
  node = config
  for depth, part in enumerate([*parents, leaf]):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      known = (
          ", ".join(sorted(node.keys())) if isinstance(node, ml_collections.ConfigDict) else "none"
      )
      where = ".".join(["config", *key.split(".")[:depth]])
      close = difflib.get_close_matches(part, list(node.keys())) if known != "none" else []
      hint = f"did you mean {where}.{close[0]}? " if close else ""
      raise errors.UserError(f"unknown config key --config.{key}; {hint}{where} has: {known}")
    if depth < len(parents):
      node = node[part]
  return node, leaf


Optimizer = Literal["adam", "rmsprop", "adagrad"]  # zoo.training.make_optimizer

# The values of each config field with a fixed set or a numeric domain, where a config has it
# (the games' phase schedule, the disentanglement scores' counts, PixelGAN's labels).
DOMAINS = {
    "seed": domains.NonNegativeInt,
    "num_seeds": domains.PositiveInt,
    "image_size": domains.NonNegativeInt,
    "center_crop": domains.NonNegativeInt,
    "alpha": Annotated[float, domains.BELOW_ONE],
    "zca_epsilon": domains.NonNegativeFloat,
    "batch_size": domains.PositiveInt,
    "device_data_fraction": Annotated[float, domains.PROBABILITY],
    "eval_batch_size": domains.PositiveInt,
    "optimizer": Optimizer,
    "learning_rate": domains.NonNegativeFloat,  # 0 holds the parameters (a test of patience does)
    "adam_b1": Annotated[float, domains.BELOW_ONE],
    "adam_b2": Annotated[float, domains.BELOW_ONE],
    "adam_eps": domains.NonNegativeFloat,
    "weight_decay": domains.NonNegativeFloat,
    "num_steps": domains.PositiveInt,
    "log_every": domains.PositiveInt,
    "eval_every": domains.PositiveInt,
    "checkpoint_every": domains.PositiveInt,
    "early_stopping_patience": domains.NonNegativeInt,
    "eval_every_epochs": domains.NonNegativeInt,
    "num_images": domains.PositiveInt,
    "gradient_statistics_draws": domains.NonNegativeInt,
    "first_phase_updates": domains.PositiveInt,
    "burst_updates": domains.NonNegativeInt,
    "burst_first": domains.NonNegativeInt,
    "burst_every": domains.PositiveInt,
    "num_labels": domains.PositiveInt,
    "inpaint_steps": domains.PositiveInt,
    "disentanglement.num_points": domains.PositiveInt,
    "disentanglement.score_train": domains.PositiveInt,
    "disentanglement.score_eval": domains.PositiveInt,
}


def validate(config: ml_collections.ConfigDict) -> None:
  """Reject configurations that cannot run, with a message naming the field: a value outside
  its field's `DOMAINS`, or fields that do not fit each other."""
  values = flat(config.to_dict())
  for key, annotation in DOMAINS.items():
    if key in values:
      domains.check(f"config.{key}", values[key], annotation)
  if config.center_crop and not config.image_size:
    raise errors.UserError(
        f"config.center_crop ({config.center_crop}) needs config.image_size: a crop needs the "
        "size it is resized to"
    )
  for key in ("checkpoint_every", "eval_every"):
    if config[key] % config.log_every:
      raise errors.UserError(
          f"config.{key} ({config[key]}) must be a multiple of config.log_every "
          f"({config.log_every}): checkpoints and evaluations happen at logging steps"
      )

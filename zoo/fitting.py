"""`zoo.fit`: a zoo model trained in one call, as the runner trains it, with nothing written.

    fitted = zoo.fit("maf", config=zoo.get("maf").default_config("smoke"), steps=500)
    log_p = fitted.model.apply(fitted.variables(), x, method="log_prob")  # x: (N, 2) moons

The pieces are the runner's (`experiments.loop`): the config checked and finished as it checks
it (`prepare`), each replica's batch stream (`zoo.data.TrainStream`, a function of seed and
step), the replicated step (`zoo.training`) compiled over the same windows of steps
(`training.window_length`), and for a flow the MAF paper's batch-norm statistics after
training. The runner adds evaluation during training, early stopping, checkpoints, logs and
figures; `fit` trains every step.
"""

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from zoo import configs
from zoo import contract
from zoo import data as zoo_data
from zoo import domains
from zoo import errors
from zoo import evaluation
from zoo import registry
from zoo import training


@dataclasses.dataclass(frozen=True)
class Prepared:
  """A checked config and what it trains.

  Attributes:
    spec: the model's registry entry.
    config: the config finished (`configs.finalize`).
    model: the model it builds.
    settings: the settings its `replicas` sweep (`configs.settings`), [{}] for none.
    swept_values: each setting's values that differ between the settings' runs, derived ones
      included (`configs.swept_values`: DIP-VAE's lambda_d from lambda_od).
  """

  spec: registry.ModelSpec
  config: ml_collections.ConfigDict
  model: nn.Module
  settings: list[dict]
  swept_values: list[dict]

  @property
  def seeds(self) -> list[int]:
    """Each replica's seed: `config.num_seeds` seeds from `config.seed` for each setting."""
    return [self.config.seed + r for _ in self.settings for r in range(self.config.num_seeds)]

  @property
  def replica_settings(self) -> list[dict]:
    """Each replica's setting of `config.replicas` ({} without a sweep)."""
    return [setting for setting in self.settings for _ in range(self.config.num_seeds)]

  @property
  def swept(self) -> dict[str, np.ndarray] | None:
    """Each swept value's (replicas,) values, by dotted config key; None without a sweep."""
    per_replica = [v for v in self.swept_values for _ in range(self.config.num_seeds)]
    keys = self.swept_values[0]
    return {k: np.array([v[k] for v in per_replica], np.float32) for k in keys} or None


def prepare(config: ml_collections.ConfigDict) -> Prepared:
  """`config` checked: each setting of its `replicas` as its own run would be
  (`configs.validate`, then its model built, which checks the fields), the values derived from
  swept ones derived per setting, before the config is finished. Every mistake is a
  `zoo.errors.UserError` naming the field, raised before anything is compiled."""
  spec = registry.get(config.model_name)
  grid, values = configs.settings(config), configs.swept_values(config)
  for setting in grid:
    single = configs.single_run(config, setting)
    configs.validate(single)
    spec.step_kind.check(single)
    spec.build(**single.model)
  config = configs.finalize(config)
  return Prepared(spec, config, spec.build(**config.model), grid, values)


def load_data(config: ml_collections.ConfigDict) -> zoo_data.Dataset:
  """The data set `config` names, by its splits, framed as its `image_size` and `center_crop`
  say (`zoo.data.load`)."""
  framing = zoo_data.Framing(config.image_size, config.center_crop) if config.image_size else None
  return zoo_data.load(config.dataset, config.data_dir or None, config.splits.to_dict(), framing)


def fitted_data(prepared: Prepared, dataset: zoo_data.Dataset, devices: training.Devices):
  """The config in steps of `dataset` (`configs.in_steps`) and the data set's preprocessing,
  once the model's pixel levels and the devices are checked against them.

  Returns:
    (config, preprocessing).

  Raises:
    zoo.errors.UserError: pixels of other levels than the model's `num_levels`, or a batch
      the devices do not divide.
  """
  model = prepared.model
  config = configs.in_steps(prepared.config, dataset.num_examples("train"))
  preprocessing = zoo_data.preprocessing(
      dataset, config.preprocess, config.alpha, config.zca_epsilon
  )
  if model.num_levels and model.num_levels != preprocessing.levels:
    raise errors.UserError(
        f"config.model.num_levels={model.num_levels} needs pixels with {model.num_levels} "
        f"values; preprocessing {config.preprocess} gives "
        f"{preprocessing.levels or 'continuous ones'} (binarize gives 2, scale the data's "
        f"{dataset.num_levels})"
    )
  if config.batch_size % devices.size:
    raise errors.UserError(
        f"config.batch_size ({config.batch_size}) must be divisible by the "
        f"{devices.size} devices"
    )
  return config, preprocessing


def labeled_parts(model, dataset, config, devices: training.Devices, seeds) -> list[dict]:
  """For a semi-supervised model, each seed's labelled set for its `TrainStream`:
  `config.num_labels` training examples, as many of each class, chosen by the seed; a batch
  holds min(num_labels, batch_size) of them. Empty parts for any other model."""
  if not model.semi_supervised:
    return [{} for _ in seeds]
  classes = dataset.num_classes
  if not classes or config.num_labels % classes:
    raise errors.UserError(
        f"config.num_labels ({config.num_labels}) must be a positive "
        f"multiple of the data set's classes ({classes})"
    )
  if model.num_clusters != classes:
    raise errors.UserError(
        f"a semi-supervised code needs one category per class: "
        f"config.model.latent_dim={classes}, not {model.num_clusters}"
    )
  size = min(config.num_labels, config.batch_size)
  if size % devices.size:
    raise errors.UserError(
        f"the labelled batch ({size}) must be divisible by the {devices.size} devices"
    )
  labels = dataset.read("train", np.arange(dataset.num_examples("train")))["label"]
  return [
      {
          "labeled": zoo_data.balanced_subset(labels, config.num_labels, seed),
          "labeled_batch_size": size,
      }
      for seed in seeds
  ]


@dataclasses.dataclass
class Fitted:
  """What `fit` returns.

  Attributes:
    model: the trained Flax module (`model.apply(variables, ...)`).
    config: the finished config it trained with.
    seeds: each replica's seed (a sweep's settings crossed with `config.num_seeds` seeds, as
      the runner orders them).
    replicas: every replica's variables, stacked on a leading axis.
    history: one entry per logging step (`config.log_every`): {"step": s, metric: (replicas,)
      means over the steps since the last entry}.
  """

  model: nn.Module
  config: ml_collections.ConfigDict
  seeds: list[int]
  replicas: dict
  history: list[dict]

  def variables(self, replica: int = 0) -> dict:
    """The variables of replica `replica` (that of seed `seeds[replica]`)."""
    return jax.tree.map(lambda x: x[replica], self.replicas)


def fit(
    model: str | contract.Model,
    dataset: str | zoo_data.Dataset | None = None,
    config: ml_collections.ConfigDict | None = None,
    *,
    steps: int | None = None,
    seed: int | None = None,
    on_log: Callable[[int, dict], None] | None = None,
) -> Fitted:
  """Trains a zoo model as `python -m experiments.run` does with the same config and seed, to
  the same parameters (tests/test_fit.py), writing nothing.

  Args:
    model: a registry name (`"maf"`), or a model `zoo.build` made (its fields replace the
      config's `model` fields).
    dataset: a data set name (`zoo.data.load`), a `zoo.data.Dataset` (`zoo.data.from_arrays`
      for one's own arrays), or None for the config's.
    config: the training config; None: the model's `default` preset
      (`zoo.get(name).default_config()`).
    steps: the steps to train, in place of `config.num_steps`.
    seed: the first replica's seed, in place of `config.seed`.
    on_log: called as `on_log(step, means)` at every logging step, with `means` as a history
      entry has them (to print progress, say).

  Returns:
    A `Fitted`: the model, the finished config, the seeds, every replica's variables and the
    training metrics' history.

  Raises:
    zoo.errors.UserError: a config, model or data set that cannot train (naming the field),
      before anything is compiled; `zoo.errors.NonFiniteLossError` if the loss diverges.
  """
  name = model if isinstance(model, str) else type(model).registry_name
  config = (config or registry.get(name).default_config()).copy_and_resolve_references()
  config.model_name = name
  if isinstance(model, contract.Model):
    config.model = ml_collections.ConfigDict(
        {key: getattr(model, key) for key in domains.field_annotations(type(model))}
    )
  if steps is not None:
    config.num_steps = steps
  if seed is not None:
    config.seed = seed
  if dataset is not None:
    config.dataset = dataset if isinstance(dataset, str) else dataset.name
  prepared = prepare(config)
  spec, config, built = prepared.spec, prepared.config, prepared.model
  kind = spec.step_kind
  if not isinstance(dataset, zoo_data.Dataset):
    dataset = load_data(config)
  devices = training.Devices.all()
  config, preprocessing = fitted_data(prepared, dataset, devices)
  seeds, swept = prepared.seeds, prepared.swept
  streams = [
      zoo_data.TrainStream(dataset, preprocessing, batch_size=config.batch_size, seed=s, **part)
      for s, part in zip(seeds, labeled_parts(built, dataset, config, devices, seeds))
  ]

  def step_input(step: int, position: int):
    """Every replica's input of step `step`, its batches (a game's stack) from stream position
    `position` on."""
    updates = range(position, position + kind.updates_at(config, step))
    return training.stack([kind.step_input([s.batch(s.plan(u)) for u in updates]) for s in streams])

  init_rngs, rngs = training.replica_keys(seeds)
  train_step, optimizer = kind.make(
      built, config, per_replica_learning_rate="learning_rate" in (swept or {})
  )
  replicated_step = training.make_replicated_step(train_step, len(seeds))
  first = step_input(0, 0)
  one_batch = kind.one_batch(devices.shard_batch(first, leading_axes=kind.leading_axes))
  state = devices.replicate(training.init_replicas(built, optimizer, one_batch, init_rngs, swept))
  active = np.ones(len(seeds), bool)
  length = training.window_length(
      replicated_step, state, one_batch, rngs, first, config.log_every, kind
  )
  train_window = jax.jit(
      training.make_window(replicated_step, lambda _, x: x, length), donate_argnums=0
  )
  history, pending, position = [], [], 0
  for steps_of_window in training.windows(0, config.num_steps, length):
    inputs = []
    for step in steps_of_window:
      inputs.append(step_input(step, position))
      position += kind.updates_at(config, step)
    inputs += inputs[-1:] * (length - len(inputs))
    live = np.arange(length) < len(steps_of_window)
    state, metrics = train_window(
        state,
        None,
        devices.shard_batch(training.stack(inputs), leading_axes=1 + kind.leading_axes),
        rngs,
        active,
        live,
    )
    pending.append((len(steps_of_window), metrics))
    step = steps_of_window[-1] + 1
    if step % config.log_every and step != config.num_steps:
      continue
    means = training.window_means(pending, active, step, lambda r: f" (seed {seeds[r]})")
    pending = []
    history.append({"step": step, **means})
    if on_log:
      on_log(step, means)
  variables = training.variables_of(state)
  if contract.implements(built, "batch_norm_inputs"):  # a flow: the MAF paper's statistics
    variables = evaluation.BatchNormFit(built, dataset, preprocessing, config, devices, len(seeds))(
        variables
    )
  return Fitted(built, config, seeds, jax.device_get(variables), history)

"""What a run is: `setup` checks a config and builds the `Run` (model, data, devices,
evaluator) before anything is written or trained; `EarlyStopping` says when each replica stops;
`Trained` is what the loop (`experiments/loop.py`) leaves for `experiments.results.finish`."""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

import zoo
from experiments import checkpointing
from experiments import feed
from experiments import logs
from experiments import outputs
from zoo import configs
from zoo import contract
from zoo import evaluation
from zoo import fitting
from zoo import training


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
  """Each replica stops once `patience` evaluations, `eval_every` steps apart, have passed
  without improving on its best (patience 0: never)."""

  patience: int
  eval_every: int

  def stopped(self, best_step: np.ndarray, step: int) -> np.ndarray:
    """Which replicas, of best evaluations at `best_step` (-1: none yet), have stopped by
    `step`."""
    return (
        (self.patience > 0)
        & (best_step >= 0)
        & ((step - best_step) // self.eval_every >= self.patience)
    )

  def steps(self, best_step: np.ndarray, step: int) -> np.ndarray:
    """The steps each replica trained, of a run that ended at `step`."""
    return np.where(
        self.stopped(best_step, step), best_step + self.patience * self.eval_every, step
    )


@dataclasses.dataclass
class Run:
  """What `setup` builds: the checked config and what the loop trains and evaluates with."""

  config: ml_collections.ConfigDict
  spec: zoo.ModelSpec
  model: contract.Model
  dataset: Any
  preprocessing: Any
  devices: training.Devices
  seeds: list[int]  # each replica's
  settings: list[dict[str, float]]  # each replica's setting of config.replicas; {} each
  # the values that differ between the settings (configs.swept_values), {dotted config key:
  # each replica's}; None without a sweep
  swept: dict[str, np.ndarray] | None
  workdir: str
  labeled: list[dict]  # each seed's labelled set, of a semi-supervised model (fitting's)
  evaluator: evaluation.Evaluator
  fit_batch_norm: Callable[[dict], dict]  # the MAF paper's statistics; identity for others

  @property
  def subject(self) -> outputs.Subject:
    """What the run's scores and figures are made from."""
    return outputs.Subject(self.model, self.dataset, self.preprocessing, self.config)

  @property
  def kind(self) -> training.StepKind:
    return self.spec.step_kind

  @property
  def monitor(self) -> str | None:
    """The split evaluated during training: validation, where the data set has one."""
    return "validation" if self.dataset.has("validation") else None

  @property
  def is_writer(self) -> bool:
    return jax.process_index() == 0

  @property
  def replica_names(self) -> list[str]:
    """Each replica's name in TensorBoard, `beta=4.0/seed=1`; "" of a run of one."""
    if len(self.seeds) == 1:
      return [""]
    return [
        "/".join(filter(None, (configs.setting_name(setting), f"seed={seed}")))
        for setting, seed in zip(self.settings, self.seeds)
    ]

  def label(self, replica: int) -> str:
    """Which replica `replica` is, for a message: "" of a run of one."""
    if len(self.seeds) == 1:
      return ""
    setting = configs.setting_name(self.settings[replica])
    return f" (seed {self.seeds[replica]}{', ' + setting if setting else ''})"


def setup(
    config: ml_collections.ConfigDict, workdir: str, devices=None, allow_config_change=False
) -> Run:
  """The run of `config` into `workdir`, every mistake a user can fix found before anything is
  written or trained: a `zoo.errors.UserError` naming the field. A workdir that has trained
  resumes only with its own config, or with `allow_config_change` one that changes only
  `checkpointing.RESUMABLE_CHANGES`."""
  prepared = fitting.prepare(config)
  spec, config, model = prepared.spec, prepared.config, prepared.model
  checkpointing.check_config(workdir, config.to_dict(), allow_config_change)
  devices = training.Devices.all(devices)
  dataset = feed.load_data(config)
  config, preprocessing = fitting.fitted_data(prepared, dataset, devices)
  outputs.check(config.model_name, outputs.Subject(model, dataset, preprocessing, config))
  seeds = prepared.seeds
  fit_batch_norm = (
      evaluation.BatchNormFit(model, dataset, preprocessing, config, devices, len(seeds))
      if contract.implements(model, "batch_norm_inputs")  # a flow: the MAF paper's statistics
      else lambda variables: variables
  )
  return Run(
      config=config,
      spec=spec,
      model=model,
      dataset=dataset,
      preprocessing=preprocessing,
      devices=devices,
      seeds=seeds,
      settings=prepared.replica_settings,
      swept=prepared.swept,
      workdir=workdir,
      labeled=fitting.labeled_parts(model, dataset, config, devices, seeds),
      evaluator=evaluation.Evaluator(model, dataset, preprocessing, config, devices, seeds),
      fit_batch_norm=fit_batch_norm,
  )


@dataclasses.dataclass
class Trained:
  """What `train` leaves for `finish`: every replica's final state, the checkpoints (closed;
  their record of each replica's best evaluation stays), the step it ended at, the seconds
  trained, and the open metric log."""

  state: training.TrainState
  saved: checkpointing.Checkpoints
  step: int
  train_seconds: float
  log: logs.MetricLog

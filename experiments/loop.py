"""The runner: every model in the zoo trains through `train_and_evaluate`.

It reads top-down: `setup` checks the config and builds the run (model, data, devices,
evaluator), `train` is the loop, `finish` evaluates the final model, adds the scores and writes
the figures and results.json. The steps themselves are `zoo.training`'s.

The batch is sharded over the `data` axis of a mesh of all devices of all processes and the
state is replicated, so the same code runs on one CPU, several GPUs or a pod. The data stream
is a function of (seed, step) and the step's randomness `fold_in(rng, step)`, so a resumed run
repeats exactly what the uninterrupted one would have done. A run trains `config.num_seeds`
replicas at once, of seeds `seed, seed + 1, ...`, each exactly the single-seed run of its seed
(its initialisation, data order, early stopping and best checkpoint); with `config.replicas`,
that many for each setting of the hyper-parameters it sweeps, each replica the single run of
its setting and seed, and the results summarised by setting.
"""

import contextlib
import dataclasses
import errno
import os
import time
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
from experiments import preemption
from experiments import results
from zoo import checkpoints
from zoo import configs
from zoo import contract
from zoo import errors
from zoo import evaluation
from zoo import fitting
from zoo import training

NonFiniteLossError = errors.NonFiniteLossError


def itstime(step: int, every: int, total: int) -> bool:
  """Whether `step` is one at which something done every `every` steps happens: its multiples
  and the last step."""
  return step % every == 0 or step == total


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
  config = configs.in_steps(config, dataset.num_examples("train"))
  preprocessing = zoo.data.preprocessing(
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


def train(run: Run) -> Trained:
  """The training loop, from the latest checkpoint. Whatever it opened is closed when it
  raises, the metric log included."""
  config, devices, seeds = run.config, run.devices, run.seeds
  with contextlib.ExitStack() as cleanup:
    saved = cleanup.enter_context(
        contextlib.closing(
            checkpointing.Checkpoints(run.workdir, devices, len(seeds), run.is_writer)
        )
    )
    start = saved.start_step
    stopping = EarlyStopping(config.early_stopping_patience, config.eval_every)
    init_rngs, rngs = training.replica_keys(seeds)
    train_step, optimizer = run.kind.make(
        run.model, config, per_replica_learning_rate="learning_rate" in (run.swept or {})
    )
    replicated_step = training.make_replicated_step(train_step, len(seeds))
    statistics = config.gradient_statistics_draws and jax.jit(
        training.map_replicas(
            training.make_gradient_statistics(run.model, config.gradient_statistics_draws),
            len(seeds),
        )
    )
    arrays, on_host = feed.resident_split(run.dataset, run.preprocessing, config, devices)
    feeder = cleanup.enter_context(
        contextlib.closing(
            feed.TrainFeed(
                run.dataset,
                run.preprocessing,
                config,
                devices,
                seeds,
                run.labeled,
                start,
                run.kind,
                arrays,
            )
        )
    )
    log = logs.MetricLog(run.workdir, run.is_writer, resume_step=start)
    cleanup.push(lambda failed, *_: failed and log.close())  # else `finish` writes and closes it
    progress = cleanup.enter_context(
        contextlib.closing(logs.Progress(config.num_steps, run.is_writer))
    )
    if on_host:
      progress.note(on_host)
    make_batch = jax.jit(feeder.make_batch)
    first_input = feeder.first_input()
    one_batch = run.kind.one_batch(
        make_batch(arrays, devices.shard_batch(first_input, leading_axes=run.kind.leading_axes))
    )
    state = saved.resume(
        devices.replicate(
            training.init_replicas(run.model, optimizer, one_batch, init_rngs, run.swept)
        )
    )
    feeder.length = window_length(run, replicated_step, state, one_batch, rngs, first_input)
    train_window = jax.jit(
        training.make_window(replicated_step, feeder.make_batch, feeder.length), donate_argnums=0
    )
    windows = cleanup.enter_context(
        contextlib.closing(
            feed.prefetch(
                lambda steps: (steps, feeder.window(steps)),
                training.windows(start, config.num_steps, feeder.length),
            )
        )
    )
    notice = cleanup.enter_context(preemption.Notice())
    # XLA:CPU's gloo collectives deadlock with two steps in flight (found as the default MAF on
    # 2 processes hung, one process in two steps' all-reduces, the other in one): one at a time.
    one_at_a_time = jax.process_count() > 1 and jax.devices()[0].platform == "cpu"
    progress.start(start)
    pending, step, started = [], start, time.time() - saved.seconds_trained()
    while step < config.num_steps and not stopping.stopped(saved.best_step, step).all():
      steps, inputs = next(windows)
      active = ~stopping.stopped(saved.best_step, step)  # the same over a logging window
      live = np.arange(feeder.length) < len(steps)
      state, metrics = train_window(state, arrays, inputs, rngs, active, live)
      if one_at_a_time:
        jax.block_until_ready(metrics)
      pending.append((len(steps), metrics))
      step = steps[-1] + 1
      preempted = notice.reached()
      if not (itstime(step, config.log_every, config.num_steps) or preempted):
        continue
      means = training.window_means(pending, active, step, run.label, saved.kept)
      pending = []
      if statistics:
        last = len(steps) - 1
        batch = make_batch(arrays, jax.tree.map(lambda x, last=last: x[last], inputs))
        means.update(
            jax.device_get(statistics(state, batch, training.fold_in_replicas(init_rngs, step)))
        )
      log.write(step, {k: results.logged(v, active) for k, v in means.items()})
      progress.update(step, {"loss": float(np.mean(means["loss"][active]))})
      if run.monitor and itstime(step, config.eval_every, config.num_steps):
        state = _evaluate(run, state, saved, step, active, log)
        for r in np.flatnonzero(active & stopping.stopped(saved.best_step, step)):
          progress.note(
              f"early stopping{run.label(r)} at step {step}: no "
              f"improvement on {run.monitor} since step {saved.best_step[r]}"
          )
      if (
          itstime(step, config.checkpoint_every, config.num_steps)
          or stopping.stopped(saved.best_step, step).all()
          or preempted
      ):
        saved.save(step, state, time.time() - started)
      if preempted:
        raise preemption.Preempted(
            f"stopped by {notice.signal_name} at step {step}, its checkpoint saved in "
            f"{saved.latest.directory}; run the same command again to resume"
        )
  return Trained(state, saved, step, time.time() - started, log)


def window_length(run: Run, replicated_step, state, batch, rngs, step_input) -> int:
  """`training.window_length` of the run's step."""
  return training.window_length(
      replicated_step, state, batch, rngs, step_input, run.config.log_every, run.kind
  )


def _evaluate(run: Run, state, saved, step: int, active, log) -> training.TrainState:
  """Evaluate on the monitored split (after fitting the batch-norm statistics, which the state
  keeps), log it, and record each replica's best; the state."""
  fitted = run.fit_batch_norm(training.variables_of(state))
  state = state.replace(model_state={k: fitted[k] for k in state.model_state})
  replicas = run.evaluator(training.variables_of(state), run.monitor)
  log.write(
      step,
      {
          f"{run.monitor}/{k}": results.logged(v, active)
          for k, v in results.per_metric(replicas).items()
      },
  )
  values = np.array([contract.ranking(run.model, m) for m in replicas])
  saved.update_best(step, values, active, training.variables_of(state))
  return state


def finish(run: Run, trained: Trained) -> dict:
  """Evaluate each replica's final model (its best evaluation, else the last state) on the
  test and monitored splits, add the scores `config.scores` names, write the figures of each
  setting's first seed (a sweep's in a directory per setting) and results.json; the results.
  A run summarises its replicas' metrics by their mean and standard error; a sweep, those of
  each setting's seeds, under `settings`."""
  config, seeds = run.config, run.seeds
  state, saved, step, log = trained.state, trained.saved, trained.step, trained.log
  final = saved.best_variables
  if final is None:
    final = run.fit_batch_norm(training.variables_of(state))
  tests = run.evaluator(final, "test")
  validations = run.evaluator(final, run.monitor) if run.monitor else None
  # this process's copy, on its first device: what follows runs on each process alone
  final = jax.device_put(jax.device_get(final), jax.local_devices()[0])
  for r, seed in enumerate(seeds):
    variables = jax.tree.map(lambda x, r=r: x[r], final)
    tests[r].update(outputs.scores(run.subject, variables, seed))
  stopping = EarlyStopping(config.early_stopping_patience, config.eval_every)
  evaluated = results.Evaluated(
      tests,
      run.monitor,
      validations,
      [int(s) for s in stopping.steps(saved.best_step, step)],
      [int(s) if s >= 0 else None for s in saved.best_step],
  )
  summary = results.results_json(run, evaluated, step, trained.train_seconds, state.params)
  log.write(
      step,
      {
          f"test/{k}": results.logged(v, np.ones(len(seeds), bool))
          for k, v in results.per_metric(tests).items()
      },
  )
  log.close()
  if run.is_writer:
    logs.write_json(os.path.join(run.workdir, "results.json"), summary)
    for first in range(0, len(seeds), config.num_seeds):  # each setting's first replica
      outputs.write_figures(
          os.path.join(run.workdir, configs.setting_name(run.settings[first])),
          run.subject,
          jax.tree.map(lambda x, first=first: x[first], final),
          seeds[first],
      )
  return summary


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, devices=None, allow_config_change=False
) -> dict:
  """Train `config.model_name` as `config` says, writing into `workdir`; returns results.json.

  Resumes from the latest checkpoint in `workdir` (with a changed config only as `setup` says);
  holds the workdir while it runs (`checkpointing.workdir_lock`). Raises `zoo.errors.UserError`
  for mistakes a user can fix (a workdir in use among them), `NonFiniteLossError` when the loss
  diverges, `preemption.Preempted` when SIGTERM or SIGINT stopped it at a saved step. A disk
  that fills (no room for the next checkpoint, or a write that fails) ends it with a UserError
  that names the last good checkpoint, which is kept.
  """
  run = setup(config, workdir, devices, allow_config_change)
  with checkpointing.workdir_lock(workdir, run.is_writer):
    try:
      os.makedirs(workdir, exist_ok=True)
      if run.is_writer:
        logs.write_json(os.path.join(workdir, checkpoints.CONFIG), run.config.to_dict())
      return finish(run, train(run))
    except OSError as e:
      if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        raise
      raise errors.UserError(
          f"could not write {e.filename or workdir} ({e.strerror}); "
          f"{checkpointing.kept(workdir)}: make room and run the same command again to resume"
      ) from None

"""The runner: every model in the zoo trains through `train_and_evaluate`.

It reads top-down: `experiments.runs.setup` checks the config and builds the run (model, data,
devices, evaluator), `train` is the loop, `experiments.results.finish` evaluates the final
model, adds the scores and writes the figures and results.json. The steps themselves are
`zoo.training`'s.

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
import errno
import os
import time

import jax
import ml_collections
import numpy as np

from experiments import checkpointing
from experiments import feed
from experiments import logs
from experiments import preemption
from experiments import results
from experiments import runs
from zoo import checkpoints
from zoo import contract
from zoo import errors
from zoo import training

NonFiniteLossError = errors.NonFiniteLossError


def itstime(step: int, every: int, total: int) -> bool:
  """Whether `step` is one at which something done every `every` steps happens: its multiples
  and the last step."""
  return step % every == 0 or step == total


def train(run: runs.Run, title: str = "") -> runs.Trained:
  """The training loop, from the latest checkpoint, its progress headed by `title` where given.
  Whatever it opened is closed when it raises, the metric log included."""
  config, devices, seeds = run.config, run.devices, run.seeds
  with contextlib.ExitStack() as cleanup:
    saved = cleanup.enter_context(
        contextlib.closing(
            checkpointing.Checkpoints(run.workdir, devices, len(seeds), run.is_writer)
        )
    )
    start = saved.start_step
    stopping = runs.EarlyStopping(config.early_stopping_patience, config.eval_every)
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
    log = logs.MetricLog(run.workdir, run.is_writer, start, run.replica_names)
    log.text("config", f"```\n{config.to_json_best_effort(indent=2)}\n```")
    cleanup.push(lambda failed, *_: failed and log.close())  # else `finish` writes and closes it
    progress = cleanup.enter_context(
        contextlib.closing(logs.Progress(config.num_steps, run.is_writer))
    )
    if title:
      progress.note(title)
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
    notice = cleanup.enter_context(preemption.Notice(start))
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
      preempted = notice.reached(step)
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
      losses = {k: v for k, v in means.items() if k.endswith("/loss")} or {"loss": means["loss"]}
      progress.update(
          step, {k: float(np.mean(v[active])) for k, v in losses.items()}, int(active.sum())
      )
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
            f"{saved.latest.directory}; run the same command again to resume",
            notice.signal_name,
        )
  return runs.Trained(state, saved, step, time.time() - started, log)


def window_length(run: runs.Run, replicated_step, state, batch, rngs, step_input) -> int:
  """`training.window_length` of the run's step."""
  return training.window_length(
      replicated_step, state, batch, rngs, step_input, run.config.log_every, run.kind
  )


def _evaluate(run: runs.Run, state, saved, step: int, active, log) -> training.TrainState:
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


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    devices=None,
    allow_config_change=False,
    title: str = "",
) -> dict:
  """Train `config.model_name` as `config` says, writing into `workdir`; returns results.json.
  Its progress lines begin, once the config has passed its checks, with `title` where given (a
  sweep's name of the point).

  Resumes from the latest checkpoint in `workdir` (with a changed config only as `setup` says);
  holds the workdir while it runs (`checkpointing.workdir_lock`). Raises `zoo.errors.UserError`
  for mistakes a user can fix (a workdir in use among them), `NonFiniteLossError` when the loss
  diverges, `preemption.Preempted` when SIGTERM or SIGINT stopped it at a saved step. A disk
  that fills (no room for the next checkpoint, or a write that fails) ends it with a UserError
  that names the last good checkpoint, which is kept.
  """
  run = runs.setup(config, workdir, devices, allow_config_change)
  with checkpointing.workdir_lock(workdir, run.is_writer):
    try:
      os.makedirs(workdir, exist_ok=True)
      if run.is_writer:
        logs.write_json(os.path.join(workdir, checkpoints.CONFIG), run.config.to_dict())
      return results.finish(run, train(run, title))
    except OSError as e:
      if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        raise
      raise errors.UserError(
          f"could not write {e.filename or workdir} ({e.strerror}); "
          f"{checkpointing.kept(workdir)}: make room and run the same command again to resume"
      ) from None

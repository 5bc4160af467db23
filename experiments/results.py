"""What a run reports when it ends: `finish` evaluates its final model, adds the scores and
writes the figures and results.json, what the run measured, each metric summarised over its
replicas by its mean and standard error, a sweep's per setting, and every replica's own values
beside them.

  {"model", "paper", "dataset", "seeds", "steps", "train_seconds", "devices", "processes",
   "num_params",
   "test": {metric: mean}, "test_stderr": {...} (several seeds), "<monitor>": ... (a run with a
   validation split),
   or "settings": [{"setting": {key: value}, "test": ..., ...}] (a sweep over replicas),
   "best_step" and "test_step" (one replica) or "per_seed": [{"seed", "setting", "steps",
   "best_step", "test_step", "test", "<monitor>"}]}

"steps" is the step the run ended at; "best_step" a replica's best evaluation's (None: it has
none, and keeps its last state), "test_step" the step of the state its test metrics measured:
the best's, else the last. metrics.jsonl and TensorBoard log the test metrics at test_step.
"""

import dataclasses
import os

import jax
import numpy as np

from experiments import logs
from experiments import outputs
from experiments import runs
from zoo import configs
from zoo import training


def per_metric(replicas: list[dict]) -> dict[str, np.ndarray]:
  """Each replica's metrics (a dict per replica) as one array of the replicas' values per
  metric."""
  return {k: np.array([m[k] for m in replicas], np.float64) for k in replicas[0]}


def logged(values: np.ndarray, active: np.ndarray):
  """A metric's per-replica values as logged: a number for a single seed, else a list with
  None for the replicas that have stopped."""
  if len(values) == 1:
    return float(values[0])
  return [float(v) if a else None for v, a in zip(values, active)]


def summary(split: str, replicas: list[dict]) -> dict:
  """`{split: mean of each metric over the replicas}`, and with several, `{split}_stderr`: the
  standard error of that mean (sample standard deviation / sqrt(replicas))."""
  values = per_metric(replicas)
  out = {split: {k: float(v.mean()) for k, v in values.items()}}
  if len(replicas) > 1:
    out[f"{split}_stderr"] = {k: float(v.std(ddof=1) / np.sqrt(len(v))) for k, v in values.items()}
  return out


@dataclasses.dataclass(frozen=True)
class Evaluated:
  """A finished run's evaluations: each replica's test metrics (its scores added) and, where
  the run monitors a split, its metrics there; the steps each replica trained and the step of
  its best evaluation (None: none)."""

  tests: list[dict]
  monitor: str | None
  validations: list[dict] | None
  steps: list[int]
  best_steps: list[int | None]


def results_json(run, evaluated: Evaluated, step: int, train_seconds: float, params) -> dict:
  """The results of `run` (`experiments.runs.Run`), which ended at `step` after
  `train_seconds` with every replica's `params`."""
  config, seeds, monitor = run.config, run.seeds, evaluated.monitor

  def summaries(replicas):
    out = summary("test", [evaluated.tests[r] for r in replicas])
    if monitor:
      out.update(summary(monitor, [evaluated.validations[r] for r in replicas]))
    return out

  results = {
      "model": config.model_name,
      "paper": run.spec.paper,
      "dataset": config.dataset,
      "seeds": seeds[: config.num_seeds],
      "steps": int(step),
      "train_seconds": train_seconds,
      "devices": run.devices.size,
      "processes": jax.process_count(),
      "num_params": int(sum(x[0].size for x in jax.tree.leaves(params))),
  }
  if run.swept is None:
    results.update(summaries(range(len(seeds))))
  else:
    results["settings"] = [
        {"setting": run.settings[first], **summaries(range(first, first + config.num_seeds))}
        for first in range(0, len(seeds), config.num_seeds)
    ]
  tested_at = tested_steps(evaluated, step)
  if len(seeds) == 1:
    results["best_step"] = evaluated.best_steps[0]
    results["test_step"] = tested_at[0]
  else:
    results["per_seed"] = [
        {
            "seed": seed,
            **({"setting": run.settings[r]} if run.swept else {}),
            "steps": evaluated.steps[r],
            "best_step": evaluated.best_steps[r],
            "test_step": tested_at[r],
            "test": evaluated.tests[r],
            **({monitor: evaluated.validations[r]} if monitor else {}),
        }
        for r, seed in enumerate(seeds)
    ]
  return results


def finish(run: runs.Run, trained: runs.Trained) -> dict:
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
  stopping = runs.EarlyStopping(config.early_stopping_patience, config.eval_every)
  evaluated = Evaluated(
      tests,
      run.monitor,
      validations,
      [int(s) for s in stopping.steps(saved.best_step, step)],
      [int(s) if s >= 0 else None for s in saved.best_step],
  )
  summary = results_json(run, evaluated, step, trained.train_seconds, state.params)
  tested_at = np.array(tested_steps(evaluated, step))
  for at in sorted(set(tested_at)):  # each replica's where it was measured
    log.write(at, {f"test/{k}": logged(v, tested_at == at) for k, v in per_metric(tests).items()})
  if run.is_writer:
    logs.write_json(os.path.join(run.workdir, "results.json"), summary)
    for first in range(0, len(seeds), config.num_seeds):  # each setting's first replica
      figures = outputs.write_figures(
          os.path.join(run.workdir, configs.setting_name(run.settings[first])),
          run.subject,
          jax.tree.map(lambda x, first=first: x[first], final),
          seeds[first],
      )
      for name, image in figures.items():
        log.image(name, image, int(tested_at[first]), first)
  log.close()
  return summary


def tested_steps(evaluated: Evaluated, step: int) -> list[int]:
  """The step each replica's test metrics were measured at: its best evaluation's, else the
  last, `step`."""
  return [step if best is None else best for best in evaluated.best_steps]

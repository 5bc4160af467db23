"""Train one model over a grid of config values; tabulate and plot the runs.

  python -m experiments.sweep --model=vimco --sweep=model.estimator=vimco,nvil,reinforce \
      --sweep=model.num_samples=1,2,5,10 [--preset=default] [--workdir=DIR] [--curve=bound]
      [--config.KEY=VALUE ...]

Each combination trains into DIR/<key=value,...>/ (resumable like any run), named on stderr as
it starts. DIR/sweep.json records the points, by which `experiments.report` labels their runs;
DIR/sweep.md is that report of the points' runs, DIR/sweep.png the curve `--curve` (a
metrics.jsonl key) against steps, one line per run: for VIMCO, the paper's main figure.
Combinations the model rejects (the vimco estimator with K = 1) are skipped and listed.
"""

import glob
import itertools
import json
import os

import numpy as np
from absl import flags

import zoo
from experiments import cli
from experiments import logs
from experiments import loop
from experiments import outputs
from experiments import report
from experiments import run
from zoo import configs

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("sweep", [], "KEY=V1,V2,...: a config key and the values to sweep.")
flags.DEFINE_string("curve", "bound", "The metrics.jsonl key plotted against steps.")


def _parse(text, kind):
  """`text` as a value of the config field's type `kind`."""
  if kind is bool:
    if text.lower() not in ("true", "false"):
      raise zoo.errors.UserError(f"expected true or false, not {text!r}")
    return text.lower() == "true"
  try:
    return kind(text)
  except ValueError:
    raise zoo.errors.UserError(f"{text!r} is not a {kind.__name__}") from None


def _grid(config, sweeps):
  axes = []
  for sweep in sweeps:
    key, _, values = sweep.partition("=")
    node, leaf = configs.lookup(config, key)
    axes.append([(key, _parse(v, node.get_type(leaf))) for v in values.split(",")])
  return [dict(point) for point in itertools.product(*axes)]


def _seed_mean(value):
  """A logged value; of a run of several seeds, the mean over the seeds still training."""
  if isinstance(value, list):
    return float(np.mean([v for v in value if v is not None]))
  return value


def curve_label(curve: str, seeds: int) -> str:
  """What the metrics.jsonl key `curve` plots, for an axis: its split (training's are means
  over each logging window), its unit, and that a run of several seeds plots their mean."""
  split, _, name = curve.rpartition("/")
  if split not in ("validation", "test"):
    split, name = "training", curve
  unit = report.entry(name).unit
  return (
      f"{split} {name}{f' ({unit})' if unit else ''}"
      + (", the mean of each logging window" if split == "training" else "")
      + (f", the mean of {seeds} seeds" if seeds > 1 else "")
  )


def sweep(config, points, workdir, curve):
  """Train each point, saying which as it starts it; write sweep.json, the report of the
  points' runs (sweep.md) and sweep.png; return the report."""
  rows, series, skipped = [], {}, []
  names = {configs.setting_name(point): point for point in points}
  logs.write_json(os.path.join(workdir, report.SWEEP), {"points": names})
  for index, (name, point) in enumerate(names.items()):
    run_config = config.copy_and_resolve_references()
    for key, value in point.items():
      node, leaf = configs.lookup(run_config, key)
      node[leaf] = value
    run_dir = os.path.join(workdir, name)
    try:
      loop.train_and_evaluate(
          run_config, run_dir, title=f"sweep {index + 1}/{len(names)}: {name} -> {run_dir}"
      )
    except zoo.errors.HyperparameterError as e:
      skipped.append(f"{name}: {e}")
      continue
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
      curve_rows = [r for r in map(json.loads, f) if curve in r]
    series[name] = ([r["step"] for r in curve_rows], [_seed_mean(r[curve]) for r in curve_rows])
    rows += report.rows(os.path.join(glob.escape(run_dir), "results.json"))
  table = report.markdown(rows) if rows else "no point trained"
  table += "".join(f"\n\nskipped: {s}" for s in skipped) + "\n"
  logs.write_text(os.path.join(workdir, "sweep.md"), table)
  outputs.line_plot(
      series, os.path.join(workdir, "sweep.png"), y_label=curve_label(curve, config.num_seeds)
  )
  return table


def main(argv) -> int:
  config = run.parse(argv)
  if configs.settings(config) != [{}]:
    raise zoo.errors.UserError(
        "experiments.sweep trains one program per point: give the swept values as --sweep, or "
        "train them as replicas of one program with experiments.run --config.replicas..."
    )
  workdir = FLAGS.workdir or os.path.join("workdirs", f"sweep-{FLAGS.model}-{FLAGS.preset}")
  os.makedirs(workdir, exist_ok=True)
  print(sweep(config, _grid(config, FLAGS.sweep), workdir, FLAGS.curve))
  return 0


def console() -> None:
  """The `zoo-sweep` command."""
  cli.run(main, "interrupted; run the same command again to resume the unfinished runs")


if __name__ == "__main__":
  console()

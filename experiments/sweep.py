"""Train one model over a grid of config values; tabulate and plot the runs.

  python -m experiments.sweep --model=vimco --sweep=model.estimator=vimco,nvil,reinforce \
      --sweep=model.num_samples=1,2,5,10 [--preset=default] [--workdir=DIR] [--curve=bound]
      [--config.KEY=VALUE ...]

Each combination trains into DIR/<key=value,...>/ (resumable like any run). DIR/sweep.md holds
each run's final test metrics, DIR/sweep.png the training curve `--curve` (a metrics.jsonl
key) against steps, one line per run: for VIMCO, the paper's main figure. Combinations the
model rejects (the vimco estimator with K = 1) are skipped and listed.
"""

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


def sweep(config, points, workdir, curve):
  """Train each point; write sweep.md and sweep.png; return the markdown table."""
  rows, series, skipped = [], {}, []
  for point in points:
    run_config = config.copy_and_resolve_references()
    for key, value in point.items():
      node, leaf = configs.lookup(run_config, key)
      node[leaf] = value
    run_dir = os.path.join(workdir, configs.setting_name(point))
    try:
      results = loop.train_and_evaluate(run_config, run_dir)
    except zoo.errors.HyperparameterError as e:
      skipped.append(f"{configs.setting_name(point)}: {e}")
      continue
    rows.append((configs.setting_name(point), results))
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
      curve_rows = [r for r in map(json.loads, f) if curve in r]
    series[configs.setting_name(point)] = (
        [r["step"] for r in curve_rows],
        [_seed_mean(r[curve]) for r in curve_rows],
    )
  metrics = sorted({k for _, r in rows for k in r["test"]})
  lines = [
      "| run | " + " | ".join(f"test {m}" for m in metrics) + " | steps | train s |",
      "|---|" + "---:|" * (len(metrics) + 2),
  ]
  for name, r in rows:
    cells = " | ".join(
        report.cell(r["test"].get(m), 2, r.get("test_stderr", {}).get(m)) for m in metrics
    )
    lines.append(f"| {name} | {cells} | {r['steps']} | {r['train_seconds']:.0f} |")
  lines += [f"\nskipped: {s}" for s in skipped]
  table = "\n".join(lines) + "\n"
  logs.write_text(os.path.join(workdir, "sweep.md"), table)
  outputs.line_plot(series, os.path.join(workdir, "sweep.png"), y_label=curve)
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

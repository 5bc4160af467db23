"""The results tables: each finished run's test metrics, labelled by the paper's variant and the
run's setting, beside the paper's number where the config holds one.

  python -m experiments.report [--workdirs='workdirs/**/results.json'] [--format=markdown|csv]

Markdown gives a table per model, whose columns are the test metrics its runs hold that
`zoo.contract.METRICS` marks as reported, in that order, with their units and an arrow where
larger (↑) or smaller (↓) is better, so that a new
paper's metrics need no edit here. A row is a run, or a setting of a sweep over replicas
(`config.replicas`): its variant (its config module's `describe(model_config)`), its setting
(the preset it started from and the values swept, by `config.replicas` or by the
`experiments.sweep` point it trained), the number of seeds, each metric's mean ± its standard
error over the seeds, and the steps it trained with the step of its best evaluation, the one
tested. A config module's `PAPER_RESULTS[variant][data set]` is the paper's `PAPER_METRIC`
where the data set is the paper's. CSV gives a line per row and metric, for plotting.
"""

import csv
import glob
import importlib
import io
import json
import os

import ml_collections
from absl import flags

import zoo
from experiments import cli
from zoo import configs
from zoo import contract

FLAGS = flags.FLAGS
flags.DEFINE_string("workdirs", "workdirs/**/results.json", "Glob of the runs' results.json.")
flags.DEFINE_enum("format", "markdown", ["markdown", "csv"], "Markdown tables, or CSV lines.")

SWEEP = "sweep.json"  # experiments.sweep's record of its points: {"points": {directory: {...}}}


def _swept_point(workdir: str) -> dict:
  """The config values of the `experiments.sweep` point `workdir` trained, {} if none."""
  path = os.path.join(os.path.dirname(workdir), SWEEP)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)["points"].get(os.path.basename(workdir), {})


def rows(pattern: str):
  """A row per run of each results.json under `pattern`; of a sweep over replicas, a row per
  setting. Each row: model, variant, setting, dataset, seeds, `metrics` {name: (mean, standard
  error or None)} of the reported test metrics, paper {metric: value}, steps, best_steps (a
  list, None where a replica keeps its last state), seconds and workdir."""
  for path in sorted(glob.glob(pattern, recursive=True)):
    workdir = os.path.dirname(path)
    with open(path) as f:
      results = json.load(f)
    config = zoo.checkpoints.read_config(workdir)
    module = importlib.import_module(f"zoo.configs.{config.model_name}")
    point = _swept_point(workdir)
    for part in results.get("settings", [results]):
      setting = part.get("setting", {})
      seeds = _seeds_of(results, setting)
      model_config = {
          **config.model,
          **configs.model_fields(point),
          **configs.model_fields(setting),
      }
      variant = module.describe(ml_collections.ConfigDict(model_config))
      paper_set = config.dataset.split("/")[-1]
      paper = getattr(module, "PAPER_RESULTS", {}).get(variant, {}).get(paper_set)
      stderr = part.get("test_stderr", {})
      swept = ",".join(filter(None, (configs.setting_name(point), configs.setting_name(setting))))
      yield {
          "model": config.model_name,
          "variant": variant,
          "setting": "; ".join(filter(None, (config.get("preset", ""), swept))) or "-",
          "dataset": config.dataset,
          "seeds": len(seeds),
          "metrics": {
              name: (value, stderr.get(name))
              for name, value in part["test"].items()
              if entry(name).reported
          },
          "paper": {module.PAPER_METRIC: paper} if paper is not None else {},
          "steps": results["steps"],
          "best_steps": [r["best_step"] for r in seeds],
          "seconds": results["train_seconds"],
          "workdir": workdir,
      }


def _seeds_of(results: dict, setting: dict) -> list[dict]:
  """The results of each seed of `setting` (a run of one seed: the results themselves)."""
  return [r for r in results.get("per_seed", [results]) if r.get("setting", {}) == setting]


def entry(name: str) -> contract.Metric:
  """The contract's entry of a metric name; a name outside it (a model of one's own that the
  contract test has not seen) is shown as reported, without a unit."""
  try:
    return contract.metric_of(name)
  except KeyError:
    return contract.Metric("", "", None)


DIGITS = {"nats": 2, "bits/dim": 3, "fraction": 3, "count": 1, "": 4}


def value_text(
    name: str, value: float, stderr: float | None = None, digits: int | None = None
) -> str:
  """A metric's value in its unit's digits (or `digits`), `± stderr` where several seeds give
  one; a count that is whole as an integer."""
  unit = entry(name).unit
  if unit == "count" and float(value).is_integer() and not stderr:
    return str(int(value))
  kind = "g" if unit == "" else "f"  # a statistic of no fixed scale: significant digits
  text = f"{value:.{digits or DIGITS[unit]}{kind}}"
  return text if stderr is None else f"{text} ± {stderr:.{digits or DIGITS[unit]}{kind}}"


def shown_unit(name: str) -> str:
  """The unit written beside a metric's value: nats or bits/dim; "" for the others (fractions,
  counts, statistics)."""
  unit = entry(name).unit
  return unit if unit in ("nats", "bits/dim") else ""


def header(name: str) -> str:
  """A metric's column heading: its name, unit, and an arrow where larger (↑) or smaller (↓)
  is better."""
  unit = shown_unit(name)
  arrow = {"max": " ↑", "min": " ↓", None: ""}[entry(name).better]
  return f"{name}{f' ({unit})' if unit else ''}{arrow}"


def final_lines(results: dict, workdir: str) -> list[str]:
  """What a run prints when it ends, a line per setting: its test metrics (the mean ± standard
  error over its seeds, with units) and the steps they were measured at."""
  lines = []
  for part in results.get("settings", [results]):
    setting = part.get("setting", {})
    stderr = part.get("test_stderr", {})
    metrics = ", ".join(
        f"{name} {value_text(name, value, stderr.get(name), digits=4)}"
        + (f" {shown_unit(name)}" if shown_unit(name) else "")
        for name, value in part["test"].items()
    )
    seeds = _seeds_of(results, setting)
    tested = "/".join(str(r["test_step"]) for r in seeds)
    over = f", mean ± standard error of {len(seeds)} seeds" if len(seeds) > 1 else ""
    lines.append(
        f"{results['model']}{' ' + configs.setting_name(setting) if setting else ''} on "
        f"{results['dataset']}{over}: test {metrics} (at step {tested} of {results['steps']})"
        f"  ({workdir})"
    )
  return lines


def steps_text(row: dict) -> str:
  """The steps trained, and the step of each seed's best evaluation where it has one."""
  best = [s for s in row["best_steps"] if s is not None]
  return f"{row['steps']}" + (f" (best {'/'.join(map(str, best))})" if best else "")


def columns(model_rows: list[dict]) -> list[str]:
  """The reported metrics the rows hold, in `zoo.contract.METRICS`' order (a layer's, `kl_2`,
  with its metric's; a name outside the contract last)."""
  held = {name for r in model_rows for name in r["metrics"]}
  order = list(contract.METRICS.values())
  place = lambda n: order.index(entry(n)) if entry(n) in order else len(order)
  return sorted(held, key=lambda n: (place(n), n))


def markdown(all_rows: list[dict]) -> str:
  """A table per model."""
  out = []
  for model in sorted({r["model"] for r in all_rows}):
    model_rows = [r for r in all_rows if r["model"] == model]
    names = columns(model_rows)
    papers = sorted({m for r in model_rows for m in r["paper"]})
    heads = [
        "variant",
        "setting",
        "data set",
        "seeds",
        *(f"test {header(n)}" for n in names),
        *(f"paper {header(m)}" for m in papers),
        "steps",
        "train s",
        "workdir",
    ]
    lines = [
        f"### {model}: {zoo.get(model).paper}",
        "",
        "| " + " | ".join(heads) + " |",
        "|---|---|---|" + "---:|" * (len(heads) - 4) + "---|",
    ]
    for r in model_rows:
      cells = [
          r["variant"],
          r["setting"],
          r["dataset"],
          str(r["seeds"]),
          *(value_text(n, *r["metrics"][n]) if n in r["metrics"] else "-" for n in names),
          *(value_text(m, r["paper"][m]) if m in r["paper"] else "-" for m in papers),
          steps_text(r),
          f"{r['seconds']:.0f}",
          r["workdir"],
      ]
      lines.append("| " + " | ".join(cells) + " |")
    out.append("\n".join(lines))
  return "\n\n".join(out)


def csv_text(all_rows: list[dict]) -> str:
  """A line per row and metric: its mean, standard error (empty for one seed) and unit."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(
      [
          "model",
          "variant",
          "setting",
          "dataset",
          "seeds",
          "metric",
          "unit",
          "mean",
          "stderr",
          "paper",
          "steps",
          "best_step",
          "train_seconds",
          "workdir",
      ]
  )
  for r in all_rows:
    for name, (value, stderr) in r["metrics"].items():
      writer.writerow(
          [
              r["model"],
              r["variant"],
              r["setting"],
              r["dataset"],
              r["seeds"],
              name,
              entry(name).unit,
              repr(value),
              "" if stderr is None else repr(stderr),
              r["paper"].get(name, ""),
              r["steps"],
              "/".join(str(s) for s in r["best_steps"] if s is not None),
              f"{r['seconds']:.1f}",
              r["workdir"],
          ]
      )
  return buffer.getvalue()


def table(pattern: str, output: str = "markdown") -> str:
  """The report of the runs whose results.json `pattern` matches."""
  found = list(rows(pattern))
  if not found:
    raise zoo.errors.UserError(f"--workdirs={pattern}: no results.json there")
  return markdown(found) if output == "markdown" else csv_text(found)


def main(argv) -> int:
  cli.parse_known(argv)
  print(table(FLAGS.workdirs, FLAGS.format), end="" if FLAGS.format == "csv" else "\n")
  return 0


def console() -> None:
  """The `zoo-report` command."""
  cli.run(main)


if __name__ == "__main__":
  console()

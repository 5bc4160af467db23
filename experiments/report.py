"""The reproduction table: each finished run's test evaluation beside the paper's number; a
sweep's (`config.replicas`) for each of its settings.

  python -m experiments.report [--workdirs='workdirs/**/results.json']

A model's config module may define `describe(model_config) -> str`, the paper's name for the
variant, and `PAPER_RESULTS[variant][data set]`, the paper's number where the data set is the
paper's; the table shows "-" elsewhere.
"""

import glob
import importlib
import json
import os

import ml_collections
from absl import flags

import zoo
from experiments import cli
from zoo import configs

FLAGS = flags.FLAGS
flags.DEFINE_string("workdirs", "workdirs/**/results.json", "Glob of the runs' results.json.")


def rows(pattern):
  """A row per run of each results.json under `pattern`; of a sweep (`config.replicas`), a row
  per setting."""
  for path in sorted(glob.glob(pattern, recursive=True)):
    workdir = os.path.dirname(path)
    with open(path) as f:
      results = json.load(f)
    config = zoo.checkpoints.read_config(workdir)
    module = importlib.import_module(f"zoo.configs.{config.model_name}")
    per_seed = results.get("per_seed", [results])  # a run of several seeds reports each's
    for part in results.get("settings", [results]):
      setting = part.get("setting", {})
      model_config = {**config.model, **configs.model_fields(setting)}
      variant = (
          module.describe(ml_collections.ConfigDict(model_config))
          if hasattr(module, "describe")
          else "-"
      )
      paper_set = config.dataset.split("/")[-1]
      paper = getattr(module, "PAPER_RESULTS", {}).get(variant, {}).get(paper_set)
      test, stderr = part["test"], part.get("test_stderr", {})
      replicas = [r for r in per_seed if r.get("setting", {}) == setting]
      yield {
          "model": config.model_name,
          "variant": variant,
          "setting": configs.setting_name(setting) or "-",
          "dataset": config.dataset,
          "seeds": len(replicas),
          "log_prob": test.get("log_prob"),
          "log_prob_stderr": stderr.get("log_prob"),
          "bits_per_dim": test.get("bits_per_dim"),
          "bits_per_dim_stderr": stderr.get("bits_per_dim"),
          "paper": paper,
          "steps": results["steps"],
          "best_step": "/".join(str(r["best_step"]) for r in replicas),
          "seconds": results["train_seconds"],
          "workdir": workdir,
      }


def cell(value, digits=2, stderr=None):
  """The value; with several seeds, their mean and its standard error."""
  if value is None:
    return "-"
  return f"{value:.{digits}f}" + ("" if stderr is None else f" ± {stderr:.{digits}f}")


def table(pattern) -> str:
  lines = [
      "| model | variant | setting | data set | seeds | test log-lik. (nats) | bits/dim | "
      "paper (nats) | steps (best) | train s | workdir |",
      "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|",
  ]
  for r in rows(pattern):
    lines.append(
        f"| {r['model']} | {r['variant']} | {r['setting']} | {r['dataset']} | {r['seeds']} | "
        f"{cell(r['log_prob'], 2, r['log_prob_stderr'])} | "
        f"{cell(r['bits_per_dim'], 3, r['bits_per_dim_stderr'])} | {cell(r['paper'])} | "
        f"{r['steps']} ({r['best_step']}) | {r['seconds']:.0f} | {r['workdir']} |"
    )
  return "\n".join(lines)


def main(argv) -> int:
  cli.parse_known(argv)
  print(table(FLAGS.workdirs))
  return 0


def console() -> None:
  """The `zoo-report` command."""
  cli.run(main)


if __name__ == "__main__":
  console()

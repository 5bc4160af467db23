"""The reproduction table: each finished run's test evaluation beside the paper's number.

  python -m experiments.report [--workdirs='workdirs/**/results.json']

A model's config module may define `describe(model_config) -> str`, the paper's name for the
variant, and `PAPER_RESULTS[variant][data set]`, the paper's number where the data set is the
paper's; the table shows "-" elsewhere.
"""

import glob
import importlib
import json
import os

from absl import flags

import zoo
from experiments import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdirs", "workdirs/**/results.json", "Glob of the runs' results.json.")


def rows(pattern):
  for path in sorted(glob.glob(pattern, recursive=True)):
    workdir = os.path.dirname(path)
    with open(path) as f:
      results = json.load(f)
    config = zoo.checkpoints.read_config(workdir)
    module = importlib.import_module(f"zoo.configs.{config.model_name}")
    variant = module.describe(config.model) if hasattr(module, "describe") else "-"
    paper_set = config.dataset.split("/")[-1]
    paper = getattr(module, "PAPER_RESULTS", {}).get(variant, {}).get(paper_set)
    test, stderr = results["test"], results.get("test_stderr", {})
    per_seed = results.get("per_seed", [results])  # a run of several seeds reports each's
    yield {
        "model": config.model_name,
        "variant": variant,
        "dataset": config.dataset,
        "seeds": len(per_seed),
        "log_prob": test.get("log_prob"),
        "log_prob_stderr": stderr.get("log_prob"),
        "bits_per_dim": test.get("bits_per_dim"),
        "bits_per_dim_stderr": stderr.get("bits_per_dim"),
        "paper": paper,
        "steps": results["steps"],
        "best_step": "/".join(str(r["best_step"]) for r in per_seed),
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
      "| model | variant | data set | seeds | test log-lik. (nats) | bits/dim | "
      "paper (nats) | steps (best) | train s | workdir |",
      "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
  ]
  for r in rows(pattern):
    lines.append(
        f"| {r['model']} | {r['variant']} | {r['dataset']} | {r['seeds']} | "
        f"{cell(r['log_prob'], 2, r['log_prob_stderr'])} | "
        f"{cell(r['bits_per_dim'], 3, r['bits_per_dim_stderr'])} | {cell(r['paper'])} | "
        f"{r['steps']} ({r['best_step']}) | {r['seconds']:.0f} | {r['workdir']} |"
    )
  return "\n".join(lines)


def main(argv) -> int:
  FLAGS(argv)
  print(table(FLAGS.workdirs))
  return 0


if __name__ == "__main__":
  cli.run(main)

"""Every runner command that README, RESULTS, BENCHMARKS and BUILD show still runs: each is run
as written but for its length (a few steps, into a temporary workdir and data dir). A command
on data that cannot be had here must end in one line naming it, never a traceback."""

import ast
import os
import re
import shlex
import subprocess
import sys

import pytest
from conftest import command_env

import zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ("README.md", "RESULTS.md", "BENCHMARKS.md", "BUILD.md")
SHORT = (
    "--config.num_steps=2",
    "--config.log_every=1",
    "--config.eval_every=2",
    "--config.checkpoint_every=2",
    "--config.early_stopping_patience=0",
    "--config.num_images=4",
)
DISENTANGLEMENT = (
    "--config.disentanglement.num_points=300",
    "--config.disentanglement.score_train=20",
    "--config.disentanglement.score_eval=10",
)


# The runner's commands, and the benchmark and diagnostic a short run can check.
RUNNABLE = r"python -m (experiments\.\w+|benchmarks\.(bench|position_diagnostic)\b)([^`#]*)"


def _commands():
  """(doc, command) of every RUNNABLE line, continuation lines joined and
  shell variables of the same code block (R=..., S=...) substituted; multi-process commands
  (tested by test_multiprocess), placeholders (NAME), those that rewrite BENCHMARKS.md
  (--all, --render) and those that draw a kept run's figures again (experiments.draw, tested
  on a run of its own by test_seeds) left out."""
  found = []
  for doc in DOCS:
    with open(os.path.join(ROOT, doc)) as f:
      text = f.read().replace("\\\n", " ")
    variables = {}
    for line in text.splitlines():
      if re.match(r"\s*\w+=", line) and "python -m" not in line:  # R=... S="..."
        variables.update(token.split("=", 1) for token in shlex.split(line) if "=" in token)
      match = re.search(
          r"python -m (experiments\.\w+|benchmarks\.(bench|position_diagnostic)\b)([^`#]*)", line
      )
      if not match:
        continue
      command = match.group(0).strip()
      for name, value in variables.items():
        command = command.replace(f"${name}", value)
      if re.search(
          r"[$\[]|\.\.\.|NAME|DATA|STEPS|VARIANT|--all|--render|--distributed|"
          r"--coordinator|--process_id|experiments\.draw",  # draw: a run of its own, test_seeds
          command,
      ):
        continue
      found.append((doc, command))
  return sorted(set(found))


def _runnable(command: str, tmp_path, data_dir) -> list[str]:
  """The command with a short run's flags, into `tmp_path`."""
  args = [a for a in shlex.split(command)[2:] if not a.startswith("--workdir")]
  module, args = args[0], args[1:]
  if module == "benchmarks.bench":
    return [module, *args, "--seconds=0.05", "--repeats=1"]
  if module == "experiments.report":
    return [module, *args]
  if module == "benchmarks.position_diagnostic":
    return [module, *args, "--seeds=1", "--steps=2"]
  extra = [f"--workdir={tmp_path / 'run'}", f"--config.data_dir={data_dir}", *SHORT]
  if re.search(r"--model=(beta_vae|dip_vae)", command):
    extra += DISENTANGLEMENT
    if "--config.dataset" not in command:
      extra.append("--config.dataset=dsprites_procedural/coarse")  # full: minutes to prepare
  if module == "experiments.sweep":
    extra.append("--config.num_steps=2")
  return [module, *args, *extra]


@pytest.mark.slow
@pytest.mark.parametrize("doc,command", _commands())
def test_a_documented_command_runs(doc, command, tmp_path, data_dir):
  result = subprocess.run(
      [sys.executable, "-m", *_runnable(command, tmp_path, data_dir)],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=1800,  # RESULTS' 16-run VIMCO grid: 474 s alone, over 900 s in the slow suite
      env=command_env(),
  )
  if result.returncode == 0:
    return
  lines = result.stderr.strip().splitlines()
  assert (
      result.returncode == 2
      and len(lines) == 1
      and re.search(
          r"download|manual directory|cannot be prepared|data set|no results.json there", lines[0]
      )  # the last: a report of runs kept on the machine that trained them
  ), (doc, command, result.stderr[-2000:])


def _paper_settings():
  """(preset column, key, value) of each row of README's table of the paper presets' sources."""
  with open(os.path.join(ROOT, "README.md")) as f:
    text = f.read()
  table = text.split("<!-- paper settings: begin -->")[1].split("<!-- paper settings: end -->")[0]
  rows = [line.split("|")[1:4] for line in table.strip().splitlines()[2:]]
  return [tuple(cell.strip().strip("`") for cell in row) for row in rows]


@pytest.mark.parametrize("preset, key, value", _paper_settings())
def test_the_readme_table_of_paper_settings_is_what_the_configs_hold(preset, key, value):
  name, preset_name, *overrides = preset.split()
  config = zoo.get(name).default_config(preset_name)
  for override in overrides:
    override_key, override_value = override.split("=")
    node, leaf = zoo.configs.lookup(config, override_key)
    node[leaf] = override_value
  node, leaf = zoo.configs.lookup(zoo.configs.finalize(config), key)
  held = node[leaf]
  try:
    expected = ast.literal_eval(value)
  except (ValueError, SyntaxError):
    expected = value
  if isinstance(held, (list, tuple)):
    held = tuple(held)
  assert held == expected, (preset, key, held, value)

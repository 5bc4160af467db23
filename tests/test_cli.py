"""The command line: a run in seconds, and each user error as one line and a non-zero exit."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT
from conftest import command_env
from conftest import run_cli

from experiments import cli
from experiments import run


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model=no_such_model"], "unknown model 'no_such_model'"),
        ([], "--model is required"),
        (["--model=maf", "--preset=huge"], "--preset=huge"),
        (["--model=maf", "--preset=study"], "maf has the presets smoke, default, paper"),
        (["--model=dip_vae", "--preset=paper"], "--preset=study is disentanglement_lib's"),
        (["--model=beta_vae", "--preset=smoke", "--config.model.network=mlp"], "network must be"),
        (["--model=maf", "--preset=smoke", "--config.model.activation=elu"], "activation must be"),
        (["--model=wgan", "--preset=smoke", "--config.model.critic_norm=group"], "critic_norm"),
        (["--model=maf", "--preset=smoke", "--config.eval_every_epochs=-1"], "eval_every_epochs"),
        (["--modle=maf"], "unknown flag --modle; did you mean --model?"),
        (["--model=maf", "--workdri=x"], "unknown flag --workdri; did you mean --workdir?"),
        (["--model=maf", "--preset=smoke", "--config.no_such_key=1"], "unknown config key"),
        (["--model=maf", "--config.num_step=3"], "did you mean config.num_steps?"),
        (["--model=maf", "--preset=smoke", "--config.model.no_such_key=1"], "config.model has"),
        (["--model=maf", "--preset=smoke", "--config.batch_size=many"], "batch_size"),
        (["--model=maf", "--preset=smoke", "--config.model.hidden_dims=wide"], "hidden_dims"),
        (["--model=maf", "--preset=smoke", "--config.model.layer=dense"], "layer must be"),
        (["--model=maf", "--preset=smoke", "--config.dataset=no_such_data"], "unknown data set"),
        (
            ["--model=maf", "--preset=smoke", "--config.dataset=toy2d/two_moon"],
            "did you mean 'toy2d/two_moons'",
        ),
        (
            ["--model=maf", "--preset=smoke", "--config.dataset=maf_tabular/power"],
            "power/data.npy in the manual directory",
        ),
        (["--model=maf", "--preset=smoke", "--config.preprocess=logit"], "is real-valued"),
        (
            ["--model=maf", "--preset=smoke", "--config.preprocess=bogus"],
            "preprocessing must be one of",
        ),
        (
            ["--model=vlae", "--preset=smoke", "--config.model.conv_features=8,8,8,8"],
            "sides must be multiples of 16",
        ),
        (
            [
                "--model=vlae",
                "--preset=smoke",
                "--config.dataset=toy2d/two_moons",
                "--config.preprocess=none",
            ],
            "the conv layers need images",
        ),
        (
            ["--model=dip_vae", "--preset=smoke", "--config.model.variant=iii"],
            "variant must be one of i, ii",
        ),
        (
            ["--model=maf", "--preset=smoke", "--config.dataset=mnist"],
            "cannot be downloaded here",
        ),
        (
            ["--model=nice", "--preset=smoke", "--config.dataset=mnist"],
            "(`tfds build mnist --data_dir=DIR`)",
        ),
        (
            ["--model=wgan", "--preset=smoke", "--config.center_crop=148"],
            "a crop needs the size it is resized to",
        ),
        (  # a field that sets a shape is not swept over replicas: the keys that can be are named
            ["--model=beta_vae", "--preset=smoke", "--config.replicas.model.latent_dim=5,10"],
            "config.replicas.model has: beta",
        ),
        (
            ["--model=maf", "--preset=smoke", "--config.replicas.learning_rate=0,1e-3"],
            "config.replicas.learning_rate must be positive",
        ),
        (
            ["--model=maf", "--preset=smoke", "--config.replicas.learning_rate=fast,slow"],
            "config.replicas.learning_rate must be numbers",
        ),
    ],
)
def test_user_errors_are_one_line(tmp_path, data_dir, args, message, capfd, monkeypatch):
  """In this process (the command's imports are paid once for all cases), with everything
  written to file descriptor 2 captured, the C++ runtime's writes too."""
  monkeypatch.setattr(
      sys, "argv", ["run", *args, f"--workdir={tmp_path}", f"--config.data_dir={data_dir}"]
  )
  with pytest.raises(SystemExit) as exited:
    cli.run(run.main)
  assert exited.value.code == 2
  lines = capfd.readouterr().err.strip().splitlines()
  assert len(lines) == 1, lines
  assert lines[0].startswith("error: ") and message in lines[0]


@pytest.mark.parametrize("command", ["zoo-run", "zoo-sweep", "zoo-report", "zoo-draw"])
def test_the_console_commands_run_from_any_directory(tmp_path, command):
  """The installed commands (setup.cfg's console scripts) import the runner wherever they are
  started: --help gives the module's usage, and a mistake its one line."""
  path = os.path.join(os.path.dirname(sys.executable), command)
  shown = subprocess.run([path, "--help"], cwd=tmp_path, capture_output=True, text=True)
  assert shown.returncode == 0 and "python -m experiments." in shown.stdout, shown.stderr
  wrong = subprocess.run([path, "--modle=maf"], cwd=tmp_path, capture_output=True, text=True)
  assert wrong.returncode == 2
  assert wrong.stderr.startswith("error: unknown flag --modle; ") and wrong.stderr.count("\n") == 1


def test_starting_the_runner_leaves_scikit_learn_to_the_metrics_that_fit_with_it():
  """scikit-learn took a second of the three that importing the runner took (the digits' builder
  and the disentanglement metrics imported it at the top), which every command paid: `--help`
  and a one-line error before anything compiles included."""
  imported = subprocess.run(
      [sys.executable, "-c", "import sys, experiments.run; print(*sys.modules, sep='\\n')"],
      cwd=ROOT,
      capture_output=True,
      text=True,
      check=True,
  )
  assert not [m for m in imported.stdout.split() if m.split(".")[0] == "sklearn"]


def test_readmes_console_command_trains_from_another_directory(tmp_path, data_dir):
  """README's `zoo-run` line, as written but started in another directory: a smoke run trains
  there."""
  with open(os.path.join(ROOT, "README.md")) as f:
    line = f.read().split("<!-- console command -->\n```\n")[1].splitlines()[0]
  command, *args = line.split()
  result = subprocess.run(
      [os.path.join(ROOT, command), *args, f"--config.data_dir={data_dir}"],
      cwd=tmp_path,
      capture_output=True,
      text=True,
      env=command_env(),
  )
  assert result.returncode == 0 and "test log_prob" in result.stdout, result.stderr
  assert "Traceback" not in result.stderr
  assert os.path.exists(tmp_path / "workdirs" / "maf-smoke" / "results.json")


def test_the_grid_sweep_refuses_replica_settings_in_one_line(tmp_path, data_dir):
  """experiments.sweep summarises a run per point; a sweep inside a point is experiments.run's."""
  code, _, stderr = run_cli(
      "--model=maf",
      "--preset=smoke",
      "--sweep=learning_rate=1e-3,1e-2",
      "--config.replicas.learning_rate=1e-3,1e-2",
      f"--workdir={tmp_path}",
      f"--config.data_dir={data_dir}",
      module="experiments.sweep",
  )
  assert code == 2
  assert stderr.strip().splitlines() == [stderr.strip()]
  assert "one program per point" in stderr


def test_a_diverged_run_is_one_line_and_exit_status_3(tmp_path, data_dir):
  """As a command of its own, so that the end of the process (the feeding thread stopped while
  the runtime runs) is part of what is checked."""
  code, _, stderr = run_cli(
      "--model=maf",
      "--preset=smoke",
      "--config.learning_rate=1e12",
      f"--workdir={tmp_path}",
      f"--config.data_dir={data_dir}",
  )
  assert code == 3
  assert stderr.strip().splitlines() == [stderr.strip()]
  assert stderr.startswith("error: ") and "non-finite at step" in stderr


def test_nice_smoke_writes_inpainting(tmp_path, data_dir):
  code, stdout, stderr = run_cli(
      "--model=nice", "--preset=smoke", f"--workdir={tmp_path}", f"--config.data_dir={data_dir}"
  )
  assert code == 0, stderr
  assert "bits_per_dim" in stdout
  assert os.path.exists(tmp_path / "inpainting.png")


@pytest.mark.parametrize("module", ["experiments.run", "experiments.sweep"])
def test_a_half_prepared_set_is_still_one_line(tmp_path, module):
  """A version folder without its dataset_info.json (a build that stopped) makes TFDS warn
  through absl: every command keeps absl to errors unless --verbosity asks for more."""
  data_dir = tmp_path / "data"
  os.makedirs(data_dir / "binarized_mnist" / "1.0.0")
  code, _, stderr = run_cli(
      "--model=vimco",
      "--preset=paper",
      f"--workdir={tmp_path / 'run'}",
      f"--config.data_dir={data_dir}",
      module=module,
  )
  assert code == 2
  assert stderr.strip().splitlines() == [stderr.strip()]
  assert "cannot be downloaded here" in stderr


@pytest.mark.slow  # 70 s: four runs and a plot; test_docs runs the documented sweeps too
def test_sweep_trains_each_combination_and_writes_table_and_plot(tmp_path, data_dir):
  code, _, stderr = run_cli(
      "--model=vimco",
      "--preset=smoke",
      f"--workdir={tmp_path}",
      f"--config.data_dir={data_dir}",
      "--sweep=model.estimator=vimco,reinforce",
      "--sweep=model.num_samples=1,2",
      timeout=600,
      module="experiments.sweep",
  )
  assert code == 0, stderr
  table = (tmp_path / "sweep.md").read_text()
  assert table.count("| estimator=") == 3
  assert "skipped: estimator=vimco,num_samples=1" in table
  assert (tmp_path / "sweep.png").stat().st_size > 0

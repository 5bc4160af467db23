"""README's notebook examples, run as written: the library alone (`zoo.fit`) trains a model,
and a run the runner wrote is loaded and used."""

import functools
import os
import re

import jax
import numpy as np

import zoo
from experiments import loop
from zoo import checkpoints

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def notebook_examples() -> list[str]:
  """The Python blocks of README's notebook section."""
  with open(README) as f:
    section = re.search(r"## In a notebook(.*?)\n## ", f.read(), re.S).group(1)
  return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_notebook_example_trains_maf_past_the_best_gaussian(data_dir, tmp_path, monkeypatch):
  """The example's MAF has the parameters `python -m experiments.run` trains with the same
  config and seed, bit for bit; after its 500 steps it is a better density of the test split
  than the maximum-likelihood Gaussian of the training split (computed here in closed form):
  500 steps gave -2.94 nats against the Gaussian's -3.29."""
  example = notebook_examples()[0]
  monkeypatch.setattr(zoo.data, "load", functools.partial(zoo.data.load, data_dir=data_dir))
  namespace = {}
  exec(example, namespace)  # pylint: disable=exec-used
  dataset, model, variables = (namespace[k] for k in ("dataset", "model", "variables"))
  monkeypatch.undo()  # the runner passes its own data_dir
  config = namespace["fitted"].config.copy_and_resolve_references()
  config.data_dir = data_dir
  loop.train_and_evaluate(config, str(tmp_path / "run"))
  saved = checkpoints.manager(str(tmp_path / "run" / checkpoints.CHECKPOINTS))
  runner = checkpoints.restore_local(saved, saved.latest_step())["params"]
  for want, got in zip(jax.tree.leaves(runner), jax.tree.leaves(variables["params"])):
    np.testing.assert_array_equal(got, want[0])
  train = dataset.read("train", np.arange(dataset.num_examples("train")))["x"]
  test = dataset.read("test", np.arange(dataset.num_examples("test")))["x"]
  mean, covariance = train.mean(0), np.cov(train.T)
  centred = test - mean
  gaussian = -0.5 * np.einsum(
      "ni,ij,nj->n", centred, np.linalg.inv(covariance), centred
  ) - 0.5 * np.log(np.linalg.det(2 * np.pi * covariance))
  log_prob = np.asarray(model.apply(variables, test, method="log_prob"))
  assert log_prob.mean() > gaussian.mean() + 0.1, (log_prob.mean(), gaussian.mean())


def test_the_game_example_trains_a_wgan_on_arrays():
  """The second example: a WGAN trained from the library on arrays of one's own (nothing to
  prepare), its samples of the data's shape and finite."""
  namespace = {}
  exec(notebook_examples()[1], namespace)  # pylint: disable=exec-used
  fitted, samples = namespace["fitted"], np.asarray(namespace["samples"])
  assert fitted.config.dataset == "arrays" and fitted.history[-1]["step"] == 50
  assert samples.shape == (500, 2) and np.isfinite(samples).all()


def test_the_load_example_uses_a_run_the_runner_wrote(data_dir, tmp_path, monkeypatch):
  """In a directory where the runner wrote `workdirs/maf-default` (here from the smoke preset,
  trained in seconds), the example's log-densities are finite and one per example."""
  config = zoo.get("maf").default_config("smoke")
  config.data_dir = data_dir
  monkeypatch.chdir(tmp_path)
  loop.train_and_evaluate(config, "workdirs/maf-default")
  namespace = {}
  exec(notebook_examples()[-1], namespace)  # pylint: disable=exec-used
  log_p, samples, x = (np.asarray(namespace[k]) for k in ("log_p", "samples", "x"))
  assert log_p.shape == (len(x),) and np.isfinite(log_p).all()
  assert samples.shape == (16, *x.shape[1:])

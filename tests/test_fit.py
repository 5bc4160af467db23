"""`zoo.fit` against the runner: the same config and seed give the same parameters, bit for bit;
and its contract: a built model's fields, the history it logs, one-line errors."""

import os

import jax
import numpy as np
import pytest

import zoo
from experiments import loop
from zoo import checkpoints
from zoo import training


def runner_params(config, workdir) -> dict:
  """The parameters of every replica in the runner's last checkpoint of `config`."""
  loop.train_and_evaluate(config, workdir)
  saved = checkpoints.manager(os.path.join(workdir, checkpoints.CHECKPOINTS))
  return checkpoints.restore_local(saved, saved.latest_step())["params"]


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("maf", {"num_seeds": 2}),  # a flow, two replicas, windows of several steps
        ("wgan", {}),  # a game: stacks of critic batches, bursts, one step a window
    ],
)
def test_fit_trains_to_the_runners_parameters(name, overrides, data_dir, tmp_path):
  config = zoo.get(name).default_config("smoke")
  config.update(data_dir=data_dir, **overrides)
  expected = runner_params(config, str(tmp_path / "run"))
  fitted = zoo.fit(name, config=config)
  assert fitted.seeds == [config.seed + r for r in range(config.num_seeds)]
  for want, got in zip(jax.tree.leaves(expected), jax.tree.leaves(fitted.replicas["params"])):
    np.testing.assert_array_equal(got, want)


def test_a_built_model_trains_with_its_own_fields(data_dir):
  """The model's fields replace the config's; the history has one entry per logging step, the
  loss per replica, and `on_log` sees each."""
  config = zoo.get("maf").default_config("smoke")
  config.data_dir = data_dir
  seen = []
  model = zoo.build("maf", num_layers=1, hidden_dims=(8,))
  fitted = zoo.fit(model, config=config, steps=20, on_log=lambda step, _: seen.append(step))
  assert (fitted.config.model.num_layers, tuple(fitted.config.model.hidden_dims)) == (1, (8,))
  assert [entry["step"] for entry in fitted.history] == seen == [10, 20]
  assert fitted.history[-1]["loss"].shape == (1,)
  assert fitted.model == model
  assert (
      jax.tree.leaves(fitted.variables())[0].shape == jax.tree.leaves(fitted.replicas)[0].shape[1:]
  )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: zoo.fit("maf", steps=0), "config.num_steps must be positive"),
        (lambda: zoo.fit("mafs"), "unknown model 'mafs'"),
        (lambda: zoo.fit(zoo.build("maf"), seed=-1), "config.seed must be zero or positive"),
    ],
)
def test_a_mistake_is_one_user_error_before_anything_trains(call, message):
  with pytest.raises(zoo.errors.UserError) as error:
    call()
  assert message in str(error.value) and "\n" not in str(error.value)


def test_a_step_is_not_built_from_an_unfinished_config():
  """WGAN's smoke config leaves the optimiser to its variant (`finalize`); a step built from
  it as handed out would train RMSProp at an unset learning rate."""
  config = zoo.get("wgan").default_config("smoke")
  with pytest.raises(zoo.errors.UserError) as error:
    training.make_step(zoo.build("wgan"), config, game=True)
  assert "config.learning_rate" in str(error.value) and "config.optimizer" in str(error.value)
  training.make_step(zoo.build("wgan"), zoo.configs.finalize(config), game=True)

"""The registry's public surface (README; ARCHITECTURE.md): list_models, get, build, configs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import zoo
from zoo import configs
from zoo import contract
from zoo import registry

REQUIRED_KEYS = (
    "seed",
    "dataset",
    "data_dir",
    "batch_size",
    "learning_rate",
    "num_steps",
    "log_every",
    "eval_every",
    "checkpoint_every",
)


def test_list_models_is_sorted_and_has_maf():
  names = zoo.list_models()
  assert names == sorted(names)
  assert "maf" in names


def test_unknown_name_lists_the_known_ones():
  with pytest.raises(zoo.errors.UnknownModelError) as info:
    zoo.get("no_such_model")
  assert "maf" in str(info.value)
  assert isinstance(info.value, KeyError)


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_model_builds_with_paper_defaults_and_has_every_preset(name):
  spec = zoo.get(name)
  assert spec.family in ("flow", "latent", "game") and spec.paper
  assert isinstance(zoo.build(name), nn.Module)
  assert set(configs.PRESETS) - {"paper"} <= set(spec.presets)
  for preset in spec.presets:
    config = configs.finalize(spec.default_config(preset))  # as the runner completes it
    assert all(key in config for key in REQUIRED_KEYS)
    assert config.model_name == name
    assert isinstance(spec.build(**config.model), spec.module)


@pytest.mark.parametrize(
    "hyperparameters, message",
    [
        ({"no_such_field": 1}, "has no hyper-parameter no_such_field"),
        ({"hidden_dims": "abc"}, "hidden_dims must be a sequence of int"),
        ({"num_layers": 2.5}, "num_layers must be int"),
        ({"batch_norm": 1}, "batch_norm must be bool"),
    ],
)
def test_bad_hyperparameters_are_user_errors(hyperparameters, message):
  with pytest.raises(zoo.errors.HyperparameterError, match=message):
    zoo.build("maf", **hyperparameters)


def test_maf_paper_defaults():
  model = zoo.build("maf")
  assert (model.num_layers, tuple(model.hidden_dims), model.batch_norm) == (5, (100, 100), True)


@pytest.mark.parametrize(
    "family, defined, missing",
    [
        ("latent", ("evaluate", "loss"), "sample"),
        ("flow", ("evaluate", "sample", "loss"), "batch_norm_inputs"),
        ("game", ("evaluate", "sample", "phases"), "project"),
    ],
)
def test_a_model_without_a_required_method_is_refused_when_registered(family, defined, missing):
  """The class is refused where it is registered (at import), in one line naming what it
  lacks; the registry is left as it was."""
  methods = {m: lambda self, *args: None for m in defined}
  incomplete = type("Incomplete", (contract.Model,), methods)
  with pytest.raises(TypeError) as error:
    registry.register("incomplete", paper="none", family=family)(incomplete)
  assert str(error.value) == (
      f"model 'incomplete' (Incomplete) lacks {missing}, which every {family} model defines "
      "(zoo/contract.py)"
  )
  assert "incomplete" not in zoo.list_models()


@pytest.mark.parametrize("name", zoo.list_models())
def test_the_metric_that_selects_the_best_checkpoint_is_one_the_model_evaluates(name, data_dir):
  """`best_by` names a metric of `evaluate` (its shapes traced on the smoke config's data,
  nothing computed); the density models rank by log-likelihood, larger better, and the papers
  that train a fixed number of steps keep the last state (None)."""
  model = zoo.build(name)
  densities = ("maf", "nice", "vimco", "vlae")
  assert model.best_by == (("log_prob", "max") if name in densities else None)
  if model.best_by is None:
    return
  config = zoo.get(name).default_config("smoke")
  shape = zoo.data.load(config.dataset, data_dir).example_shape
  batch = {"x": jnp.zeros((2, *shape)), "label": jnp.zeros((2,), jnp.int32)}

  def evaluate(key):
    variables = model.init({"params": key, "sample": key}, batch, method="evaluate")
    return model.apply(variables, batch, method="evaluate", rngs={"sample": key})

  assert model.best_by[0] in jax.eval_shape(evaluate, jax.random.key(0))

"""Every field's declared values (`zoo.domains`): a value outside them ends in one line naming
the field, with exit status 2 and nothing compiled, for each field of every registered model and
each config field with a domain; and every numeric field declares one."""

import ast
import sys
import typing
from collections.abc import Sequence

import jax
import pytest

import zoo
from experiments import cli
from experiments import run
from zoo import configs
from zoo import domains

OUTSIDE = {
    domains.POSITIVE: 0,
    domains.NON_NEGATIVE: -1,
    domains.PROBABILITY: 2,
    domains.BELOW_ONE: 1,
    domains.AT_LEAST_TWO: 1,
}
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def outside(annotation) -> str | None:
  """A value outside `annotation`'s values, as the command line writes it; None for a field
  whose type alone is its domain (a bool, a name)."""
  origin = typing.get_origin(annotation)
  if origin is typing.Literal:
    return "not_a_choice"
  if origin in (Sequence, tuple):
    item = outside(typing.get_args(annotation)[0])
    return item and f"{item},{item}"
  if origin is typing.Annotated:
    kind, domain = typing.get_args(annotation)[:2]
    return str(kind(OUTSIDE[domain]))
  return None


def model_cases():
  for name in zoo.list_models():
    for field, annotation in domains.field_annotations(zoo.get(name).module).items():
      if outside(annotation) is not None:
        yield pytest.param(name, field, annotation, id=f"{name}.{field}")


def config_cases():
  for key, annotation in configs.DOMAINS.items():
    name = next(
        n
        for n in zoo.list_models()
        if key in configs.flat(configs.finalize(zoo.get(n).default_config("smoke")).to_dict())
    )
    yield pytest.param(name, key, annotation, id=key)


@pytest.fixture
def one_line_error(tmp_path, data_dir, capfd, monkeypatch):
  """`error(smoke_args)`: the one line on standard error of `experiments.run` with `args` (for
  the smoke preset, into a temporary workdir), with exit status 2 and no compilation on the
  way."""

  def error(args) -> str:
    compiled = []
    listener = lambda event, *_, **__: compiled.append(event) if event == COMPILE_EVENT else None
    jax.monitoring.register_event_duration_secs_listener(listener)
    monkeypatch.setattr(
        sys,
        "argv",
        ["run", *args, "--preset=smoke", f"--workdir={tmp_path}", f"--config.data_dir={data_dir}"],
    )
    try:
      with pytest.raises(SystemExit) as exited:
        cli.run(run.main)
    finally:
      jax.monitoring.unregister_event_duration_listener(listener)
    assert exited.value.code == 2
    assert not compiled
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]

  return error


@pytest.mark.parametrize("name, field, annotation", model_cases())
def test_a_model_field_outside_its_values_is_one_line(name, field, annotation, one_line_error):
  value = outside(annotation)
  if field in zoo.get(name).default_config("smoke").model:
    line = one_line_error([f"--model={name}", f"--config.model.{field}={value}"])
    assert line.startswith(f"error: {name}: {field} must be "), line
  else:  # a field the config leaves to its default: the library's own error
    with pytest.raises(zoo.errors.HyperparameterError) as error:
      zoo.build(name, **{field: ast.literal_eval(value)})
    assert str(error.value).startswith(f"{name}: {field} must be ")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name, key, annotation", config_cases())
def test_a_config_field_outside_its_values_is_one_line(name, key, annotation, one_line_error):
  line = one_line_error([f"--model={name}", f"--config.{key}={outside(annotation)}"])
  assert line.startswith(f"error: config.{key} must be "), line


@pytest.mark.parametrize("value", ["nan", "inf", "-0.001"])
def test_a_learning_rate_that_is_negative_or_not_finite_is_one_line(value, one_line_error):
  line = one_line_error(["--model=maf", f"--config.learning_rate={value}"])
  assert line.startswith("error: config.learning_rate must be "), line


def test_every_numeric_field_declares_its_domain():
  """Each int or float field of every model, and each numeric leaf of every preset's config,
  has a domain (a field's type alone does not say whether 0 or -1 is allowed)."""
  for name in zoo.list_models():
    spec = zoo.get(name)
    for field, annotation in domains.field_annotations(spec.module).items():
      if annotation in (int, float) or typing.get_args(annotation)[:1] in ((int,), (float,)):
        assert outside(annotation) is not None, f"{name}.{field}"
    for preset in spec.presets:
      config = configs.finalize(spec.default_config(preset))
      for key, value in configs.flat(config.to_dict()).items():
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if numeric and not key.startswith(("model.", "replicas.")):
          assert key in configs.DOMAINS, f"{name} {preset}: config.{key}"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--model=maf", "--config.figures=samples,nonsense"], "the figures are samples,"),
        (["--model=maf", "--config.figures=traversals"], "needs the model's `traverse`; maf"),
        (["--model=beta_vae", "--config.scores=clustering"], "needs a categorical code"),
    ],
)
def test_an_output_its_model_or_data_cannot_give_is_one_line(args, expected, one_line_error):
  """`experiments/outputs.py` declares what each figure and score needs."""
  line = one_line_error(args)
  assert expected in line and "config." in line, line

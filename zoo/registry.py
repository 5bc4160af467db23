"""The model registry: one `@register(...)` decorator in a model's own file adds it to the zoo.

Every module in `zoo.models` is imported when the registry is first read, so adding a paper is
adding one file under `zoo/models/` (and its config under `zoo/configs/`).
"""

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable

import flax.linen as nn
import ml_collections

from zoo import configs as zoo_configs
from zoo import contract
from zoo import domains
from zoo import errors
from zoo import training

_REGISTRY: dict[str, "ModelSpec"] = {}
_FAMILIES = tuple(contract.REQUIRED_BY_FAMILY)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What the zoo knows about one paper's model.

  Attributes:
    name: the registry name (`maf`).
    paper: the citation of the paper it implements.
    family: `flow` (exact density), `latent` (latent-variable model) or `game` (trained in
    phases, `zoo.nn.games.Game`).
    module: the Flax module class; its field defaults are the paper's hyper-parameters.
  """

  name: str
  paper: str
  family: str
  module: type[nn.Module]

  def build(self, **hyperparameters) -> nn.Module:
    """The model with the paper's defaults, overridden by `hyperparameters`.

    Args:
      **hyperparameters: values of the module's fields (`zoo/models/<name>.py`).

    Returns:
      The Flax module, unbound: `model.init(...)`, `model.apply(variables, ...)`.

    Raises:
      zoo.errors.HyperparameterError: an unknown field, or a value outside its field's
        declared values (`zoo.domains`), in one line naming the field.
    """
    fields = domains.field_annotations(self.module)
    unknown = sorted(set(hyperparameters) - set(fields))
    if unknown:
      raise errors.HyperparameterError(
          f"{self.name} has no hyper-parameter {', '.join(unknown)}; "
          f"it has {', '.join(sorted(fields))}"
      )
    return self.module(**hyperparameters)

  @property
  def step_kind(self) -> "training.StepKind":
    """How the model trains: `training.GAME` for a game, else `training.OBJECTIVE`."""
    return training.GAME if self.family == "game" else training.OBJECTIVE

  @property
  def presets(self) -> tuple[str, ...]:
    """The presets of `zoo/configs/<name>.py`: its `PRESETS`, else the common ones."""
    module = importlib.import_module(f"zoo.configs.{self.name}")
    return getattr(module, "PRESETS", zoo_configs.PRESETS)

  def default_config(self, preset: str = "default") -> ml_collections.ConfigDict:
    """The training configuration of `zoo/configs/<name>.py` for `preset`.

    Args:
      preset: one of `presets`: `smoke` (seconds, for tests), `default` (minutes on 2 CPU
        cores), `paper` (the paper's setting) or a model's own (`study`).

    Returns:
      The `ml_collections.ConfigDict`, unfinished: fields that `zoo.configs.finalize` derives
      from others (WGAN's optimiser from its variant) are None until it runs (`zoo.fit` and
      the runner run it).

    Raises:
      zoo.errors.UserError: a preset the model does not have.
    """
    config = importlib.import_module(f"zoo.configs.{self.name}").get_config(preset)
    config.replicas = zoo_configs.replicas_of(
        name
        for name, annotation in domains.field_annotations(self.module).items()
        if domains.base_type(annotation) is float
    )
    return config


def register(name: str, *, paper: str, family: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
  """Class decorator that registers a Flax module as the model `name`.

  Args:
    name: the registry name (`zoo.build(name)`, `--model=name`).
    paper: the paper it implements, as cited.
    family: `flow`, `latent` or `game`: the methods it must define (`zoo.contract`) and how it
      trains (`ModelSpec.step_kind`).

  Returns:
    The decorator, which returns the module unchanged.

  Raises:
    TypeError: at import, a module not deriving from `zoo.contract.Model`, or lacking a method
      its family requires (the message names them).
    ValueError: an unknown family, or a name registered twice.
  """
  if family not in _FAMILIES:
    raise ValueError(f"family must be one of {_FAMILIES}, not {family!r}")

  def decorate(module: type[nn.Module]) -> type[nn.Module]:
    if not issubclass(module, contract.Model):
      raise TypeError(f"model {name!r} must derive from zoo.contract.Model")
    missing = contract.missing_methods(module, family)
    if missing:
      raise TypeError(
          f"model {name!r} ({module.__name__}) lacks {', '.join(missing)}, which every "
          f"{family} model defines (zoo/contract.py)"
      )
    if name in _REGISTRY and _REGISTRY[name].module is not module:
      raise ValueError(f"model {name!r} is registered twice")
    module.registry_name = name
    _REGISTRY[name] = ModelSpec(name=name, paper=paper, family=family, module=module)
    return module

  return decorate


def _import_models():
  import zoo.models  # pylint: disable=import-outside-toplevel

  for info in pkgutil.iter_modules(zoo.models.__path__):
    importlib.import_module(f"zoo.models.{info.name}")


def list_models() -> list[str]:
  """The sorted registry names of every model, e.g. ["beta_vae", ..., "wgan"]."""
  _import_models()
  return sorted(_REGISTRY)


def get(name: str) -> ModelSpec:
  """The model registered as `name`.

  Args:
    name: a registry name (`list_models()`).

  Returns:
    Its `ModelSpec`: the module, paper, family, presets and `default_config`.

  Raises:
    zoo.errors.UnknownModelError: a name not in the registry, listing the known ones.
  """
  _import_models()
  if name not in _REGISTRY:
    raise errors.UnknownModelError(
        f"unknown model {name!r}; the zoo has: {', '.join(sorted(_REGISTRY))}"
    )
  return _REGISTRY[name]


def build(name: str, **hyperparameters) -> nn.Module:
  """The model `name` with the paper's defaults: `get(name).build(**hyperparameters)`.

  Args:
    name: a registry name (`list_models()`).
    **hyperparameters: values of the module's fields, in place of the paper's.

  Returns:
    The Flax module.

  Raises:
    zoo.errors.UnknownModelError: a name not in the registry, listing the known ones.
    zoo.errors.HyperparameterError: an unknown field or a value outside its domain.
  """
  return get(name).build(**hyperparameters)

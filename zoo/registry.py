"""The model registry: one `@register(...)` decorator in a model's own file adds it to the zoo.

Every module in `zoo.models` is imported when the registry is first read, so adding a paper is
adding one file under `zoo/models/` (and its config under `zoo/configs/`).
"""

import collections.abc
import dataclasses
import importlib
import pkgutil
import typing
from collections.abc import Callable

import flax.linen as nn
import ml_collections

from zoo import configs as zoo_configs
from zoo import contract
from zoo import errors

_REGISTRY: dict[str, "ModelSpec"] = {}
_FAMILIES = ("flow", "latent", "game")


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
    """The model with the paper's defaults, overridden by `hyperparameters`."""
    fields = {
        f.name: f.type for f in dataclasses.fields(self.module) if f.name not in ("parent", "name")
    }
    unknown = sorted(set(hyperparameters) - set(fields))
    if unknown:
      raise errors.HyperparameterError(
          f"{self.name} has no hyper-parameter {', '.join(unknown)}; "
          f"it has {', '.join(sorted(fields))}"
      )
    for key, value in hyperparameters.items():
      if not _has_type(value, fields[key]):
        raise errors.HyperparameterError(
            f"{self.name}: hyper-parameter {key} must be {_type_name(fields[key])}, "
            f"not {value!r}"
        )
    return self.module(**hyperparameters)

  @property
  def presets(self) -> tuple[str, ...]:
    """The presets of `zoo/configs/<name>.py`: its `PRESETS`, else the common ones."""
    module = importlib.import_module(f"zoo.configs.{self.name}")
    return getattr(module, "PRESETS", zoo_configs.PRESETS)

  def default_config(self, preset: str = "default") -> ml_collections.ConfigDict:
    """The training configuration of `zoo/configs/<name>.py` for `preset`."""
    config = importlib.import_module(f"zoo.configs.{self.name}").get_config(preset)
    config.replicas = zoo_configs.replicas_of(
        f.name for f in dataclasses.fields(self.module) if f.type is float
    )
    return config


def _has_type(value, annotation) -> bool:
  """Whether `value` fits a module field's annotation: a scalar type or Sequence[scalar]."""
  if typing.get_origin(annotation) in (collections.abc.Sequence, tuple, list):
    (item,) = set(typing.get_args(annotation)) - {Ellipsis} or {object}
    return isinstance(value, (tuple, list)) and all(_has_type(v, item) for v in value)
  if annotation is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if annotation is int:
    return isinstance(value, int) and not isinstance(value, bool)
  return not isinstance(annotation, type) or isinstance(value, annotation)


def _type_name(annotation) -> str:
  if typing.get_origin(annotation) is not None:
    return f"a sequence of {typing.get_args(annotation)[0].__name__}"
  return getattr(annotation, "__name__", str(annotation))


def register(name: str, *, paper: str, family: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
  """Class decorator that registers a Flax module as the model `name`."""
  if family not in _FAMILIES:
    raise ValueError(f"family must be one of {_FAMILIES}, not {family!r}")

  def decorate(module: type[nn.Module]) -> type[nn.Module]:
    if not issubclass(module, contract.Model):
      raise TypeError(f"model {name!r} must derive from zoo.contract.Model")
    if name in _REGISTRY and _REGISTRY[name].module is not module:
      raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = ModelSpec(name=name, paper=paper, family=family, module=module)
    return module

  return decorate


def _import_models():
  import zoo.models  # pylint: disable=import-outside-toplevel

  for info in pkgutil.iter_modules(zoo.models.__path__):
    importlib.import_module(f"zoo.models.{info.name}")


def list_models() -> list[str]:
  """The sorted names of every registered model."""
  _import_models()
  return sorted(_REGISTRY)


def get(name: str) -> ModelSpec:
  """The `ModelSpec` registered as `name`; an `UnknownModelError` lists the known names."""
  _import_models()
  if name not in _REGISTRY:
    raise errors.UnknownModelError(
        f"unknown model {name!r}; the zoo has: {', '.join(sorted(_REGISTRY))}"
    )
  return _REGISTRY[name]


def build(name: str, **hyperparameters) -> nn.Module:
  """`get(name).build(**hyperparameters)`: the model with the paper's defaults."""
  return get(name).build(**hyperparameters)

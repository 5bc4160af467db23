"""The values a field may take, declared once beside its default and checked in one place.

A model's fields (a Flax dataclass) declare theirs in their annotations: `typing.Literal[...]`
for a fixed set of values, `typing.Annotated[float, POSITIVE]` (or an alias below) for a
numeric domain, `Sequence[...]` of either for a tuple. `zoo.contract.Model` checks its fields
when it is built; `zoo.configs.DOMAINS` holds the training config's fields, checked by
`zoo.configs.validate`. `check` (of `problem`) is the one check all of them use.
"""

import dataclasses
import math
import typing
from collections.abc import Callable
from collections.abc import Sequence
from typing import Annotated

import jax
import numpy as np

from zoo import errors


@dataclasses.dataclass(frozen=True)
class Domain:
  """A numeric domain: `description` completes "must be ..."; `contains` is false for NaN."""

  description: str
  contains: Callable[[float], bool]


POSITIVE = Domain("positive", lambda v: v > 0)
NON_NEGATIVE = Domain("zero or positive", lambda v: v >= 0)
PROBABILITY = Domain("in [0, 1]", lambda v: 0 <= v <= 1)
BELOW_ONE = Domain("in [0, 1)", lambda v: 0 <= v < 1)
AT_LEAST_TWO = Domain("at least 2", lambda v: v >= 2)

PositiveInt = Annotated[int, POSITIVE]
NonNegativeInt = Annotated[int, NON_NEGATIVE]
PositiveFloat = Annotated[float, POSITIVE]
NonNegativeFloat = Annotated[float, NON_NEGATIVE]
Widths = Sequence[PositiveInt]  # the widths of a stack of layers


def _fits_type(value, annotation) -> bool:
  """Whether `value` is of the annotation's type, domains aside; a float is finite."""
  origin = typing.get_origin(annotation)
  if origin is Annotated:
    return _fits_type(value, typing.get_args(annotation)[0])
  if origin is typing.Literal:
    return value in typing.get_args(annotation)
  if origin in (Sequence, tuple, list):
    (item,) = set(typing.get_args(annotation)) - {Ellipsis} or {object}
    return isinstance(value, (tuple, list)) and all(_fits_type(v, item) for v in value)
  if annotation is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
  if annotation is int:
    return isinstance(value, int) and not isinstance(value, bool)
  return not isinstance(annotation, type) or isinstance(value, annotation)


def _domains(annotation) -> tuple[Domain, ...]:
  if typing.get_origin(annotation) is Annotated:
    return tuple(d for d in typing.get_args(annotation)[1:] if isinstance(d, Domain))
  return ()


def type_name(annotation) -> str:
  """The annotation's type in words: `int`, `one of conv, fc`, `a sequence of int`."""
  origin = typing.get_origin(annotation)
  if origin is Annotated:
    return type_name(typing.get_args(annotation)[0])
  if origin is typing.Literal:
    return f"one of {', '.join(map(str, typing.get_args(annotation)))}"
  if origin in (Sequence, tuple, list):
    return f"a sequence of {type_name(typing.get_args(annotation)[0])}"
  if annotation is float:
    return "a finite number"
  return getattr(annotation, "__name__", str(annotation))


def base_type(annotation):
  """The type under an annotation's domain: `float` for `PositiveFloat`."""
  if typing.get_origin(annotation) is Annotated:
    return typing.get_args(annotation)[0]
  return annotation


def problem(value, annotation) -> str | None:
  """What `value` must be to fit `annotation` ("positive", "one of conv, fc", "a sequence of
  int"), or None where it fits. An array (a replica's swept field, from its variables, traced
  or restored) is not checked: its values were checked as config values before it trained."""
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    return None
  if not _fits_type(value, annotation):
    return type_name(annotation)
  if typing.get_origin(annotation) in (Sequence, tuple, list):
    (item,) = set(typing.get_args(annotation)) - {Ellipsis}
    item_problems = [p for p in (problem(v, item) for v in value) if p]
    return f"a sequence of {item_problems[0]} values" if item_problems else None
  outside = [d.description for d in _domains(annotation) if not d.contains(value)]
  return outside[0] if outside else None


def check(name: str, value, annotation) -> None:
  """A `HyperparameterError` "`name` must be ..., not `value`" where `value` does not fit."""
  wrong = problem(value, annotation)
  if wrong:
    raise errors.HyperparameterError(f"{name} must be {wrong}, not {value!r}")


_FIELD_ANNOTATIONS: dict[type, dict[str, typing.Any]] = {}


def field_annotations(cls: type) -> dict[str, typing.Any]:
  """The annotations of a dataclass's fields (Flax's `parent` and `name` left out), read once
  per class."""
  if cls not in _FIELD_ANNOTATIONS:
    hints = typing.get_type_hints(cls, include_extras=True)
    _FIELD_ANNOTATIONS[cls] = {
        f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name not in ("parent", "name")
    }
  return _FIELD_ANNOTATIONS[cls]

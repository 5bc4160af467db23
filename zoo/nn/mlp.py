"""The hidden layers of the zoo's MLPs, written once."""

from collections.abc import Callable
from collections.abc import Sequence

import flax.linen as nn


def hidden_layers(h, hidden_dims: Sequence[int], activation: Callable = nn.relu):
  """`activation(Dense(units)(h))` for each width of `hidden_dims` in turn. Called inside a
  module's compact method, the layers are that module's own (`Dense_0`, `Dense_1`, ...), so a
  module that writes its MLP with this keeps the parameters it had when it wrote the loop."""
  for units in hidden_dims:
    h = activation(nn.Dense(units)(h))
  return h

"""Evaluation metrics shared by the papers."""

from zoo.metrics import clustering
from zoo.metrics import disentanglement
from zoo.metrics import likelihood
from zoo.metrics import modes

__all__ = ["clustering", "disentanglement", "likelihood", "modes"]

"""Evaluation metrics shared by the papers."""
from zoo.metrics import likelihood
from zoo.metrics import modes

__all__ = ["likelihood", "modes"]

"""Evaluation metrics shared by the papers."""
from zoo.metrics import likelihood

__all__ = ["likelihood"]

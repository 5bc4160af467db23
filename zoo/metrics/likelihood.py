"""Likelihood reporting: nats to bits per dimension of discrete data."""
import numpy as np


def bits_per_dim(log_prob, num_dims: int, num_levels: int | None = None):
  """Bits per dimension of `log_prob` (nats, one or more examples).

  With `num_levels` L, `log_prob` is a density on [0, 1]^D of uniformly dequantised data, and the
  result is the usual upper bound on the discrete data's code length: -(log p - D log L) / (D ln 2).
  """
  log_prob = np.asarray(log_prob)
  if num_levels is not None:
    log_prob = log_prob - num_dims * np.log(num_levels)
  return -log_prob / (num_dims * np.log(2))

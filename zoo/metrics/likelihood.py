"""Likelihood reporting: nats to bits per dimension of discrete data, and the importance-sampled
log-likelihood of latent-variable models."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np

from zoo import errors


def bits_per_dim(log_prob, num_dims: int, num_levels: int | None = None):
  """Bits per dimension of `log_prob` (nats, one or more examples).

  With `num_levels` L, `log_prob` is a density on [0, 1]^D of uniformly dequantised data, and the
  result is the usual upper bound on the discrete data's code length: -(log p - D log L) / (D ln 2).
  """
  log_prob = np.asarray(log_prob)
  if num_levels is not None:
    log_prob = log_prob - num_dims * np.log(num_levels)
  return -log_prob / (num_dims * np.log(2))


def bernoulli_log_prob(value, logits):
  """log p(value | logits) of independent Bernoulli units, summed over the last axis."""
  return distrax.Bernoulli(logits=logits).log_prob(value).sum(-1)


def bernoulli_log_likelihood(x, logits):
  """log p(x | logits) of Bernoulli pixels, summed over each example's dimensions, (B,)."""
  return bernoulli_log_prob(x.reshape(len(x), -1), logits.reshape(len(x), -1))


CHUNK = 100  # draws per pass of the importance-sampled log-likelihood


def check_num_samples(model_name: str, num_samples: int) -> None:
  """A `HyperparameterError` unless `num_samples` importance samples come in whole chunks."""
  if num_samples <= 0 or num_samples % CHUNK:
    raise errors.HyperparameterError(
        f"{model_name}: num_eval_samples must be a positive multiple of {CHUNK}, not "
        f"{num_samples}"
    )


def importance_sampled_log_prob(log_weights, rng, batch_size: int, num_samples: int):
  """log p(x) estimated as log (1/S) sum_s p(x, z_s) / q(z_s | x) with S = `num_samples` draws
  z_s ~ q(z | x), CHUNK at a time in a `lax.scan` (Burda et al. 2016's L_S: a lower bound in
  expectation that tightens as S grows). `log_weights(rng, k)` gives the (B, k) log-weights of k
  fresh draws; `num_samples` must be a multiple of CHUNK."""
  check_num_samples("importance sampling", num_samples)
  chunk = CHUNK

  def add_chunk(total, key):
    return jnp.logaddexp(total, jax.nn.logsumexp(log_weights(key, chunk), -1)), None

  total, _ = jax.lax.scan(
      add_chunk, jnp.full((batch_size,), -jnp.inf), jax.random.split(rng, num_samples // chunk)
  )
  return total - jnp.log(num_samples)

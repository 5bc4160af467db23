"""Gradient estimators for multi-sample variational objectives, as surrogates.

Every estimator takes per-sample log-weights `log_w` = log p(x, h_k) - log q(h_k | x) and, where
it needs them, `log_q` = log q(h_k | x), with the K samples on the last axis, both differentiable
in the parameters (the samples h_k themselves carry no gradient: they are discrete, or their
reparameterisation is already inside `log_w`). Each returns a surrogate with one value per leading
index whose VALUE is the objective's estimate and whose GRADIENT is the estimator's gradient, so
a model maximises `surrogate.mean()` with any optimiser.

The objective is the K-sample bound (IWAE, VIMCO eq. 1)
  L_K = log (1/K) sum_k w_k,   w_k = p(x, h_k) / q(h_k | x),
whose gradient is sum_k L_K d log q_k (the score-function part) + sum_k w~_k d log w_k, with
w~_k = w_k / sum_j w_j (VIMCO eq. 4). The estimators differ in the learning signal multiplying
d log q_k.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

sg = jax.lax.stop_gradient


def bound(log_w):
  """L_K = log (1/K) sum_k w_k, one per leading index."""
  return jax.nn.logsumexp(log_w, -1) - jnp.log(log_w.shape[-1])


def _score(signal, log_q):
  """A term of value zero whose gradient is sum_k signal_k d log q_k (signal held constant)."""
  return (sg(signal) * (log_q - sg(log_q))).sum(-1)


def reparam(log_w):
  """The ELBO averaged over K samples, (1/K) sum_k log w_k, with its pathwise gradient:
  the reparameterisation estimator (Kingma & Welling 2014). `log_w` must be reparameterised."""
  return log_w.mean(-1)


def iwae(log_w):
  """L_K with its pathwise gradient (Burda et al. 2016). `log_w` must be reparameterised."""
  return bound(log_w)


def reinforce(log_w, log_q):
  """L_K with the score-function (REINFORCE) estimator and no baseline: learning signal L_K."""
  value = bound(log_w)
  return value + _score(jnp.broadcast_to(value[..., None], log_q.shape), log_q)


def vimco(log_w, log_q):
  """L_K with the VIMCO estimator (Mnih & Rezende 2016, eqs. 9-10): sample k's learning signal is
  L_K - L_K^{-k}, where L_K^{-k} replaces w_k by the geometric mean of the other weights."""
  k = log_w.shape[-1]
  if k < 2:
    raise ValueError("vimco needs K >= 2 samples")
  value = bound(log_w)
  held_out = (log_w.sum(-1, keepdims=True) - log_w) / (k - 1)  # log geometric mean of others
  replaced = jnp.where(jnp.eye(k, dtype=bool), held_out[..., :, None], log_w[..., None, :])
  signal = value[..., None] - bound(replaced)
  return value + _score(signal, log_q)


class NVIL(NamedTuple):
  """The terms of the NVIL estimator (`nvil`)."""

  surrogate: jax.Array  # L_K; the encoder's part of its gradient normalised (see `nvil`)
  baseline_loss: jax.Array  # (L_K - baseline - centre)^2, to train the baseline network
  signal: jax.Array  # L_K - baseline, whose running mean and variance the model keeps


def scale_gradient(x, factor):
  """`x` in value, with its gradient multiplied by `factor`."""
  return sg(x) + factor * (x - sg(x))


def nvil(log_w, log_q, baseline, centre, scale):
  """L_K with the NVIL estimator (Mnih & Gregor 2014) as VIMCO's multi-sample baseline: the
  score-function part's learning signal is L_K - b(x) - c, of an input-dependent baseline b(x)
  and a running mean c, and the whole encoder gradient (that part and, for K > 1, the pathwise
  part sum_k w~_k d log w_k) is divided by max(1, running std `scale`).

  Mnih & Gregor divide the K = 1 encoder gradient, which is its score-function part alone (the
  pathwise term -d log q has mean zero), by max(1, std); for K > 1 the pathwise part has a
  non-zero mean, and dividing the score part alone turns the expected encoder gradient away from
  the true one (exact enumeration of a small SBN, running std 4, K = 5: cosine about -1). So the
  normalisation is read as what it is at K = 1, a positive rescaling of the encoder's whole
  gradient, which keeps its expectation along the true gradient for every K. The model's
  gradient is not rescaled. The encoder must enter `log_w` only through `log_q` (discrete
  latents, as NVIL's), since that is where the rescaling is applied.
  """
  encoder_scaled = scale_gradient(log_q, 1.0 / jnp.maximum(1.0, scale))
  value = bound(log_w + log_q - encoder_scaled)  # log p - log q, log q's gradient rescaled
  signal = value - baseline
  surrogate = value + _score(
      jnp.broadcast_to((signal - centre)[..., None], log_q.shape), encoder_scaled
  )
  baseline_loss = jnp.square(sg(value) - baseline - sg(centre))
  return NVIL(surrogate, baseline_loss, sg(signal))


def rws(log_w, log_q):
  """Reweighted wake-sleep (Bornschein & Bengio 2015), wake phase for both networks: the model's
  gradient sum_k w~_k d log p(x, h_k) (that of L_K) and the wake-phase q update
  sum_k w~_k d log q(h_k | x). Its value is L_K."""
  log_p = log_w + log_q
  weights = jax.nn.softmax(sg(log_w), -1)
  model_part = bound(sg(log_w) + (log_p - sg(log_p)))
  return model_part + _score(weights, log_q)

"""The estimators against exact gradients, computed by enumerating every latent configuration of
a sigmoid belief net small enough to enumerate (2 latent units, 3 visible)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import estimators

X = jnp.array([1.0, 0.0, 1.0])
CONFIGS = jnp.array(list(itertools.product([0.0, 1.0], repeat=2)))  # every h


def params():
  keys = jax.random.split(jax.random.key(0), 5)
  return {
      "model": {
          "b": jax.random.normal(keys[0], (2,)),
          "W": jax.random.normal(keys[1], (3, 2)),
          "c": jax.random.normal(keys[2], (3,)),
      },
      "q": {"V": jax.random.normal(keys[3], (2, 3)), "d": jax.random.normal(keys[4], (2,))},
  }


def bernoulli_log_prob(value, logits):
  return (value * jax.nn.log_sigmoid(logits) + (1 - value) * jax.nn.log_sigmoid(-logits)).sum(-1)


def log_q(p, h):
  return bernoulli_log_prob(h, p["q"]["V"] @ X + p["q"]["d"])


def log_joint(p, h):
  m = p["model"]
  return bernoulli_log_prob(h, m["b"]) + bernoulli_log_prob(X, h @ m["W"].T + m["c"])


def weights(p, h):
  """(log_w, log_q) of samples h (..., K, 2)."""
  return log_joint(p, h) - log_q(p, h), log_q(p, h)


def expectation_over_q(p, fn, k):
  """E over K independent draws from q of fn(h (K, 2)), by enumerating all 4^K tuples."""
  tuples = jnp.array(list(itertools.product(range(4), repeat=k)))
  h = CONFIGS[tuples]  # (4^K, K, 2)
  probability = jnp.exp(log_q(p, h).sum(-1))
  return (probability * jax.vmap(fn)(h)).sum()


def exact_bound_gradient(k):
  return jax.grad(lambda p: expectation_over_q(p, lambda h: estimators.bound(weights(p, h)[0]), k))(
      params()
  )


def per_draw_gradients(surrogate_fn, k, draws=20_000, seed=1):
  """Gradients of surrogate_fn(log_w, log_q) for independent draws of K samples from q."""
  p = params()
  probs = jax.nn.sigmoid(p["q"]["V"] @ X + p["q"]["d"])
  h = jax.random.bernoulli(jax.random.key(seed), probs, (draws, k, 2)).astype(jnp.float32)
  return jax.vmap(jax.grad(lambda p, h: surrogate_fn(*weights(p, h))), (None, 0))(p, h)


def assert_unbiased(samples, exact, parts=("model", "q")):
  for part in parts:
    for name in exact[part]:
      g = np.asarray(samples[part][name]).reshape(len(samples[part][name]), -1)
      mean, error = g.mean(0), g.std(0) / np.sqrt(len(g))
      expected = np.asarray(exact[part][name]).reshape(-1)
      assert np.all(np.abs(mean - expected) <= 4 * error + 1e-4), (part, name, mean, expected)


@pytest.mark.parametrize("k", [1, 3])
def test_reinforce_is_unbiased(k):
  assert_unbiased(per_draw_gradients(estimators.reinforce, k), exact_bound_gradient(k))


@pytest.mark.parametrize("k", [2, 3])
def test_vimco_is_unbiased(k):
  assert_unbiased(per_draw_gradients(estimators.vimco, k), exact_bound_gradient(k))


def expected_estimator_gradient(surrogate_fn, k):
  """E over K independent draws from q of the gradient of surrogate_fn(log_w, log_q), exactly:
  the sum over all 4^K tuples of q(tuple) times the surrogate's gradient at that tuple."""
  p = params()
  h = CONFIGS[jnp.array(list(itertools.product(range(4), repeat=k)))]  # (4^K, K, 2)
  probability = jnp.exp(log_q(p, h).sum(-1))
  grads = jax.vmap(jax.grad(lambda p, h: surrogate_fn(*weights(p, h))), (None, 0))(p, h)
  return jax.tree.map(lambda g: jnp.tensordot(probability, g, 1), grads)


@pytest.mark.parametrize("scale, k", [(4.0, 1), (4.0, 2), (4.0, 3), (4.0, 5), (0.5, 3)])
def test_nvil_keeps_the_expected_gradient_along_the_true_one(k, scale):
  """With the baselines and the running-std normalisation active, NVIL's expected model gradient
  is the bound's, and its expected encoder gradient the bound's divided by max(1, std): exactly,
  by enumerating every K-tuple (at K > 1 normalising only the score part breaks this)."""

  def surrogate(log_w, log_q):
    return estimators.nvil(log_w, log_q, baseline=0.7, centre=-0.3, scale=scale).surrogate

  expected, exact = expected_estimator_gradient(surrogate, k), exact_bound_gradient(k)
  for part, factor in (("model", 1.0), ("q", 1.0 / max(1.0, scale))):
    for name in exact[part]:
      np.testing.assert_allclose(
          expected[part][name],
          factor * exact[part][name],
          rtol=1e-4,
          atol=1e-6,
          err_msg=f"{part}/{name}",
      )


def test_rws_model_gradient_is_that_of_the_bound_and_its_q_update_the_wake_phase():
  k = 3
  samples = per_draw_gradients(estimators.rws, k)
  assert_unbiased(samples, exact_bound_gradient(k), parts=("model",))

  # The wake update is E_q[sum_k w~_k d log q(h_k)] with the sampling distribution and the
  # weights held fixed: differentiate the enumerated sum in log q alone.
  exact = jax.grad(lambda p, fixed: _wake_objective(p, fixed, k))(params(), params())
  assert_unbiased(samples, exact, parts=("q",))


def _wake_objective(p, fixed, k):
  """sum over all K-tuples of q(tuple) sum_k w~_k log q_p(h_k), with q and w~ from `fixed`."""
  tuples = jnp.array(list(itertools.product(range(4), repeat=k)))
  h = CONFIGS[tuples]
  probability = jax.lax.stop_gradient(jnp.exp(log_q(fixed, h).sum(-1)))
  log_w = jax.lax.stop_gradient(weights(fixed, h)[0])
  return (probability * (jax.nn.softmax(log_w, -1) * log_q(p, h)).sum(-1)).sum()


@pytest.mark.parametrize("estimator", [estimators.vimco, estimators.reinforce, estimators.rws])
def test_value_is_the_k_sample_bound(estimator):
  log_w = jax.random.normal(jax.random.key(0), (4, 5))
  log_q = jax.random.normal(jax.random.key(1), (4, 5))
  np.testing.assert_allclose(estimator(log_w, log_q), estimators.bound(log_w), rtol=1e-6)
  nvil = estimators.nvil(log_w, log_q, jnp.zeros(4), 0.0, 1.0)
  np.testing.assert_allclose(nvil.surrogate, estimators.bound(log_w), rtol=1e-6)


def test_vimco_has_lower_variance_than_reinforce_on_the_same_draws():
  def q_variance(grads):
    return sum(float(np.var(np.asarray(g), 0).sum()) for g in jax.tree.leaves(grads["q"]))

  k = 5
  assert q_variance(per_draw_gradients(estimators.vimco, k, draws=5000)) < q_variance(
      per_draw_gradients(estimators.reinforce, k, draws=5000)
  )


def test_reparameterised_estimators_on_a_gaussian_model():
  """p(z) = N(0, 1), p(x|z) = N(z, 1), q(z) = N(mu, sigma^2): the ELBO is closed-form, and
  E[L_K] rises with K towards log p(x) = log N(x; 0, 2)."""
  x = 1.5

  def log_w(mu, log_sigma, eps):
    z = mu + jnp.exp(log_sigma) * eps
    log_normal = lambda v, m, s: -0.5 * ((v - m) / s) ** 2 - jnp.log(s) - 0.5 * jnp.log(2 * jnp.pi)
    return log_normal(z, 0, 1) + log_normal(x, z, 1) - log_normal(z, mu, jnp.exp(log_sigma))

  def elbo(mu, log_sigma):
    s2 = jnp.exp(2 * log_sigma)
    return (
        -0.5 * (mu**2 + s2)
        - 0.5 * ((x - mu) ** 2 + s2)
        - jnp.log(2 * jnp.pi)
        + 0.5 * jnp.log(2 * jnp.pi * jnp.e * s2)
    )

  mu, log_sigma = 0.2, -0.3
  eps = jax.random.normal(jax.random.key(0), (20_000, 1))
  grads = jax.vmap(
      jax.grad(lambda m, s, e: estimators.reparam(log_w(m, s, e)), (0, 1)), (None, None, 0)
  )(mu, log_sigma, eps)
  exact = jax.grad(elbo, (0, 1))(mu, log_sigma)
  for g, e in zip(grads, exact):
    assert abs(float(g.mean()) - float(e)) <= 4 * float(g.std()) / np.sqrt(len(g)) + 1e-4
  log_px = -0.25 * x**2 - 0.5 * jnp.log(4 * jnp.pi)
  means = [
      float(
          estimators.iwae(
              log_w(mu, log_sigma, jax.random.normal(jax.random.key(k), (20_000, k)))
          ).mean()
      )
      for k in (1, 5, 50)
  ]
  assert means[0] < means[1] < means[2] < float(log_px)

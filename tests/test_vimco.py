"""The sigmoid belief net of the VIMCO paper: an exact, normalised joint; an importance-sampled
log-likelihood that agrees with enumeration; every estimator trains through the runner."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturbed

import zoo
from experiments import loop
from zoo import training


def tiny_sbn(layer_sizes, scale=1.0):
  model = zoo.build("vimco", layer_sizes=layer_sizes, num_samples=3, num_eval_samples=20_000)
  batch = {"x": jnp.zeros((2, 3))}
  variables = model.init(
      {"params": jax.random.key(0), "sample": jax.random.key(1)}, batch, method="loss"
  )
  return model, perturbed(variables, jax.random.key(2), scale)


def binary_configurations(size):
  return jnp.array(list(itertools.product([0.0, 1.0], repeat=size)))


def exact_log_marginal(model, variables, x, layer_sizes):
  """log p(x) by summing p(x, h) over every configuration of every layer."""
  configurations = list(itertools.product(*[range(2**s) for s in layer_sizes]))
  tables = [binary_configurations(s) for s in layer_sizes]
  layers = [
      jnp.stack([tables[l][c[l]] for c in configurations])[None].repeat(len(x), 0)
      for l in range(len(layer_sizes))
  ]
  log_joint = model.apply(variables, x, layers, method="log_joint")
  return jax.nn.logsumexp(log_joint, -1)


@pytest.mark.parametrize("layer_sizes", [(2,), (2, 2)])
def test_the_joint_is_a_normalised_distribution(layer_sizes):
  model, variables = tiny_sbn(layer_sizes)
  every_x = binary_configurations(3)
  log_marginals = exact_log_marginal(model, variables, every_x, layer_sizes)
  np.testing.assert_allclose(jnp.exp(log_marginals).sum(), 1.0, rtol=1e-5)


def test_importance_sampled_log_likelihood_matches_enumeration():
  layer_sizes = (2, 2)
  model, variables = tiny_sbn(layer_sizes, scale=0.5)
  x = binary_configurations(3)
  exact = exact_log_marginal(model, variables, x, layer_sizes)
  out = model.apply(variables, {"x": x}, method="evaluate", rngs={"sample": jax.random.key(3)})
  # 20,000 importance samples from an encoder unlike the posterior: errors seen up to 0.03.
  np.testing.assert_allclose(out["log_prob"], exact, atol=0.06)


@pytest.mark.parametrize("estimator", ["vimco", "nvil", "reinforce", "rws"])
def test_every_estimator_trains_through_the_runner(tmp_path, data_dir, estimator):
  config = zoo.get("vimco").default_config("smoke")
  config.data_dir = data_dir
  config.model.estimator = estimator
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(results["test"]["bound"]) and np.isfinite(results["test"]["log_prob"])


def test_vimco_estimator_needs_two_samples():
  with pytest.raises(zoo.errors.HyperparameterError, match="num_samples >= 2"):
    zoo.build("vimco", num_samples=1).init(
        {"params": jax.random.key(0), "sample": jax.random.key(0)},
        {"x": jnp.zeros((1, 3))},
        method="loss",
    )


def test_gradient_statistics_see_the_estimators_noise_and_nothing_else():
  config = zoo.get("vimco").default_config("smoke")
  optimizer = training.make_optimizer(config)
  batch = {"x": (jax.random.uniform(jax.random.key(0), (32, 6)) > 0.5).astype(jnp.float32)}
  for name, hyperparameters, noisy in (
      ("vimco", dict(layer_sizes=(4,)), True),
      ("maf", dict(num_layers=1, hidden_dims=(8,)), False),
  ):
    model = zoo.build(name, **hyperparameters)
    state = training.init_state(model, optimizer, batch, jax.random.key(1))
    stats = jax.jit(training.make_gradient_statistics(model, draws=8))(
        state, batch, jax.random.key(2)
    )
    variances = [float(v) for k, v in stats.items() if k.startswith("grad_variance/")]
    # A deterministic loss leaves only the rounding of the mean of identical gradients.
    assert variances and (min(variances) > 1e-8 if noisy else max(variances) < 1e-14)


def test_nvils_gradient_statistics_are_of_the_gradient_before_its_division():
  """NVIL divides the encoder's gradient by max(1, running std of its signal); at a running
  variance of 16 the variance of the K-sample gradient itself is 4^2 = 16 times that of the
  update's, the model's unchanged (the division is the same for every draw)."""
  config = zoo.get("vimco").default_config("smoke")
  model = zoo.build("vimco", layer_sizes=(4,), estimator="nvil", num_samples=2)
  batch = {"x": (jax.random.uniform(jax.random.key(0), (32, 6)) > 0.5).astype(jnp.float32)}
  state = training.init_state(model, training.make_optimizer(config), batch, jax.random.key(1))
  state = state.replace(
      model_state={"estimator_state": {"mean": jnp.zeros(()), "var": jnp.full((), 16.0)}}
  )
  stats = jax.jit(training.make_gradient_statistics(model, draws=8))(
      state, batch, jax.random.key(2)
  )

  def update_gradient(key):
    return jax.grad(lambda p: training.apply_loss(model, "loss", False, p, state, batch, key)[0])(
        state.params
    )

  keys = jax.random.split(jax.random.key(2), 8)
  grads = jax.vmap(update_gradient)(keys)
  for group, tree in grads.items():
    g = jnp.concatenate([x.reshape(8, -1) for x in jax.tree.leaves(tree)], 1)
    factor = 16.0 if group.startswith("recognition") else 1.0
    np.testing.assert_allclose(
        float(stats[f"grad_variance/{group}"]), factor * float(g.var(0).mean()), rtol=1e-4
    )

"""VLAE and the hierarchical VAE: the ELBO's terms, each layer's KL, where each code enters."""
import os

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from experiments import train

X = (jax.random.uniform(jax.random.key(0), (6, 8, 8, 1)) > 0.5).astype(jnp.float32)


def model_and_variables(hierarchy, **hyperparameters):
  model = zoo.build("vlae", hierarchy=hierarchy, hidden_dim=16, conv_features=(4, 8),
                    num_eval_samples=200, **hyperparameters)
  variables = model.init({"params": jax.random.key(1), "sample": jax.random.key(2)}, {"x": X},
                         method="loss")
  # Away from initialisation, so that every layer's posterior differs from its prior (by 0.1:
  # larger steps can give the chain's priors tiny variances, and log weights with tails too
  # heavy for a sample variance to bound).
  variables["params"] = jax.tree.map(
      lambda p: p + 0.1 * jax.random.normal(jax.random.key(3), p.shape), variables["params"])
  return model, variables


@pytest.mark.parametrize("hierarchy", ["ladder", "markov"])
def test_elbo_is_reconstruction_minus_the_per_layer_kls(hierarchy):
  model, variables = model_and_variables(hierarchy)
  loss, metrics = jax.jit(lambda v: model.apply(v, {"x": X}, train=False, method="loss",
                                                rngs={"sample": jax.random.key(4)}))(variables)
  kls = [metrics[f"kl_{l}"] for l in (1, 2, 3)]
  assert all(kl > 0 for kl in kls)
  np.testing.assert_allclose(metrics["elbo"], metrics["reconstruction"] - sum(kls), rtol=1e-6)
  np.testing.assert_allclose(loss, -metrics["elbo"])


def test_training_warms_the_kl_terms_up():
  model, variables = model_and_variables("ladder", kl_warmup=100.0)
  step = jax.jit(lambda v: model.apply(v, {"x": X}, method="loss", mutable=["schedule"],
                                       rngs={"sample": jax.random.key(4)}))
  (loss, metrics), updated = step(variables)
  np.testing.assert_allclose(loss, -metrics["reconstruction"], rtol=1e-6)  # weight 0 at t = 0
  assert int(updated["schedule"]["step"]) == 1
  variables = {**variables, "schedule": {"step": jnp.asarray(100, jnp.int32)}}
  (loss, metrics), _ = step(variables)
  kl = sum(metrics[f"kl_{l}"] for l in (1, 2, 3))
  np.testing.assert_allclose(metrics["kl_weight"], 1 - np.exp(-1), rtol=1e-6)
  np.testing.assert_allclose(loss, -(metrics["reconstruction"] - (1 - np.exp(-1)) * kl),
                             rtol=1e-5)


def test_each_ladder_kl_matches_monte_carlo():
  model, variables = model_and_variables("ladder")
  _, kls, posteriors = model.apply(variables, X, jax.random.key(5), method="encode")
  standard = distrax.Normal(0.0, 1.0)
  for kl, q in zip(kls, posteriors):
    z = q.sample(seed=jax.random.key(6), sample_shape=20_000)
    log_ratio = (q.log_prob(z) - standard.log_prob(z)).sum(-1)  # (S, B)
    error = 4 * log_ratio.std(0) / np.sqrt(len(z)) + 1e-4
    assert np.all(np.abs(log_ratio.mean(0) - kl) < error)


def test_markov_kls_estimate_the_joint_kl():
  """The chain's per-layer KLs, exact given the drawn neighbours, sum to an unbiased estimate of
  KL(q(z | x) || p(z)) = E_q[log q(z | x) - log p(z)]."""
  model, variables = model_and_variables("markov")
  draws = 2000
  keys = jax.random.split(jax.random.key(7), draws)
  kl_sum = jax.vmap(lambda k: sum(model.apply(variables, X, k, method="encode")[1]))(keys)
  log_w = model.apply(variables, X, jax.random.key(8), draws, method="log_weights")
  reconstruction = jax.vmap(lambda k: model.apply(
      variables, X, k, method="_elbo_terms")[0])(jax.random.split(jax.random.key(9), draws))
  # log w = log p(x | z) - (log q - log p(z)): E log w = E reconstruction - KL.
  kl_from_weights = reconstruction.mean(0) - log_w.mean(1)
  error = 4 * np.sqrt(kl_sum.var(0) / draws + log_w.var(1) / draws
                      + reconstruction.var(0) / draws)
  assert np.all(np.abs(kl_sum.mean(0) - kl_from_weights) < error)


def test_changing_a_code_changes_the_image_and_fixing_all_does_not():
  model, variables = model_and_variables("ladder")
  codes, _, _ = model.apply(variables, X, jax.random.key(5), method="encode")
  decode = jax.jit(lambda v, c: model.apply(v, c, method="decode"))
  base = decode(variables, codes)
  np.testing.assert_array_equal(decode(variables, codes), base)
  for layer in range(3):
    changed = [c + 2.0 if l == layer else c for l, c in enumerate(codes)]
    assert np.abs(decode(variables, changed) - base).max() > 1e-3, layer


def test_the_chain_decodes_from_its_lowest_code_only():
  model, variables = model_and_variables("markov")
  codes, _, _ = model.apply(variables, X, jax.random.key(5), method="encode")
  decode = lambda c: model.apply(variables, c, method="decode")
  higher_changed = [codes[0]] + [c + 2.0 for c in codes[1:]]
  np.testing.assert_array_equal(decode(higher_changed), decode(codes))


@pytest.mark.parametrize("hierarchy", ["ladder", "markov"])
def test_importance_sampled_log_likelihood_is_above_the_elbo(hierarchy):
  model, variables = model_and_variables(hierarchy)
  out = jax.jit(lambda v: model.apply(v, {"x": X}, method="evaluate",
                                      rngs={"sample": jax.random.key(4)}))(variables)
  assert out["log_prob"].shape == (len(X),)
  assert out["log_prob"].mean() > out["elbo"].mean()


def test_layer_grid_varies_one_code_along_rows():
  model, variables = model_and_variables("ladder")
  for layer in range(3):
    grid = model.apply(variables, layer, 3, 4, method="layer_grid",
                       rngs={"sample": jax.random.key(10)})
    assert grid.shape == (3, 4, 8, 8, 1)
    assert np.abs(np.diff(grid, axis=1)).max() > 1e-4  # along a row z_layer changes
    assert np.abs(np.diff(grid, axis=0)).max() > 1e-4  # down a column the others do


def test_a_run_writes_one_grid_per_layer(tmp_path, data_dir):
  config = zoo.get("vlae").default_config("smoke")
  config.data_dir = data_dir
  results = train.train_and_evaluate(config, str(tmp_path))
  for name in ("layer_1.png", "layer_2.png", "layer_3.png", "samples.png"):
    assert os.path.exists(tmp_path / name), name
  test = results["test"]
  np.testing.assert_allclose(test["elbo"], test["reconstruction"] - sum(
      test[f"kl_{l}"] for l in (1, 2, 3)), rtol=1e-5)

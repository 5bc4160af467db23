"""VLAE and the hierarchical VAE: the ELBO's terms, each layer's KL, where each code enters."""

import os

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from experiments import loop

X = (jax.random.uniform(jax.random.key(0), (6, 8, 8, 1)) > 0.5).astype(jnp.float32)


def model_and_variables(hierarchy, **hyperparameters):
  model = zoo.build(
      "vlae",
      hierarchy=hierarchy,
      hidden_dim=16,
      conv_features=(4, 8),
      num_eval_samples=200,
      **hyperparameters,
  )
  variables = model.init(
      {"params": jax.random.key(1), "sample": jax.random.key(2)}, {"x": X}, method="loss"
  )
  # Away from initialisation, so that every layer's posterior differs from its prior (by 0.1:
  # larger steps can give the chain's priors tiny variances, and log weights with tails too
  # heavy for a sample variance to bound).
  variables["params"] = jax.tree.map(
      lambda p: p + 0.1 * jax.random.normal(jax.random.key(3), p.shape), variables["params"]
  )
  return model, variables


@pytest.mark.parametrize(
    "hierarchy", ["ladder", pytest.param("markov", marks=pytest.mark.slow)]  # 38 s
)
def test_the_reported_elbo_is_the_expected_log_weight(hierarchy):
  """The ELBO the loss reports (reconstruction minus the KL terms) estimates E_q[log p(x, z) -
  log q(z | x)], the mean log weight of draws from q computed from log densities alone."""
  model, variables = model_and_variables(hierarchy)
  draws = 4000
  elbo = jax.jit(
      jax.vmap(
          lambda key: model.apply(
              variables, {"x": X}, train=False, method="loss", rngs={"sample": key}
          )[1]["elbo"]
      )
  )(jax.random.split(jax.random.key(4), draws))
  log_w = model.apply(variables, X, jax.random.key(8), draws, method="log_weights").mean(0)
  error = 4 * np.sqrt(elbo.var() / draws + log_w.var() / draws)
  assert abs(float(elbo.mean() - log_w.mean())) < error, (elbo.mean(), log_w.mean(), error)


def test_log_prob_is_the_importance_sampled_bound_above_the_elbo():
  """The contract's `log_prob`: VLAE's log p(x) estimate, log of the mean of num_eval_samples
  importance weights (Burda et al. 2016), is at least the ELBO in expectation; on a batch, over
  draws, its mean exceeds the mean of the ELBO by more than their sampling error."""
  model, variables = model_and_variables("ladder")
  log_prob = jax.jit(
      jax.vmap(lambda key: model.apply(variables, X, method="log_prob", rngs={"sample": key}))
  )(jax.random.split(jax.random.key(5), 20))
  elbo = model.apply(variables, X, jax.random.key(6), 4000, method="log_weights").mean(-1)
  assert log_prob.shape == (20, len(X))
  gap = log_prob.mean(0) - elbo
  assert (gap > 4 * log_prob.std(0) / np.sqrt(20)).all(), gap


def test_training_warms_the_kl_terms_up():
  model, variables = model_and_variables("ladder", kl_warmup=100.0)
  step = jax.jit(
      lambda v: model.apply(
          v, {"x": X}, method="loss", mutable=["schedule"], rngs={"sample": jax.random.key(4)}
      )
  )
  (loss, metrics), updated = step(variables)
  np.testing.assert_allclose(loss, -metrics["reconstruction"], rtol=1e-6)  # weight 0 at t = 0
  assert int(updated["schedule"]["step"]) == 1
  variables = {**variables, "schedule": {"step": jnp.asarray(100, jnp.int32)}}
  (loss, metrics), _ = step(variables)
  kl = sum(metrics[f"kl_{l}"] for l in (1, 2, 3))
  np.testing.assert_allclose(metrics["kl_weight"], 1 - np.exp(-1), rtol=1e-6)
  np.testing.assert_allclose(loss, -(metrics["reconstruction"] - (1 - np.exp(-1)) * kl), rtol=1e-5)


@pytest.mark.parametrize("hierarchy", ["ladder", "markov"])
def test_each_layer_kl_term_is_unbiased_paired_with_the_joint(hierarchy):
  """Each layer's KL term has the expectation, under the joint q(z | x), of that layer's log
  ratio log q(z_l | .) - log p(z_l | z_{l+1}) (N(0, I) for the ladder and the chain's top),
  checked paired on the same draws so that biases of hundredths of a nat show."""
  model, variables = model_and_variables(hierarchy)
  standard = distrax.Normal(0.0, 1.0)

  def terms_and_log_ratios(key):
    codes, kls, posteriors = model.apply(variables, X, key, method="sample_posterior")
    priors = [standard] * len(codes)
    if hierarchy == "markov":
      priors[:-1] = model.apply(
          variables,
          codes,
          method=lambda m, codes: [prior(above) for prior, above in zip(m.priors, codes[1:])],
      )
    ratios = [(q.log_prob(z) - p.log_prob(z)).sum(-1) for q, p, z in zip(posteriors, priors, codes)]
    return jnp.stack(kls), jnp.stack(ratios)  # (L, B) each

  kls, ratios = jax.jit(jax.vmap(terms_and_log_ratios))(jax.random.split(jax.random.key(7), 10_000))
  difference = np.asarray(kls - ratios, np.float64)  # (S, L, B)
  error = 4 * difference.std(0) / np.sqrt(len(difference)) + 1e-4
  assert np.all(np.abs(difference.mean(0)) < error), difference.mean(0) / (error / 4)


def test_changing_a_code_changes_the_image_and_fixing_all_does_not():
  model, variables = model_and_variables("ladder")
  codes, _, _ = model.apply(variables, X, jax.random.key(5), method="sample_posterior")
  decode = jax.jit(lambda v, c: model.apply(v, c, method="decode"))
  base = decode(variables, codes)
  np.testing.assert_array_equal(decode(variables, codes), base)
  for layer in range(3):
    changed = [c + 2.0 if l == layer else c for l, c in enumerate(codes)]
    assert np.abs(decode(variables, changed) - base).max() > 1e-3, layer


def test_the_chain_decodes_from_its_lowest_code_only():
  model, variables = model_and_variables("markov")
  codes, _, _ = model.apply(variables, X, jax.random.key(5), method="sample_posterior")
  decode = lambda c: model.apply(variables, c, method="decode")
  higher_changed = [codes[0]] + [c + 2.0 for c in codes[1:]]
  np.testing.assert_array_equal(decode(higher_changed), decode(codes))


def test_layer_grid_varies_one_code_along_rows():
  model, variables = model_and_variables("ladder")
  for layer in range(3):
    grid = model.apply(
        variables, layer, 3, 4, method="layer_grid", rngs={"sample": jax.random.key(10)}
    )
    assert grid.shape == (3, 4, 8, 8, 1)
    assert np.abs(np.diff(grid, axis=1)).max() > 1e-4  # along a row z_layer changes
    assert np.abs(np.diff(grid, axis=0)).max() > 1e-4  # down a column the others do


def test_a_run_writes_one_grid_per_layer(tmp_path, data_dir):
  config = zoo.get("vlae").default_config("smoke")
  config.data_dir = data_dir
  loop.train_and_evaluate(config, str(tmp_path))
  for name in ("layer_1.png", "layer_2.png", "layer_3.png", "samples.png"):
    assert os.path.exists(tmp_path / name), name

"""The gradient of the loss the runner differentiates (`training.apply_loss`, with the model's real
state: NVIL's baseline network and running statistics, VLAE's warm-up step) against the gradient
of the objective each model claims, computed independently of the model's estimator: exactly by
enumerating every sample of a sigmoid belief net; exactly by `jax.jacfwd`'s change of variables
for flows; by Gauss-Hermite quadrature of the expectations against the mean of many draws of
the estimator for Gaussian latents."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import perturbed

import zoo
from zoo import training

sg = jax.lax.stop_gradient


def runner_gradient(model, state, batch, rng):
  """The gradient the runner's step takes of the model's loss, in training mode."""
  return jax.grad(lambda p: training.apply_loss(model, "loss", False, p, state, batch, rng)[0])(
      state.params
  )


def initial_state(model, batch, seed=0, scale=0.3):
  state = training.init_state(model, optax.adam(1e-3), batch, jax.random.key(seed))
  return state.replace(params=perturbed(state.params, jax.random.key(seed + 1), scale))


# ---------------------------------------------------------------- discrete latents: enumeration

X = jnp.array([[1.0, 0.0, 1.0]])
CODES = jnp.array(list(itertools.product([0.0, 1.0], repeat=2)))  # every h of 2 units


def bernoulli_log_prob(value, logits):
  return (value * jax.nn.log_sigmoid(logits) + (1 - value) * jax.nn.log_sigmoid(-logits)).sum(-1)


def every_tuple(k):
  """(4^K, 1, K, 2): every K-tuple of codes, for the batch of one example X."""
  return CODES[jnp.array(list(itertools.product(range(4), repeat=k)))][:, None]


def recognition_logits(model, params, k):
  return model.apply(
      sbn_variables(model, params),
      jnp.broadcast_to(X[:, None], (1, k, 3)),
      method=lambda m, h: m.recognition[0](h),
  )


def sbn_variables(model, params):
  """`params` with the estimator state's collection, which NVIL's setup declares."""
  if model.estimator != "nvil":
    return {"params": params}
  return {"params": params, "estimator_state": {"mean": jnp.zeros(()), "var": jnp.ones(())}}


def with_draws(model, h):
  """`model.sample_posterior` returning the codes `h` (1, K, 2) with their log q under the
  model's own recognition layer, in place of a random draw: the loss at a given sample."""

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name != "sample_posterior":
      return next_fun(*args, **kwargs)
    logits = context.module.recognition[0](jnp.broadcast_to(args[0][:, None], h.shape[:2] + (3,)))
    return [h], bernoulli_log_prob(h, logits)

  return interceptor


def expected_runner_gradient(model, state, k):
  """E over K draws from q of the runner's loss gradient: the sum over every tuple of q(tuple)
  (held constant) times the gradient at that tuple."""

  def at(h):
    with nn.intercept_methods(with_draws(model, h)):
      return runner_gradient(model, state, {"x": X}, jax.random.key(0))

  tuples = every_tuple(k)
  grads = jax.jit(jax.vmap(at))(tuples)
  probability = jnp.exp(
      bernoulli_log_prob(tuples, recognition_logits(model, state.params, k)).sum(-1)
  )[:, 0]
  return jax.tree.map(lambda g: jnp.tensordot(probability, g, 1), grads)


def exact_objective(model, params, k, objective):
  """sum over every tuple of q(tuple) objective(log w, log q), differentiable in q too."""
  tuples = every_tuple(k)
  log_q = bernoulli_log_prob(tuples, recognition_logits(model, params, k))  # (4^K, 1, K)
  log_joint = jax.vmap(
      lambda h: model.apply(sbn_variables(model, params), X, [h], method="log_joint")
  )(tuples)
  return (jnp.exp(log_q.sum(-1)) * objective(log_joint - log_q, log_q)).sum()


def bound(log_w):
  return jax.nn.logsumexp(log_w, -1) - jnp.log(log_w.shape[-1])


@pytest.mark.parametrize(
    "estimator, k",
    [
        ("vimco", 2),
        ("vimco", 4),
        ("reinforce", 1),
        ("reinforce", 3),
        ("nvil", 1),
        ("nvil", 3),
        ("rws", 3),
    ],
)
def test_sbn_loss_gradients_are_unbiased_for_the_k_sample_bound(estimator, k):
  model = zoo.build(
      "vimco", layer_sizes=(2,), estimator=estimator, num_samples=k, num_eval_samples=100
  )
  state = initial_state(model, {"x": X})
  std = 1.0
  if estimator == "nvil":  # running statistics as training leaves them, normalisation active
    std = 3.0
    state = state.replace(
        model_state={"estimator_state": {"mean": jnp.asarray(-0.4), "var": jnp.asarray(std**2)}}
    )
  expected = expected_runner_gradient(model, state, k)
  exact = jax.grad(lambda p: exact_objective(model, p, k, lambda w, q: bound(w)))(state.params)
  for name in ("prior_logits", "data_layer"):
    assert_trees_close(expected[name], jax.tree.map(jnp.negative, exact[name]), name)
  recognition = jax.tree.map(lambda g: -g / std, exact["recognition_0"])
  if estimator == "rws":  # the wake phase: sum_k w~_k d log q(h_k), weights and q held fixed
    recognition = jax.grad(lambda p: -_wake_objective(model, state.params, p, k))(
        state.params["recognition_0"]
    )
  assert_trees_close(expected["recognition_0"], recognition, "recognition_0")
  if estimator == "nvil":  # the baseline network fits E (L_K - b(x) - c)^2
    centre = state.model_state["estimator_state"]["mean"]
    baseline = jax.grad(
        lambda p: exact_objective(
            model,
            {**state.params, "baseline": p},
            k,
            lambda w, q: jnp.square(
                sg(bound(w))
                - model.apply(
                    sbn_variables(model, {**state.params, "baseline": p}),
                    X,
                    method=lambda m, x: m.baseline(x),
                )[:, 0]
                - centre
            ),
        )
    )(state.params["baseline"])
    assert_trees_close(expected["baseline"], baseline, "baseline")


def _wake_objective(model, params, recognition, k):
  """sum over every tuple of q(tuple) sum_k w~_k log q'(h_k), with q and the weights w~ from
  `params` held constant and q' the recognition layer `recognition`."""
  tuples = every_tuple(k)
  fixed_log_q = sg(bernoulli_log_prob(tuples, recognition_logits(model, params, k)))
  log_joint = sg(
      jax.vmap(lambda h: model.apply(sbn_variables(model, params), X, [h], method="log_joint"))(
          tuples
      )
  )
  weights = jax.nn.softmax(log_joint - fixed_log_q, -1)
  log_q = bernoulli_log_prob(
      tuples, recognition_logits(model, {**params, "recognition_0": recognition}, k)
  )
  return (jnp.exp(fixed_log_q.sum(-1)) * (weights * log_q).sum(-1)).sum()


def assert_trees_close(actual, expected, name, rtol=1e-4, atol=1e-6):
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=name)


# ---------------------------------------------------------------- flows: change of variables


def standard_normal_log_prob(u):
  return (-0.5 * u**2 - 0.5 * np.log(2 * np.pi)).sum(-1)


def logistic_log_prob(u):
  return (-u - 2 * jax.nn.softplus(-u)).sum(-1)


FLOWS = {
    "nice": (dict(num_couplings=3, hidden_dims=(8,)), logistic_log_prob),
    "maf": (dict(num_layers=2, hidden_dims=(8,), batch_norm=False), standard_normal_log_prob),
    "realnvp": (
        dict(num_layers=2, hidden_dims=(8,), layer="coupling", batch_norm=False),
        standard_normal_log_prob,
    ),
    "maf_batch_norm": (dict(num_layers=2, hidden_dims=(8,)), standard_normal_log_prob),
}


def batch_statistics(model, variables, x):
  """Each batch-norm layer's (mean, var) of the batch `x` in a training-mode pass, as functions
  of the parameters: read back from the running-average update of stored (0, 1) statistics."""
  start = {
      name: {"mean": jnp.zeros_like(s["mean"]), "var": jnp.ones_like(s["var"])}
      for name, s in variables["batch_stats"].items()
  }
  _, updated = model.apply(
      {**variables, "batch_stats": start}, {"x": x}, method="loss", mutable=["batch_stats"]
  )
  return {
      name: {"mean": s["mean"] / 0.1, "var": (s["var"] - 0.9) / 0.1}
      for name, s in updated["batch_stats"].items()
  }


@pytest.mark.parametrize("name", list(FLOWS))
def test_flow_loss_gradients_are_those_of_the_exact_negative_log_likelihood(name):
  """-mean log p(x) by the change of variables, log p(x) = log p_U(f(x)) + log|det df/dx|, the
  determinant from `jax.jacfwd`; with batch norm in training, f normalises by the batch's
  statistics (functions of the parameters, held fixed in the per-example Jacobian)."""
  hyperparameters, base_log_prob = FLOWS[name]
  model = zoo.build("nice" if name == "nice" else "maf", **hyperparameters)
  x = jax.random.normal(jax.random.key(3), (16, 3)) * jnp.array([1.0, 2.0, 0.5]) + 1.0
  state = initial_state(model, {"x": x})
  if "batch_stats" in state.model_state:
    state = state.replace(model_state=jax.tree.map(lambda v: jnp.abs(v) + 0.5, state.model_state))

  def objective(params):
    variables = {"params": params, **state.model_state}
    if "batch_stats" in variables:
      variables["batch_stats"] = batch_statistics(model, variables, x)
    to_base = lambda v: model.apply(variables, v[None], method="to_base")[0][0]
    log_det = jax.vmap(lambda v: jnp.linalg.slogdet(jax.jacfwd(to_base)(v))[1])(x)
    return -(base_log_prob(jax.vmap(to_base)(x)) + log_det).mean()

  assert_trees_close(
      runner_gradient(model, state, {"x": x}, jax.random.key(0)),
      jax.jit(jax.grad(objective))(state.params),
      name,
      rtol=1e-3,
      atol=1e-5,
  )


# ---------------------------------------------------------------- Gaussian latents: quadrature

IMAGES = (jax.random.uniform(jax.random.key(0), (4, 8, 8, 1)) > 0.5).astype(jnp.float32)
# 64 nodes a dimension: the gradient of a ReLU network jumps in z, so the quadrature of the
# gradient converges slowly (24 nodes missed the estimator's mean by 5% along some directions
# of VLAE's parameters; 48 and 96 agree with each other and with 8,000 draws within 2 SE)
QUADRATURE_NODES = 64
NODES, NODE_WEIGHTS = np.polynomial.hermite.hermgauss(QUADRATURE_NODES)


def normal_nodes(mean, std):
  """Gauss-Hermite nodes and weights of N(mean, std^2) in one dimension: E f = sum w f(node)."""
  return mean[..., None] + std[..., None] * np.sqrt(2) * NODES, NODE_WEIGHTS / np.sqrt(np.pi)


def normal_log_prob(z, mean, std):
  return -0.5 * ((z - mean) / std) ** 2 - jnp.log(std) - 0.5 * np.log(2 * np.pi)


def bernoulli_images_log_prob(x, logits):
  return (
      (x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits))
      .reshape(len(x), -1)
      .sum(-1)
  )


def expected_reconstruction(decode, mean, std):
  """E_q log p(x | z) for the images, with q(z | x) = N(mean, diag(std^2)) over 2 dimensions,
  by a Gauss-Hermite product grid."""
  (z1, w1), (z2, w2) = normal_nodes(mean[:, 0], std[:, 0]), normal_nodes(mean[:, 1], std[:, 1])
  grid = jnp.stack(jnp.broadcast_arrays(z1[:, :, None], z2[:, None, :]), -1)  # (B, N, N, 2)
  weights = (w1[:, None] * w2[None, :]).reshape(-1)
  nodes = grid.reshape(-1, 2)  # every example's nodes, in one decoding
  log_p = bernoulli_images_log_prob(jnp.repeat(IMAGES, len(weights), axis=0), decode(nodes))
  return (log_p.reshape(len(mean), -1) * weights).sum(-1)


def assert_mean_gradient_matches(draws, exact, seed=5, directions=8):
  """The per-draw gradients `draws` (a tree with a leading axis of draws) average to `exact`,
  along random directions of parameter space, within 4.5 standard errors."""
  flat = jnp.concatenate([g.reshape(len(g), -1) for g in jax.tree.leaves(draws)], 1)
  target = jnp.concatenate([g.reshape(-1) for g in jax.tree.leaves(exact)])
  v = jax.random.normal(jax.random.key(seed), (directions, len(target)))
  projected, expected = np.asarray(flat @ v.T, np.float64), np.asarray(v @ target)
  error = 4.5 * projected.std(0) / np.sqrt(len(projected)) + 1e-5 * np.abs(expected)
  assert np.all(np.abs(projected.mean(0) - expected) < error), (projected.mean(0) - expected) / (
      error / 4.5
  )


def mean_runner_gradients(model, state, draws=1000):
  keys = jax.random.split(jax.random.key(9), draws)
  return jax.jit(jax.vmap(lambda k: runner_gradient(model, state, {"x": IMAGES}, k)))(keys)


def gaussian_kl(mean, std):
  """KL(N(mean, diag(std^2)) || N(0, I)) per example, in closed form."""
  return (0.5 * (mean**2 + std**2 - 1) - jnp.log(std)).sum(-1)


@pytest.mark.parametrize(
    "name, hyperparameters",
    [
        ("beta_vae", dict(beta=4.0)),
        ("dip_vae", dict(variant="i")),
        ("dip_vae", dict(variant="ii", lambda_od=5.0, lambda_d=5.0)),
    ],
)
def test_vae_loss_gradients_are_unbiased_for_their_papers_objectives(name, hyperparameters):
  """beta-VAE (eq. 4): -E_q log p(x | z) + beta KL; DIP-VAE (eqs. 5-7): -E_q log p(x | z) + KL +
  lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2, C the batch covariance of the
  means (I) or of q(z) (II). The expectation by quadrature; the loss's mean over 1,000 draws."""
  model = zoo.build(name, latent_dim=2, conv_features=(4, 8), hidden_dim=16, **hyperparameters)
  state = initial_state(model, {"x": IMAGES}, scale=0.1)

  def objective(params):
    variables = {"params": params}
    mean, log_var = model.apply(variables, IMAGES, method="encode")
    std = jnp.exp(0.5 * log_var)
    decode = lambda z: model.apply(variables, z, IMAGES.shape[1:], method="decode")
    reconstruction = expected_reconstruction(decode, mean, std).mean()
    kl = gaussian_kl(mean, std).mean()
    if name == "beta_vae":
      return -reconstruction + hyperparameters["beta"] * kl
    covariance = jnp.cov(mean.T, bias=True)
    if hyperparameters["variant"] == "ii":
      covariance += jnp.diag((std**2).mean(0))
    off_diagonal = covariance - jnp.diag(jnp.diag(covariance))
    penalty = (
        model.lambda_od * (off_diagonal**2).sum()
        + model.lambda_d * ((jnp.diag(covariance) - 1) ** 2).sum()
    )
    return -reconstruction + kl + penalty

  assert_mean_gradient_matches(
      mean_runner_gradients(model, state), jax.jit(jax.grad(objective))(state.params)
  )


def vlae_with_warmup(hierarchy):
  """A small VLAE with 1-D codes whose warm-up has run 700 of its tau = 2000 steps."""
  model = zoo.build(
      "vlae",
      latent_dims=(1, 1),
      hidden_dim=16,
      conv_features=(4, 8),
      hierarchy=hierarchy,
      num_eval_samples=100,
      kl_warmup=2000.0,
  )
  state = initial_state(model, {"x": IMAGES}, scale=0.1)
  state = state.replace(model_state={"schedule": {"step": jnp.asarray(700, jnp.int32)}})
  return model, state, 1 - np.exp(-700 / 2000)


def test_the_ladders_loss_gradient_is_unbiased_for_the_warmed_up_elbo():
  """-(E_q log p(x | z) - w KL(q(z | x) || N(0, I))) with the warm-up weight w = 1 - exp(-t /
  tau) of the state's step t; the expectation by quadrature, against the loss's mean over
  1,000 draws."""
  model, state, weight = vlae_with_warmup("ladder")

  def objective(params):
    variables = {"params": params, **state.model_state}
    call = lambda fn, *args: model.apply(variables, *args, method=fn)
    q1 = call(lambda m, x: m.posteriors[0](m.features(x)), IMAGES)
    q2 = call(lambda m, x: m.posteriors[1](m.upward[0](m.features(x))), IMAGES)
    mean = jnp.concatenate([q1.loc, q2.loc], 1)
    std = jnp.concatenate([q1.scale, q2.scale], 1)
    decode = lambda z: call("decode", [z[:, :1], z[:, 1:]], IMAGES.shape[1:])
    return -(expected_reconstruction(decode, mean, std) - weight * gaussian_kl(mean, std)).mean()

  assert_mean_gradient_matches(
      mean_runner_gradients(model, state), jax.jit(jax.grad(objective))(state.params)
  )


def test_the_chains_loss_gradient_is_unbiased_for_the_warmed_up_elbo():
  """The chain's loss against the warmed-up ELBO's single-sample estimate on the same draws,
  -(log p(x | z) - w [log q(z_1 | x) + log q(z_2 | z_1) - log p(z_1 | z_2) - log N(z_2)]),
  written from the joint's densities: their gradients agree in the mean over 2,000 paired draws
  (quadrature cannot be used: z_2's nodes move with z_1 through ReLU layers, and its gradient
  had not converged at 160 nodes a dimension)."""
  model, state, weight = vlae_with_warmup("markov")

  def reference_loss(params, key):
    variables = {"params": params, **state.model_state}
    call = lambda fn, *args: model.apply(variables, *args, method=fn)
    codes, _, posteriors = model.apply(  # the draws of the loss at `key`: the same make_rng
        variables,
        IMAGES,
        method=lambda m, x: m.sample_posterior(x, m.make_rng("sample")),
        rngs={"sample": key},
    )
    p1 = call(lambda m, z: m.priors[0](z), codes[1])
    log_ratio = sum(normal_log_prob(z, q.loc, q.scale).sum(-1) for z, q in zip(codes, posteriors))
    log_ratio -= (
        normal_log_prob(codes[0], p1.loc, p1.scale) + normal_log_prob(codes[1], 0.0, 1.0)
    ).sum(-1)
    reconstruction = bernoulli_images_log_prob(IMAGES, call("decode", codes, IMAGES.shape[1:]))
    return -(reconstruction - weight * log_ratio).mean()

  def difference(key):
    ours = runner_gradient(model, state, {"x": IMAGES}, key)
    return jax.tree.map(jnp.subtract, ours, jax.grad(reference_loss)(state.params, key))

  differences = jax.jit(jax.vmap(difference))(jax.random.split(jax.random.key(9), 2000))
  assert_mean_gradient_matches(differences, jax.tree.map(jnp.zeros_like, state.params))

"""MADE and the MAF family against the mathematics they implement."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_integrates_to_one
from conftest import assert_samples_follow
from conftest import perturbed
from jax.scipy import stats

import zoo
from experiments import loop
from zoo.nn import made

VARIANTS = {
    "made": dict(num_layers=1, batch_norm=False),
    "made_mog": dict(num_layers=0, num_components=3),
    "maf": dict(num_layers=3),
    "maf_mog": dict(num_layers=2, num_components=3),
    "realnvp": dict(num_layers=3, layer="coupling"),
    "conditional_maf": dict(num_layers=2, num_classes=3),
}
GAUSSIAN_BASE = ("made", "maf", "realnvp", "conditional_maf")


def trained_looking(name, size, seed=0, scale=0.2):
  """A model of variant `name` with random (not identity) parameters and batch statistics."""
  model = zoo.build("maf", hidden_dims=(16, 16), **VARIANTS[name])
  rng = jax.random.key(seed)
  batch = {"x": jax.random.normal(rng, (8, size)), "label": jnp.arange(8) % 3}
  variables = model.init({"params": rng, "sample": rng}, batch, method="loss")
  variables = perturbed(variables, jax.random.fold_in(rng, 1), scale=scale)
  if "batch_stats" in variables:
    variables["batch_stats"] = jax.tree.map(lambda v: jnp.abs(v) + 0.5, variables["batch_stats"])
  if model.num_components:
    # The mixture starts at random means and scales; a narrower start keeps a random stack's
    # tails (whose log-scales grow with |x|) inside the box the 2-D tests integrate over.
    output = variables["params"]["base"]["made"]["output"]
    output["bias"] = 0.3 * output["bias"]
  return model, variables


def context_for(model, n):
  return jax.nn.one_hot(jnp.arange(n) % 3, 3) if model.num_classes else None


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_context", [False, True])
def test_made_jacobian_is_triangular_in_its_order(reverse, with_context):
  size = 5
  net = made.MADE((12, 12), outputs_per_dim=2, reverse=reverse)
  x = jax.random.normal(jax.random.key(0), (size,))
  context = jnp.ones(3) if with_context else None
  variables = perturbed(net.init(jax.random.key(1), x, context), jax.random.key(2))
  jacobian = jax.jacfwd(lambda v: net.apply(variables, v, context))(x)  # (D, 2, D)
  degrees = made.input_degrees(size, reverse)
  allowed = degrees[None, :] < degrees[:, None]  # output d may see input j iff deg(j) < deg(d)
  dependence = np.abs(np.asarray(jacobian)).sum(1) > 0
  assert not np.any(dependence & ~allowed)
  assert np.any(dependence)


@pytest.mark.parametrize("name", GAUSSIAN_BASE)
def test_log_prob_is_the_change_of_variables_computed_by_jacfwd(name):
  size = 4
  model, variables = trained_looking(name, size)
  x = jax.random.normal(jax.random.key(5), (6, size)) * 1.5
  context = context_for(model, 6)
  log_prob = model.apply(variables, x, context, method="log_prob")

  def to_base(xi, ci):
    u, _ = model.apply(variables, xi[None], None if ci is None else ci[None], method="to_base")
    return u[0]

  for i in range(len(x)):
    ci = None if context is None else context[i]
    jacobian = jax.jacfwd(to_base)(x[i], ci)
    u = to_base(x[i], ci)
    expected = stats.norm.logpdf(u).sum() + jnp.linalg.slogdet(jacobian)[1]
    np.testing.assert_allclose(log_prob[i], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", GAUSSIAN_BASE)
def test_sampling_direction_inverts_the_density_direction(name):
  model, variables = trained_looking(name, 4)
  x = jax.random.normal(jax.random.key(3), (10, 4))
  context = context_for(model, 10)
  u, _ = model.apply(variables, x, context, method="to_base")
  np.testing.assert_allclose(model.apply(variables, u, context, method="from_base"), x, atol=1e-4)


def _evaluate_log_prob(model, variables):
  """log p(x) of `evaluate` (for a conditional model: the mixture over its labels)."""
  return lambda x: model.apply(
      variables, {"x": x, "label": jnp.zeros(len(x), jnp.int32)}, method="evaluate"
  )["log_prob"]


@pytest.mark.parametrize("name", VARIANTS)
def test_density_integrates_to_one_in_2d(name):
  model, variables = trained_looking(name, 2, scale=0.1)
  assert_integrates_to_one(_evaluate_log_prob(model, variables))


@pytest.mark.parametrize("name", VARIANTS)
def test_samples_follow_log_prob(name):
  """A conditional model's `sample` cycles through the labels: its density is the mixture."""
  model, variables = trained_looking(name, 2, scale=0.1)
  samples = jax.jit(
      lambda v: model.apply(v, 200_000, method="sample", rngs={"sample": jax.random.key(7)})
  )(variables)
  assert samples.shape == (200_000, 2) and samples.dtype == jnp.float32
  assert_samples_follow(_evaluate_log_prob(model, variables), samples)


@pytest.mark.parametrize("name", [*VARIANTS, "nice"])
def test_log_prob_far_from_the_data_is_never_nan(name):
  """Points at 10, 100 and 10^4 standard deviations of the (standard normal) data: a MADE's
  log-scale grows linearly there and its exp overflows, which made inf - inf in the next layer
  (NaN for MAF from 10 standard deviations on). The density there is below float32's range
  or finite; at the data it stays finite."""
  if name == "nice":
    model = zoo.build("nice", num_couplings=4, hidden_dims=(16, 16))
    rng = jax.random.key(0)
    variables = model.init(rng, {"x": jnp.zeros((8, 4))}, method="loss")
    variables = perturbed(variables, jax.random.fold_in(rng, 1), scale=0.2)
  else:
    model, variables = trained_looking(name, 4)
  x = jax.random.normal(jax.random.key(7), (16, 4))
  batch = lambda x: {"x": x, "label": jnp.arange(len(x)) % 3}
  log_prob = jax.jit(lambda v, x: model.apply(v, batch(x), method="evaluate")["log_prob"])
  assert np.isfinite(log_prob(variables, x)).all()
  for distance in (10.0, 100.0, 1e4):
    far = np.asarray(log_prob(variables, distance * x))
    assert not np.isnan(far).any(), (distance, far)
    assert (far < np.inf).all()


def test_log_prob_is_the_same_under_jit_and_vmap():
  model, variables = trained_looking("maf", 3)
  x = jax.random.normal(jax.random.key(0), (7, 3))
  eager = model.apply(variables, x, method="log_prob")
  jitted = jax.jit(lambda v, x: model.apply(v, x, method="log_prob"))(variables, x)
  mapped = jax.vmap(lambda xi: model.apply(variables, xi[None], method="log_prob")[0])(x)
  assert eager.shape == (7,) and eager.dtype == jnp.float32
  np.testing.assert_allclose(jitted, eager, rtol=1e-5)
  np.testing.assert_allclose(mapped, eager, rtol=1e-5)


@pytest.mark.parametrize(
    "x, expected",
    [
        (np.zeros((7, 3, 1, 1), np.float32), "(batch, dimension) vectors"),
        (np.zeros((7, 4), np.float32), "does not fit"),
    ],
)
def test_log_prob_of_a_wrong_shape_is_one_line_naming_the_expected_shape(x, expected):
  """A notebook user's images (not flattened) or points of another dimension than the model
  trained on: one line naming what log_prob takes, not flax's parameter-shape traceback."""
  model, variables = trained_looking("maf", 3)
  with pytest.raises(zoo.errors.UserError) as raised:
    model.apply(variables, x, method="log_prob")
  message = str(raised.value)
  assert "\n" not in message and "maf" in message and expected in message, message
  assert str(x.shape) in message, message


def whole_set_statistics(model, variables, x):
  """Each batch-norm layer's (mean, var) as the MAF paper's code defines them: a training-mode
  pass of the whole set `x` as one batch, every layer normalising by its own inputs' statistics,
  read back from the running-average update of stored statistics (0, 1) with momentum 0.9."""
  start = jax.tree.map(jnp.zeros_like, variables["batch_stats"])
  start = {name: {"mean": s["mean"], "var": s["var"] + 1} for name, s in start.items()}
  _, updated = model.apply(
      {**variables, "batch_stats": start}, {"x": x}, method="loss", mutable=["batch_stats"]
  )
  return {
      name: (s["mean"] / 0.1, (s["var"] - 0.9) / 0.1) for name, s in updated["batch_stats"].items()
  }


def test_a_run_evaluates_with_the_whole_training_sets_batch_statistics(tmp_path, data_dir):
  """The runner sets batch norm's statistics to the training split's before each validation
  and after training (the MAF authors' code), so the best checkpoint's are those of one
  training-mode pass over the whole split; running averages of recent batches are not."""
  config = zoo.get("maf").default_config("smoke")
  config.data_dir = data_dir
  loop.train_and_evaluate(config, str(tmp_path))
  model, variables, _ = zoo.load(str(tmp_path))
  dataset = zoo.data.load(config.dataset, data_dir)
  preprocessing = zoo.data.preprocessing(dataset, config.preprocess)
  batches = list(zoo.data.eval_batches(dataset, preprocessing, "train", batch_size=500))
  x = np.concatenate([b["x"][b["mask"]] for b in batches])
  assert len(x) == dataset.num_examples("train")
  expected = whole_set_statistics(model, variables, jnp.asarray(x))
  assert len(expected) == config.model.num_layers
  for name, (mean, var) in expected.items():
    np.testing.assert_allclose(
        variables["batch_stats"][name]["mean"], mean, rtol=1e-3, atol=1e-4, err_msg=name
    )
    np.testing.assert_allclose(
        variables["batch_stats"][name]["var"], var, rtol=1e-3, atol=1e-4, err_msg=name
    )


def test_batch_norm_with_a_sets_statistics_is_training_mode_on_that_set():
  """Evaluation with the stored statistics set to a batch's own equals training mode on that
  batch (which normalises by the batch), layer for layer, log-determinant included."""
  model, variables = trained_looking("maf", 3)
  x = jax.random.normal(jax.random.key(0), (64, 3)) * jnp.array([1.0, 2.0, 3.0]) + 5.0
  stats = whole_set_statistics(model, variables, x)
  fitted = {**variables, "batch_stats": {n: {"mean": m, "var": v} for n, (m, v) in stats.items()}}
  in_training, _ = model.apply(variables, x, train=True, method="log_prob", mutable=["batch_stats"])
  np.testing.assert_allclose(model.apply(fitted, x, method="log_prob"), in_training, rtol=1e-4)


def test_conditional_evaluate_marginalises_the_label():
  model, variables = trained_looking("conditional_maf", 2)
  x = jax.random.normal(jax.random.key(0), (5, 2))
  out = model.apply(variables, {"x": x, "label": jnp.array([0, 1, 2, 0, 1])}, method="evaluate")
  per_label = jnp.stack(
      [model.apply(variables, x, jnp.eye(3)[jnp.full(5, k)], method="log_prob") for k in range(3)],
      -1,
  )
  np.testing.assert_allclose(
      out["log_prob_given_label"], per_label[jnp.arange(5), jnp.array([0, 1, 2, 0, 1])], rtol=1e-5
  )
  np.testing.assert_allclose(
      out["log_prob"], jax.nn.logsumexp(per_label, -1) - jnp.log(3.0), rtol=1e-5
  )


def test_mixture_components_start_apart_and_learn_a_bimodal_density():
  """Identical components get identical gradients forever: a MoG MADE must break the symmetry,
  and then fits two well-separated modes far better than one Gaussian can."""
  x = jnp.concatenate([jnp.full((256, 1), -3.0), jnp.full((256, 1), 3.0)])
  x = x + 0.3 * jax.random.normal(jax.random.key(0), x.shape)
  batch = {"x": x}
  results = {}
  for name, hyperparameters in (
      ("gaussian", dict(num_layers=1, batch_norm=False)),
      ("mixture", dict(num_layers=0, num_components=4)),
  ):
    model = zoo.build("maf", hidden_dims=(8,), **hyperparameters)
    params = model.init(jax.random.key(1), batch, method="loss")["params"]
    optimizer = optax.adam(0.05)
    state = optimizer.init(params)

    @jax.jit
    def step(params, state, model=model, optimizer=optimizer):
      grads = jax.grad(lambda p: model.apply({"params": p}, batch, method="loss")[0])(params)
      updates, state = optimizer.update(grads, state)
      return optax.apply_updates(params, updates), state

    for _ in range(300):
      params, state = step(params, state)
    results[name] = float(model.apply({"params": params}, batch, method="loss")[0])
  assert results["mixture"] < results["gaussian"] - 1.0

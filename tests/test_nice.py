"""NICE against the mathematics it implements: volume-preserving couplings, the rescaling
layer's log-determinant, an exact normalised density, and inpainting."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_integrates_to_one
from conftest import assert_samples_follow
from conftest import perturbed
from jax.scipy import stats
from PIL import Image

import zoo
from experiments import outputs
from zoo.nn import flows


class _Layer(nn.Module):
  """One flow layer, applied in either direction."""

  layer: nn.Module

  def __call__(self, x):
    return self.layer.bijector(x).inverse_and_log_det(x)

  def forward(self, u):
    return self.layer.bijector(u).forward(u)


def random_nice(size, prior="logistic", scale=0.2, seed=0):
  model = zoo.build("nice", num_couplings=4, hidden_dims=(16, 16), prior=prior)
  x = jax.random.uniform(jax.random.key(seed), (8, size))
  variables = model.init(jax.random.key(seed + 1), {"x": x}, method="loss")
  return model, perturbed(variables, jax.random.key(seed + 2), scale)


@pytest.mark.parametrize("parity", [0, 1])
def test_additive_coupling_is_invertible_with_unit_jacobian(parity):
  layer = _Layer(flows.Coupling((12, 12), parity=parity, affine=False))
  x = jax.random.normal(jax.random.key(0), (5,))
  variables = perturbed(layer.init(jax.random.key(1), x[None]), jax.random.key(2), 0.5)
  y, log_det = layer.apply(variables, x[None])
  np.testing.assert_allclose(layer.apply(variables, y, method="forward")[0], x, atol=1e-6)
  assert float(log_det[0]) == 0.0
  jacobian = jax.jacfwd(lambda v: layer.apply(variables, v[None])[0][0])(x)
  np.testing.assert_allclose(jnp.linalg.det(jacobian), 1.0, rtol=1e-5)
  unchanged = np.arange(5) % 2 == parity
  np.testing.assert_array_equal(y[0, unchanged], x[unchanged])
  assert not np.allclose(y[0, ~unchanged], x[~unchanged])


def test_the_couplings_partition_the_pixels_as_the_paper_and_its_code():
  """NICE section 5.1: h_I1 = x_I1, h_I2 = x_I2 + m(x_I1), I1 the odd pixels counted from one,
  the next coupling the other way round; the released exp/nice_mnist.yaml gets the same by a
  Reordering 'tile' (pixels 0, 2, 4, ... first) and a split at the middle. So the first
  coupling leaves pixels 0, 2, 4, ... as they are and moves 1, 3, 5, ... by a function of
  them alone; the second the reverse."""
  model, variables = random_nice(6)
  x = jax.random.uniform(jax.random.key(3), (6,))

  def coupling(v, x, index):
    return v.layers[index].bijector(x).inverse(x)

  for index, moved in ((0, 1), (1, 0)):
    rows = jax.jacfwd(lambda x, i=index: model.apply(variables, x[None], i, method=coupling)[0])(x)
    rows = np.asarray(rows)
    fixed, updated = np.arange(6) % 2 != moved, np.arange(6) % 2 == moved
    np.testing.assert_allclose(rows[fixed], np.eye(6)[fixed], atol=1e-6)
    np.testing.assert_allclose(rows[np.ix_(updated, updated)], np.eye(3), atol=1e-6)
    assert np.abs(rows[np.ix_(updated, fixed)]).max() > 1e-3


def test_rescaling_log_det_is_the_sum_of_log_scales():
  layer = _Layer(flows.Rescaling())
  x = jax.random.normal(jax.random.key(0), (3, 4))
  variables = perturbed(layer.init(jax.random.key(1), x), jax.random.key(2), 1.0)
  log_scale = variables["params"]["layer"]["log_scale"]
  h, log_det = layer.apply(variables, x)
  np.testing.assert_allclose(h, x * jnp.exp(log_scale), rtol=1e-6)
  np.testing.assert_allclose(log_det, jnp.full(3, log_scale.sum()), rtol=1e-6)
  np.testing.assert_allclose(layer.apply(variables, h, method="forward"), x, rtol=1e-5)


@pytest.mark.parametrize("prior", ["logistic", "gaussian"])
def test_log_prob_is_the_change_of_variables_computed_by_jacfwd(prior):
  model, variables = random_nice(4, prior)
  x = jax.random.uniform(jax.random.key(3), (4, 4))
  log_prob = model.apply(variables, x, method="log_prob")
  log_prior = stats.logistic.logpdf if prior == "logistic" else stats.norm.logpdf
  for i in range(len(x)):
    to_base = lambda v: model.apply(variables, v[None], method="to_base")[0][0]
    expected = log_prior(to_base(x[i])).sum() + jnp.linalg.slogdet(jax.jacfwd(to_base)(x[i]))[1]
    np.testing.assert_allclose(log_prob[i], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("prior", ["logistic", "gaussian"])
def test_density_integrates_to_one_and_samples_follow_it_in_2d(prior):
  model, variables = random_nice(2, prior, scale=0.1)
  log_prob = lambda x: model.apply(variables, x, method="log_prob")
  assert_integrates_to_one(log_prob)
  samples = jax.jit(
      lambda v: model.apply(v, 200_000, method="sample", rngs={"sample": jax.random.key(4)})
  )(variables)
  assert samples.shape == (200_000, 2)
  assert_samples_follow(log_prob, samples)


def test_inpainting_keeps_observed_pixels_and_raises_log_prob():
  model, variables = random_nice(16, scale=0.3)
  x = jax.random.uniform(jax.random.key(5), (6, 4, 4, 1))
  observed = jnp.broadcast_to(jnp.arange(4)[None, :, None, None] < 2, x.shape)
  rngs = {"sample": jax.random.key(6)}
  start = model.apply(variables, x, observed, 0, method="inpaint", rngs=rngs)
  filled = model.apply(variables, x, observed, 300, method="inpaint", rngs=rngs)
  assert filled.shape == x.shape
  np.testing.assert_array_equal(
      np.asarray(filled)[np.asarray(observed)], np.asarray(x)[np.asarray(observed)]
  )
  assert float(filled.min()) >= 0.0 and float(filled.max()) <= 1.0
  log_prob = lambda v: model.apply(variables, flows.flatten(v), method="log_prob")
  assert np.all(np.asarray(log_prob(filled)) > np.asarray(log_prob(start)))


def test_bad_prior_is_a_user_error():
  with pytest.raises(zoo.errors.HyperparameterError, match="prior must be one of"):
    zoo.build("nice", prior="cauchy").init(jax.random.key(0), jnp.zeros((2, 4)))


@pytest.mark.parametrize("preprocess", ["dequantize", "logit", "binarize", "scale"])
def test_inpainting_is_finite_and_in_the_pixel_range_for_every_preprocessing(
    preprocess, data_dir, monkeypatch
):
  """The inpainting figure's images, through the runner's own figure: each hidden pixel filled
  with a finite value inside the preprocessing's range (a start drawn from an unbounded range
  was NaN for all but `dequantize`)."""
  dataset = zoo.data.load("digits", data_dir)
  preprocessing = zoo.data.preprocessing(dataset, preprocess)
  config = zoo.get("nice").default_config("smoke")
  model = zoo.build("nice", num_couplings=2, hidden_dims=(16,))
  x = next(zoo.data.eval_batches(dataset, preprocessing, "test", batch_size=8))["x"]
  variables = model.init(jax.random.key(0), {"x": x}, method="loss")
  shown = []
  monkeypatch.setattr(
      outputs,
      "image_grid",
      lambda images, **_: shown.append(images) or Image.new("L", (1, 1)),
  )
  outputs.inpainting(outputs.Subject(model, dataset, preprocessing, config), variables, 0)
  filled = shown[0].reshape(6, 8, *x.shape[1:])[[2, 5]]  # the two inpainted rows
  assert np.all(np.isfinite(filled)), preprocess
  assert filled.min() >= -1e-6 and filled.max() <= 1 + 1e-6, (filled.min(), filled.max())

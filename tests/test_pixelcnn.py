"""The gated PixelCNN: every earlier pixel and channel seen and nothing later, by `jax.jacfwd`;
its likelihood normalised over every image; both
kinds of conditioning, the likelihood against a direct sum, and the jitted sampler against a slow
reference loop."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturbed

from zoo.nn import pixelcnn

HEIGHT, WIDTH = 5, 6


def model_and_variables(channels=1, levels=2, condition=None):
  model = pixelcnn.PixelCNN(features=6 * channels, num_blocks=2, levels=levels)
  x = jnp.zeros((1, HEIGHT, WIDTH, channels))
  condition = jnp.ones((1, 3)) if condition is None else condition
  variables = model.init(jax.random.key(0), x, condition)
  return model, perturbed(variables, jax.random.key(1)), condition


def test_channel_masks_by_hand():
  # from the R, G, B groups of the input to those of the output (features 0..5 belong to R, G,
  # B, R, G, B)
  a = pixelcnn.channel_mask(3, 6, "A", channels=3)
  b = pixelcnn.channel_mask(3, 6, "B", channels=3)
  np.testing.assert_array_equal(a[:, :3], [[0, 1, 1], [0, 0, 1], [0, 0, 0]])
  np.testing.assert_array_equal(b[:, :3], [[1, 1, 1], [0, 1, 1], [0, 0, 1]])
  np.testing.assert_array_equal(a[:, 3:], a[:, :3])


def dependence_matrix(model, variables, condition, x):
  """|d output / d input| summed over images and levels, (outputs, inputs), both in the order
  pixel by pixel, channel by channel, from `jax.jacfwd`."""

  def jacobian(image):
    return jax.jacfwd(lambda image: model.apply(variables, image[None], condition)[0])(image)

  jacobians = jax.jit(jax.vmap(jacobian))(x)  # over several images, so that no ReLU is off at all
  size = int(np.prod(x.shape[1:]))
  return np.abs(np.asarray(jacobians)).sum((0, 4)).reshape(size, size)


def test_each_channel_sees_every_earlier_pixel_and_channel_and_nothing_later():
  """No blind spot: the Jacobian of each output is non-zero on every earlier pixel and channel
  (the strict lower triangle in the raster and channel order) and zero on the rest; for one
  channel, the test below."""
  model, variables, condition = model_and_variables(3, levels=4)
  x = jax.random.bernoulli(jax.random.key(2), 0.5, (4, HEIGHT, WIDTH, 3)).astype(jnp.float32)
  dependence = dependence_matrix(model, variables, condition, x)
  earlier = np.tril(np.ones(dependence.shape, bool), -1)
  assert np.all(dependence[~earlier] == 0)
  assert np.all(dependence[earlier] > 0), np.argwhere(~(dependence > 0) & earlier)[:5]


@pytest.mark.slow  # 22 s; the test above finds the single stack's blind spot too
def test_the_decoders_default_depth_covers_an_8x8_image():
  """The PixelGAN decoder's depth (a 7x7 first layer, 6 blocks of 3x3) on the digits' 8x8:
  pixel (1, 0) sees (0, 4) to (0, 7), which a single masked stack never reaches."""
  model = pixelcnn.PixelCNN(features=4, num_blocks=6)
  x = jax.random.bernoulli(jax.random.key(2), 0.5, (4, 8, 8, 1)).astype(jnp.float32)
  condition = jnp.ones((1, 3))
  variables = perturbed(model.init(jax.random.key(0), x[:1], condition), jax.random.key(1))
  dependence = dependence_matrix(model, variables, condition, x)
  earlier = np.tril(np.ones(dependence.shape, bool), -1)
  assert np.all(dependence[~earlier] == 0) and np.all(dependence[earlier] > 0)


def test_the_likelihood_is_normalised_over_every_image():
  """sum over all 2^(H W C) binary images of p(x | h) = 1: the conditionals chain into one
  distribution only if each reads earlier entries alone."""
  model = pixelcnn.PixelCNN(features=4, num_blocks=2)
  images = jnp.array(list(itertools.product([0.0, 1.0], repeat=8))).reshape(-1, 2, 2, 2)
  condition = jnp.ones((len(images), 3))
  variables = perturbed(model.init(jax.random.key(0), images[:1], condition[:1]), jax.random.key(1))
  log_p = pixelcnn.log_likelihood(model.apply(variables, images, condition), images)
  np.testing.assert_allclose(jnp.exp(jax.nn.logsumexp(log_p)), 1.0, rtol=1e-5)


def test_vector_condition_is_a_location_independent_bias_and_a_map_a_local_one():
  x = jnp.zeros((1, HEIGHT, WIDTH, 1))
  model, variables, _ = model_and_variables()
  gradient = jax.grad(lambda h: model.apply(variables, x, h)[0, 2, 3, 0, 1])(jnp.ones((1, 3)))
  assert np.abs(gradient).sum() > 0
  spatial = jnp.ones((1, HEIGHT, WIDTH, 2))
  model, variables, _ = model_and_variables(condition=spatial)
  gradient = jax.grad(lambda h: model.apply(variables, x, h)[0, 2, 3, 0, 1])(spatial)
  seen = np.abs(np.asarray(gradient)).sum(-1)[0].reshape(-1)
  # the local bias at pixel j reaches the output at pixel i through the masks: j <= i only
  assert seen[2 * WIDTH + 3] > 0 and np.all(seen[2 * WIDTH + 4 :] == 0)


def test_log_likelihood_sums_the_chosen_levels_log_probabilities():
  logits = jax.random.normal(jax.random.key(5), (2, 2, 3, 2, 4))
  k = jax.random.randint(jax.random.key(6), (2, 2, 3, 2), 0, 4)
  log_probs = jax.nn.log_softmax(logits)
  expected = [
      sum(
          log_probs[b, h, w, c, k[b, h, w, c]] for h in range(2) for w in range(3) for c in range(2)
      )
      for b in range(2)
  ]
  np.testing.assert_allclose(pixelcnn.log_likelihood(logits, k / 3), expected, rtol=1e-5)


@pytest.mark.parametrize("channels, levels", [(1, 2), (3, 4)])
def test_jitted_sampling_equals_a_slow_reference_loop(channels, levels):
  model, variables, _ = model_and_variables(channels, levels)
  condition = jax.random.normal(jax.random.key(3), (4, 3))
  rng = jax.random.key(4)
  shape = (4, HEIGHT, WIDTH, channels)

  def logits_fn(x):
    return model.apply(variables, x, condition)

  fast = jax.jit(lambda: pixelcnn.sample(logits_fn, shape, levels, rng))()
  slow = np.zeros(shape, np.float32)
  for i in range(HEIGHT * WIDTH * channels):
    (row, column), c = divmod(i // channels, WIDTH), i % channels
    logits = logits_fn(jnp.asarray(slow))[:, row, column, c]
    k = jax.random.categorical(jax.random.fold_in(rng, i), logits)
    slow[:, row, column, c] = k / (levels - 1)
  np.testing.assert_allclose(fast, slow, rtol=1e-6)
  assert fast.dtype == jnp.float32
  values = (np.arange(levels) / (levels - 1)).astype(np.float32)
  assert np.all(np.isin(fast, values)) and 0 < fast.mean() < 1

"""The gated PixelCNN: causality of its masks against `jax.jacfwd`, both kinds of conditioning,
and the jitted sampler against a slow reference loop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import perturbed
from zoo.nn import pixelcnn

HEIGHT, WIDTH = 5, 6


def model_and_variables(channels=1, condition=None):
  model = pixelcnn.PixelCNN(features=8, num_blocks=2)
  x = jnp.zeros((1, HEIGHT, WIDTH, channels))
  condition = jnp.ones((1, 3)) if condition is None else condition
  variables = model.init(jax.random.key(0), x, condition)
  return model, perturbed(variables, jax.random.key(1)), condition


def test_masks_by_hand():
  a = pixelcnn.causal_mask(3, 1, 1, "A")[..., 0, 0]
  b = pixelcnn.causal_mask(3, 1, 1, "B")[..., 0, 0]
  np.testing.assert_array_equal(a, [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
  np.testing.assert_array_equal(b, [[1, 1, 1], [1, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("channels", [1, 2])
def test_output_at_pixel_i_depends_only_on_pixels_before_i(channels):
  model, variables, condition = model_and_variables(channels)
  x = jax.random.bernoulli(jax.random.key(2), 0.5, (1, HEIGHT, WIDTH, channels)).astype(
      jnp.float32)
  jacobian = jax.jacfwd(lambda x: model.apply(variables, x, condition))(x)
  pixels = HEIGHT * WIDTH
  # (output pixel, input pixel) magnitudes in raster order
  dependence = np.abs(np.asarray(jacobian)).reshape(pixels, channels, pixels, channels).sum((1, 3))
  later_or_same = np.triu(np.ones((pixels, pixels), bool))
  assert np.all(dependence[later_or_same] == 0)
  # and it does see the pixel to its left and the one above it
  for i in range(WIDTH + 1, pixels):
    if i % WIDTH:
      assert dependence[i, i - 1] > 0 and dependence[i, i - WIDTH] > 0


def test_vector_condition_is_a_location_independent_bias_and_a_map_a_local_one():
  x = jnp.zeros((1, HEIGHT, WIDTH, 1))
  model, variables, _ = model_and_variables()
  gradient = jax.grad(lambda h: model.apply(variables, x, h)[0, 2, 3, 0])(jnp.ones((1, 3)))
  assert np.abs(gradient).sum() > 0
  spatial = jnp.ones((1, HEIGHT, WIDTH, 2))
  model, variables, _ = model_and_variables(condition=spatial)
  gradient = jax.grad(lambda h: model.apply(variables, x, h)[0, 2, 3, 0])(spatial)
  seen = np.abs(np.asarray(gradient)).sum(-1)[0].reshape(-1)
  # the local bias at pixel j reaches the output at pixel i through the masks: j <= i only
  assert seen[2 * WIDTH + 3] > 0 and np.all(seen[2 * WIDTH + 4:] == 0)


def test_jitted_sampling_equals_a_slow_reference_loop():
  model, variables, _ = model_and_variables()
  condition = jax.random.normal(jax.random.key(3), (4, 3))
  rng = jax.random.key(4)

  def logits_fn(x):
    return model.apply(variables, x, condition)

  fast = jax.jit(lambda: pixelcnn.sample(logits_fn, (4, HEIGHT, WIDTH, 1), rng))()
  slow = np.zeros((4, HEIGHT, WIDTH, 1), np.float32)
  for i in range(HEIGHT * WIDTH):
    row, column = divmod(i, WIDTH)
    logits = logits_fn(jnp.asarray(slow))[:, row, column]
    slow[:, row, column] = jax.random.bernoulli(jax.random.fold_in(rng, i),
                                                jax.nn.sigmoid(logits))
  np.testing.assert_array_equal(fast, slow)
  assert fast.dtype == jnp.float32 and 0 < fast.mean() < 1

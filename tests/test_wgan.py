"""WGAN, WGAN-GP and the GAN: the game step, weight clipping, the penalty, mode counting, resume."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import run_cli

import zoo
from experiments import loop
from zoo import configs
from zoo import training
from zoo.metrics import modes
from zoo.models import wgan
from zoo.nn import dcgan

RNGS = {"params": jax.random.key(0), "sample": jax.random.key(1)}
POINTS = {"x": jax.random.normal(jax.random.key(2), (16, 2))}
IMAGES = {"x": jax.random.uniform(jax.random.key(3), (4, 8, 8, 1))}


def game(variant="wgan", batch=POINTS, learning_rate=0.05, **hyperparameters):
  model = zoo.build(
      "wgan", variant=variant, latent_dim=3, hidden_dims=(16, 16), width=4, **hyperparameters
  )
  optimizers = {p: optax.adam(learning_rate) for p in model.phases}
  return model, optimizers, training.init_state(model, optimizers, batch, jax.random.key(4))


@pytest.mark.parametrize("size, halvings", [(8, 1), (28, 2), (32, 3), (64, 4)])
def test_dcgan_depth_follows_the_image_size(size, halvings):
  assert dcgan.num_halvings(size) == halvings


@pytest.mark.parametrize("batch", [POINTS, IMAGES], ids=["vectors", "images"])
def test_shapes_under_jit(batch):
  model, _, state = game(batch=batch)
  variables = {"params": state.params, **state.model_state}
  samples = jax.jit(lambda v: model.apply(v, 5, method="sample", rngs=RNGS))(variables)
  assert samples.shape == (5, *batch["x"].shape[1:]) and samples.dtype == jnp.float32
  if batch is IMAGES:
    assert 0 <= samples.min() and samples.max() <= 1
  gap = jax.jit(lambda v, b: model.apply(v, b, method="evaluate", rngs=RNGS))(variables, batch)
  assert gap["critic_gap"].shape == (len(batch["x"]),)


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_only_batch_norm_makes_a_training_score_depend_on_the_rest_of_the_batch(norm):
  """The WGAN and DCGAN critics (batch norm) score an example in training by its batch's
  statistics; WGAN-GP's layer norm and no normalisation score each example alone, as the
  per-example gradient penalty needs; outside training no critic looks at the batch."""
  critic = dcgan.Critic((16,), width=4, norm=norm)
  x = jax.random.uniform(jax.random.key(5), (4, 16, 16, 1))
  others = x.at[1:].set(jax.random.uniform(jax.random.key(6), (3, 16, 16, 1)))
  variables = critic.init(jax.random.key(7), x)
  train = jax.jit(lambda x: critic.apply(variables, x, True, mutable=["batch_stats"])[0])
  evaluate = jax.jit(lambda x: critic.apply(variables, x))
  assert (float(train(x)[0]) != float(train(others)[0])) == (norm == "batch")
  assert float(evaluate(x)[0]) == float(evaluate(others)[0])


def test_after_a_critic_update_every_critic_weight_lies_in_the_clip_range():
  model, optimizers, state = game("wgan", weight_clip=0.01, learning_rate=0.5)
  update = training.make_phase_update(model, optimizers)
  state, _ = update("critic", state, POINTS, jax.random.key(5))
  leaves = np.concatenate([np.ravel(x) for x in jax.tree.leaves(state.params["critic"])])
  assert np.abs(leaves).max() <= 0.01
  assert np.isclose(np.abs(leaves), 0.01).mean() > 0.5  # the step was large: clipping acted
  generator = np.concatenate([np.ravel(x) for x in jax.tree.leaves(state.params["generator"])])
  assert np.abs(generator).max() > 0.01  # the generator is not clipped


@pytest.mark.parametrize("phase, other", [("critic", "generator"), ("generator", "critic")])
def test_a_phase_update_changes_its_own_parameters_only(phase, other):
  model, optimizers, state = game("wgan_gp")
  update = training.make_phase_update(model, optimizers)
  new, metrics = update(phase, state, POINTS, jax.random.key(5))
  assert f"{phase}/loss" in metrics
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, new.params[other], state.params[other])))
  assert not all(
      jax.tree.leaves(jax.tree.map(np.array_equal, new.params[phase], state.params[phase]))
  )
  assert all(
      jax.tree.leaves(jax.tree.map(np.array_equal, new.opt_state[other], state.opt_state[other]))
  )


def test_gradient_penalty_of_a_one_lipschitz_linear_critic_is_zero():
  w = jax.random.normal(jax.random.key(0), (2,))
  real, fake = POINTS["x"], jax.random.normal(jax.random.key(1), (16, 2))
  for scale, expected in ((1.0, 0.0), (3.0, 4.0)):  # ||grad|| = scale: penalty (scale - 1)^2
    critic_gradient = jax.grad(lambda x: (x @ (scale * w / jnp.linalg.norm(w))).sum())
    penalty = wgan.gradient_penalty(critic_gradient, real, fake, jax.random.key(2))
    np.testing.assert_allclose(penalty, expected, atol=1e-5)


def test_the_penalty_trains_the_critic_through_its_input_gradient():
  """The penalty's gradient with respect to the critic, which differentiates its input gradient
  (a lifted nn.grad inside the module) once more, agrees with central differences, in float64
  (in float32 the steps large enough to beat rounding cross ReLU kinks)."""
  with jax.enable_x64(True):
    model, _, state = game("wgan_gp", batch={"x": POINTS["x"].astype(jnp.float64)})
    params = jax.tree.map(lambda p: p.astype(jnp.float64), state.params)
    batch = {"x": POINTS["x"].astype(jnp.float64)}

    def penalty(critic_params):
      return model.apply(
          {"params": {**params, "critic": critic_params}},
          batch,
          method="critic_loss",
          rngs={"sample": jax.random.key(7)},
      )[1]["gradient_penalty"]

    gradient = jax.grad(penalty)(params["critic"])
    for seed in range(3):
      direction = jax.tree.map(
          lambda p: jax.random.normal(jax.random.key(seed), p.shape, jnp.float64), params["critic"]
      )
      shifted = lambda h: jax.tree.map(lambda p, d: p + h * d, params["critic"], direction)
      numeric = (penalty(shifted(1e-6)) - penalty(shifted(-1e-6))) / 2e-6
      analytic = sum(
          jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(gradient), jax.tree.leaves(direction))
      )
      assert abs(analytic) > 1e-3  # the penalty does depend on the critic
      np.testing.assert_allclose(analytic, numeric, rtol=1e-5)


def test_game_step_runs_the_critic_once_per_stacked_batch():
  model, optimizers, state = game("wgan")
  stacked = jax.tree.map(lambda x: jnp.stack([x, x + 1, x - 1]), POINTS)
  new, metrics = jax.jit(training.make_game_step(model, optimizers))(
      state, stacked, jax.random.key(5)
  )
  assert int(new.step) == 1
  assert int(new.opt_state["critic"][0].count) == 3
  assert int(new.opt_state["generator"][0].count) == 1
  assert metrics["loss"] == metrics["critic/loss"]


def test_the_papers_critic_schedule():
  config = configs.finalize(zoo.get("wgan").default_config("default"))
  steps = [training.first_phase_updates_at(config, s) for s in range(1001)]
  assert steps[:25] == [100] * 25 and steps[25:30] == [5] * 5
  assert steps[500] == steps[1000] == 100 and steps[501] == 5
  assert training.batches_before(config, 27) == 25 * 100 + 2 * 5


def reference_updates(variant, gradients):
  """The first updates of the optimiser each paper's released code trains that variant with,
  written from its update rule: PyTorch's RMSprop (alpha 0.99, eps 1e-8 outside the root) at
  5e-5 for WGAN; TensorFlow's Adam at (1e-4, 0.5, 0.9) for WGAN-GP, at (2e-4, 0.5, 0.999) for
  the DCGAN baseline."""
  updates, first, second = [], 0.0, 0.0
  for t, g in enumerate(gradients, 1):
    if variant == "wgan":
      second = 0.99 * second + 0.01 * g * g
      updates.append(-5e-5 * g / (np.sqrt(second) + 1e-8))
      continue
    lr, b1, b2 = {"wgan_gp": (1e-4, 0.5, 0.9), "gan": (2e-4, 0.5, 0.999)}[variant]
    first, second = b1 * first + (1 - b1) * g, b2 * second + (1 - b2) * g * g
    updates.append(-lr * (first / (1 - b1**t)) / (np.sqrt(second / (1 - b2**t)) + 1e-8))
  return np.array(updates)


@pytest.mark.parametrize("variant", ["wgan", "wgan_gp", "gan"])
def test_each_variant_trains_with_its_papers_optimiser(variant):
  config = zoo.get("wgan").default_config("default")
  config.model.variant = variant
  optimizer = training.make_optimizer(configs.finalize(config))
  gradients = np.array([0.3, -1.2, 0.7, 2.0, -0.1], np.float32)
  state, param, updates = optimizer.init(jnp.zeros(())), jnp.zeros(()), []
  for g in gradients:
    update, state = optimizer.update(jnp.asarray(g), state, param)
    updates.append(float(update))
  np.testing.assert_allclose(updates, reference_updates(variant, gradients), rtol=1e-5)
  assert configs.finalize(config).first_phase_updates == (1 if variant == "gan" else 5)


def test_a_setting_given_on_the_command_line_overrides_the_variants():
  config = zoo.get("wgan").default_config("default")
  config.model.variant = "gan"
  config.learning_rate = 3e-4
  assert configs.finalize(config).learning_rate == 3e-4


def test_mode_coverage_counts_by_hand():
  means, std = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]), 0.1
  on_modes = np.repeat(means, [30, 30, 19], axis=0)
  stats = modes.mode_coverage(on_modes, means, std)
  assert stats == {"modes_covered": 2.0, "high_quality": 1.0}  # 19 < 20 samples: not covered
  far = on_modes + np.array([0.0, 0.31])  # just beyond 3 std
  assert modes.mode_coverage(far, means, std) == {"modes_covered": 0.0, "high_quality": 0.0}
  mixture = zoo.data.toy2d.MIXTURES["grid_of_25"]
  points, _ = zoo.data.toy2d.DENSITIES["grid_of_25"](np.random.default_rng(0), modes.NUM_SAMPLES)
  stats = modes.mode_coverage(points, *mixture)
  assert stats["modes_covered"] == 25 and stats["high_quality"] > 0.98  # 3 std hold 98.9% in 2-D


def test_a_resumed_game_equals_the_uninterrupted_one_which_the_command_reports(tmp_path, data_dir):
  """The uninterrupted game is the command's (which prints the modes covered and draws the
  samples), the interrupted one this process's on one device as the command sees one, stopped
  at step 10 and resumed."""
  whole, resumed = tmp_path / "whole", str(tmp_path / "resumed")
  code, stdout, stderr = run_cli(
      "--model=wgan", "--preset=smoke", f"--config.data_dir={data_dir}", f"--workdir={whole}"
  )
  assert code == 0, stderr
  assert "modes_covered" in stdout
  assert (whole / "samples.png").exists()
  with open(whole / "results.json") as f:
    expected = json.load(f)
  config = zoo.get("wgan").default_config("smoke")
  config.data_dir = data_dir
  config.num_steps = 10
  one = jax.devices()[:1]
  first = loop.train_and_evaluate(config, resumed, devices=one)
  config.num_steps = 20
  results = loop.train_and_evaluate(config, resumed, devices=one, allow_config_change=True)
  assert results["test"] == expected["test"]
  assert not os.path.exists(whole / "best")  # a game ranks no evaluation
  assert results["train_seconds"] > first["train_seconds"]  # the time before the stop counts

  def training_rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      rows = [json.loads(line) for line in f]
    return [r for r in rows if not any(k.startswith("test/") for k in r)]

  assert training_rows(resumed) == training_rows(whole)


def test_an_unknown_variant_is_one_clear_error(tmp_path, data_dir):
  code, _, stderr = run_cli(
      "--model=wgan",
      "--preset=smoke",
      f"--config.data_dir={data_dir}",
      f"--workdir={tmp_path / 'bad'}",
      "--config.model.variant=lsgan",
  )
  assert code == 2
  assert stderr.strip().splitlines() == [
      "error: wgan: variant must be one of wgan, wgan_gp, gan, not 'lsgan'"
  ]


def test_a_game_step_sharded_over_four_devices_equals_one_device():
  """The stacked critic batches are sharded on their second axis and the step is the same.
  (SGD: an adaptive optimiser would amplify the reductions' rounding in near-zero gradients.)"""
  model = zoo.build("wgan", variant="wgan_gp", latent_dim=3, hidden_dims=(16, 16))
  optimizers = {p: optax.sgd(0.05) for p in model.phases}
  stacked = {"x": jax.random.normal(jax.random.key(6), (3, 16, 2))}
  state = training.init_state(model, optimizers, {"x": stacked["x"][0]}, jax.random.key(4))
  step = jax.jit(training.make_game_step(model, optimizers))
  results = []
  for count in (1, 4):
    devices = training.Devices.all(jax.devices()[:count])
    sharded = devices.shard_batch(jax.device_get(stacked), leading_axes=1)
    assert tuple(sharded["x"].sharding.spec) == (None, "data")
    results.append(jax.device_get(step(devices.replicate(state), sharded, jax.random.key(5))))
  for one, four in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
    np.testing.assert_allclose(one, four, rtol=1e-4, atol=1e-6)

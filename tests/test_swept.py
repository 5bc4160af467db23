"""Hyper-parameters as a replica axis (`config.replicas`): each replica of a sweep trains as the
single run of its setting would, here step by step against single runs built from each
setting's own config, for every continuous field a model has; the run-level test (MAF's
learning rate over two seeds, resumed) is in test_seeds.py."""

import json
import os

import jax
import numpy as np
import pytest

import zoo
from experiments import loop
from experiments import runs
from zoo import configs
from zoo import contract
from zoo import errors
from zoo import training
from zoo.configs import dip_vae as dip_vae_config

STEPS = 3
# A constant beta = 8 and a traced one round the beta-VAE's gradient differently (XLA folds the
# constant into the products around it), and Adam scales the difference in its smallest
# entries up: 1.3e-7 in one weight of 4096 after 3 steps of 1e-3, a ten-thousandth of a step.
PARAMETER_ATOL = 1e-6

# (model, example shape, config overrides, swept values). Each case sweeps values far apart,
# so that a replica trained with another's value (or the config's) fails the comparison.
CASES = {
    "beta_vae beta": ("beta_vae", (64, 64, 1), {}, {"model.beta": (1.0, 8.0)}),
    # DIP-VAE-II derives lambda_d = lambda_od (`zoo.configs.dip_vae.finalize`): swept with it
    "dip_vae lambda_od, ii": (
        "dip_vae",
        (64, 64, 1),
        {"model.variant": "ii"},
        {"model.lambda_od": (1.0, 20.0)},
    ),
    "dip_vae lambda_d": ("dip_vae", (64, 64, 1), {}, {"model.lambda_d": (1.0, 50.0)}),
    # 0 is no warm-up (weight 1), 2 steps a weight of 1 - exp(-t / 2) from 0
    "vlae kl_warmup": ("vlae", (8, 8, 1), {}, {"model.kl_warmup": (0.0, 2.0)}),
    # the clip is applied by `project`, outside the loss; crossed with the learning rate, which
    # each phase's optimiser of the game takes from its state
    "wgan weight_clip x learning_rate": (
        "wgan",
        (2,),
        {"first_phase_updates": 2},
        {"model.weight_clip": (0.005, 0.05), "learning_rate": (1e-3, 1e-2)},
    ),
    "wgan penalty_weight": (
        "wgan",
        (2,),
        {"model.variant": "wgan_gp", "first_phase_updates": 2},
        {"model.penalty_weight": (0.1, 10.0)},
    ),
}


def _config(name, overrides, swept):
  config = zoo.get(name).default_config("smoke")
  config.batch_size = 8
  for key, value in overrides.items():
    node, leaf = configs.lookup(config, key)
    node[leaf] = value
  for key, values in swept.items():
    node, leaf = configs.lookup(config.replicas, key)
    node[leaf] = values
  return config


def _batch(shape, updates, batch_size, rng):
  """Binary examples (the Bernoulli models' pixels; points for the toy GAN), one stack of
  `updates` batches for a game."""
  x = (rng.random((updates or 1, batch_size, *shape)) > 0.5).astype(np.float32)
  return {"x": x if updates else x[0]}


# With `make test-slow`, for time (15-20 s each): DIP-VAE's, whose plain field is swept as the
# beta-VAE's beta and whose derived one as in test_a_value_derived_from_a_swept_one_is_derived_
# per_setting, and the crossed learning rate, which test_seeds sweeps alone.
SLOW_CASES = ("dip_vae lambda_od, ii", "dip_vae lambda_d", "wgan weight_clip x learning_rate")


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CASES else c for c in CASES]
)
def test_a_swept_replica_is_the_single_run_of_its_setting(case, monkeypatch):
  """Unrolled, as on CPU where a step convolves, so that a replica runs its single run's very
  operations but for the swept values, which it takes from its state, not as constants."""
  monkeypatch.setattr(training, "_unroll_replicas", lambda *_: True)
  name, shape, overrides, swept = CASES[case]
  config = _config(name, overrides, swept)
  game = zoo.get(name).family == "game"
  settings, values = configs.settings(config), configs.swept_values(config)
  assert len(settings) == np.prod([len(v) for v in swept.values()])
  finalized = configs.finalize(config)
  batch = _batch(
      shape, finalized.get("first_phase_updates") if game else 0, 8, np.random.default_rng(0)
  )
  first = jax.tree.map(lambda x: x[0], batch) if game else batch
  init_keys, step_keys = training.replica_keys([5] * len(settings))

  model = zoo.build(name, **finalized.model)
  train_step, optimizer = training.make_step(
      model, finalized, game, per_replica_learning_rate="learning_rate" in values[0]
  )
  stacked = lambda tree: jax.tree.map(lambda x: np.stack([x] * len(settings)), tree)
  state = training.init_replicas(
      model,
      optimizer,
      stacked(first),
      init_keys,
      {k: np.array([v[k] for v in values], np.float32) for k in values[0]},
  )
  step = jax.jit(training.make_replicated_step(train_step, len(settings)))
  active = np.ones(len(settings), bool)
  swept_metrics = []
  for _ in range(STEPS):
    state, metrics = step(state, stacked(batch), step_keys, active)
    swept_metrics.append(metrics)

  for r, setting in enumerate(settings):
    single_config = configs.single_run(config, setting)
    single_model = zoo.build(name, **single_config.model)
    single_step, single_optimizer = training.make_step(single_model, single_config, game)
    single = training.init_state(single_model, single_optimizer, first, init_keys[r])
    single_step = jax.jit(single_step)
    for k in range(STEPS):
      single, metrics = single_step(single, batch, step_keys[r])
      for key, value in metrics.items():
        np.testing.assert_allclose(
            swept_metrics[k][key][r], value, rtol=1e-6, atol=1e-7, err_msg=f"{setting} {key} {k}"
        )
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(single.params)):
      np.testing.assert_allclose(a[r], b, rtol=1e-5, atol=PARAMETER_ATOL, err_msg=str(setting))
    fields = configs.model_fields(values[r])
    if fields:  # kept with the replica's variables, where `model.apply` finds them
      kept = jax.tree.map(lambda x, r=r: x[r], state.model_state[contract.SWEPT])
      assert {k: float(v) for k, v in kept.items()} == pytest.approx(fields)


def test_a_derived_value_a_program_cannot_vary_is_one_clear_error(monkeypatch):
  """A sweep whose settings' configs differ in a key that is not continuous (here a
  stand-in `finalize` that derives the variant from lambda_od) cannot be one program."""

  def finalize(config):
    config.model.variant = "ii" if config.model.lambda_od > 5 else "i"
    return config

  monkeypatch.setattr(dip_vae_config, "finalize", finalize)
  config = _config("dip_vae", {}, {"model.lambda_od": (1.0, 10.0)})
  with pytest.raises(errors.UserError, match=r"differ in model\.variant, which the replicas"):
    configs.swept_values(config)


def test_the_settings_are_the_product_of_the_swept_values_in_order():
  config = _config("wgan", {}, {"model.weight_clip": (0.01, 0.02), "learning_rate": (1.0, 2.0)})
  assert configs.settings(config) == [
      {"learning_rate": 1.0, "model.weight_clip": 0.01},
      {"learning_rate": 1.0, "model.weight_clip": 0.02},
      {"learning_rate": 2.0, "model.weight_clip": 0.01},
      {"learning_rate": 2.0, "model.weight_clip": 0.02},
  ]
  config.num_seeds = 3
  assert configs.num_replicas(config) == 12
  assert configs.settings(zoo.get("wgan").default_config("smoke")) == [{}]


def test_a_sweep_run_keeps_each_setting_with_its_replica(tmp_path, data_dir):
  """The runner end to end on WGAN's weight clipping: each replica's critic weights lie within
  its own clip (the config's is 0.01, the first setting's), each setting's results and images
  are written apart, and `zoo.load` gives a replica the model of its setting."""
  config = zoo.get("wgan").default_config("smoke")
  config.update(num_steps=4, log_every=2, eval_every=4, checkpoint_every=4, burst_updates=0)
  config.data_dir = data_dir
  config.replicas.model.weight_clip = (0.01, 0.05)
  workdir = str(tmp_path / "swept")
  results = loop.train_and_evaluate(config, workdir)
  assert [part["setting"] for part in results["settings"]] == [
      {"model.weight_clip": 0.01},
      {"model.weight_clip": 0.05},
  ]
  for replica, clip in enumerate((0.01, 0.05)):
    assert os.path.exists(os.path.join(workdir, f"weight_clip={clip}", "samples.png"))
    model, variables, _ = zoo.load(workdir, replica=replica)
    assert model.with_swept(variables).weight_clip == pytest.approx(clip)
    largest = max(float(np.abs(w).max()) for w in jax.tree.leaves(variables["params"]["critic"]))
    assert largest <= clip * (1 + 1e-6)
    if clip > 0.01:  # trained within its own clip, not the config's
      assert largest > 0.01


def test_a_workdir_from_before_sweeps_resumes(tmp_path, data_dir):
  """Its config.json has no `replicas`; a config whose `replicas` sweep nothing is the same
  run, so it resumes (and a sweep is still refused)."""
  config = zoo.get("maf").default_config("smoke")
  config.update(num_steps=20, log_every=10, eval_every=20, checkpoint_every=20)
  config.data_dir = data_dir
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir)
  path = os.path.join(workdir, "config.json")
  with open(path) as f:
    saved = json.load(f)
  del saved["replicas"]
  with open(path, "w") as f:
    json.dump(saved, f)
  config.num_steps = 40
  assert loop.train_and_evaluate(config, workdir, allow_config_change=True)["steps"] == 40
  config.replicas.learning_rate = (1e-3, 1e-2)
  with pytest.raises(errors.UserError, match=r"replicas\.learning_rate cannot change"):
    loop.train_and_evaluate(config, workdir, allow_config_change=True)


def test_a_value_derived_from_a_swept_one_is_derived_per_setting(data_dir, tmp_path):
  """DIP-VAE-I's lambda_d is 10 lambda_od unless given: a sweep over lambda_od trains each
  replica with its own lambda_d, in the runner and in zoo.fit alike (the config is finished
  per setting, not once before the sweep)."""
  config = zoo.get("dip_vae").default_config("smoke")
  config.data_dir = data_dir
  config.replicas.model.lambda_od = (1.0, 10.0)
  run = runs.setup(config, str(tmp_path / "run"))
  np.testing.assert_array_equal(run.swept["model.lambda_d"], [10.0, 100.0])
  fitted = zoo.fit("dip_vae", config=config, steps=1)
  lambda_d = [fitted.model.with_swept(fitted.variables(r)).lambda_d for r in range(2)]
  np.testing.assert_allclose(lambda_d, [10.0, 100.0])

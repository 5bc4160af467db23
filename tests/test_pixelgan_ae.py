"""The PixelGAN autoencoder: each phase trains its own submodules, shapes under jit, a smoke run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import zoo
from experiments import loop
from zoo import training

X = (jax.random.uniform(jax.random.key(0), (6, 8, 8, 1)) > 0.5).astype(jnp.float32)
SMALL = dict(latent_dim=5, encoder_dims=(16,), discriminator_dims=(16,), features=8, num_blocks=1)


def game(prior, x=X, **hyperparameters):
  model = zoo.build("pixelgan_ae", prior=prior, **{**SMALL, **hyperparameters})
  optimizers = {phase: optax.adam(0.05) for phase in model.phases}
  return model, optimizers, training.init_state(model, optimizers, {"x": x}, jax.random.key(1))


def unchanged(before, after):
  return all(jax.tree.leaves(jax.tree.map(np.array_equal, before, after)))


@pytest.mark.parametrize("prior", ["gaussian", "categorical"])
def test_each_phase_updates_only_its_own_submodules(prior):
  model, optimizers, state = game(prior)
  update = jax.jit(training.make_phase_update(model, optimizers), static_argnums=0)
  for phase, trained in model.phases.items():
    new, metrics = update(phase, state, {"x": X}, jax.random.key(2))
    assert np.isfinite(metrics[f"{phase}/loss"])
    for name in state.params:
      assert unchanged(state.params[name], new.params[name]) == (name not in trained), (phase, name)


@pytest.mark.parametrize("prior", ["gaussian", "categorical"])
def test_codes_samples_and_evaluation_under_jit(prior):
  model, _, state = game(prior)
  variables = {"params": state.params, **state.model_state}
  rngs = {"sample": jax.random.key(3)}
  code = jax.jit(lambda v: model.apply(v, X, method="encode", rngs=rngs))(variables)
  assert code.shape == (6, 5)
  if prior == "categorical":
    np.testing.assert_allclose(code.sum(-1), 1.0, rtol=1e-5)
  samples = jax.jit(lambda v: model.apply(v, 3, method="sample", rngs=rngs))(variables)
  assert samples.shape == (3, 8, 8, 1) and set(np.unique(samples)) <= {0.0, 1.0}
  rows = jax.jit(lambda v: model.apply(v, 4, 2, method="decompose", rngs=rngs))(variables)
  assert rows.shape == (4, 2, 8, 8, 1)
  evaluation = jax.jit(lambda v: model.apply(v, {"x": X}, method="evaluate", rngs=rngs))(variables)
  assert evaluation["reconstruction"].shape == (6,)
  assert np.all(evaluation["reconstruction"] < 0)  # log p(x | z) of binary pixels


def test_colour_images_with_many_levels_under_jit():
  x = jax.random.randint(jax.random.key(5), (6, 4, 4, 3), 0, 4) / 3
  model, _, state = game("categorical", x, num_levels=4, features=6)
  variables = {"params": state.params, **state.model_state}
  rngs = {"sample": jax.random.key(3)}
  samples = jax.jit(lambda v: model.apply(v, 2, method="sample", rngs=rngs))(variables)
  assert samples.shape == (2, 4, 4, 3)
  assert np.all(np.isin(samples, (np.arange(4) / 3).astype(np.float32)))
  nll = jax.jit(lambda v: model.apply(v, {"x": x}, method="evaluate"))(variables)
  assert nll["reconstruction"].shape == (6,)
  with pytest.raises(zoo.errors.HyperparameterError, match="multiple of the image's 3 channels"):
    game("categorical", x, num_levels=4, features=8)


def test_a_game_step_runs_the_three_phases_and_a_smoke_run_trains(tmp_path, data_dir):
  model, optimizers, state = game("categorical")
  step = jax.jit(training.make_game_step(model, optimizers))
  _, metrics = step(state, {"x": X[None]}, jax.random.key(4))
  assert {"reconstruction/loss", "discriminator/loss", "regularization/loss"} <= set(metrics)
  config = zoo.get("pixelgan_ae").default_config("smoke")
  config.data_dir = data_dir
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(results["test"]["reconstruction"])
  assert {"clustering_error", "clustering_error_majority", "clusters_used"} <= set(results["test"])
  assert (tmp_path / "samples.png").exists() and (tmp_path / "decomposition.png").exists()


def test_pixels_with_many_levels_train_and_a_level_mismatch_is_one_clear_error(tmp_path, data_dir):
  config = zoo.get("pixelgan_ae").default_config("smoke")
  config.data_dir = data_dir
  config.preprocess = "scale"  # the digits' 17 grey levels, k / 16
  with pytest.raises(zoo.errors.UserError, match="num_levels=2 needs pixels with 2 values"):
    loop.train_and_evaluate(config, str(tmp_path / "mismatch"))
  assert not (tmp_path / "mismatch").exists()
  with pytest.raises(zoo.errors.UserError, match="num_levels=2 needs pixels with 2 values"):
    zoo.fit("pixelgan_ae", config=config, steps=1)  # the library's one call checks it too
  config.model.num_levels = 17
  results = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert np.isfinite(results["test"]["reconstruction"])


def test_an_unknown_prior_is_one_clear_error():
  with pytest.raises(zoo.errors.HyperparameterError, match="prior must be one of"):
    game("uniform")


def test_clustering_error_by_hand():
  train_clusters = np.array([0, 0, 0, 1, 1, 2])
  train_labels = np.array([3, 3, 1, 0, 0, 1])
  np.testing.assert_array_equal(
      zoo.metrics.clustering.cluster_labels(train_clusters, train_labels, 4), [3, 0, 1, 0]
  )
  # cluster 3 is empty: it takes the commonest class; 3 of the 5 test points are right
  error = zoo.metrics.clustering.clustering_error(
      train_clusters, train_labels, np.array([0, 1, 2, 3, 0]), np.array([3, 0, 2, 1, 3]), 4
  )
  assert error == pytest.approx(2 / 5)


def test_the_papers_labelling_takes_each_clusters_most_confident_example():
  """The adversarial autoencoders' protocol: cluster k takes the label of the validation
  example with the largest q(y = k | x), whatever the majority of its members."""
  probabilities = np.array(
      [[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.7, 0.3, 0.0], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]
  )
  labels = np.array([4, 2, 2, 7, 5])  # cluster 0 holds 4, 2, 2: majority 2, most confident 4
  cluster_label = zoo.metrics.clustering.most_confident_labels(probabilities, labels)
  np.testing.assert_array_equal(cluster_label, [4, 7, 5])
  assert zoo.metrics.clustering.error(
      cluster_label, np.array([0, 0, 1, 2]), np.array([4, 2, 7, 7])
  ) == pytest.approx(2 / 4)


def test_clustering_error_of_a_perfect_and_a_random_clustering():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, 4000)
  clusters = labels * 3 + rng.integers(0, 3, 4000)  # 30 clusters, each within one class
  clustering = zoo.metrics.clustering
  assert (
      clustering.clustering_error(
          clusters[:3000], labels[:3000], clusters[3000:], labels[3000:], 30
      )
      == 0.0
  )
  noise = rng.integers(0, 30, 4000)
  error = clustering.clustering_error(noise[:3000], labels[:3000], noise[3000:], labels[3000:], 30)
  assert 0.8 < error < 0.95  # chance is 0.9


def test_balanced_subset_and_labelled_batches_follow_the_step(data_dir):
  dataset = zoo.data.load("digits", data_dir)
  labels = dataset.read("train", np.arange(dataset.num_examples("train")))["label"]
  subset = zoo.data.balanced_subset(labels, 100, seed=0)
  assert len(set(subset)) == 100 and np.all(np.bincount(labels[subset]) == 10)
  preprocessing = zoo.data.preprocessing(dataset, "binarize")

  def stream(start):
    return zoo.data.train_batches(
        dataset,
        preprocessing,
        batch_size=20,
        seed=1,
        start_step=start,
        labeled=subset,
        labeled_batch_size=20,
    )

  first = next(stream(0))
  assert first["labeled_x"].shape == (20, 8, 8, 1)
  assert set(first["labeled_label"]) <= set(labels[subset])
  uninterrupted = stream(0)
  batches = [next(uninterrupted) for _ in range(3)]
  resumed = next(stream(2))
  for key in ("x", "labeled_x", "labeled_label"):
    np.testing.assert_array_equal(batches[2][key], resumed[key])


def test_a_semi_supervised_smoke_run_reports_its_test_error(tmp_path, data_dir):
  config = zoo.get("pixelgan_ae").default_config("smoke")
  config.data_dir = data_dir
  config.model.semi_supervised = True
  config.model.latent_dim = 10
  config.num_labels = 20
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert 0 <= results["test"]["classification_error"] <= 1
  metrics = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert "semi_supervised/accuracy" in metrics[0]


def test_semi_supervised_needs_one_category_per_class(tmp_path, data_dir):
  config = zoo.get("pixelgan_ae").default_config("smoke")
  config.data_dir = data_dir
  config.model.semi_supervised = True
  with pytest.raises(zoo.errors.UserError, match="latent_dim=10, not 30"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()  # refused before anything was written


def test_the_adversarial_phases_alone_spread_the_code_over_every_cluster(data_dir):
  """The regularisation matches q(z) to the uniform categorical prior: trained against the
  discriminator alone, the encoder's argmax reaches every cluster. (An encoder whose softmax is
  not batch-normalised collapses here onto one cluster and stays: its softmax saturates.)"""
  dataset = zoo.data.load("digits", data_dir)
  preprocessing = zoo.data.preprocessing(dataset, "binarize")
  x = next(zoo.data.eval_batches(dataset, preprocessing, "train", batch_size=1000))["x"]
  model = zoo.build(
      "pixelgan_ae",
      prior="categorical",
      latent_dim=10,
      encoder_dims=(64,),
      discriminator_dims=(64,),
      features=8,
      num_blocks=1,
  )
  optimizers = {phase: optax.adam(1e-3) for phase in model.phases}
  state = training.init_state(model, optimizers, {"x": x[:100]}, jax.random.key(0))
  update = jax.jit(training.make_phase_update(model, optimizers), static_argnums=0)

  @jax.jit
  def adversarial_step(state, batch, rng):
    state, _ = update("discriminator", state, batch, jax.random.fold_in(rng, 0))
    return update("regularization", state, batch, jax.random.fold_in(rng, 1))[0]

  rng = np.random.default_rng(0)
  for i in range(300):
    state = adversarial_step(state, {"x": x[rng.integers(0, len(x), 100)]}, jax.random.key(i))
  codes = model.apply({"params": state.params, **state.model_state}, x, method="encode")
  assert len(np.unique(np.argmax(codes, -1))) == 10

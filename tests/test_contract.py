"""The contract, for every registered model (a new paper gets these checks by registering):
it trains from its smoke config through the runner, `zoo.load` gives back the variables the
run evaluated (evaluating them again gives results.json's test metrics), and they sample."""

import jax
import numpy as np
import pytest

import zoo
from experiments import loop
from zoo import evaluation
from zoo import training


@pytest.mark.parametrize("name", zoo.list_models())
def test_a_model_trains_loads_evaluates_and_samples(name, data_dir, tmp_path):
  config = zoo.get(name).default_config("smoke")
  config.update(
      data_dir=data_dir,
      num_steps=2,
      log_every=1,
      eval_every=2,
      checkpoint_every=2,
      figures=(),
      scores=(),
  )
  results = loop.train_and_evaluate(config, str(tmp_path))
  model, variables, loaded_config = zoo.load(str(tmp_path))
  assert model.registry_name == name
  finished = zoo.configs.finalize(loaded_config)
  dataset = zoo.data.load(finished.dataset, data_dir, finished.splits.to_dict())
  preprocessing = zoo.data.preprocessing(
      dataset, finished.preprocess, finished.alpha, finished.zca_epsilon
  )
  devices = training.Devices.all()
  evaluator = evaluation.Evaluator(
      model, dataset, preprocessing, finished, devices, [finished.seed]
  )
  (again,) = evaluator(devices.replicate(jax.tree.map(lambda x: x[None], variables)), "test")
  for metric, value in results["test"].items():
    np.testing.assert_allclose(again[metric], value, rtol=1e-5, atol=1e-6, err_msg=metric)
  samples = model.apply(variables, 4, method="sample", rngs={"sample": jax.random.key(0)})
  assert len(samples) == 4 and np.isfinite(np.asarray(samples)).all()

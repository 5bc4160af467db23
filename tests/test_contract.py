"""The contract, for every registered model (a new paper gets these checks by registering):
it trains from its smoke config through the runner, `zoo.load` gives back the variables the
run evaluated (evaluating them again gives results.json's test metrics), and they sample; every
metric it logs is one of the contract's names and within its unit's range, and the report
shows its main metrics, labelled by variant and setting."""

import csv
import io
import json
import os

import jax
import numpy as np
import pytest

import zoo
from experiments import loop
from experiments import report
from zoo import contract
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
  )
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert len([f for f in os.listdir(tmp_path) if f.endswith(".png")]) >= len(config.figures)
  with open(tmp_path / "metrics.jsonl") as f:
    logged = [json.loads(line) for line in f]
  for row in logged:
    for key, value in row.items():
      if key == "step":
        continue
      unit = contract.metric_of(key).unit  # KeyError: a name outside the contract
      if unit == "fraction":
        assert 0 <= value <= 1, (key, value)
      if unit == "count":
        assert value >= 0 and float(value).is_integer(), (key, value)
  assert set(results["test"]) == {k.removeprefix("test/") for k in logged[-1] if k != "step"}
  (row,) = report.rows(os.path.join(tmp_path, "results.json"))
  assert row["variant"] and row["setting"] == "smoke", row
  shown = report.markdown([row]).splitlines()
  heads, cells = shown[2].split(" | "), shown[4].split(" | ")
  reported = [k for k in results["test"] if contract.metric_of(k).reported]
  assert reported and all(f"test {report.header(k)}" in heads for k in reported), heads
  assert "-" not in cells, shown
  lines = list(csv.DictReader(io.StringIO(report.csv_text([row]))))
  assert sorted(line["metric"] for line in lines) == sorted(reported)
  for line in lines:  # the values as results.json holds them, to the last digit
    assert float(line["mean"]) == results["test"][line["metric"]] and line["stderr"] == ""
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
  for metric, value in again.items():  # the scores (config.scores) are not the evaluator's
    np.testing.assert_allclose(value, results["test"][metric], rtol=1e-5, atol=1e-6, err_msg=metric)
  samples = model.apply(variables, 4, method="sample", rngs={"sample": jax.random.key(0)})
  assert len(samples) == 4 and np.isfinite(np.asarray(samples)).all()

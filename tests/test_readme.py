"""README's notebook example, run as written: the library alone (`zoo.training`) trains a model."""

import functools
import os
import re

import numpy as np

import zoo

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_the_notebook_example_trains_maf_past_the_best_gaussian(data_dir, monkeypatch):
  """The example's MAF, after its 500 steps, is a better density of the test split than the
  maximum-likelihood Gaussian of the training split (computed here in closed form): 500 steps
  gave -2.94 nats against the Gaussian's -3.29."""
  with open(README) as f:
    example = re.search(r"## In a notebook.*?```python\n(.*?)```", f.read(), re.S).group(1)
  monkeypatch.setattr(zoo.data, "load", functools.partial(zoo.data.load, data_dir=data_dir))
  namespace = {}
  exec(example, namespace)  # pylint: disable=exec-used
  dataset, model, variables = (namespace[k] for k in ("dataset", "model", "variables"))
  train = dataset.read("train", np.arange(dataset.num_examples("train")))["x"]
  test = dataset.read("test", np.arange(dataset.num_examples("test")))["x"]
  mean, covariance = train.mean(0), np.cov(train.T)
  centred = test - mean
  gaussian = -0.5 * np.einsum(
      "ni,ij,nj->n", centred, np.linalg.inv(covariance), centred
  ) - 0.5 * np.log(np.linalg.det(2 * np.pi * covariance))
  log_prob = np.asarray(model.apply(variables, test, method="log_prob"))
  assert log_prob.mean() > gaussian.mean() + 0.1, (log_prob.mean(), gaussian.mean())

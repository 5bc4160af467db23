"""The five disentanglement metrics on codes whose answer is
known: a perfect code (the factors, permuted and rescaled), noise, and small hand cases."""

import numpy as np
import pytest

from zoo.data import dsprites
from zoo.metrics import disentanglement

RNG = np.random.default_rng(0)


class Grid:
  """A ground-truth data set whose observations are its factors (as floats)."""

  factor_names = ("a", "b", "c")
  factor_sizes = (4, 5, 3)

  def sample_factors(self, n, rng):
    return np.stack([rng.integers(0, size, n) for size in self.factor_sizes], -1)

  def sample_observations_from_factors(self, factors, rng):
    del rng
    return factors.astype(np.float64)


PERMUTATION, SCALES = np.array([2, 0, 1]), np.array([3.0, -0.5, 7.0])


def perfect(x):
  """Each code dimension one factor, permuted and rescaled."""
  return x[:, PERMUTATION] * SCALES[PERMUTATION] + 1.0


def noise(x):
  return np.random.default_rng(len(x) + int(x.sum())).normal(size=x.shape)


def _factors_and_codes(encode, n=3000):
  factors = Grid().sample_factors(n, RNG)
  return factors, encode(factors.astype(np.float64))


def test_mig_by_hand():
  factors = np.array([[0], [0], [1], [1]])
  codes = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
  assert disentanglement.mig(factors, codes)["mig"] == pytest.approx(1.0)
  assert disentanglement.mig(factors, -3 * codes[:, ::-1])["mig"] == pytest.approx(1.0)
  # Two code dimensions that both copy the factor leave no gap.
  assert disentanglement.mig(factors, codes[:, [0, 0]])["mig"] == pytest.approx(0.0)


def test_mig_perfect_and_noise():
  assert disentanglement.mig(*_factors_and_codes(perfect))["mig"] > 0.98
  assert disentanglement.mig(*_factors_and_codes(noise))["mig"] < 0.02


def test_sap_perfect_and_noise():
  """A perfect code's SAP is its best accuracy less the next dimension's (chance); noise's is 0."""
  factors = Grid().sample_factors(3000, RNG) % 2  # binary factors: the linear SVM separates them
  assert disentanglement.sap(factors, perfect(factors.astype(float)))["sap"] > 0.45
  assert disentanglement.sap(factors, noise(factors.astype(float)))["sap"] < 0.05


def test_dci_perfect_and_noise():
  good = disentanglement.dci(*_factors_and_codes(perfect, 1500))
  assert good["disentanglement"] > 0.95 and good["completeness"] > 0.95
  assert good["informativeness"] > 0.99
  bad = disentanglement.dci(*_factors_and_codes(noise, 1500))
  assert bad["informativeness"] < 0.45  # chance is 1/4, 1/5, 1/3 for the three factors
  assert bad["disentanglement"] < 0.3 and bad["completeness"] < 0.3


@pytest.mark.parametrize(
    "score", [disentanglement.beta_vae_score, disentanglement.factor_vae_score]
)
def test_scores_on_perfect_and_noise_codes(score):
  kwargs = dict(batch_size=16, num_train=300, num_eval=200)
  if score is disentanglement.factor_vae_score:
    kwargs["num_variance_estimate"] = 1000
  good = score(Grid(), perfect, np.random.default_rng(1), **kwargs)
  assert good["eval_accuracy"] > 0.99
  bad = score(Grid(), noise, np.random.default_rng(2), **kwargs)
  assert bad["eval_accuracy"] < 0.6  # chance is 1/3


class FactorsAsImages(Grid):
  """dSprites' factors, observed as themselves."""

  factor_names = dsprites.FACTOR_NAMES
  factor_sizes = dsprites.FACTOR_SIZES


def test_the_papers_beta_vae_score_leaves_shape_out():
  """A code of scale and position alone, shape and orientation in no dimension. A point whose
  pairs share an uncoded factor has no small dimension, so the classifier tells such points
  apart from the coded factors' but not from each other: over all five factors (the later
  reading) shape and orientation are confused, 3/5 + (2/5)(1/2) = 0.8 in expectation; over the
  paper's four (no shape) orientation alone is uncoded, and every point is told: 1."""
  scale_and_position = lambda x: x[:, [1, 3, 4]] / np.array([6.0, 32.0, 32.0])
  kwargs = dict(num_train=500, num_eval=1000)
  later = disentanglement.beta_vae_score(
      FactorsAsImages(), scale_and_position, np.random.default_rng(3), batch_size=16, **kwargs
  )
  paper = disentanglement.beta_vae_score_paper(
      FactorsAsImages(), scale_and_position, np.random.default_rng(3), **kwargs
  )
  assert later["eval_accuracy"] == pytest.approx(0.8, abs=0.04)
  assert paper["eval_accuracy"] > 0.99


def test_factor_vae_score_ignores_collapsed_dimensions():
  collapsed = lambda x: np.concatenate([perfect(x), np.zeros((len(x), 2))], 1)
  out = disentanglement.factor_vae_score(
      Grid(),
      collapsed,
      np.random.default_rng(3),
      batch_size=16,
      num_train=200,
      num_eval=100,
      num_variance_estimate=500,
  )
  assert out["num_active_dims"] == 3 and out["eval_accuracy"] > 0.99


def test_factor_vae_score_prunes_nearly_collapsed_dimensions_as_disentanglement_lib():
  """A collapsed latent's mean keeps a little noise: dimensions of std 0.01 (under the 0.05 of
  disentanglement_lib's study configs) are pruned, one of std 0.1 is kept."""

  def code(x):
    extra = np.random.default_rng(len(x)).normal(size=(len(x), 3)) * [0.01, 0.01, 0.1]
    return np.concatenate([perfect(x), extra], 1)

  out = disentanglement.factor_vae_score(
      Grid(),
      code,
      np.random.default_rng(3),
      batch_size=16,
      num_train=200,
      num_eval=100,
      num_variance_estimate=500,
  )
  assert out["num_active_dims"] == 4

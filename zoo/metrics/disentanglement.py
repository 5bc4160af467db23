"""The disentanglement metrics, with their published definitions and usual defaults (those of
Locatello et al. 2019's disentanglement_lib, which fixed the details the papers leave open).

On arrays of ground-truth factors (N, K) ints and codes (N, D) floats:
  mig(factors, codes)   Chen et al. 2018, the mutual information gap
  sap(factors, codes)   Kumar et al. 2018 (the DIP-VAE paper), the separated attribute
                        predictability
  dci(factors, codes)   Eastwood & Williams 2018: disentanglement, completeness,
                        informativeness
On a ground-truth data set (`factor_sizes`, `sample_factors(n, rng)`,
`sample_observations_from_factors(factors, rng)`) and an `encode_fn` (images -> codes), with a
`numpy.random.Generator`:
  beta_vae_score(data, encode_fn, rng)     Higgins et al. 2017, as disentanglement_lib reads it
  beta_vae_score_paper(data, encode_fn, rng)   the same, by the paper's own protocol
  factor_vae_score(data, encode_fn, rng)   Kim & Mnih 2018
Each returns a dict of floats. Each metric imports the part of scikit-learn it fits with:
scikit-learn takes a second of the three that importing the runner takes, which every command
would otherwise pay, `--help` and a one-line error included.
"""

import numpy as np


def _discretize(codes: np.ndarray, num_bins: int) -> np.ndarray:
  """Each code dimension binned into `num_bins` equal-width bins over its range, (D, N)."""
  binned = np.zeros(codes.shape[::-1], np.int64)
  for d, column in enumerate(codes.T):
    edges = np.histogram(column, num_bins)[1][:-1]
    binned[d] = np.digitize(column, edges)
  return binned


def mutual_information(factors: np.ndarray, codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
  """(D, K) mutual information in nats between each binned code dimension and each factor."""
  from sklearn import metrics as sk_metrics  # pylint: disable=import-outside-toplevel

  binned = _discretize(codes, num_bins)
  return np.array([[sk_metrics.mutual_info_score(f, c) for f in factors.T] for c in binned])


def mig(factors: np.ndarray, codes: np.ndarray, num_bins: int = 20) -> dict[str, float]:
  """Mutual information gap: per factor, the gap between the two code dimensions most
  informative about it, over the factor's entropy; averaged over factors (Chen et al. eq. 6)."""
  from sklearn import metrics as sk_metrics  # pylint: disable=import-outside-toplevel

  information = np.sort(mutual_information(factors, codes, num_bins), axis=0)
  entropy = np.array([sk_metrics.mutual_info_score(f, f) for f in factors.T])
  return {"mig": float(np.mean((information[-1] - information[-2]) / entropy))}


def _split(factors, codes, train_fraction):
  n = int(len(codes) * train_fraction)
  return factors[:n], codes[:n], factors[n:], codes[n:]


def sap(factors: np.ndarray, codes: np.ndarray, train_fraction: float = 2 / 3) -> dict[str, float]:
  """Separated attribute predictability (Kumar et al. section 5): the score matrix holds, for
  each code dimension and (discrete) factor, the held-out accuracy of a class-balanced linear
  SVM (C = 0.01) predicting the factor from that dimension alone; SAP averages over factors the
  gap between the two best dimensions. The first `train_fraction` of the examples trains, the
  rest tests."""
  from sklearn import svm  # pylint: disable=import-outside-toplevel

  train_f, train_c, test_f, test_c = _split(factors, codes, train_fraction)
  scores = np.zeros((codes.shape[1], factors.shape[1]))
  for d in range(codes.shape[1]):
    for k in range(factors.shape[1]):
      if len(np.unique(train_f[:, k])) < 2:
        continue
      classifier = svm.LinearSVC(C=0.01, class_weight="balanced").fit(
          train_c[:, d : d + 1], train_f[:, k]
      )
      scores[d, k] = np.mean(classifier.predict(test_c[:, d : d + 1]) == test_f[:, k])
  top = np.sort(scores, axis=0)
  return {"sap": float(np.mean(top[-1] - top[-2]))}


def _entropy_normalised(p: np.ndarray, axis: int) -> np.ndarray:
  """1 - H(p) / log(n) along `axis` for non-negative weights p (normalised there)."""
  p = p / np.maximum(p.sum(axis, keepdims=True), 1e-12)
  n = p.shape[axis]
  return 1 + np.sum(p * np.log(np.maximum(p, 1e-12)), axis) / np.log(n)


def dci(
    factors: np.ndarray, codes: np.ndarray, train_fraction: float = 2 / 3, seed: int = 0
) -> dict[str, float]:
  """Disentanglement, completeness and informativeness (Eastwood & Williams 2018) from the
  importance matrix R (D x K) of gradient boosted trees predicting each factor from the codes:
  disentanglement = sum_d rho_d (1 - H_K(R_d.)), rho_d = R_d. / sum R; completeness = mean_k
  (1 - H_D(R_.k)); informativeness = the trees' mean held-out accuracy."""
  from sklearn import ensemble  # pylint: disable=import-outside-toplevel
  from sklearn.utils import parallel  # pylint: disable=import-outside-toplevel

  train_f, train_c, test_f, test_c = _split(factors, codes, train_fraction)

  def fit(k):
    trees = ensemble.GradientBoostingClassifier(random_state=seed).fit(train_c, train_f[:, k])
    return np.abs(trees.feature_importances_), np.mean(trees.predict(test_c) == test_f[:, k])

  # one factor's trees per CPU core: the fits are independent and take minutes on 10,000 codes
  fits = parallel.Parallel(n_jobs=-1)(parallel.delayed(fit)(k) for k in range(factors.shape[1]))
  importance = np.stack([f[0] for f in fits], 1)
  accuracy = [f[1] for f in fits]
  weights = importance.sum(1) / max(importance.sum(), 1e-12)
  return {
      "disentanglement": float(np.sum(weights * _entropy_normalised(importance, 1))),
      "completeness": float(np.mean(_entropy_normalised(importance, 0))),
      "informativeness": float(np.mean(accuracy)),
  }


def _encode(data, encode_fn, factors, rng):
  return np.asarray(encode_fn(data.sample_observations_from_factors(factors, rng)))


def _difference_points(data, encode_fn, rng, n: int, batch_size: int, factors: np.ndarray):
  """n points of the beta-VAE score (Higgins et al. 2017, section 3, eq. 5): a factor k drawn
  uniformly from `factors`, and the mean over `batch_size` pairs of |z(x1) - z(x2)|, each pair
  sharing factor k and drawing the others independently. (features (n, D), labels (n,))."""
  features, labels = [], []
  for _ in range(n):
    k = factors[rng.integers(len(factors))]
    first, second = data.sample_factors(batch_size, rng), data.sample_factors(batch_size, rng)
    second[:, k] = first[:, k]
    difference = np.abs(
        _encode(data, encode_fn, first, rng) - _encode(data, encode_fn, second, rng)
    )
    features.append(difference.mean(0))
    labels.append(k)
  return np.array(features), np.array(labels)


def beta_vae_score(
    data,
    encode_fn,
    rng: np.random.Generator,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    scored_factors=None,
    inverse_penalty: float = 1.0,
) -> dict[str, float]:
  """The beta-VAE score (Higgins et al. 2017, section 3): a linear classifier predicts the
  fixed factor k of a point (`_difference_points`); the score is its accuracy on `num_eval`
  fresh points (train accuracy alongside).

  The defaults are disentanglement_lib's reading (evaluation/metrics/beta_vae.py and
  unsupervised_study_v1's beta_vae_sklearn.gin): k over every factor, sklearn's
  LogisticRegression with its L2 penalty (C = 1), 10,000 + 5,000 points of 64 pairs. The
  paper's own protocol is `beta_vae_score_paper`.

  Args:
    data: a ground-truth set (module docstring).
    encode_fn: images -> codes (N, D).
    rng: the points' randomness.
    batch_size: L, the pairs averaged into one point.
    num_train: the points the classifier is fitted on.
    num_eval: the fresh points it is scored on.
    scored_factors: the names of the factors k is drawn from; None: every factor.
    inverse_penalty: sklearn's C, the inverse weight of the classifier's L2 penalty; inf fits
      the maximum-likelihood softmax classifier.

  Returns:
    {"train_accuracy", "eval_accuracy"}.
  """
  from sklearn import linear_model  # pylint: disable=import-outside-toplevel

  names = list(data.factor_names)
  factors = np.array([names.index(name) for name in scored_factors or names])
  train_x, train_y = _difference_points(data, encode_fn, rng, num_train, batch_size, factors)
  eval_x, eval_y = _difference_points(data, encode_fn, rng, num_eval, batch_size, factors)
  classifier = linear_model.LogisticRegression(C=inverse_penalty, max_iter=10_000)
  classifier.fit(train_x, train_y)
  return {
      "train_accuracy": float(classifier.score(train_x, train_y)),
      "eval_accuracy": float(classifier.score(eval_x, eval_y)),
  }


# The factors the beta-VAE paper scores on dSprites: "y is one of four generative factors
# (position X, position Y, scale and rotation)" (Higgins et al. 2017, appendix, disentanglement
# metric details); shape is left out.
PAPER_SCORED_FACTORS = ("scale", "orientation", "position_x", "position_y")


def beta_vae_score_paper(data, encode_fn, rng, num_train=10_000, num_eval=5_000):
  """The beta-VAE score by the paper's protocol (Higgins et al. 2017, section 3 and appendix):
  k drawn from position x, position y, scale and rotation (not shape); a linear softmax
  classifier trained "until convergence" on the negative log-likelihood, with no penalty (the
  paper reaches it with Adagrad 1e-2; here sklearn's L-BFGS fits the same maximum-likelihood
  classifier); accuracy on 5,000 test points ("the classification accuracy of the
  disentanglement metric for 5,000 test samples", section 4.2). The paper gives neither L nor
  the training points; 64 and 10,000 are disentanglement_lib's. The paper then reports, over
  ten models and three classifier seeds, the mean of the best half of the 30 scores; a
  caller's mean over seeds of this score is the stricter figure."""
  return beta_vae_score(
      data,
      encode_fn,
      rng,
      num_train=num_train,
      num_eval=num_eval,
      scored_factors=PAPER_SCORED_FACTORS,
      inverse_penalty=np.inf,
  )


# disentanglement_lib's FactorVAE score prunes the dimensions of std < 0.05 (its study configs,
# config/unsupervised_study_v1/metric_configs/factor_vae_metric.gin: prune_dims.threshold =
# 0.05; evaluation/metrics/factor_vae.py takes the std with ddof=1): a collapsed latent's
# posterior mean is not exactly constant, and its noise would otherwise vote.
COLLAPSED_STD = 0.05


def factor_vae_score(
    data,
    encode_fn,
    rng: np.random.Generator,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
) -> dict[str, float]:
  """Kim & Mnih 2018, section 4: codes are divided by their standard deviation over the data;
  a vote is (the dimension of least normalised variance over `batch_size` examples sharing a
  fixed value of factor k, k); the majority-vote classifier from dimension to factor, fitted on
  `num_train` votes, scores its accuracy on `num_eval` fresh votes. Collapsed dimensions, of
  standard deviation over the data under COLLAPSED_STD, never vote."""
  scale = np.std(
      _encode(data, encode_fn, data.sample_factors(num_variance_estimate, rng), rng), axis=0, ddof=1
  )
  active = scale >= COLLAPSED_STD
  if not active.any():
    return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}

  def votes(n):
    counts = np.zeros((len(scale), len(data.factor_sizes)), np.int64)
    for _ in range(n):
      k = rng.integers(len(data.factor_sizes))
      factors = data.sample_factors(batch_size, rng)
      factors[:, k] = factors[0, k]
      codes = _encode(data, encode_fn, factors, rng)
      variance = np.where(active, np.var(codes / np.where(active, scale, 1), axis=0), np.inf)
      counts[np.argmin(variance), k] += 1
    return counts

  train, evaluation = votes(num_train), votes(num_eval)
  prediction = np.argmax(train, axis=1)  # the factor each dimension votes for most
  rows = np.arange(len(scale))
  return {
      "train_accuracy": float(train[rows, prediction].sum() / train.sum()),
      "eval_accuracy": float(evaluation[rows, prediction].sum() / evaluation.sum()),
      "num_active_dims": float(active.sum()),
  }

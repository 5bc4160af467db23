"""Unsupervised clustering error of K categorical codes (Makhzani et al. 2016, Adversarial
Autoencoders section 6, whose protocol the PixelGAN autoencoders paper follows in its section 4):
"for each cluster i, we found the validation example x_n that maximizes q(y_i | x_n), and
assigned the label of x_n to all the points in the cluster i"; the error is the fraction of test
examples, each in its most probable cluster, whose cluster's label is not their class. A second
labelling, each cluster's majority class among the training examples it holds, is kept beside it.
"""

import numpy as np


def most_confident_labels(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """(K,) each cluster k's label: that of the example maximising q(y = k | x), of `probabilities`
  (N, K) and `labels` (N,), the papers' validation examples."""
  return labels[np.argmax(probabilities, 0)]


def error(cluster_label: np.ndarray, clusters: np.ndarray, labels: np.ndarray) -> float:
  """The fraction of examples whose cluster's label `cluster_label[cluster]` is not their own."""
  return float(np.mean(cluster_label[clusters] != labels))


def cluster_labels(clusters: np.ndarray, labels: np.ndarray, num_clusters: int) -> np.ndarray:
  """(K,) the majority class of each cluster's examples; a cluster no example chose takes the
  most common class overall."""
  counts = np.zeros((num_clusters, labels.max() + 1), np.int64)
  np.add.at(counts, (clusters, labels), 1)
  majority = counts.argmax(1)
  majority[counts.sum(1) == 0] = np.bincount(labels).argmax()
  return majority


def clustering_error(
    train_clusters: np.ndarray,
    train_labels: np.ndarray,
    test_clusters: np.ndarray,
    test_labels: np.ndarray,
    num_clusters: int,
) -> float:
  """The test error of the majority-class labelling fitted on the training assignments."""
  return error(
      cluster_labels(train_clusters, train_labels, num_clusters), test_clusters, test_labels
  )

"""Unsupervised clustering error (Makhzani et al. 2016, Adversarial Autoencoders section 6;
PixelGAN autoencoders section 4): each of K clusters is labelled with the majority class of the
training examples assigned to it, and the error is the fraction of test examples whose cluster's
label is not their class.
"""
import numpy as np


def cluster_labels(clusters: np.ndarray, labels: np.ndarray, num_clusters: int) -> np.ndarray:
  """(K,) the majority class of each cluster's examples; a cluster no example chose takes the
  most common class overall."""
  counts = np.zeros((num_clusters, labels.max() + 1), np.int64)
  np.add.at(counts, (clusters, labels), 1)
  majority = counts.argmax(1)
  majority[counts.sum(1) == 0] = np.bincount(labels).argmax()
  return majority


def clustering_error(train_clusters: np.ndarray, train_labels: np.ndarray,
                     test_clusters: np.ndarray, test_labels: np.ndarray,
                     num_clusters: int) -> float:
  """The test error of the majority-class labelling fitted on the training assignments."""
  labels = cluster_labels(train_clusters, train_labels, num_clusters)
  return float(np.mean(labels[test_clusters] != test_labels))

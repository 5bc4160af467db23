"""Evaluating trained zoo models: per-example metrics summed over a split, the MAF paper's
batch-norm statistics, and the final disentanglement and clustering scores.

Like `zoo.training`, pure of flags and files: the runner (`experiments.loop`) calls these at its
evaluation steps and at the end of a run, and a notebook can call them on a loaded model.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

import zoo.data
from zoo import training
from zoo.metrics import clustering
from zoo.metrics import disentanglement
from zoo.metrics import likelihood
from zoo.metrics import modes
from zoo.nn import flows


def process_batches(dataset, preprocessing, split: str, batch_size: int, devices: training.Devices):
  """This process's share of the batches of `split` (`zoo.data.eval_batches`: every example
  once, the last batch padded and masked), of `batch_size` rounded up to a multiple of the
  devices, ready for `devices.shard_batch`.

  Args:
    dataset: a `zoo.data.Dataset`.
    preprocessing: its `zoo.data.preprocessing`.
    split: `train`, `validation` or `test`.
    batch_size: the examples of a batch over all processes.
    devices: the mesh the batches are split over.

  Yields:
    {"x": (B_local, *example_shape), "mask": (B_local,) booleans, and the split's other
    fields}, B_local this process's share of a batch.
  """
  return zoo.data.eval_batches(
      dataset,
      preprocessing,
      split,
      batch_size=-(-batch_size // devices.size) * devices.size,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
  )


def make_eval_step(model):
  """The sums over the real (unmasked) examples of each per-example metric of `evaluate`.

  Args:
    model: a zoo model.

  Returns:
    `eval_step(variables, batch, rng) -> {metric: scalar sum}`: batch {"x": (B,
    *example_shape), "mask": (B,), ...}; a model that samples while evaluating (an importance-
    sampled bound) draws from `rng`.
  """

  def eval_step(variables, batch, rng):
    per_example = model.apply(variables, batch, method="evaluate", rngs={"sample": rng})
    mask = batch["mask"].astype(jnp.float32)
    return {k: (v * mask).sum() for k, v in per_example.items()}

  return eval_step


class Evaluator:
  """Evaluates each replica's `evaluate` metrics over a split, with the likelihood in pixel
  space, and on a Gaussian mixture with known components the modes its samples cover. Every
  replica sees the same evaluation data; its own randomness comes from its seed.

  Args:
    model: a zoo model.
    dataset: the `zoo.data.Dataset` it trains on.
    preprocessing: its `zoo.data.preprocessing` (the log-det of its map to pixel space).
    config: a finished config: `eval_batch_size`.
    devices: the mesh the batches are split over.
    seeds: the seeds of the replicas (their evaluation streams, `zoo.training.stream_key`).
  """

  def __init__(self, model, dataset, preprocessing, config, devices: training.Devices, seeds):
    self.dataset, self.preprocessing, self.config, self.devices = (
        dataset,
        preprocessing,
        config,
        devices,
    )
    self._rngs = jnp.stack([training.stream_key(seed, "evaluation") for seed in seeds])
    self._eval_step = jax.jit(
        training.map_replicas(make_eval_step(model), len(seeds), in_axes=(0, None, 0))
    )
    self._sample = jax.jit(
        training.map_replicas(
            lambda variables, rng: model.apply(
                variables, modes.NUM_SAMPLES, method="sample", rngs={"sample": rng}
            ),
            len(seeds),
        )
    )
    self._sample_rngs = jnp.stack(
        [training.stream_key(seed, "evaluation_samples") for seed in seeds]
    )

  def __call__(self, variables, split: str) -> list[dict[str, float]]:
    """The metrics of each replica on `split`.

    Args:
      variables: the replicas' variables, each array with a leading axis of len(seeds).
      split: `train`, `validation` or `test`.

    Returns:
      One dict a replica: the mean over the split's examples of each `evaluate` metric (nats
      per example), with `bits_per_dim` (in pixel space) where the model has `log_prob` on
      dequantised data, and `modes_covered` and `high_quality` on a known mixture.
    """
    sums, log_det = None, 0.0
    for index, batch in enumerate(
        process_batches(
            self.dataset, self.preprocessing, split, self.config.eval_batch_size, self.devices
        )
    ):
      log_det += float((self.preprocessing.log_det(batch["x"]) * batch["mask"]).sum())
      batch_sums = self._eval_step(
          variables, self.devices.shard_batch(batch), training.fold_in_replicas(self._rngs, index)
      )
      sums = batch_sums if sums is None else jax.tree.map(jnp.add, sums, batch_sums)
    count = self.dataset.num_examples(split)
    log_det = float(np.sum(multihost_utils.process_allgather(np.float64(log_det))))
    sums = jax.device_get(sums)
    samples = (
        self.preprocessing.inverse(
            np.asarray(jax.device_get(self._sample(variables, self._sample_rngs)))
        )
        if self.dataset.mixture is not None
        else None
    )
    replicas = []
    for r in range(len(self._rngs)):
      metrics = {k: float(v[r]) / count for k, v in sums.items()}
      if "log_prob" in metrics and self.preprocessing.dequantizes:
        metrics["bits_per_dim"] = float(
            likelihood.bits_per_dim(
                metrics["log_prob"] + log_det / count,
                int(np.prod(self.dataset.example_shape)),
                self.dataset.num_levels,
            )
        )
      if samples is not None:
        metrics.update(modes.mode_coverage(samples[r], *self.dataset.mixture))
      replicas.append(metrics)
    return replicas


class BatchNormFit:
  """`fit(variables) -> variables` with every batch-norm layer's statistics set to the mean and
  (biased) variance of its inputs over the whole training split, as the MAF paper's code does
  before each validation and after training (gpapamak/maf, ml/trainers.py:
  `set_batch_norm_stats`, a pass of the whole training set in which each layer normalises by
  the set's own statistics). A layer's inputs depend on the statistics below it, so there is one
  pass per layer, pass l leaving the first l layers exact; sums are taken about the stored means
  for accuracy.

  Args:
    model: a flow with `batch_norm_inputs` (`zoo.nn.flows`).
    dataset: its `zoo.data.Dataset`.
    preprocessing: its `zoo.data.preprocessing`.
    config: a finished config: `eval_batch_size`.
    devices: the mesh the batches are split over.
    num_replicas: R, the replicas of the variables it fits.

  Calling it with the replicas' variables (arrays leading with R) returns them with
  `batch_stats` refitted; variables without batch norm are returned as they are.
  """

  def __init__(
      self, model, dataset, preprocessing, config, devices: training.Devices, num_replicas
  ):
    self.dataset, self.preprocessing, self.devices = dataset, preprocessing, devices
    self.batch_size = config.eval_batch_size

    def sums(variables, batch):
      _, recorded = model.apply(
          variables, batch, method="batch_norm_inputs", mutable=[flows.BATCH_NORM_INPUTS]
      )
      stats = flax.traverse_util.flatten_dict(variables["batch_stats"])
      mask = batch["mask"].astype(jnp.float32)[:, None]
      out = {}
      for path, (inputs,) in flax.traverse_util.flatten_dict(
          recorded[flows.BATCH_NORM_INPUTS]
      ).items():
        centred = (inputs - stats[(*path[:-1], "mean")]) * mask
        out["/".join(path[:-1])] = (centred.sum(0), (centred * centred).sum(0))
      return out

    self._sums = jax.jit(training.map_replicas(sums, num_replicas, in_axes=(0, None)))

  def __call__(self, variables: dict) -> dict:
    if "batch_stats" not in variables:  # a flow without batch norm
      return variables
    count = self.dataset.num_examples("train")
    for _ in range(len(jax.tree.leaves(variables["batch_stats"])) // 2):
      totals: dict[str, list] = (
          {}
      )  # on the host, in float64: no op on the device arrays between passes
      for batch in process_batches(
          self.dataset, self.preprocessing, "train", self.batch_size, self.devices
      ):
        batch_sums = jax.device_get(self._sums(variables, self.devices.shard_batch(batch)))
        for name, (first, second) in batch_sums.items():
          total = totals.setdefault(name, [0.0, 0.0])
          total[0] = total[0] + np.asarray(first, np.float64)
          total[1] = total[1] + np.asarray(second, np.float64)
      stats = jax.device_get(flax.traverse_util.flatten_dict(variables["batch_stats"]))
      for name, (first, second) in totals.items():
        path = tuple(name.split("/"))
        shift = first / count
        mean = stats[(*path, "mean")]
        stats[(*path, "mean")] = (mean + shift).astype(mean.dtype)
        stats[(*path, "var")] = (second / count - shift * shift).astype(mean.dtype)
      stats = self.devices.replicate(stats)
      variables = {**variables, "batch_stats": flax.traverse_util.unflatten_dict(stats)}
    return variables


ENCODE_BATCH = 500


def disentanglement_metrics(model, variables, ground_truth, counts, seed: int) -> dict:
  """For the run of `seed` (its `disentanglement` random stream), the metrics of
  `zoo.metrics.disentanglement` for the posterior means of a model's `encode` on the
  ground-truth set's renders, with `counts` (config.disentanglement): SAP and DCI on
  `num_points` codes (trained on 2/3, tested on 1/3), MIG on the 2/3 (disentanglement_lib's
  10,000 of 15,000: mig.gin's num_train; dci.gin and sap_score.gin's 10,000 + 5,000); the
  beta-VAE score in disentanglement_lib's reading and the paper's, and the FactorVAE score, on
  `score_train` + `score_eval` points of the published batch size 64.

  Args:
    model: a model with `encode` giving (mean, log_var), each (B, latent_dim).
    variables: one replica's variables.
    ground_truth: the data set's factors and renderer (`zoo.data.Dataset.ground_truth`).
    counts: `config.disentanglement`: num_points, score_train, score_eval.
    seed: the replica's seed.

  Returns:
    {metric: float}: beta_vae_score, beta_vae_score_paper, factor_vae_score, mig, sap,
    dci_disentanglement, dci_completeness, dci_informativeness; each in [0, 1].
  """
  encode = jax.jit(lambda v, x: model.apply(v, x, method="encode")[0])

  def encode_fn(x):
    return np.concatenate(
        [
            np.asarray(encode(variables, x[i : i + ENCODE_BATCH]))
            for i in range(0, len(x), ENCODE_BATCH)
        ]
    )

  rng = training.stream_generator(seed, "disentanglement")
  factors = ground_truth.sample_factors(counts.num_points, rng)
  codes = encode_fn(ground_truth.sample_observations_from_factors(factors, rng))
  score_counts = {"num_train": counts.score_train, "num_eval": counts.score_eval}
  beta_vae = disentanglement.beta_vae_score(ground_truth, encode_fn, rng, **score_counts)
  beta_vae_paper = disentanglement.beta_vae_score_paper(
      ground_truth, encode_fn, rng, **score_counts
  )
  factor_vae = disentanglement.factor_vae_score(ground_truth, encode_fn, rng, **score_counts)
  dci = disentanglement.dci(factors, codes, seed=int(rng.integers(2**31)))
  mig_points = 2 * len(codes) // 3
  return {
      "beta_vae_score": beta_vae["eval_accuracy"],
      "beta_vae_score_paper": beta_vae_paper["eval_accuracy"],
      "factor_vae_score": factor_vae["eval_accuracy"],
      **disentanglement.mig(factors[:mig_points], codes[:mig_points]),
      **disentanglement.sap(factors, codes),
      **{f"dci_{k}": v for k, v in dci.items()},
  }


def clustering_metrics(model, variables, dataset, preprocessing, config) -> dict:
  """The clustering error of a model with K categorical codes (`model.encode` gives q(y | x)) by
  the papers' protocol (`zoo.metrics.clustering`: each cluster labelled by its most confident
  validation example, the training split's where there is none), the error of the training
  split's majority labelling beside it, and how many of the K clusters the test split occupies
  (a code that collapses onto a few shows here).

  Args:
    model: a model with num_clusters > 0, whose `encode` gives q(y | x), (B, K).
    variables: one replica's variables.
    dataset: a labelled `zoo.data.Dataset`.
    preprocessing: the run's `zoo.data.preprocessing`.
    config: the run's config (its `eval_batch_size`).

  Returns:
    {metric: float}: clustering_error and clustering_error_majority (and, where the model is
    semi-supervised, classification_error), fractions in [0, 1]; clusters_used, a count.
  """
  encode = jax.jit(lambda v, x: model.apply(v, x, method="encode"))

  def codes(split):
    probabilities, labels = [], []
    for batch in zoo.data.eval_batches(
        dataset, preprocessing, split, batch_size=config.eval_batch_size
    ):
      probabilities.append(np.asarray(encode(variables, batch["x"]))[batch["mask"]])
      labels.append(batch["label"][batch["mask"]])
    return np.concatenate(probabilities), np.concatenate(labels)

  train_probabilities, train_labels = codes("train")
  test_probabilities, test_labels = codes("test")
  labelling = (
      (train_probabilities, train_labels) if not dataset.has("validation") else codes("validation")
  )
  test_clusters = test_probabilities.argmax(-1)
  metrics = {
      "clustering_error": clustering.error(
          clustering.most_confident_labels(*labelling), test_clusters, test_labels
      ),
      "clustering_error_majority": clustering.clustering_error(
          train_probabilities.argmax(-1),
          train_labels,
          test_clusters,
          test_labels,
          model.num_clusters,
      ),
      "clusters_used": len(np.unique(test_clusters)),
  }
  if model.semi_supervised:  # the code is the class
    metrics["classification_error"] = float(np.mean(test_clusters != test_labels))
  return metrics

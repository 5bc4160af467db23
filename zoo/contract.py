"""The model contract: what the runner, `zoo.training` and `zoo.evaluation` may call on a model.

Every registered model (`zoo.registry.register`) is a Flax linen module deriving from `Model`,
its field defaults the paper's hyper-parameters, applied with an RNG stream named `sample`. A
batch is a dict with `x` (B, *example_shape) and, where the data set has them, `label`; a
semi-supervised model's training batches add `labeled_x` and `labeled_label`.

Required of every model (`REQUIRED`, `REQUIRED_BY_FAMILY`; `zoo.registry.register` refuses a
model that lacks one, at import):
  evaluate(batch) -> {metric: (B,) array}  per-example test metrics, which the evaluator
                                          averages over a split; the class attribute
                                          `best_by` names the one that ranks evaluations for
                                          the best checkpoint, and its direction.
  sample(n) -> (n, ...) array             n draws in the model's space (the data's after
                                          preprocessing).
Required by family (`zoo.registry.ModelSpec.family`):
  flow, latent: loss(batch, train) -> (loss, metrics)  the objective, minimised
  game (`zoo.nn.games.Game`): `phases` and `<phase>_loss(batch, train)` for each, `project`.
  flow (`zoo.nn.flows.Flow`): `batch_norm_inputs`, for the MAF paper's batch-norm statistics.
Optional, each what a figure or a score that a config names (`config.figures`,
`config.scores`) needs (the runner declares which needs which, `experiments/outputs.py`);
`implements` tells whether a model has it:
  log_prob(x)               (B,) log p(x) in nats: a flow's exact density of x, (B, D)
                            flattened vectors in the space it trained in; VLAE's
                            importance-sampled estimate of x, (B, H, W, C) images.
  encode(x)                 a code of x: (mean, log_var) of q(z | x) for the disentanglement
                            scores; the cluster probabilities q(y | x) where num_clusters > 0.
  traverse(x, values)       (latent_dim, len(values), *example_shape) latent traversals.
  layer_grid(layer, r, c)   (r, c, *example_shape): only code `layer` changes along a row.
  decompose(codes, per)     (codes, per, *example_shape): samples given each of `codes` codes.
  inpaint(x, observed, ...) x with its unobserved entries filled by the model.
and attributes with defaults here: `num_clusters`, `semi_supervised`, `num_levels`.

Metric names (`METRICS`): every metric a model returns (from its losses and `evaluate`) or a
score adds is a key of `METRICS`, which gives its meaning, unit and direction, so that one name
means one thing across the zoo and every table, line and chart reads it the same way: `elbo`,
`reconstruction` (always E_q log p(x | z), a log-likelihood) and `kl` in nats per example, with
elbo = reconstruction - kl; a minimised quantity is `loss` or `<term>_loss`. A logged name may
carry prefixes, a split's (`validation/log_prob`) or a game phase's (`critic/loss`), and
suffixes, a layer's (`kl_2`: VLAE's KL of z_2) or a parameter group's (`grad_snr/encoder`);
`metric_of` finds its entry.

A run that sweeps some of a model's fields over its replicas (`config.replicas`) keeps each
replica's values in the variable collection `swept`, stacked with the rest of its state; `apply`
sets the fields to them, so every use of a replica's variables sees its own setting.
"""

import dataclasses
import re
from typing import ClassVar
from typing import Literal

import flax
import flax.linen as nn

from zoo import domains
from zoo import errors

SWEPT = "swept"  # the variable collection of a replica's swept fields: {field: value}


class Model(nn.Module):
  """The base of every zoo model; the methods below raise until a model defines them. Its
  fields declare their values in their annotations (`zoo.domains`); a value outside them is a
  `HyperparameterError` naming the field when the model is built, before anything is traced."""

  registry_name: ClassVar[str] = ""  # set by `zoo.registry.register`; its errors give it
  # The metric of `evaluate` by which the runner keeps each replica's best checkpoint (on the
  # validation split), and whether larger or smaller is better: ("log_prob", "max"). None:
  # the last state is the model's, as for the papers that train a fixed number of steps.
  best_by: ClassVar[tuple[str, Literal["max", "min"]] | None] = None

  def __post_init__(self):
    if not isinstance(self.parent, flax.core.scope.Scope):  # not a copy bound by apply or init
      owner = self.registry_name or type(self).__name__
      for key, annotation in domains.field_annotations(type(self)).items():
        domains.check(f"{owner}: {key}", getattr(self, key), annotation)
    super().__post_init__()

  @nn.nowrap
  def with_swept(self, variables):
    """This model with its swept fields set to their values in `variables` (traced, inside a
    program of several replicas); itself where `variables` has no `swept` collection."""
    values = variables.get(SWEPT)
    return self.clone(**values) if values else self

  @nn.nowrap
  def apply(self, variables, *args, **kwargs):
    """`flax.linen.Module.apply` of `with_swept(variables)`; an input whose shape does not fit
    the parameters is a `zoo.errors.UserError` of one line."""
    try:
      return nn.Module.apply(self.with_swept(variables), variables, *args, **kwargs)
    except flax.errors.ScopeParamShapeError as error:
      method = kwargs.get("method") or "__call__"
      shapes = [getattr(a, "shape", None) for a in args if hasattr(a, "shape")]
      raise errors.UserError(
          f"{self.registry_name or type(self).__name__}.{method}: an input of shape "
          f"{shapes[0] if shapes else '?'} does not fit the trained parameters: "
          f"{str(error).split(' (https')[0]}"
      ) from None

  def evaluate(self, batch):
    """{metric: (B,) array} of per-example test metrics."""
    raise NotImplementedError

  def sample(self, n):
    """n draws from the model."""
    raise NotImplementedError

  def log_prob(self, x):
    """log p(x) in nats, (B,), of x in the model's space (see the module docstring)."""
    raise NotImplementedError

  def loss(self, batch, train=True):
    """(loss, metrics) of a single-objective model."""
    raise NotImplementedError

  def objective_surrogate(self, batch, train=True):
    """(loss, metrics) whose gradient is the model's estimate of its objective's gradient,
    before any rescaling its update applies (NVIL's division by a running standard deviation):
    what `zoo.training.make_gradient_statistics` measures. `loss` unless a model rescales."""
    return self.loss(batch, train)

  def encode(self, x):
    """The code of x (see the module docstring)."""
    raise NotImplementedError

  def traverse(self, x, values):
    """Latent traversals of the first example of x."""
    raise NotImplementedError

  def layer_grid(self, layer, rows, columns):
    """Samples in which only code `layer` changes along a row."""
    raise NotImplementedError

  def decompose(self, num_codes, per_code):
    """Samples given each of `num_codes` codes."""
    raise NotImplementedError

  def inpaint(self, x, observed, num_steps=1000, low=0.0, high=1.0, context=None):
    """x with the entries where `observed` is False filled by the model."""
    raise NotImplementedError

  @property
  def num_clusters(self) -> int:
    """K of a model whose code is K categories (q(y | x) from `encode`); 0 for other codes."""
    return 0

  @property
  def semi_supervised(self) -> bool:
    """Whether training batches carry a labelled set (`labeled_x`, `labeled_label`) and the
    categorical code is the class."""
    return False

  @property
  def num_levels(self) -> int:
    """The values per channel of a model of discrete pixels; 0 for continuous data."""
    return 0


# What every model defines, and what each family adds (`zoo.registry.ModelSpec.family`);
# `zoo.registry.register` refuses a model that lacks one.
REQUIRED = ("evaluate", "sample")
REQUIRED_BY_FAMILY = {
    "flow": ("loss", "batch_norm_inputs"),
    "latent": ("loss",),
    "game": ("phases", "project"),
}


def implements(model: nn.Module | type, method: str) -> bool:
  """Whether `model` (or a model class) defines `method` of the contract, rather than
  inheriting the raising one or lacking it."""
  cls = model if isinstance(model, type) else type(model)
  return getattr(cls, method, None) not in (None, getattr(Model, method, None))


def ranking(model: nn.Module, metrics: dict) -> float:
  """The value of one replica's evaluation `metrics` by the model's `best_by`, larger better;
  NaN where the model declares none (no evaluation is then its best)."""
  if model.best_by is None:
    return float("nan")
  metric, direction = model.best_by
  return float(metrics[metric]) if direction == "max" else -float(metrics[metric])


def missing_methods(cls: type, family: str) -> list[str]:
  """The methods `REQUIRED` and `REQUIRED_BY_FAMILY[family]` that the model class `cls` lacks."""
  return [m for m in (*REQUIRED, *REQUIRED_BY_FAMILY[family]) if not implements(cls, m)]


@dataclasses.dataclass(frozen=True)
class Metric:
  """What a metric name means.

  Attributes:
    meaning: in a few words.
    unit: `nats` (per example), `bits/dim`, `fraction` (in [0, 1]), `count` (a whole number
      per replica) or "" (a loss or a statistic of training).
    better: "max" or "min"; None where neither (a diagnostic).
    reported: whether results tables show it (`experiments.report`); else it describes
      training, and the metric log alone holds it.
  """

  meaning: str
  unit: str
  better: Literal["max", "min"] | None
  reported: bool = True


_SCORE = "fraction"  # the disentanglement scores, each in [0, 1], larger better
METRICS = {
    "log_prob": Metric("log p(x): a flow's exact, VIMCO's and VLAE's sampled", "nats", "max"),
    "log_prob_given_label": Metric("log p(x | y) of a class-conditional flow", "nats", "max"),
    "bits_per_dim": Metric("-log2 p(x) per dimension of the data's pixels", "bits/dim", "min"),
    "elbo": Metric("the evidence lower bound, reconstruction - kl", "nats", "max"),
    "reconstruction": Metric("E_q(z|x) log p(x | z)", "nats", "max"),
    "kl": Metric("KL(q(z | x) || p(z)), the rate of the code", "nats", None),
    "bound": Metric("VIMCO's K-sample bound, E log (1/K) sum_k w_k", "nats", "max"),
    "critic_gap": Metric(
        "E critic(data) - E critic(samples): WGAN's critic's Wasserstein estimate", "", None
    ),
    "modes_covered": Metric("components of a known mixture its samples cover", "count", "max"),
    "high_quality": Metric("samples within 3 std of a component's mean", "fraction", "max"),
    "clustering_error": Metric(
        "test error, each cluster labelled by its most confident validation example",
        "fraction",
        "min",
    ),
    "clustering_error_majority": Metric(
        "test error, each cluster labelled by its validation majority", "fraction", "min"
    ),
    "classification_error": Metric("test error of the semi-supervised code", "fraction", "min"),
    "clusters_used": Metric("clusters the test examples fall in", "count", None),
    "beta_vae_score": Metric("beta-VAE score, disentanglement_lib's protocol", _SCORE, "max"),
    "beta_vae_score_paper": Metric("beta-VAE score, the paper's protocol", _SCORE, "max"),
    "factor_vae_score": Metric("FactorVAE score", _SCORE, "max"),
    "mig": Metric("mutual information gap", _SCORE, "max"),
    "sap": Metric("SAP score", _SCORE, "max"),
    "dci_disentanglement": Metric("DCI disentanglement", _SCORE, "max"),
    "dci_completeness": Metric("DCI completeness", _SCORE, "max"),
    "dci_informativeness": Metric("DCI informativeness (test accuracy)", _SCORE, "max"),
    "loss": Metric("the loss a step minimises (a game's phase: `<phase>/loss`)", "", "min", False),
    "dip_loss": Metric("DIP-VAE's covariance penalty, a term of the loss", "", "min", False),
    "kl_weight": Metric("VLAE's KL warm-up weight in the loss", "", None, False),
    "accuracy": Metric("training accuracy of the semi-supervised phase", "fraction", "max", False),
    "grad_norm": Metric("the global norm of a step's gradient", "", None, False),
    "grad_variance": Metric("a gradient estimator's variance, per parameter", "", "min", False),
    "grad_snr": Metric("a gradient estimator's signal-to-noise ratio", "", "max", False),
}


def metric_of(name: str) -> Metric:
  """The entry of a logged metric name (`validation/log_prob`, `critic/loss`, `kl_2`,
  `grad_snr/encoder`): its last part that `METRICS` holds, less a layer's `_<l>`. A name it does
  not know raises KeyError."""
  for part in reversed(name.split("/")):
    for candidate in (part, re.sub(r"_\d+$", "", part)):
      if candidate in METRICS:
        return METRICS[candidate]
  raise KeyError(f"{name!r} is not a metric of zoo.contract.METRICS")

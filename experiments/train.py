"""The one training loop: every model in the zoo trains through `train_and_evaluate`.

A step is one pure function `train_step(state, batch, rng) -> (state, metrics)`, jitted once with
the state donated. The batch is sharded over the `data` axis of a mesh of all devices of all
processes and the state is replicated, so the same code runs on one CPU, several GPUs or a pod.
Randomness at step s is `fold_in(rng, s)`, and the data stream is a function of (seed, step), so a
resumed run repeats exactly what the uninterrupted one would have done.

A run trains `config.num_seeds` replicas at once, of seeds `seed, seed + 1, ...`: the state, the
batch and the step's randomness have a leading replica axis, and each replica is exactly the
single-seed run of its seed (its initialisation, data order, early stopping and best checkpoint).
"""
import contextlib
import dataclasses
import itertools
import json
import os
import queue
import threading
import time
from typing import Any

import flax
import jax
import jax.extend
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import zoo
from zoo import checkpoints
from zoo import errors
from zoo.metrics import clustering
from zoo.metrics import disentanglement
from zoo.metrics import likelihood
from zoo.metrics import modes
from zoo.nn import flows
from experiments import configs
from experiments import outputs


class NonFiniteLossError(errors.UserError):
  """The loss turned NaN or infinite; the run stops and keeps its last good checkpoint."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any  # the non-parameter collections, such as batch norm's `batch_stats`


OPTIMIZERS = ("adam", "rmsprop")


def make_optimizer(config) -> optax.GradientTransformation:
  """`config.optimizer` (Adam, or RMSProp as the WGAN paper's code: PyTorch's defaults, decay
  0.99 and eps outside the square root), with the L2 penalty `weight_decay` added to the
  gradient (the MAF paper's 1e-6)."""
  if config.optimizer == "adam":
    update = optax.adam(config.learning_rate, b1=config.adam_b1, b2=config.adam_b2,
                        eps=config.adam_eps)
  else:
    update = optax.rmsprop(config.learning_rate, decay=0.99, eps=1e-8, eps_in_sqrt=False)
  return optax.chain(optax.add_decayed_weights(config.weight_decay), update)


def _cast(tree, dtype):
  """The floating arrays of `tree` in `dtype`; the others as they are."""
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                      tree)


def _apply_loss(model, method: str, bfloat16: bool, params, state: TrainState, batch, rng):
  """The model's loss `method` in training mode: (loss, (metrics, updated model state)). With
  `bfloat16`, mixed precision: the parameters and the batch's floating arrays are cast to
  bfloat16 for the computation (the stored parameters, the optimiser and the gradients, which
  flow back through the cast, stay float32) and the results cast back to float32."""
  model_state = state.model_state
  if bfloat16:
    params, batch, model_state = _cast((params, batch, model_state), jnp.bfloat16)
  (loss, metrics), model_state = model.apply(
      {"params": params, **model_state}, batch, train=True, method=method,
      rngs={"sample": rng}, mutable=list(model_state))
  if bfloat16:
    loss, metrics, model_state = _cast((loss, metrics, model_state), jnp.float32)
  return loss, (metrics, model_state)


def make_train_step(model, optimizer, bfloat16: bool = False):
  """The pure train step of a single-objective model: its `loss` method, one optimiser update."""

  def train_step(state: TrainState, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    (loss, (metrics, model_state)), grads = jax.value_and_grad(
        lambda params: _apply_loss(model, "loss", bfloat16, params, state, batch, rng),
        has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state, model_state=model_state)
    return state, {"loss": loss, "grad_norm": optax.global_norm(grads), **metrics}

  return train_step


def make_phase_update(model, optimizers: dict, bfloat16: bool = False):
  """`update(phase, state, batch, rng) -> (state, metrics)`: one optimiser update of one phase
  of a game (`zoo.nn.games.Game`). It differentiates only the parameters of the phase's
  submodules, with the phase's own optimiser and state, and projects them after the update
  (`model.project`: WGAN's weight clipping). Metrics are named `<phase>/...`."""

  def update(phase, state: TrainState, batch, rng):
    trained = {name: state.params[name] for name in model.phases[phase]}
    (loss, (metrics, model_state)), grads = jax.value_and_grad(
        lambda trained: _apply_loss(model, f"{phase}_loss", bfloat16,
                                    {**state.params, **trained}, state, batch, rng),
        has_aux=True)(trained)
    updates, opt_state = optimizers[phase].update(grads, state.opt_state[phase], trained)
    trained = model.project(phase, optax.apply_updates(trained, updates))
    state = state.replace(params={**state.params, **trained},
                          opt_state={**state.opt_state, phase: opt_state},
                          model_state=model_state)
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), **metrics}
    return state, {f"{phase}/{k}": v for k, v in metrics.items()}

  return update


UNROLL_LIMIT = 10


def make_game_step(model, optimizers: dict, bfloat16: bool = False):
  """The pure train step of a game: `batches` stacks one batch per update of the first phase
  (WGAN's critic steps), run through in order; every other phase is then updated once, in
  order, on the last batch. Metrics are each phase's last; `loss` is the first
  phase's (WGAN's critic loss, minus its Wasserstein estimate)."""
  first, *rest = model.phases
  update = make_phase_update(model, optimizers, bfloat16)

  def first_phase(state, batches, keys):
    """The first phase once per stacked batch; its last metrics. XLA:CPU runs a convolution
    inside a loop some 45x slower than outside one (a PixelGAN reconstruction update: 14 s in
    a lax.scan, 0.3 s unrolled), so on CPU up to UNROLL_LIMIT updates are unrolled at trace
    time; longer stacks (WGAN's bursts of 100) stay a scan, whose compile time does not grow."""
    if jax.default_backend() != "cpu" or len(keys) > UNROLL_LIMIT:
      state, metrics = jax.lax.scan(lambda s, xs: update(first, s, *xs), state, (batches, keys))
      return state, jax.tree.map(lambda m: m[-1], metrics)
    for i, key in enumerate(keys):
      state, metrics = update(first, state, jax.tree.map(lambda x: x[i], batches), key)
    return state, metrics

  def train_step(state: TrainState, batches, rng):
    rng = jax.random.fold_in(rng, state.step)
    keys = jax.random.split(rng, len(jax.tree.leaves(batches)[0]) + len(rest))
    repeats = len(keys) - len(rest)
    state, metrics = first_phase(state, batches, keys[:repeats])
    last = jax.tree.map(lambda x: x[-1], batches)
    for phase, key in zip(rest, keys[repeats:]):
      state, phase_metrics = update(phase, state, last, key)
      metrics.update(phase_metrics)
    return state.replace(step=state.step + 1), {"loss": metrics[f"{first}/loss"], **metrics}

  return train_step


def make_step(model, config, game: bool):
  """(train step, optimiser) of `model` as `config` trains it: a game's step with an optimiser
  per phase, or the single-objective step."""
  if game:
    optimizer = {phase: make_optimizer(config) for phase in model.phases}
    return make_game_step(model, optimizer, config.bfloat16), optimizer
  optimizer = make_optimizer(config)
  return make_train_step(model, optimizer, config.bfloat16), optimizer


def prefetch(make_batch, start: int, size: int = 2):
  """make_batch(start), make_batch(start + 1), ...: made, sharded and sent to the devices by a
  background thread up to `size` steps ahead, so that the host's data work and the transfer
  overlap the device's steps. Exceptions reach the consumer; the thread stops when the
  generator is closed (use it in `contextlib.closing`, so that errors close it too)."""
  ready, stop = queue.Queue(size), threading.Event()

  def offer(item) -> bool:
    """Queue `item` once there is room; False if the consumer stopped first."""
    while not stop.is_set():
      try:
        ready.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def produce():
    try:
      for step in itertools.count(start):
        if not offer(make_batch(step)):
          return
    except Exception as error:  # pylint: disable=broad-except
      offer(error)

  producer = threading.Thread(target=produce, daemon=True)
  producer.start()
  try:
    while True:
      item = ready.get()
      if isinstance(item, Exception):
        raise item
      yield item
  finally:
    stop.set()
    # joined, not abandoned: a daemon thread still inside the runtime's C++ code when the
    # interpreter exits aborts the process ("FATAL: exception not rethrown")
    producer.join()


def critic_steps_at(config, step: int) -> int:
  """Updates of a game's first phase at step `step`: `critic_steps`, but `burst_critic_steps`
  for the first `burst_first` steps and every `burst_every`-th (the WGAN paper's 100 for the
  first 25 generator iterations and every 500th, so the critic stays near optimal)."""
  if config.burst_critic_steps and (step < config.burst_first or step % config.burst_every == 0):
    return config.burst_critic_steps
  return config.critic_steps


def batches_before(config, step: int) -> int:
  """How many batches a game consumes before step `step`: where its data resumes."""
  return sum(critic_steps_at(config, s) for s in range(step))


def make_gradient_statistics(model, draws: int):
  """The variance and signal-to-noise ratio of a stochastic gradient estimator on one batch, per
  top-level parameter group: `draws` independent gradients (vmapped over the step's randomness),
  per parameter their variance and |mean| / std, averaged over the group's parameters."""

  def statistics(state: TrainState, batch, rng):
    gradient = lambda key: jax.grad(lambda p: _apply_loss(model, "loss", False, p, state,
                                                          batch, key)[0])(state.params)
    grads = jax.vmap(gradient)(jax.random.split(rng, draws))
    out = {}
    for group, tree in grads.items():
      g = jnp.concatenate([x.reshape(draws, -1) for x in jax.tree.leaves(tree)], 1)
      mean, var = g.mean(0), g.var(0)
      out[f"grad_variance/{group}"] = var.mean()
      out[f"grad_snr/{group}"] = (jnp.abs(mean) / jnp.sqrt(var + 1e-30)).mean()
    return out

  return statistics


def make_eval_step(model):
  """Sums over the real (unmasked) examples of each per-example metric of `evaluate`; models
  that sample while evaluating draw from `rng`."""

  def eval_step(variables, batch, rng):
    per_example = model.apply(variables, batch, method="evaluate", rngs={"sample": rng})
    mask = batch["mask"].astype(jnp.float32)
    return {k: (v * mask).sum() for k, v in per_example.items()}

  return eval_step


def inner_jaxprs(equation):
  """The jaxprs nested in a jaxpr's `equation`: a scan's body, a conditional's branches, ..."""
  for param in equation.params.values():
    for inner in param if isinstance(param, (tuple, list)) else (param,):
      if isinstance(inner, jax.extend.core.ClosedJaxpr):
        inner = inner.jaxpr
      if isinstance(inner, jax.extend.core.Jaxpr):
        yield inner


def _primitives(jaxpr):
  """The names of the primitives of `jaxpr` and of the jaxprs nested in it."""
  for equation in jaxpr.eqns:
    yield equation.primitive.name
    for inner in inner_jaxprs(equation):
      yield from _primitives(inner)


def _unroll_replicas(fn, *args) -> bool:
  """Whether to unroll replicas of `fn` on `args` (one replica's shapes) rather than vmap them:
  on CPU, where `fn` convolves. XLA:CPU runs a vmapped convolution with a kernel per replica as
  a grouped convolution whose gradient is slow there: the beta-VAE step for 4 seeds takes 2.25 s
  vmapped, 0.47 s unrolled, 0.14 s for one seed. An MLP's step is fastest vmapped (MAF on
  toy2d: 0.24 ms vmapped, 0.37 ms unrolled for 4 seeds, 0.20 ms for one)."""
  if jax.default_backend() != "cpu":
    return False
  return "conv_general_dilated" in set(_primitives(jax.make_jaxpr(fn)(*args).jaxpr))


def map_replicas(fn, num_replicas: int, in_axes=0):
  """`fn` over the leading replica axis of the arguments whose `in_axes` entry is 0 (the others
  are shared by all replicas): `jax.vmap`, or where `_unroll_replicas` says so the replicas
  unrolled into one program. A single replica is `fn` on its slice, not vmapped over an axis of
  one (XLA still rounds that program a little differently from `fn` on unstacked arrays)."""
  vmapped = jax.vmap(fn, in_axes=in_axes)

  def mapped(*args):
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)

    def replica(i, arrays):
      return fn(*(jax.tree.map(lambda x: x[i], a) if axis == 0 else a
                  for a, axis in zip(arrays, axes)))

    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), args)
    if num_replicas > 1 and not _unroll_replicas(lambda *one: replica(0, one), *shapes):
      return vmapped(*args)
    return jax.tree.map(lambda *xs: jnp.stack(xs),
                        *(replica(i, args) for i in range(num_replicas)))

  return mapped


def select_replicas(mask, new, old):
  """`new` for the replicas where `mask` is True, `old` for the others."""
  return jax.tree.map(
      lambda n, o: jnp.where(jnp.reshape(mask, (-1,) + (1,) * (n.ndim - 1)), n, o), new, old)


def make_replicated_step(train_step, num_replicas: int):
  """The step of `num_replicas` independent runs stacked on a leading axis, `(state, batch,
  rng, active) -> (state, metrics)`; a replica whose `active` entry is False (stopped early)
  keeps its state."""
  step = map_replicas(train_step, num_replicas)

  def replicated_step(state, batch, rng, active):
    new, metrics = step(state, batch, rng)
    return select_replicas(active, new, state), metrics

  return replicated_step


def _fold_in_replicas(keys: jax.Array, data: int) -> jax.Array:
  """`jax.random.fold_in` of each replica's key."""
  return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, data)


def replica_keys(seeds) -> tuple[jax.Array, jax.Array]:
  """(init keys, step keys), one of each per seed: the split of `jax.random.key(seed)`."""
  keys = jnp.stack([jax.random.split(jax.random.key(seed)) for seed in seeds])
  return keys[:, 0], keys[:, 1]


@dataclasses.dataclass
class Devices:
  """The mesh over all devices of all processes, and how to put arrays on it."""
  mesh: Mesh

  @classmethod
  def all(cls, devices=None):
    return cls(Mesh(np.asarray(devices if devices is not None else jax.devices()), ("data",)))

  @property
  def size(self) -> int:
    return self.mesh.size

  def replicate(self, tree):
    return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec()))

  def restore(self, manager, step: int):
    """Checkpoint `step` of `manager`, replicated over the mesh (every process calls it)."""
    return checkpoints.restore(manager, step, NamedSharding(self.mesh, PartitionSpec()))

  def shard_batch(self, local_batch, leading_axes: int = 0):
    """This process's slice of a batch, as a global array sharded on `data`, the axis after
    `leading_axes` others (replicas; a game's stack of batches)."""
    sharding = NamedSharding(self.mesh, PartitionSpec(*(None,) * leading_axes, "data"))
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def _per_metric(replicas: list[dict]) -> dict[str, np.ndarray]:
  """Each replica's metrics (a dict per replica) as one array of the replicas' values per
  metric."""
  return {k: np.array([m[k] for m in replicas], np.float64) for k in replicas[0]}


def _logged(values: np.ndarray, active: np.ndarray):
  """A metric's per-replica values as logged: a number for a single seed, else a list with
  None for the replicas that have stopped."""
  if len(values) == 1:
    return float(values[0])
  return [float(v) if a else None for v, a in zip(values, active)]


def _first_non_finite(losses: np.ndarray, active: np.ndarray, last_step: int):
  """(step, replica) of the first non-finite loss of an active replica in `losses` (steps x
  replicas, ending at `last_step`), or None."""
  bad = ~np.isfinite(losses) & active
  if not bad.any():
    return None
  i, replica = np.argwhere(bad)[0]
  return last_step - len(losses) + int(i) + 1, int(replica)


def validate(config, game: bool = False):
  """Reject configurations that cannot run, with a message naming the field."""
  for key in ("batch_size", "eval_batch_size", "num_steps", "log_every", "eval_every",
              "checkpoint_every", "num_seeds"):
    if config[key] <= 0:
      raise errors.UserError(f"config.{key} must be positive, not {config[key]}")
  if config.optimizer not in OPTIMIZERS:
    raise errors.UserError(
        f"config.optimizer must be one of {', '.join(OPTIMIZERS)}, not {config.optimizer!r}")
  for key in ("checkpoint_every", "eval_every"):
    if config[key] % config.log_every:
      raise errors.UserError(
          f"config.{key} ({config[key]}) must be a multiple of config.log_every "
          f"({config.log_every}): checkpoints and evaluations happen at logging steps")
  if game and (config.critic_steps <= 0 or config.burst_critic_steps < 0):
    raise errors.UserError("config.critic_steps must be positive and config.burst_critic_steps "
                           "zero (no bursts) or positive")
  if game and config.gradient_statistics_draws:
    raise errors.UserError("config.gradient_statistics_draws is for single-objective models; "
                           f"{config.model_name} is a game")


class Evaluator:
  """Evaluates each replica's `evaluate` metrics over a split, with the likelihood in pixel
  space, and on a Gaussian mixture with known components the modes its samples cover. Every
  replica sees the same evaluation data; its own randomness comes from its seed."""

  def __init__(self, model, dataset, preprocessing, config, devices: Devices, seeds):
    self.dataset, self.preprocessing, self.config, self.devices = (
        dataset, preprocessing, config, devices)
    self._rngs = jnp.stack([jax.random.key(seed + 4) for seed in seeds])
    self._eval_step = jax.jit(map_replicas(make_eval_step(model), len(seeds),
                                           in_axes=(0, None, 0)))
    self._sample = jax.jit(map_replicas(lambda variables, rng: model.apply(
        variables, modes.NUM_SAMPLES, method="sample", rngs={"sample": rng}), len(seeds)))
    self._sample_rngs = jnp.stack([jax.random.key(seed + 5) for seed in seeds])

  def __call__(self, variables, split: str) -> list[dict[str, float]]:
    """The metrics of each replica of `variables` (stacked on a leading axis) on `split`."""
    sums, log_det = None, 0.0
    for index, batch in enumerate(zoo.data.eval_batches(
        self.dataset, self.preprocessing, split,
        batch_size=_round_up(self.config.eval_batch_size, self.devices.size),
        process_index=jax.process_index(), process_count=jax.process_count())):
      log_det += float((self.preprocessing.log_det(batch["x"]) * batch["mask"]).sum())
      batch_sums = self._eval_step(variables, self.devices.shard_batch(batch),
                                   _fold_in_replicas(self._rngs, index))
      sums = batch_sums if sums is None else jax.tree.map(jnp.add, sums, batch_sums)
    count = self.dataset.num_examples(split)
    log_det = float(np.sum(multihost_utils.process_allgather(np.float64(log_det))))
    sums = jax.device_get(sums)
    samples = (self.preprocessing.inverse(np.asarray(jax.device_get(
        self._sample(variables, self._sample_rngs)))) if self.dataset.mixture is not None
               else None)
    replicas = []
    for r in range(len(self._rngs)):
      metrics = {k: float(v[r]) / count for k, v in sums.items()}
      if "log_prob" in metrics and self.preprocessing.dequantizes:
        metrics["bits_per_dim"] = float(likelihood.bits_per_dim(
            metrics["log_prob"] + log_det / count, int(np.prod(self.dataset.example_shape)),
            self.dataset.num_levels))
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
  for accuracy."""

  def __init__(self, model, dataset, preprocessing, config, devices: Devices, num_replicas):
    self.dataset, self.preprocessing, self.devices = dataset, preprocessing, devices
    self.batch_size = _round_up(config.eval_batch_size, devices.size)

    def sums(variables, batch):
      _, recorded = model.apply(variables, batch, method="batch_norm_inputs",
                                mutable=[flows.BATCH_NORM_INPUTS])
      stats = flax.traverse_util.flatten_dict(variables["batch_stats"])
      mask = batch["mask"].astype(jnp.float32)[:, None]
      out = {}
      for path, (inputs,) in flax.traverse_util.flatten_dict(
          recorded[flows.BATCH_NORM_INPUTS]).items():
        centred = (inputs - stats[(*path[:-1], "mean")]) * mask
        out["/".join(path[:-1])] = (centred.sum(0), (centred * centred).sum(0))
      return out

    self._sums = jax.jit(map_replicas(sums, num_replicas, in_axes=(0, None)))

  def __call__(self, variables: dict) -> dict:
    count = self.dataset.num_examples("train")
    for _ in range(len(jax.tree.leaves(variables["batch_stats"])) // 2):
      totals = {}  # on the host, in float64: no eager op on the sharded device arrays
      for batch in zoo.data.eval_batches(
          self.dataset, self.preprocessing, "train", batch_size=self.batch_size,
          process_index=jax.process_index(), process_count=jax.process_count()):
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
  """The five metrics of `zoo.metrics.disentanglement` for the posterior means of a model's
  `encode` on the ground-truth set's renders, with `counts` (config.disentanglement): MIG, SAP
  and DCI on `num_points` codes (SAP and DCI train on 2/3, test on 1/3), the beta-VAE and
  FactorVAE scores on `score_train` + `score_eval` points of the published batch size 64."""
  encode = jax.jit(lambda v, x: model.apply(v, x, method="encode")[0])

  def encode_fn(x):
    return np.concatenate([np.asarray(encode(variables, x[i:i + ENCODE_BATCH]))
                           for i in range(0, len(x), ENCODE_BATCH)])

  rng = np.random.default_rng(seed)
  factors = ground_truth.sample_factors(counts.num_points, rng)
  codes = encode_fn(ground_truth.sample_observations_from_factors(factors, rng))
  score_counts = {"num_train": counts.score_train, "num_eval": counts.score_eval}
  beta_vae = disentanglement.beta_vae_score(ground_truth, encode_fn, rng, **score_counts)
  factor_vae = disentanglement.factor_vae_score(ground_truth, encode_fn, rng, **score_counts)
  dci = disentanglement.dci(factors, codes, seed=seed)
  return {"beta_vae_score": beta_vae["eval_accuracy"],
          "factor_vae_score": factor_vae["eval_accuracy"],
          **disentanglement.mig(factors, codes), **disentanglement.sap(factors, codes),
          **{f"dci_{k}": v for k, v in dci.items()}}


def clustering_metrics(model, variables, dataset, preprocessing, config) -> dict:
  """The clustering error of a model with K categorical codes (`model.encode` gives q(y | x)) by
  the papers' protocol (`zoo.metrics.clustering`: each cluster labelled by its most confident
  validation example, the training split's where there is none), the error of the training
  split's majority labelling beside it, and how many of the K clusters the test split occupies
  (a code that collapses onto a few shows here)."""
  encode = jax.jit(lambda v, x: model.apply(v, x, method="encode"))

  def codes(split):
    probabilities, labels = [], []
    for batch in zoo.data.eval_batches(dataset, preprocessing, split,
                                       batch_size=config.eval_batch_size):
      probabilities.append(np.asarray(encode(variables, batch["x"]))[batch["mask"]])
      labels.append(batch["label"][batch["mask"]])
    return np.concatenate(probabilities), np.concatenate(labels)

  train_probabilities, train_labels = codes("train")
  test_probabilities, test_labels = codes("test")
  labelling = ((train_probabilities, train_labels) if "validation" not in
               dataset.builder.info.splits else codes("validation"))
  test_clusters = test_probabilities.argmax(-1)
  metrics = {
      "clustering_error": clustering.error(clustering.most_confident_labels(*labelling),
                                           test_clusters, test_labels),
      "clustering_error_majority": clustering.clustering_error(
          train_probabilities.argmax(-1), train_labels, test_clusters, test_labels,
          model.num_clusters),
      "clusters_used": len(np.unique(test_clusters))}
  if getattr(model, "semi_supervised", False):  # the code is the class
    metrics["classification_error"] = float(np.mean(test_clusters != test_labels))
  return metrics


def labeled_parts(model, dataset, config, devices, seeds) -> list[dict]:
  """For a semi-supervised model, `train_batches`' labelled set of each seed: `config.num_labels`
  training examples, as many of each class, chosen by the seed; a batch holds min(num_labels,
  batch_size) of them."""
  if not getattr(model, "semi_supervised", False):
    return [{} for _ in seeds]
  classes = dataset.num_classes
  if not classes or config.num_labels <= 0 or config.num_labels % classes:
    raise errors.UserError(f"config.num_labels ({config.num_labels}) must be a positive "
                           f"multiple of the data set's classes ({classes})")
  if model.num_clusters != classes:
    raise errors.UserError(f"a semi-supervised code needs one category per class: "
                           f"config.model.latent_dim={classes}, not {model.num_clusters}")
  size = min(config.num_labels, config.batch_size)
  if size % devices.size:
    raise errors.UserError(f"the labelled batch ({size}) must be divisible by the "
                           f"{devices.size} devices")
  labels = dataset.read("train", np.arange(dataset.num_examples("train")))["label"]
  return [{"labeled": zoo.data.balanced_subset(labels, config.num_labels, seed),
           "labeled_batch_size": size} for seed in seeds]


def load_data(config):
  """`zoo.data.load`; in a multi-process run process 0 prepares the data set while the others
  wait, so that no two write it at once."""
  if jax.process_index() == 0:
    dataset = zoo.data.load(config.dataset, config.data_dir or None)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("data set prepared")
  if jax.process_index() != 0:
    dataset = zoo.data.load(config.dataset, config.data_dir or None)
  return dataset


def _round_up(n, multiple):
  return -(-n // multiple) * multiple


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, devices=None) -> dict:
  """Train `config.model_name` as `config` says, writing into `workdir`; returns results.json.

  Resumes from the latest checkpoint in `workdir`. Raises `zoo.errors.UserError` for mistakes a
  user can fix, `NonFiniteLossError` when the loss diverges.
  """
  config = configs.finalize(config)
  spec = zoo.get(config.model_name)
  game = spec.family == "game"
  validate(config, game=game)
  model = spec.build(**config.model)
  devices = Devices.all(devices)
  dataset = load_data(config)
  if "test" not in dataset.builder.info.splits:  # TFDS's dsprites has only `train`
    raise errors.UserError(f"data set {config.dataset!r} has no test split to evaluate on "
                           f"(its splits: {', '.join(dataset.builder.info.splits)})")
  preprocessing = zoo.data.preprocessing(dataset, config.preprocess, config.alpha,
                                         config.zca_epsilon)
  levels = getattr(model, "num_levels", None)  # a model of discrete pixels
  if levels and levels != preprocessing.levels:
    raise errors.UserError(
        f"config.model.num_levels={levels} needs pixels with {levels} values; preprocessing "
        f"{config.preprocess} gives {preprocessing.levels or 'continuous ones'} (binarize gives "
        f"2, scale the data's {dataset.num_levels})")
  if config.batch_size % devices.size:
    raise errors.UserError(f"config.batch_size ({config.batch_size}) must be divisible by the "
                           f"{devices.size} devices")
  seeds = [config.seed + r for r in range(config.num_seeds)]
  labeled = labeled_parts(model, dataset, config, devices, seeds)
  is_writer = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  if is_writer:
    outputs.write_json(os.path.join(workdir, checkpoints.CONFIG), config.to_dict())

  init_rngs, rngs = replica_keys(seeds)
  saved = checkpoints.manager(os.path.join(workdir, checkpoints.CHECKPOINTS), max_to_keep=2)
  best = checkpoints.manager(os.path.join(workdir, checkpoints.BEST), max_to_keep=1)
  start_step = saved.latest_step() or 0
  streams = [zoo.data.train_batches(
      dataset, preprocessing, batch_size=config.batch_size, seed=seed,
      start_step=batches_before(config, start_step) if game else start_step,
      process_index=jax.process_index(), process_count=jax.process_count(), **part)
             for seed, part in zip(seeds, labeled)]

  def batch_for(step):
    """The step's batch of every replica, stacked; a game's step takes a stack per replica."""
    stack = lambda batches: jax.tree.map(lambda *b: np.stack(b), *batches)
    if not game:
      return devices.shard_batch(stack([next(s) for s in streams]), leading_axes=1)
    updates = critic_steps_at(config, step)
    return devices.shard_batch(stack([stack([next(s) for _ in range(updates)]) for s in streams]),
                               leading_axes=2)

  with contextlib.closing(prefetch(batch_for, start_step)) as batches:
    batch = next(batches)
    train_step, optimizer = make_step(model, config, game)
    state = init_replicas(model, optimizer, jax.tree.map(lambda x: x[:, 0], batch) if game
                          else batch, init_rngs)
    state = devices.replicate(state)
    if start_step:
      state = _resume(saved, start_step, state)
    best_variables, best_value, best_step = _best_so_far(best, devices, len(seeds))
    log = outputs.MetricLog(workdir, is_writer, resume_step=start_step)

    def stopped_early(step) -> np.ndarray:
      """Which replicas early stopping has ended by `step`."""
      patience = config.early_stopping_patience
      return (patience > 0) & (best_step >= 0) & (
          (step - best_step) // config.eval_every >= patience)

    train_step = jax.jit(make_replicated_step(train_step, len(seeds)), donate_argnums=0)
    gradient_statistics = None
    if config.gradient_statistics_draws:
      gradient_statistics = jax.jit(map_replicas(
          make_gradient_statistics(model, config.gradient_statistics_draws), len(seeds)))
    evaluator = Evaluator(model, dataset, preprocessing, config, devices, seeds)
    fit_batch_norm = (BatchNormFit(model, dataset, preprocessing, config, devices, len(seeds))
                      if spec.family == "flow" and "batch_stats" in state.model_state else None)
    monitor = "validation" if "validation" in dataset.builder.info.splits else None
    progress = outputs.Progress(config.num_steps, is_writer)
    progress.start(start_step)
    pending, step = [], start_step
    started = time.time() - _seconds_trained(workdir, start_step)
    while step < config.num_steps and not stopped_early(step).all():
      if step > start_step:
        batch = next(batches)
      active = ~stopped_early(step)  # the same over a logging window: stops are at its ends
      state, metrics = train_step(state, batch, rngs, active)
      pending.append(metrics)
      step += 1
      if step % config.log_every and step != config.num_steps:
        continue
      rows = jax.device_get(pending)
      pending = []
      bad = _first_non_finite(np.stack([r["loss"] for r in rows]), active, step)
      if bad is not None:
        kept = (f"the last good checkpoint, step {saved.latest_step()}, is kept in "
                f"{saved.directory}" if saved.latest_step() else "no checkpoint was written yet")
        raise NonFiniteLossError(f"the loss became non-finite at step {bad[0]}"
                                 f"{f' (seed {seeds[bad[1]]})' if len(seeds) > 1 else ''}; {kept}")
      means = {k: np.mean([r[k] for r in rows], axis=0) for k in rows[0]}
      if gradient_statistics is not None:
        statistics = gradient_statistics(state, batch, _fold_in_replicas(init_rngs, step))
        means.update(jax.device_get(statistics))
      log.write(step, {k: _logged(v, active) for k, v in means.items()})
      progress.update(step, {"loss": float(np.mean(means["loss"][active]))})
      if monitor and (step % config.eval_every == 0 or step == config.num_steps):
        if fit_batch_norm:
          fitted = fit_batch_norm(_variables(state))
          state = state.replace(model_state={k: fitted[k] for k in state.model_state})
        replicas = evaluator(_variables(state), monitor)
        log.write(step, {f"{monitor}/{k}": _logged(v, active)
                         for k, v in _per_metric(replicas).items()})
        # float32, as saved, so that a resumed run ranks evaluations as the first would have
        values = np.array([m.get("log_prob", -m.get("loss", np.nan)) for m in replicas],
                          np.float32)
        improved = active & (values > best_value)  # False for NaN: models that report neither
        if improved.any():
          best_value, best_step = np.where(improved, values, best_value), np.where(
              improved, step, best_step)
          current = _variables(state)  # a copy is kept: the next step donates the state
          best_variables = jax.jit(select_replicas)(
              improved, current, current if best_variables is None else best_variables)
          best.save(step, args=ocp.args.StandardSave(
              {"variables": best_variables, "value": devices.replicate(best_value),
               "step": devices.replicate(best_step)}))
        for r in np.flatnonzero(active & stopped_early(step)):
          progress.note(f"early stopping{f' seed {seeds[r]}' if len(seeds) > 1 else ''} at step "
                        f"{step}: no improvement on {monitor} since step {best_step[r]}")
      if (step % config.checkpoint_every == 0 or step == config.num_steps
          or stopped_early(step).all()):
        saved.save(step, args=ocp.args.StandardSave(state), force=True)
        if is_writer:
          outputs.write_json(os.path.join(workdir, PROGRESS),
                             {"step": step, "train_seconds": time.time() - started})
  saved.wait_until_finished()
  best.wait_until_finished()
  progress.close()
  train_seconds = time.time() - started  # the final evaluation and metrics are not training

  final = best_variables
  if final is None:
    final = fit_batch_norm(_variables(state)) if fit_batch_norm else _variables(state)
  tests = evaluator(final, "test")
  validations = evaluator(final, monitor) if monitor else None
  # this process's copy, on its first device: what follows runs on each process alone
  final = jax.device_put(jax.device_get(final), jax.local_devices()[0])
  for r, seed in enumerate(seeds):
    variables = jax.tree.map(lambda x: x[r], final)  # pylint: disable=cell-var-from-loop
    if dataset.ground_truth is not None and config.get("disentanglement"):
      tests[r].update(disentanglement_metrics(
          model, variables, dataset.ground_truth, config.disentanglement, seed + 7))
    if getattr(model, "num_clusters", 0) and dataset.num_classes:
      tests[r].update(clustering_metrics(model, variables, dataset, preprocessing, config))
  steps = np.where(stopped_early(step),
                   best_step + config.early_stopping_patience * config.eval_every, step)
  results = {"model": config.model_name, "paper": spec.paper, "dataset": config.dataset,
             "seeds": seeds, "steps": int(step), "train_seconds": train_seconds,
             "devices": devices.size, "processes": jax.process_count(),
             "num_params": int(sum(x[0].size for x in jax.tree.leaves(state.params))),
             **_summary("test", tests)}
  if monitor:
    results.update(_summary(monitor, validations))
  best_steps = [int(s) if s >= 0 else None for s in best_step]
  if len(seeds) == 1:
    results["best_step"] = best_steps[0]
  else:
    results["per_seed"] = [
        {"seed": seed, "steps": int(steps[r]), "best_step": best_steps[r], "test": tests[r],
         **({monitor: validations[r]} if monitor else {})} for r, seed in enumerate(seeds)]
  every = np.ones(len(seeds), bool)
  log.write(step, {f"test/{k}": _logged(v, every) for k, v in _per_metric(tests).items()})
  log.close()
  if is_writer:
    outputs.write_json(os.path.join(workdir, "results.json"), results)
    first = jax.tree.map(lambda x: x[0], final)  # the images show the first seed's model
    outputs.write_samples(os.path.join(workdir, "samples.png"), model, first, dataset,
                          preprocessing, config)
    if hasattr(model, "layer_grid"):
      outputs.write_layer_grids(workdir, model, first, dataset, config)
    if hasattr(model, "decompose"):
      outputs.write_decomposition(os.path.join(workdir, "decomposition.png"), model, first,
                                  dataset, config)
    if hasattr(model, "traverse"):
      outputs.write_traversals(os.path.join(workdir, "traversals.png"), model, first, dataset,
                               preprocessing, config)
    if config.get("inpaint") and dataset.is_image and preprocessing.elementwise:
      outputs.write_inpainting(os.path.join(workdir, "inpainting.png"), model, first, dataset,
                               preprocessing, config)
  return results


def _summary(split: str, replicas: list[dict]) -> dict:
  """`{split: mean of each metric over the replicas}`, and with several, `{split}_stderr`: the
  standard error of that mean (sample standard deviation / sqrt(replicas))."""
  values = _per_metric(replicas)
  summary = {split: {k: float(v.mean()) for k, v in values.items()}}
  if len(replicas) > 1:
    summary[f"{split}_stderr"] = {k: float(v.std(ddof=1) / np.sqrt(len(v)))
                                  for k, v in values.items()}
  return summary


def _init_state(model, optimizer, batch, rng) -> TrainState:
  """The initial state; `optimizer` is one optax optimiser, or a game's one per phase."""
  method = "__call__" if isinstance(optimizer, dict) else "loss"
  variables = jax.jit(lambda b: model.init({"params": rng, "sample": rng}, b, method=method))(
      batch)
  params = variables.pop("params")
  if isinstance(optimizer, dict):
    opt_state = {phase: optimizer[phase].init({name: params[name] for name in model.phases[phase]})
                 for phase in optimizer}
  else:
    opt_state = optimizer.init(params)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
                    model_state=dict(variables))


def init_replicas(model, optimizer, batch, rngs) -> TrainState:
  """The initial state of each replica, stacked: `batch` and `rngs` have a replica axis."""
  return jax.jit(map_replicas(lambda b, key: _init_state(model, optimizer, b, key), len(rngs)))(
      batch, rngs)


def _variables(state: TrainState) -> dict:
  return {"params": state.params, **state.model_state}


PROGRESS = "progress.json"  # the training seconds spent up to the last checkpoint


def _seconds_trained(workdir, step) -> float:
  """The wall-clock seconds the run had trained when it saved the checkpoint at `step`, so a
  resumed run reports its whole training time."""
  path = os.path.join(workdir, PROGRESS)
  if not step or not os.path.exists(path):
    return 0.0
  with open(path) as f:
    progress = json.load(f)
  return progress["train_seconds"] if progress["step"] == step else 0.0


def _resume(saved, step: int, state: TrainState) -> TrainState:
  """The state of checkpoint `step`, which must have the shapes of `state`."""
  try:
    return saved.restore(step, args=ocp.args.StandardRestore(state))
  except ValueError as e:
    raise errors.UserError(
        f"the checkpoint at step {step} in {saved.directory} does not fit this config (a "
        f"different model, num_seeds or zoo version wrote it; {str(e).splitlines()[0][:200]}); "
        "train into a new workdir") from None


def _best_so_far(best, devices, num_replicas: int):
  """(variables, value, step) of each replica's best evaluation so far: None, -inf and -1 where
  there has been none."""
  if best.latest_step() is None:
    return None, np.full(num_replicas, -np.inf, np.float32), np.full(num_replicas, -1)
  saved = devices.restore(best, best.latest_step())
  return saved["variables"], np.asarray(saved["value"]), np.asarray(saved["step"])

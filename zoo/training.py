"""Training a zoo model: the train state, the optimiser, the pure train steps of a single
objective and of a game, the replica axis of several seeds, and the device mesh.

Everything here is a pure function of its arguments (no flags, no files), so a notebook trains
any model of the zoo in a few lines (README, "In a notebook"); `experiments.loop` is the runner
that adds data streams, evaluation, checkpoints and outputs around these steps.

A step is `train_step(state, batch, rng) -> (state, metrics)`, jitted once with the state
donated. Randomness at step s is `fold_in(rng, s)`. A run of several seeds trains replicas at
once: the state, the batch and the step's randomness have a leading replica axis, and each
replica is exactly the single-seed run of its seed.
"""

import dataclasses
from typing import Any

import flax
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from zoo import checkpoints
from zoo import configs
from zoo import contract
from zoo import errors


class TrainState(flax.struct.PyTreeNode):
  """What a step updates: the step count, the parameters, the optimiser state (a game's one
  per phase) and the model's other variables."""

  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any  # the non-parameter collections, such as batch norm's `batch_stats`


def make_optimizer(config, per_replica_learning_rate=False) -> optax.GradientTransformation:
  """`config.optimizer` (Adam; RMSProp as the WGAN paper's code: PyTorch's defaults, decay
  0.99 and eps outside the square root; or Adagrad, the beta-VAE paper's for dSprites, with
  optax's accumulator start 0.1 and eps 1e-7, TensorFlow's, since the paper gives neither),
  with the L2 penalty `weight_decay` added to the gradient (the MAF paper's 1e-6). With
  `per_replica_learning_rate` (a run that sweeps it over its replicas), the learning rate is a
  value of the optimiser's state (`optax.inject_hyperparams`), set for each replica by
  `init_state`.

  Args:
    config: a finished training config: `optimizer`, `learning_rate`, `weight_decay` and, for
      Adam, `adam_b1`, `adam_b2`, `adam_eps`.
    per_replica_learning_rate: whether the learning rate lives in the optimiser's state.

  Returns:
    The optax transformation.
  """

  def optimizer(learning_rate):
    if config.optimizer == "adam":
      update = optax.adam(learning_rate, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)
    elif config.optimizer == "rmsprop":
      update = optax.rmsprop(learning_rate, decay=0.99, eps=1e-8, eps_in_sqrt=False)
    else:
      update = optax.adagrad(learning_rate, initial_accumulator_value=0.1, eps=1e-7)
    return optax.chain(optax.add_decayed_weights(config.weight_decay), update)

  if per_replica_learning_rate:
    return optax.inject_hyperparams(optimizer)(learning_rate=config.learning_rate)
  return optimizer(config.learning_rate)


def _cast(tree, dtype):
  """The floating arrays of `tree` in `dtype`; the others as they are."""
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
  )


def apply_loss(model, method: str, bfloat16: bool, params, state: TrainState, batch, rng):
  """The model's loss `method` in training mode. With `bfloat16`, mixed precision: the
  parameters and the batch's floating arrays are cast to bfloat16 for the computation (the
  stored parameters, the optimiser and the gradients, which flow back through the cast, stay
  float32) and the results cast back to float32.

  Args:
    model: a zoo model.
    method: the name of its loss method (`loss`, a game's `<phase>_loss`,
      `objective_surrogate`).
    bfloat16: whether to compute in bfloat16.
    params: the parameters to differentiate (`state.params`, or a phase's updated in place).
    state: the train state whose other variables (`model_state`) the model reads.
    batch: {"x": (B, *example_shape), ...}.
    rng: the key of the method's `sample` stream.

  Returns:
    (loss, (metrics, model_state)): the scalar loss, the method's scalar metrics and the model
    state with the collections it updated (batch norm's statistics).
  """
  model_state = state.model_state
  if bfloat16:  # swept fields too: a single run's Python float meeting a bfloat16 array is
    # rounded to bfloat16 (but where it meets an integer, as VLAE's warm-up step count, the
    # single run computes in float32 and the replica in bfloat16: they differ at that precision)
    params, batch, model_state = _cast((params, batch, model_state), jnp.bfloat16)
  (loss, metrics), updated = model.apply(
      {"params": params, **model_state},
      batch,
      train=True,
      method=method,
      rngs={"sample": rng},
      mutable=[name for name in model_state if name != contract.SWEPT],
  )
  if bfloat16:
    loss, metrics, updated = _cast((loss, metrics, updated), jnp.float32)
  return loss, (metrics, {**state.model_state, **updated})


def make_train_step(model, optimizer, bfloat16: bool = False):
  """The pure train step of a single-objective model: its `loss` method, one optimiser update.

  Args:
    model: a zoo model with a `loss` method.
    optimizer: its optax transformation (`make_optimizer`).
    bfloat16: whether to compute the loss in bfloat16 (`apply_loss`).

  Returns:
    `train_step(state, batch, rng) -> (state, metrics)`: batch {"x": (B, *example_shape),
    ...}, randomness `fold_in(rng, state.step)`, metrics `loss`, `grad_norm` and the model's,
    scalars.
  """

  def train_step(state: TrainState, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    (loss, (metrics, model_state)), grads = jax.value_and_grad(
        lambda params: apply_loss(model, "loss", bfloat16, params, state, batch, rng), has_aux=True
    )(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates),
        opt_state=opt_state,
        model_state=model_state,
    )
    return state, {"loss": loss, "grad_norm": optax.global_norm(grads), **metrics}

  return train_step


def make_phase_update(model, optimizers: dict, bfloat16: bool = False):
  """One optimiser update of one phase of a game (`zoo.nn.games.Game`). It differentiates only
  the parameters of the phase's submodules, with the phase's own optimiser and state, and
  projects them after the update (`model.project`: WGAN's weight clipping).

  Args:
    model: a game.
    optimizers: {phase: its optax transformation}.
    bfloat16: whether to compute the losses in bfloat16 (`apply_loss`).

  Returns:
    `update(phase, state, batch, rng) -> (state, metrics)` for one batch
    {"x": (B, *example_shape), ...}; metrics named `<phase>/loss`, `<phase>/grad_norm` and
    `<phase>/` the model's.
  """

  def update(phase, state: TrainState, batch, rng):
    trained = {name: state.params[name] for name in model.phases[phase]}
    (loss, (metrics, model_state)), grads = jax.value_and_grad(
        lambda trained: apply_loss(
            model, f"{phase}_loss", bfloat16, {**state.params, **trained}, state, batch, rng
        ),
        has_aux=True,
    )(trained)
    updates, opt_state = optimizers[phase].update(grads, state.opt_state[phase], trained)
    trained = model.with_swept(state.model_state).project(
        phase, optax.apply_updates(trained, updates)
    )
    state = state.replace(
        params={**state.params, **trained},
        opt_state={**state.opt_state, phase: opt_state},
        model_state=model_state,
    )
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), **metrics}
    return state, {f"{phase}/{k}": v for k, v in metrics.items()}

  return update


UNROLL_LIMIT = 10


def make_game_step(model, optimizers: dict, bfloat16: bool = False):
  """The pure train step of a game: `batches` stacks one batch per update of the first phase
  (WGAN's critic steps), run through in order; every other phase is then updated once, in
  order, on the last batch.

  Args:
    model: a game (`zoo.nn.games.Game`).
    optimizers: {phase: its optax transformation}.
    bfloat16: whether to compute the losses in bfloat16 (`apply_loss`).

  Returns:
    `train_step(state, batches, rng) -> (state, metrics)`: batches {"x": (updates, B,
    *example_shape), ...}, randomness `fold_in(rng, state.step)`; metrics each phase's last
    (`make_phase_update`) and `loss`, the first phase's (WGAN's critic loss, minus its
    Wasserstein estimate).
  """
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
      state, metrics = update(first, state, jax.tree.map(lambda x, i=i: x[i], batches), key)
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


def make_step(model, config, game: bool, per_replica_learning_rate=False):
  """The pure train step of `model` as `config` trains it, and its optimiser.

  Args:
    model: a zoo model (`zoo.build`).
    config: a finished training config (`zoo.configs.finalize`): its optimiser, learning rate,
      weight decay and `bfloat16`.
    game: whether the model is a game (`zoo.get(name).family == "game"`): a step of its phases,
      each with its own optimiser, on a stack of batches (one per update of its first phase).
    per_replica_learning_rate: the learning rate as optimiser state, set per replica
      (`make_optimizer`), for a sweep over it.

  Returns:
    (train_step, optimizer): `train_step(state, batch, rng) -> (state, metrics)`, pure (jit
    it), its randomness `fold_in(rng, state.step)`, metrics `loss`, `grad_norm` and the
    model's, scalars; `optimizer` the optax transformation (a game's, a dict by phase) that
    `init_state` needs. A batch is {"x": (B, *example_shape), ...}; a game's stacks them,
    (updates, B, *example_shape).

  Raises:
    zoo.errors.UserError: a config with fields unset (not through `finalize`).
  """
  configs.check_finished(config)
  if game:
    optimizer = {phase: make_optimizer(config, per_replica_learning_rate) for phase in model.phases}
    return make_game_step(model, optimizer, config.bfloat16), optimizer
  optimizer = make_optimizer(config, per_replica_learning_rate)
  return make_train_step(model, optimizer, config.bfloat16), optimizer


def stack(trees):
  """The trees' arrays (all of one structure and shapes) stacked on a new leading axis, as
  NumPy arrays."""
  return jax.tree.map(lambda *x: np.stack(x), *trees)


@dataclasses.dataclass(frozen=True)
class StepKind:
  """A way of training, and all that the runner, `zoo.fit` and the bench ask of it, so that
  none of them asks what kind of model it holds (`zoo.registry.ModelSpec.step_kind`).

  Attributes:
    name: `objective` (one loss, one optimiser: the flows and latent-variable models) or
      `game` (phases, each with its own optimiser: `zoo.nn.games.Game`).
    stacked: whether a step takes a stack of batches, one per update of the game's first
      phase, on an axis after the replica axis (`updates_at` of them).
    windowed: whether several steps may be compiled as one loop (a game's stacks change
      height from step to step: one step a program).
  """

  name: str
  stacked: bool
  windowed: bool

  def make(self, model, config, per_replica_learning_rate=False):
    """`make_step` of this kind: (train step, optimiser)."""
    return make_step(model, config, self.stacked, per_replica_learning_rate)

  def updates_at(self, config, step: int) -> int:
    """The batches step `step` takes (`first_phase_updates_at` for a game)."""
    return first_phase_updates_at(config, step) if self.stacked else 1

  def stack_shape(self, config) -> tuple[int, ...]:
    """The stacking axes of a step's input outside a game's bursts: (first_phase_updates,) or
    ()."""
    return (config.first_phase_updates,) if self.stacked else ()

  def batches_before(self, config, step: int) -> int:
    """The batches the steps before `step` took: where a stream resumes."""
    return batches_before(config, step) if self.stacked else step

  def step_input(self, batches: list):
    """One replica's step input from its `updates_at` batches: their stack, or the one."""
    return stack(batches) if self.stacked else batches[0]

  @property
  def leading_axes(self) -> int:
    """The axes of a step's input (every replica's) before the batch axis."""
    return 2 if self.stacked else 1

  def one_batch(self, step_input):
    """A single batch of every replica from a step's input, to initialise the state with."""
    return jax.tree.map(lambda x: x[:, 0], step_input) if self.stacked else step_input

  def check(self, config) -> None:
    """A `UserError` for a config this kind cannot train."""
    if self.stacked and config.gradient_statistics_draws:
      raise errors.UserError(
          "config.gradient_statistics_draws is for single-objective models; "
          f"{config.model_name} is a game"
      )


OBJECTIVE = StepKind("objective", stacked=False, windowed=True)
GAME = StepKind("game", stacked=True, windowed=False)


def first_phase_updates_at(config, step: int) -> int:
  """Updates of a game's first phase at step `step` (WGAN's critic, PixelGAN's reconstruction):
  `first_phase_updates`, but `burst_updates` for the first `burst_first` steps and every
  `burst_every`-th (the WGAN paper's 100 critic updates for the first 25 generator iterations
  and every 500th, so the critic stays near optimal).

  Args:
    config: a game's finished config.
    step: the step, from 0.

  Returns:
    The number of first-phase updates, so of batches, of that step.
  """
  if config.burst_updates and (step < config.burst_first or step % config.burst_every == 0):
    return config.burst_updates
  return config.first_phase_updates


def batches_before(config, step: int) -> int:
  """How many batches a game consumes before step `step` (the sum of `first_phase_updates_at`
  over the steps before it): where its data resumes."""
  return sum(first_phase_updates_at(config, s) for s in range(step))


def make_gradient_statistics(model, draws: int):
  """The variance and signal-to-noise ratio of a stochastic gradient estimator on one batch, per
  top-level parameter group: `draws` independent gradients of the model's
  `objective_surrogate` (its estimate of the objective's gradient, before a rescaling such as
  NVIL's), vmapped over the step's randomness; per parameter their variance and |mean| / std,
  averaged over the group's parameters.

  Args:
    model: a zoo model with `objective_surrogate`.
    draws: the number of independent gradients.

  Returns:
    `statistics(state, batch, rng) -> {"grad_variance/<group>": scalar, "grad_snr/<group>":
    scalar}` for each top-level parameter group, batch {"x": (B, *example_shape), ...}.
  """

  def statistics(state: TrainState, batch, rng):
    gradient = lambda key: jax.grad(
        lambda p: apply_loss(model, "objective_surrogate", False, p, state, batch, key)[0]
    )(state.params)
    grads = jax.vmap(gradient)(jax.random.split(rng, draws))
    out = {}
    for group, tree in grads.items():
      g = jnp.concatenate([x.reshape(draws, -1) for x in jax.tree.leaves(tree)], 1)
      mean, var = g.mean(0), g.var(0)
      out[f"grad_variance/{group}"] = var.mean()
      out[f"grad_snr/{group}"] = (jnp.abs(mean) / jnp.sqrt(var + 1e-30)).mean()
    return out

  return statistics


def init_state(model, optimizer, batch, rng, setting=None) -> TrainState:
  """The initial train state of `model`.

  Args:
    model: a zoo model.
    optimizer: `make_step`'s optimiser (a game's, one per phase).
    batch: a batch like those it will train on, {"x": (B, *example_shape), ...} (a game's
      single batch, not its stack).
    rng: the key of its parameters' initialisation.
    setting: a replica's swept hyper-parameters, {dotted config key: value}
      (`zoo.configs.swept_values`): its model fields, kept in the `swept` collection
      (`zoo.contract`), and its learning rate, in the optimiser's state; None for none.

  Returns:
    The `TrainState` at step 0.
  """
  setting = setting or {}
  fields = configs.model_fields(setting)
  swept = {contract.SWEPT: fields} if fields else {}
  method = "loss" if contract.implements(model, "loss") else "__call__"  # a game: every phase
  variables = jax.jit(
      lambda b: model.with_swept(swept).init({"params": rng, "sample": rng}, b, method=method)
  )(batch)
  params = variables.pop("params")
  if isinstance(optimizer, dict):
    opt_state = {
        phase: optimizer[phase].init({name: params[name] for name in model.phases[phase]})
        for phase in optimizer
    }
  else:
    opt_state = optimizer.init(params)
  if "learning_rate" in setting:
    opt_state = optax.tree_utils.tree_set(opt_state, learning_rate=setting["learning_rate"])
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=opt_state,
      model_state={**variables, **swept},
  )


def init_replicas(model, optimizer, batch, rngs, settings=None) -> TrainState:
  """The initial state of each replica, stacked (`init_state` of each).

  Args:
    model: a zoo model.
    optimizer: `make_step`'s optimiser.
    batch: one batch per replica, {"x": (R, B, *example_shape), ...}.
    rngs: (R,) keys, each replica's initialisation.
    settings: the swept values, {dotted config key: (R,) values}; None: no sweep.

  Returns:
    The `TrainState` of the R replicas at step 0, each array with a leading axis of R.
  """
  return jax.jit(
      map_replicas(lambda b, key, setting: init_state(model, optimizer, b, key, setting), len(rngs))
  )(batch, rngs, settings or {})


def variables_of(state: TrainState) -> dict:
  """The model's variables in `state` ({"params": ..., and its other collections}): what
  `model.apply` takes."""
  return {"params": state.params, **state.model_state}


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


def convolves(fn, *args) -> bool:
  """Whether `fn` on `args` (arrays or their shapes) computes a convolution."""
  return "conv_general_dilated" in set(_primitives(jax.make_jaxpr(fn)(*args).jaxpr))


def _unroll_replicas(fn, *args) -> bool:
  """Whether to unroll replicas of `fn` on `args` (one replica's shapes) rather than vmap them:
  on CPU, where `fn` convolves. XLA:CPU runs a vmapped convolution with a kernel per replica as
  a grouped convolution whose gradient is slow there: the beta-VAE step for 4 seeds takes 2.25 s
  vmapped, 0.47 s unrolled, 0.14 s for one seed. An MLP's step is fastest vmapped (MAF on
  toy2d: 0.24 ms vmapped, 0.37 ms unrolled for 4 seeds, 0.20 ms for one)."""
  return jax.default_backend() == "cpu" and convolves(fn, *args)


def map_replicas(fn, num_replicas: int, in_axes=0):
  """`fn` over the leading replica axis of the arguments whose `in_axes` entry is 0 (the others
  are shared by all replicas): `jax.vmap`, or where `_unroll_replicas` says so the replicas
  unrolled into one program. A single replica is `fn` on its slice, not vmapped over an axis of
  one (XLA still rounds that program a little differently from `fn` on unstacked arrays).

  Args:
    fn: a function of one replica's arguments.
    num_replicas: R, the length of the replica axis.
    in_axes: 0 or None, or a tuple of them, one per argument, as `jax.vmap`'s.

  Returns:
    `fn` of the replicas: its outputs with a leading axis of R.
  """
  vmapped = jax.vmap(fn, in_axes=in_axes)

  def mapped(*args):
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)

    def replica(i, arrays):
      return fn(
          *(jax.tree.map(lambda x: x[i], a) if axis == 0 else a for a, axis in zip(arrays, axes))
      )

    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), args)
    if num_replicas > 1 and not _unroll_replicas(lambda *one: replica(0, one), *shapes):
      return vmapped(*args)
    return jax.tree.map(lambda *xs: jnp.stack(xs), *(replica(i, args) for i in range(num_replicas)))

  return mapped


def select_replicas(mask, new, old):
  """`new` for the replicas where `mask` ((R,) booleans) is True, `old` for the others: two
  trees of one structure whose arrays lead with the replica axis."""
  return jax.tree.map(
      lambda n, o: jnp.where(jnp.reshape(mask, (-1,) + (1,) * (n.ndim - 1)), n, o), new, old
  )


def make_replicated_step(train_step, num_replicas: int):
  """The step of `num_replicas` independent runs stacked on a leading axis.

  Args:
    train_step: one replica's step (`make_step`).
    num_replicas: R.

  Returns:
    `replicated_step(state, batch, rng, active) -> (state, metrics)`: state, batch, rng ((R,)
    keys) and metrics with a leading axis of R; a replica whose `active` ((R,) booleans) entry
    is False (stopped early) keeps its state.
  """
  step = map_replicas(train_step, num_replicas)

  def replicated_step(state, batch, rng, active):
    new, metrics = step(state, batch, rng)
    return select_replicas(active, new, state), metrics

  return replicated_step


def make_window(replicated_step, make_batch, length: int):
  """`replicated_step` over a window of `length` steps as one program, `(state, arrays, inputs,
  rng, active, live) -> (state, metrics)`: `inputs` stacks each step's input on a leading axis,
  `make_batch(arrays, input)` makes a step's batch from it (a gather from a split held on the
  device, or the batch itself), `live[k]` says whether step k trains (a window cut short keeps
  its state through the rest) and the metrics are stacked on the window's axis. A window of
  one step is that step, not a loop of one: XLA:CPU runs a convolution inside a loop far
  slower (`make_game_step`).

  Args:
    replicated_step: `make_replicated_step`'s step.
    make_batch: `(arrays, step_input) -> batch`.
    length: L, the steps of a window.

  Returns:
    `window(state, arrays, inputs, rng, active, live) -> (state, metrics)`: inputs with a
    leading axis of L, live (L,) booleans, active (R,) booleans, metrics (L, R).
  """

  def one(state, arrays, step_input, rng, active):
    return replicated_step(state, make_batch(arrays, step_input), rng, active)

  def window(state, arrays, inputs, rng, active, live):
    if length == 1:
      first = jax.tree.map(lambda x: x[0], inputs)
      state, metrics = one(state, arrays, first, rng, active & live[0])
      return state, jax.tree.map(lambda m: m[None], metrics)
    return jax.lax.scan(
        lambda state, xs: one(state, arrays, xs[0], rng, active & xs[1]), state, (inputs, live)
    )

  return window


# The host memory a window's inputs may take (each of the prefetched ones too): its steps'
# batches, or with the training split on the devices, their indices and noise.
WINDOW_INPUT_BYTES = 64 << 20


def window_length(
    replicated_step, state, batch, rngs, step_input, log_every: int, kind: StepKind
) -> int:
  """How many steps a compiled window trains: the logging window's (`log_every`), or the
  largest of its divisors whose inputs (`step_input` a step's) fit WINDOW_INPUT_BYTES; one step
  for a kind that is not `windowed` (a game) and on CPU for a step that convolves
  (XLA:CPU runs a convolution inside a loop far slower, `make_game_step`). An MLP's step on CPU
  gains from the loop: BENCHMARKS.md, "The training loop".

  Args:
    replicated_step: `make_replicated_step`'s step, traced (not run) on the next three.
    state: the replicas' train state.
    batch: the replicas' batch, {"x": (R, B, *example_shape), ...}.
    rngs: (R,) step keys.
    step_input: what one step's input holds on the host (its batch, or its indices and noise).
    log_every: the logging window, which the length divides.
    kind: the model's `StepKind`.

  Returns:
    The window's length in steps, at least 1.
  """
  active = np.ones(len(rngs), bool)
  if not kind.windowed or (
      jax.default_backend() == "cpu" and convolves(replicated_step, state, batch, rngs, active)
  ):
    return 1
  step_bytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(step_input))
  fitting = max(1, WINDOW_INPUT_BYTES // step_bytes)
  return max(d for d in range(1, min(log_every, fitting) + 1) if log_every % d == 0)


def windows(start: int, num_steps: int, length: int):
  """The steps of each compiled window from `start` on: up to the next multiple of `length`
  (which divides `log_every`, so that logging steps end windows) or the last step.

  Yields:
    range(first step, end) of each window, in order, until `num_steps`.
  """
  step = start
  while step < num_steps:
    end = min((step // length + 1) * length, num_steps)
    yield range(step, end)
    step = end


def window_means(pending: list, active, step: int, label, kept=lambda: "") -> dict:
  """Each metric's mean over a logging window's steps, per replica: `pending` holds the
  window's compiled windows, (steps trained, their metrics stacked on the window's axis) each,
  ending at `step`.

  Args:
    pending: [(steps trained, metrics {name: (L, R)}), ...] of the logging window.
    active: (R,) booleans, the replicas still training.
    step: the step the logging window ends at.
    label: `label(replica) -> str`, the replica in an error's words.
    kept: `kept() -> str`, what a stopped run keeps, for an error's words.

  Returns:
    {name: (R,) means}.

  Raises:
    zoo.errors.NonFiniteLossError: a non-finite loss of an active replica, naming its step.
  """
  rows = [
      jax.tree.map(lambda m, k=k: m[k], window)
      for count, window in jax.device_get(pending)
      for k in range(count)
  ]
  losses = np.stack([r["loss"] for r in rows])
  bad = ~np.isfinite(losses) & active
  if bad.any():
    i, replica = np.argwhere(bad)[0]
    kept_words = kept()
    raise errors.NonFiniteLossError(
        f"the loss became non-finite at step {step - len(rows) + i + 1}"
        f"{label(replica)}{'; ' + kept_words if kept_words else ''}"
    )
  return {k: np.mean([r[k] for r in rows], axis=0) for k in rows[0]}


def fold_in_replicas(keys: jax.Array, data: int) -> jax.Array:
  """`jax.random.fold_in(key, data)` of each of the (R,) `keys`: (R,) keys."""
  return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, data)


def replica_keys(seeds) -> tuple[jax.Array, jax.Array]:
  """(init keys, step keys), each (len(seeds),): per seed, the split of
  `jax.random.key(seed)`."""
  keys = jnp.stack([jax.random.split(jax.random.key(seed)) for seed in seeds])
  return keys[:, 0], keys[:, 1]


# The ids of a run's random streams other than training's. Each is `jax.random.key(seed)` folded
# with its id; training's init and step keys, `split(key(seed))`, are the folds with 0 and 1
# under JAX's (default) partitionable threefry, so no two streams of a seed share a key, and
# the seeds' keys are unrelated (tests/test_seeds.py checks a 5-seed run).
STREAMS = {
    "evaluation": 2,
    "evaluation_samples": 3,
    "samples": 4,
    "inpainting": 5,
    "layer_grids": 6,
    "decomposition": 7,
    "disentanglement": 8,
}


def stream_key(seed: int, stream: str) -> jax.Array:
  """The key of the named random stream (a key of `STREAMS`) of the run of `seed`: a scalar
  typed key."""
  return jax.random.fold_in(jax.random.key(seed), STREAMS[stream])


def stream_generator(seed: int, stream: str) -> np.random.Generator:
  """A NumPy generator for the named stream of the run of `seed`, seeded by its key's words."""
  return np.random.default_rng(np.asarray(jax.random.key_data(stream_key(seed, stream))))


@dataclasses.dataclass
class Devices:
  """The mesh over all devices of all processes, and how to put arrays on it.

  Attributes:
    mesh: a one-axis mesh, `data`, over which batches are split.
  """

  mesh: Mesh

  @classmethod
  def all(cls, devices=None):
    """The mesh over `devices` (a sequence of `jax.Device`; None: `jax.devices()`)."""
    return cls(Mesh(np.asarray(devices if devices is not None else jax.devices()), ("data",)))

  @property
  def size(self) -> int:
    """The number of devices."""
    return self.mesh.size

  def replicate(self, tree):
    """`tree`'s arrays, a copy on every device."""
    return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec()))

  def restore(self, manager, step: int):
    """Checkpoint `step` of `manager`, replicated over the mesh (every process calls it)."""
    return checkpoints.restore(manager, step, NamedSharding(self.mesh, PartitionSpec()))

  def batch_sharding(self, leading_axes: int = 0) -> NamedSharding:
    """A batch's sharding: on `data`, the axis after `leading_axes` others (replicas; a game's
    stack of batches)."""
    return NamedSharding(self.mesh, PartitionSpec(*(None,) * leading_axes, "data"))

  def shard_batch(self, local_batch, leading_axes: int = 0):
    """This process's slice of a batch, as a global array of `batch_sharding`."""
    sharding = self.batch_sharding(leading_axes)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )

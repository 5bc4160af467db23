"""Reading a run's workdir: the layout the runner writes, and restoring variables for a notebook.

Layout: `config.json`; `checkpoints/<step>/` (orbax, the whole train state, for resuming);
`best/<step>/` (orbax: `variables`, each replica's at its best evaluation so far, with that
evaluation's `value` and `step`). Every array has a leading axis of the run's replicas
(`zoo.configs.num_replicas`).
"""

import json
import os

import jax
import ml_collections
import orbax.checkpoint as ocp

CONFIG = "config.json"
CHECKPOINTS = "checkpoints"
BEST = "best"


def manager(directory: str, max_to_keep: int | None = None) -> ocp.CheckpointManager:
  """An orbax manager of one kind of checkpoint; saves are atomic (written, then renamed). In a
  multi-process run every process saves its shards; the barriers that keep them in step are
  named after the directory, so that two managers saving the same step do not meet at one."""
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      item_handlers=ocp.StandardCheckpointHandler(),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep,
          create=False,  # a directory appears with its first checkpoint
          multiprocessing_options=ocp.options.MultiprocessingOptions(
              barrier_sync_key_prefix=os.path.basename(os.path.normpath(directory))
          ),
      ),
  )


def restore(checkpoints: ocp.CheckpointManager, step: int, sharding: jax.sharding.Sharding):
  """Restore checkpoint `step` with every array placed by `sharding`, whatever devices saved
  it (in a multi-process run, every process calls it)."""
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
      checkpoints.item_metadata(step).tree,
  )
  return checkpoints.restore(step, args=ocp.args.StandardRestore(target))


def restore_local(checkpoints: ocp.CheckpointManager, step: int):
  """Restore checkpoint `step` onto this process's first device, whatever devices saved it."""
  return restore(checkpoints, step, jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config the run in `workdir` trained with (its config.json)."""
  with open(os.path.join(workdir, CONFIG)) as f:
    return ml_collections.ConfigDict(json.load(f))


def restore_variables(workdir: str, replica: int = 0) -> dict:
  """The variables of replica `replica` (`zoo.load` says which seed and setting it is) of the
  run in `workdir`: its best evaluation, else its latest checkpoint."""
  for kind in (BEST, CHECKPOINTS):
    path = os.path.join(workdir, kind)
    if os.path.isdir(path):
      checkpoints = manager(path)
      if checkpoints.latest_step() is not None:
        saved = restore_local(checkpoints, checkpoints.latest_step())
        variables = (
            saved["variables"]
            if kind == BEST
            else {"params": saved["params"], **saved["model_state"]}
        )
        return jax.tree.map(lambda x: x[replica], variables)
  raise FileNotFoundError(f"no checkpoint in {workdir}")

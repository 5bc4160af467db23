"""The training loop's rate against its own train step's, for a model's preset, in one process
(these machines are shared and noisy: only a ratio inside one run is a figure). The beta-VAE's
default is measured on its conv network (`preset_config`).

  python -m benchmarks.loop_rate maf default [--steps=1000]   # a multiple of its log_every

The step's rate: the runner's replicated step, jitted with the state donated, on one batch
already on the device (made as the run makes it), 10 steps issued between waits
(`benchmarks.timing`), measured before and after the loops. The loop's rate: two runs of
`experiments.loop.train_and_evaluate` of the preset, of `steps` and of 3 x `steps` steps, each
evaluating and checkpointing only at its end; the difference of their training seconds over
the difference of their steps, so that start-up, compilation, the final evaluation and
checkpoint cancel. Prints one JSON line.
"""

import json
import tempfile

import jax
import numpy as np
from absl import flags

import zoo
from benchmarks import timing
from experiments import cli
from experiments import feed
from experiments import loop
from experiments import runs
from zoo import training

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 1000, "Steps of the shorter loop run (the longer runs 3x).")


def preset_config(model: str, preset: str):
  """`model`'s `preset`; the beta-VAE's `default` on the conv network and Adam 5e-4 it trained
  with until 2026-12-06 (now the paper's fully connected network), which the PyTorch peer
  (`benchmarks.peers.torch_conv_vae`) and BENCHMARKS' conv figures measure."""
  config = zoo.get(model).default_config(preset)
  if (model, preset) == ("beta_vae", "default"):
    config.model.network, config.optimizer, config.learning_rate = "conv", "adam", 5e-4
  return config


def step_timer(config, workdir: str):
  """A function that times the runner's step of `config` on a batch on the device: its
  steps/s."""
  run = runs.setup(config, workdir)
  step, optimizer = run.kind.make(run.model, run.config)
  replicated = training.make_replicated_step(step, len(run.seeds))
  arrays, _ = feed.resident_split(run.dataset, run.preprocessing, run.config, run.devices)
  stream = feed.TrainFeed(
      run.dataset,
      run.preprocessing,
      run.config,
      run.devices,
      run.seeds,
      run.labeled,
      0,
      run.kind,
      arrays,
  )
  first = run.devices.shard_batch(stream.first_input(), leading_axes=run.kind.leading_axes)
  batch = jax.jit(stream.make_batch)(arrays, first)
  stream.close()
  init_rngs, rngs = training.replica_keys(run.seeds)
  one = run.kind.one_batch(batch)
  state = run.devices.replicate(training.init_replicas(run.model, optimizer, one, init_rngs))
  active = np.ones(len(run.seeds), bool)
  jitted = jax.jit(replicated, donate_argnums=0)
  held = {"state": state}

  def one_step():
    held["state"], held["metrics"] = jitted(held["state"], batch, rngs, active)

  def rate() -> float:
    rates = timing.steps_per_second(
        one_step, lambda: jax.block_until_ready(held["metrics"]), seconds=3.0, repeats=3
    )
    return float(np.median(rates))

  return rate


def loop_seconds(config, steps: int, workdir: str) -> float:
  config = config.copy_and_resolve_references()
  config.update(num_steps=steps, eval_every=steps, checkpoint_every=steps)
  config.early_stopping_patience = 0
  config.scores = ()  # computed after training
  return loop.train_and_evaluate(config, workdir)["train_seconds"]


def main(argv):
  argv = FLAGS(argv)
  if len(argv) != 3:
    raise zoo.errors.UserError("usage: python -m benchmarks.loop_rate MODEL PRESET [--steps=N]")
  model, preset = argv[1:3]
  config = preset_config(model, preset)
  steps = FLAGS.steps
  with tempfile.TemporaryDirectory() as root:
    step_rate = step_timer(config, f"{root}/step")
    before = step_rate()
    short = loop_seconds(config, steps, f"{root}/short")
    long = loop_seconds(config, 3 * steps, f"{root}/long")
    after = step_rate()
  loop_rate = 2 * steps / (long - short)
  step = (before + after) / 2
  print(
      json.dumps(
          {
              "model": model,
              "preset": preset,
              "device": jax.devices()[0].device_kind,
              "step_steps_per_sec": [round(before, 2), round(after, 2)],
              "loop_steps_per_sec": round(loop_rate, 2),
              "loop_over_step": round(loop_rate / step, 3),
          }
      )
  )


if __name__ == "__main__":
  cli.run(main)

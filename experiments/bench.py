"""Speed of the runner's own train step, one case at a time.

  python -m experiments.bench --case=maf_tabular [--num_seeds=N] [--json]

The step timed is the runner's: `experiments.train.make_train_step` over `--num_seeds` replicas
(`make_replicated_step`), jitted with the state donated; the batch is already on the device, so
this measures the step, not the input pipeline. The last line printed is one JSON object: case,
steps_per_sec, examples_per_sec, compile_sec, device, num_seeds (and the repeat spread); a step
trains every replica, so examples/s counts the examples of all of them.
"""
import json
import sys
import time

import jax
import numpy as np
import optax
from absl import app
from absl import flags

import zoo
from experiments import train

FLAGS = flags.FLAGS
flags.DEFINE_string("case", "maf_tabular", "Benchmark case.")
flags.DEFINE_bool("json", False, "Print only the JSON line.")
flags.DEFINE_float("seconds", 3.0, "Length of each timed window.")
flags.DEFINE_integer("repeats", 5, "Timed windows; the median is reported.")
flags.DEFINE_integer("num_seeds", 1, "Replicas trained by each step, as --config.num_seeds.")


def maf_tabular():
  """The MAF paper's tabular setting: D=6 (POWER), batch 512, 5 MADEs of 2x100, no batch norm,
  Adam 1e-4 — the configuration the peers were measured on (DESIGN.md)."""
  model = zoo.build("maf", num_layers=5, hidden_dims=(100, 100), batch_norm=False)
  batch = {"x": jax.random.normal(jax.random.key(0), (512, 6))}
  return model, optax.adam(1e-4), batch


def nice_mnist():
  """NICE's MNIST architecture: 784 dims, 4 additive couplings of 5x1000 ReLU units, rescaling,
  logistic prior, batch 256, Adam with the paper's settings."""
  model = zoo.build("nice", num_couplings=4, hidden_dims=(1000,) * 5, prior="logistic")
  batch = {"x": jax.random.uniform(jax.random.key(0), (256, 784))}
  return model, optax.adam(1e-3, b1=0.9, b2=0.01, eps=1e-4), batch


def beta_vae_dsprites():
  """The beta-VAE / DIP-VAE network on dSprites: batch 64 of 64x64x1 binary images, four 4x4
  stride-2 convolutions of 32-32-64-64, 256 units, 10 latents, the mirrored decoder, Adam 1e-4
  (the network DESIGN.md's CPU PyTorch figure was measured on)."""
  model = zoo.build("beta_vae")
  batch = {"x": (jax.random.uniform(jax.random.key(0), (64, 64, 64, 1)) > 0.8).astype(
      np.float32)}
  return model, optax.adam(1e-4), batch


CASES = {"maf_tabular": maf_tabular, "nice_mnist": nice_mnist,
         "beta_vae_dsprites": beta_vae_dsprites}


def measure(model, optimizer, batch, seconds, repeats, num_seeds):
  """(compile seconds, steps/s of each timed window) of the runner's train step of `num_seeds`
  replicas (each given the same batch: the speed does not depend on the data)."""
  init_rngs, rngs = train.replica_keys(range(num_seeds))
  batch = jax.tree.map(lambda x: np.stack([x] * num_seeds), batch)
  state = train.init_replicas(model, optimizer, batch, init_rngs)
  replicated_step = jax.jit(train.make_replicated_step(train.make_train_step(model, optimizer),
                                                       num_seeds), donate_argnums=0)
  active = np.ones(num_seeds, bool)
  step = lambda state: replicated_step(state, batch, rngs, active)
  started = time.perf_counter()
  state, metrics = step(state)
  jax.block_until_ready((state, metrics))
  compile_sec = time.perf_counter() - started
  for _ in range(20):
    state, metrics = step(state)
  jax.block_until_ready(state)
  rates = []
  for _ in range(repeats):
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
      for _ in range(10):
        state, metrics = step(state)
      count += 10
      jax.block_until_ready(state)
    rates.append(count / (time.perf_counter() - started))
  return compile_sec, rates


def main(argv):
  del argv
  if FLAGS.case not in CASES:
    print(f"error: unknown case {FLAGS.case!r}; cases: {', '.join(sorted(CASES))}",
          file=sys.stderr)
    return 2
  model, optimizer, batch = CASES[FLAGS.case]()
  if FLAGS.num_seeds < 1:
    print(f"error: --num_seeds must be positive, not {FLAGS.num_seeds}", file=sys.stderr)
    return 2
  compile_sec, rates = measure(model, optimizer, batch, FLAGS.seconds, FLAGS.repeats,
                               FLAGS.num_seeds)
  steps_per_sec = float(np.median(rates))
  device = jax.devices()[0]
  result = {
      "case": FLAGS.case,
      "steps_per_sec": round(steps_per_sec, 2),
      "examples_per_sec": round(
          steps_per_sec * FLAGS.num_seeds * len(jax.tree.leaves(batch)[0]), 1),
      "compile_sec": round(compile_sec, 3),
      "device": f"{device.platform}:{device.device_kind} x{jax.device_count()}",
      "num_seeds": FLAGS.num_seeds,
      "steps_per_sec_min_max": [round(min(rates), 2), round(max(rates), 2)],
  }
  if not FLAGS.json:
    print(f"{FLAGS.case}: {steps_per_sec:.1f} steps/s (windows {min(rates):.1f}-"
          f"{max(rates):.1f}), compile {compile_sec:.2f} s, on {result['device']}")
  print(json.dumps(result))
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))

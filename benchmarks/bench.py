"""Speed of the runner's own train step, for every model.

  python -m benchmarks.bench --case=maf_tabular [--num_seeds=N] [--bfloat16] [--json]
  python -m benchmarks.bench --all      # every case; writes BENCHMARKS.md's table
  python -m benchmarks.bench --render   # the table again, from the stored results

A case is a model's preset (the paper's setting, unless it says otherwise) on random data of the
paper's shapes. The step timed is the runner's (`zoo.training.make_step` over `--num_seeds`
replicas, `make_replicated_step`), compiled ahead of time with the state donated, on a batch
already on the device: this measures the step, not the input pipeline. A game's step is a
generator step with its `first_phase_updates` critic updates, and its examples are those of
all the critic batches. The last line printed is one JSON object: case, steps_per_sec,
examples_per_sec, compile_sec, device, num_seeds, memory_mb (the compiled step's arguments,
outputs and temporaries less what donation reuses, by XLA's memory analysis), matmul_gflop
(the step's matrix-product FLOPs, counted from its jaxpr), and for the MLP models
roofline_fraction: matmul_gflop x steps/s over the rate of a large matrix product on the same
device, measured in the same process.

`--all` stores its results in benchmarks/results/<platform>.json and renders every stored
platform into the table between the markers of BENCHMARKS.md.
"""

import dataclasses
import datetime
import glob
import json
import math
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

import zoo
from benchmarks import timing
from experiments import cli
from experiments import logs
from zoo import configs
from zoo import training

FLAGS = flags.FLAGS
flags.DEFINE_string("case", "maf_tabular", "Benchmark case.")
flags.DEFINE_bool("all", False, "Every case, stored and rendered into BENCHMARKS.md.")
flags.DEFINE_bool("render", False, "Only render BENCHMARKS.md's table from the stored results.")
flags.DEFINE_bool("json", False, "Print only the JSON line.")
flags.DEFINE_float("seconds", 3.0, "Length of each timed window.")
flags.DEFINE_integer("repeats", 5, "Timed windows; the median is reported.")
flags.DEFINE_integer("num_seeds", 1, "Replicas trained by each step, as --config.num_seeds.")
flags.DEFINE_bool("bfloat16", False, "Compute in bfloat16, as --config.bfloat16.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
TABLE = os.path.join(ROOT, "BENCHMARKS.md")
BEGIN, END = "<!-- bench --all: begin -->", "<!-- bench --all: end -->"


@dataclasses.dataclass(frozen=True)
class Case:
  """A model's `preset` with `overrides` (config keys, `model.` for the model's), on random
  examples of `example_shape`: binary pixels where `binary`, else uniform in [0, 1)."""

  model: str
  preset: str
  example_shape: tuple[int, ...]
  description: str
  binary: bool = False
  mlp: bool = False
  overrides: tuple[tuple[str, object], ...] = ()

  def config(self, bfloat16: bool = False):
    config = zoo.get(self.model).default_config(self.preset)
    for key, value in self.overrides + (("bfloat16", bfloat16),):
      node, leaf = configs.lookup(config, key)
      node[leaf] = value
    return configs.finalize(config)


CASES = {
    case_name: case
    for case_name, case in [
        (
            "maf_tabular",
            Case(
                "maf",
                "paper",
                (6,),
                "MAF (5) of 2x100 units, D = 6 (POWER), batch 512, no batch norm: "
                "the setting the peers are measured on",
                mlp=True,
                overrides=(("batch_size", 512), ("model.batch_norm", False)),
            ),
        ),
        (
            "nice_mnist",
            Case(
                "nice",
                "paper",
                (784,),
                "NICE's MNIST model: 4 couplings of 5x1000, batch 256",
                mlp=True,
                overrides=(("batch_size", 256),),
            ),
        ),
        (
            "vimco_sbn",
            Case(
                "vimco",
                "paper",
                (784,),
                "VIMCO, K = 5, the 200-200-200 sigmoid belief net, batch 24",
                binary=True,
                mlp=True,
            ),
        ),
        (
            "vlae_mnist",
            Case(
                "vlae",
                "paper",
                (28, 28, 1),
                "VLAE's MNIST ladder: three 2-D codes, conv 64-128, 1024 units, batch 100",
                binary=True,
            ),
        ),
        (
            "beta_vae_dsprites",
            Case(
                "beta_vae",
                "study",
                (64, 64, 1),
                "beta-VAE, disentanglement_lib's conv network (the study "
                "preset): conv 32-32-64-64, 256 units, 10 latents, batch 64",
                binary=True,
            ),
        ),
        (
            "dip_vae_dsprites",
            Case(
                "dip_vae",
                "study",
                (64, 64, 1),
                "DIP-VAE-I, the same network and batch",
                binary=True,
            ),
        ),
        (
            "wgan_mlp",
            Case(
                "wgan",
                "default",
                (2,),
                "WGAN on 2-D data: 3x512 MLPs, 5 critic updates of batch 64 a step",
                mlp=True,
            ),
        ),
        (
            "wgan_dcgan",
            Case(
                "wgan",
                "paper",
                (32, 32, 3),
                "WGAN's DCGAN on 32x32x3 (CIFAR-10): 5 critic updates of batch 64 a step",
            ),
        ),
        (
            "pixelgan_ae_mnist",
            Case(
                "pixelgan_ae",
                "paper",
                (28, 28, 1),
                "PixelGAN AE on 28x28 binary images: 30-way "
                "categorical code, 6 gated blocks of 64 features, batch 100; its 2 phases",
                binary=True,
            ),
        ),
    ]
}


def _random_batch(case: Case, config, leading: tuple[int, ...]) -> dict:
  shape = leading + (config.batch_size,) + case.example_shape
  x = np.random.default_rng(0).random(shape, dtype=np.float32)
  return {"x": (x > 0.8).astype(np.float32) if case.binary else x}


def matmul_flops(jaxpr) -> int:
  """FLOPs of the matrix products in `jaxpr`, 2 m n k each, nested jaxprs included (a scan's
  body `length` times, a conditional's costlier branch)."""
  total = 0
  for equation in jaxpr.eqns:
    if equation.primitive.name == "dot_general":
      (contracting, _), _ = equation.params["dimension_numbers"]
      lhs = equation.invars[0].aval.shape
      total += (
          2
          * int(np.prod(equation.outvars[0].aval.shape))
          * int(np.prod([lhs[d] for d in contracting]))
      )
    inner = [matmul_flops(j) for j in training.inner_jaxprs(equation)]
    if equation.primitive.name == "cond":
      total += max(inner)
    else:
      total += sum(inner) * equation.params.get("length", 1)
  return total


def matmul_gflops_per_sec(seconds: float, repeats: int) -> float:
  """The rate of a large float32 matrix product on the default device: the roofline of an MLP.
  2048 x 2048 on a CPU, 8192 x 8192 on an accelerator."""
  n = 2048 if jax.default_backend() == "cpu" else 8192
  a, b = (jax.random.normal(jax.random.key(i), (n, n)) for i in range(2))
  product = jax.jit(jnp.matmul)
  out = [None]

  def step():
    out[0] = product(a, b)

  rates = timing.steps_per_second(
      step, lambda: jax.block_until_ready(out[0]), seconds=seconds, repeats=repeats, warmup=3
  )
  return float(np.median(rates)) * 2 * n**3 / 1e9


def measure(
    case: Case, *, seconds: float, repeats: int, num_seeds: int = 1, bfloat16: bool = False
) -> dict:
  """The JSON result of one case, but its name and the roofline fraction."""
  config = case.config(bfloat16)
  spec = zoo.get(case.model)
  model = spec.build(**config.model)
  kind = spec.step_kind
  train_step, optimizer = kind.make(model, config)
  batch = _random_batch(case, config, (num_seeds, *kind.stack_shape(config)))
  init_rngs, rngs = training.replica_keys(range(num_seeds))
  state = training.init_replicas(model, optimizer, kind.one_batch(batch), init_rngs)
  active = np.ones(num_seeds, bool)
  replicated_step = training.make_replicated_step(train_step, num_seeds)
  started = time.perf_counter()
  compiled = jax.jit(replicated_step, donate_argnums=0).lower(state, batch, rngs, active).compile()
  compile_sec = time.perf_counter() - started
  memory = compiled.memory_analysis()
  flops = matmul_flops(jax.make_jaxpr(replicated_step)(state, batch, rngs, active).jaxpr)
  box = [state]

  def step():
    box[0], _ = compiled(box[0], batch, rngs, active)

  rates = timing.steps_per_second(
      step, lambda: jax.block_until_ready(box[0]), seconds=seconds, repeats=repeats
  )
  steps_per_sec = float(np.median(rates))
  device = jax.devices()[0]
  return {
      "steps_per_sec": round(steps_per_sec, 2),
      "examples_per_sec": round(
          steps_per_sec * num_seeds * math.prod(kind.stack_shape(config)) * config.batch_size, 1
      ),
      "compile_sec": round(compile_sec, 3),
      "device": f"{device.platform}:{device.device_kind} x{jax.device_count()}",
      "num_seeds": num_seeds,
      "bfloat16": bfloat16,
      "memory_mb": round(
          (
              memory.argument_size_in_bytes
              + memory.output_size_in_bytes
              - memory.alias_size_in_bytes
              + memory.temp_size_in_bytes
          )
          / 2**20,
          1,
      ),
      "matmul_gflop": round(flops / 1e9, 4),
      "steps_per_sec_min_max": [round(min(rates), 2), round(max(rates), 2)],
  }


def machine() -> str:
  """The machine in words: the accelerator, or the CPU's model name and core count."""
  device = jax.devices()[0]
  if device.platform != "cpu":
    return f"{device.device_kind} ({jax.device_count()} device)"
  names = []
  if os.path.exists("/proc/cpuinfo"):
    with open("/proc/cpuinfo") as f:
      names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
  return f"{os.cpu_count()}-core {names[0] if names else platform.processor()} CPU"


def run_all(seconds: float, repeats: int) -> dict:
  """Every case on the default device, with the roofline fraction of the MLP cases."""
  rate = matmul_gflops_per_sec(seconds, repeats)
  results = []
  for case_name, case in CASES.items():
    result = {"case": case_name, **measure(case, seconds=seconds, repeats=repeats)}
    if case.mlp:
      result["roofline_fraction"] = round(
          result["matmul_gflop"] * result["steps_per_sec"] / rate, 3
      )
    print(json.dumps(result), flush=True)
    results.append(result)
  return {
      "machine": machine(),
      "date": datetime.date.today().isoformat(),
      "jax": jax.__version__,
      "matmul_gflops_per_sec": round(rate, 1),
      "command": f"python -m benchmarks.bench --all --seconds={seconds:g} --repeats={repeats}",
      "cases": results,
  }


def render(stored: list[dict]) -> str:
  """BENCHMARKS.md's table: one block per stored platform."""
  blocks = []
  for run in stored:
    lines = [
        f"**{run['machine']}**, jax {run['jax']}, {run['date']}: `{run['command']}`; "
        f"large matmul {run['matmul_gflops_per_sec']:,.0f} GFLOP/s.",
        "",
        "| case | steps/s (window min-max) | examples/s | compile s | memory MB | "
        "matmul GFLOP/step | of matmul roofline |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in run["cases"]:
      low, high = r["steps_per_sec_min_max"]
      roofline = f"{r['roofline_fraction']:.1%}" if "roofline_fraction" in r else ""
      lines.append(
          f"| {r['case']} | {r['steps_per_sec']:,.2f} ({low:,.2f}-{high:,.2f}) | "
          f"{r['examples_per_sec']:,.0f} | {r['compile_sec']:.2f} | "
          f"{r['memory_mb']:,.1f} | {r['matmul_gflop']:.3f} | {roofline} |"
      )
    blocks.append("\n".join(lines))
  return "\n\n".join(blocks)


def write_table() -> None:
  stored = []
  for path in sorted(
      glob.glob(os.path.join(RESULTS, "*.json")), key=lambda p: (not p.endswith("cpu.json"), p)
  ):
    with open(path) as f:
      stored.append(json.load(f))
  with open(TABLE) as f:
    text = f.read()
  if BEGIN not in text or END not in text:
    raise zoo.errors.UserError(f"{TABLE} has no {BEGIN} ... {END} markers to write between")
  head, rest = text.split(BEGIN, 1)
  _, tail = rest.split(END, 1)
  logs.write_text(TABLE, f"{head}{BEGIN}\n{render(stored)}\n{END}{tail}")


def main(argv) -> int:
  FLAGS(argv)
  if FLAGS.render:
    write_table()
    return 0
  if FLAGS.all:
    run = run_all(FLAGS.seconds, FLAGS.repeats)
    os.makedirs(RESULTS, exist_ok=True)
    logs.write_text(
        os.path.join(RESULTS, f"{jax.default_backend()}.json"), json.dumps(run, indent=1)
    )
    write_table()
    return 0
  if FLAGS.case not in CASES:
    raise zoo.errors.UserError(f"unknown case {FLAGS.case!r}; cases: {', '.join(CASES)}")
  if FLAGS.num_seeds < 1:
    raise zoo.errors.UserError(f"--num_seeds must be positive, not {FLAGS.num_seeds}")
  result = {
      "case": FLAGS.case,
      **measure(
          CASES[FLAGS.case],
          seconds=FLAGS.seconds,
          repeats=FLAGS.repeats,
          num_seeds=FLAGS.num_seeds,
          bfloat16=FLAGS.bfloat16,
      ),
  }
  if not FLAGS.json:
    low, high = result["steps_per_sec_min_max"]
    print(
        f"{FLAGS.case}: {result['steps_per_sec']:.1f} steps/s (windows {low:.1f}-{high:.1f}), "
        f"compile {result['compile_sec']:.2f} s, on {result['device']}"
    )
  print(json.dumps(result))
  return 0


if __name__ == "__main__":
  cli.run(main)

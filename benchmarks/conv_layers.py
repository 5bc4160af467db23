"""The conv layer table: each 4x4 stride-2 layer of the dSprites beta-VAE's network (batch 64)
in each form it could be computed in, its forward pass, input gradient and kernel gradient
timed alternately in one process (these machines are shared and noisy: only figures taken
side by side compare).

  python -m benchmarks.conv_layers [--rounds=5] [--calls=10]

Forms of the convolution (`downsample`): `xla`, XLA's strided convolution and XLA's gradients
(flax's `nn.Conv`); `zoo`, `zoo.nn.conv.downsample`; `space_to_depth`, the 2x2 stride-1
convolution over 4x the channels that a 4x4 stride-2 one is after a space-to-depth of its padded
input, XLA's gradients of it; `im2col`, the patches of that times one matrix, so that the kernel
gradient is one matrix product. Forms of the transposed convolution (`upsample`): `xla`, XLA's
transpose of the strided convolution (flax's `nn.ConvTranspose`), and `zoo`,
`zoo.nn.conv.upsample`. Each cell is the best of `rounds` windows of `calls` calls, in ms;
prints the table and one JSON line.
"""

import json
import time

import jax
import numpy as np
from absl import app
from absl import flags

from benchmarks import bench
from zoo.nn import conv

FLAGS = flags.FLAGS
flags.DEFINE_integer("rounds", 5, "Windows per cell, taken in turn over all cells.")
flags.DEFINE_integer("calls", 10, "Calls per window.")
flags.DEFINE_integer("batch", 64, "Examples per call.")

# (kind, input side, input channels, output channels): the beta-VAE's conv 32-32-64-64 and its
# mirrored decoder on 64x64x1 images.
LAYERS = (
    ("conv", 64, 1, 32),
    ("conv", 32, 32, 32),
    ("conv", 16, 32, 64),
    ("conv", 8, 64, 64),
    ("transposed", 4, 64, 64),
    ("transposed", 8, 64, 32),
    ("transposed", 16, 32, 32),
    ("transposed", 32, 32, 1),
)


def _blocked_kernel(kernel):
  """The 4x4 kernel (4, 4, I, O) as a 2x2 one (2, 2, 4I, O) over `conv._space_to_depth`'s
  channels: tap 2a + p of each axis is tap a at the block's position p."""
  i, o = kernel.shape[2:]
  return kernel.reshape(2, 2, 2, 2, i, o).transpose(0, 2, 1, 3, 4, 5).reshape(2, 2, 4 * i, o)


def space_to_depth(x, kernel):
  return jax.lax.conv_general_dilated(
      conv._space_to_depth(x),
      _blocked_kernel(kernel),
      (1, 1),
      "VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )


def im2col(x, kernel):
  return conv._patches(x) @ _blocked_kernel(kernel).reshape(-1, kernel.shape[-1])


FORMS = {
    "conv": {
        "xla": conv._strided_convolution,
        "zoo": conv.downsample,
        "space_to_depth": space_to_depth,
        "im2col": im2col,
    },
    "transposed": {"xla": conv._dilated_convolution, "zoo": conv.upsample},
}
PARTS = ("forward", "input gradient", "kernel gradient")


def _programs(form, x, kernel):
  """The three jitted computations of a layer in `form`, each a function of no arguments."""
  out = jax.eval_shape(form, x, kernel)
  g = jax.random.normal(jax.random.key(2), out.shape)
  forward = jax.jit(form)
  input_gradient = jax.jit(lambda x, k, g: jax.vjp(lambda x: form(x, k), x)[1](g)[0])
  kernel_gradient = jax.jit(lambda x, k, g: jax.vjp(lambda k: form(x, k), kernel)[1](g)[0])
  return {
      "forward": lambda: forward(x, kernel),
      "input gradient": lambda: input_gradient(x, kernel, g),
      "kernel gradient": lambda: kernel_gradient(x, kernel, g),
  }


def _layer_name(kind, side, i, o):
  scale = 2 if kind == "transposed" else 0.5
  return f"{kind} {side}x{side}x{i} -> {int(side * scale)}x{int(side * scale)}x{o}"


def measure(rounds: int, calls: int, batch: int) -> dict:
  """{layer: {form: {part: best ms}}}, every cell timed once per round in turn."""
  cells = {}
  for kind, side, i, o in LAYERS:
    x = jax.random.normal(jax.random.key(0), (batch, side, side, i))
    kernel = 0.1 * jax.random.normal(jax.random.key(1), (4, 4, i, o))
    for form_name, form in FORMS[kind].items():
      for part, program in _programs(form, x, kernel).items():
        if kind == "conv" and i == 1 and part == "input gradient":
          continue  # the first layer's input is the data
        jax.block_until_ready(program())
        cells[(_layer_name(kind, side, i, o), form_name, part)] = program
  best = {key: np.inf for key in cells}
  for _ in range(rounds):
    for key, program in cells.items():
      started = time.perf_counter()
      for _ in range(calls):
        result = program()
      jax.block_until_ready(result)
      best[key] = min(best[key], (time.perf_counter() - started) / calls * 1e3)
  table = {}
  for (layer, form_name, part), ms in best.items():
    table.setdefault(layer, {}).setdefault(form_name, {})[part] = round(ms, 2)
  return table


def markdown(table: dict) -> str:
  lines = [
      "| layer | form | forward ms | input grad. ms | kernel grad. ms |",
      "|---|---|---:|---:|---:|",
  ]
  for layer, forms in table.items():
    for form_name, parts in forms.items():
      cells = [f"{parts[p]:.2f}" if p in parts else "-" for p in PARTS]
      lines.append(f"| {layer} | {form_name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  table = measure(FLAGS.rounds, FLAGS.calls, FLAGS.batch)
  print(markdown(table))
  command = f"python -m benchmarks.conv_layers --rounds={FLAGS.rounds} --calls={FLAGS.calls}"
  print(
      json.dumps(
          {
              "machine": bench.machine(),
              "jax": jax.__version__,
              "command": command,
              "batch": FLAGS.batch,
              "layers": table,
          }
      )
  )


if __name__ == "__main__":
  app.run(main)

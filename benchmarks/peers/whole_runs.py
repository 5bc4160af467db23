"""Whole training runs, ours against the peer a user would otherwise pick, in one process on
the same data: `make run`'s MAF (digits, logit) against flowjax's `fit_to_data`, and the
default dSprites beta-VAE on its conv network against a PyTorch loop of the same network.

  python -m benchmarks.peers.whole_runs maf|beta_vae [--steps=N --rounds=3]

Each side trains N steps once untimed (flowjax's `fit_to_data` compiles once a process: its
first timed run would carry that, and its rate come out too high, negative for N = 100), then
N and 3N steps in each round; its rate is 2N over the difference of the two runs' seconds, so
that start-up, compilation and whatever a run does once cancel; what each step costs on the
host (making the batch, dispatching the step) stays in. The sides take turns, in --rounds
rounds (each round's first side alternates), and the figure is the median of the rounds'
ratios: these machines are shared and noisy. Ours is the runner
(`experiments.loop.train_and_evaluate`, evaluating and checkpointing only at its end:
`benchmarks.loop_rate.loop_seconds`).

- flowjax: a masked autoregressive flow of the same 5 layers of 2 x 512 ReLU units over a
  standard normal base (ours without its batch norm between layers: flowjax has none, and
  BENCHMARKS' step comparison leaves it out too), on our training and validation examples,
  dequantised and logit-transformed once (ours draws new noise each step), batch 100, Adam
  1e-3; `fit_to_data` holds the set on the device, shuffles it each epoch and evaluates the
  validation split after each (max_patience is set so that it never stops early).
- PyTorch: `benchmarks.peers.torch_conv_vae`'s network and loss with the preset's beta and
  Adam learning rate, on the GPU where there is one, in a plain loop over the training split
  held in host memory as uint8 (each step draws 64 indices, gathers them, sends them to the
  device and converts them), PyTorch's default threads.

Prints one JSON line: each side's steps/s per round and the median of ours / peer.
"""

import argparse
import itertools
import json
import tempfile
import time

import numpy as np

import zoo
from benchmarks import loop_rate
from experiments import feed
from zoo import configs


def rate(train, steps: int) -> float:
  """Steps/s of a side from its runs of `steps` and 3 x `steps`: `train(count)` runs one and
  returns (steps it trained, seconds)."""
  (short_steps, short), (long_steps, long) = train(steps), train(3 * steps)
  return (long_steps - short_steps) / (long - short)


def ours(config, root: str):
  """The runner's whole run of `config`: (steps, its training seconds)."""
  runs = itertools.count()  # a fresh workdir for each run
  return lambda count: (count, loop_rate.loop_seconds(config, count, f"{root}/{next(runs)}"))


def flowjax_maf(config):
  """flowjax's `fit_to_data` on the examples our MAF trains and validates on."""
  import equinox as eqx  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from flowjax.distributions import Normal  # pylint: disable=import-outside-toplevel
  from flowjax.flows import masked_autoregressive_flow  # pylint: disable=import-outside-toplevel
  from flowjax.train import fit_to_data  # pylint: disable=import-outside-toplevel

  dataset = feed.load_data(config)
  preprocessing = zoo.data.preprocessing(
      dataset, config.preprocess, config.alpha, config.zca_epsilon
  )
  parts = {}
  for role in ("train", "validation"):
    batches = zoo.data.eval_batches(dataset, preprocessing, role, batch_size=config.eval_batch_size)
    parts[role] = np.concatenate([b["x"][b["mask"]].reshape(b["mask"].sum(), -1) for b in batches])
  x = np.concatenate([parts["train"], parts["validation"]])
  val_prop = len(parts["validation"]) / len(x)
  per_epoch = int(len(x) * (1 - val_prop)) // config.batch_size
  hidden = config.model.hidden_dims

  def train(count: int):
    started = time.perf_counter()
    epochs = max(1, round(count / per_epoch))
    flow = masked_autoregressive_flow(
        jax.random.key(0),
        base_dist=Normal(jnp.zeros(x.shape[1])),
        flow_layers=config.model.num_layers,
        nn_width=hidden[0],
        nn_depth=len(hidden),
    )
    trained, _ = fit_to_data(
        jax.random.key(1),
        flow,
        x,
        learning_rate=config.learning_rate,
        max_epochs=epochs,
        max_patience=epochs,
        batch_size=config.batch_size,
        val_prop=val_prop,
        show_progress=False,
    )
    jax.block_until_ready(eqx.filter(trained, eqx.is_array))
    return epochs * per_epoch, time.perf_counter() - started

  return train


def torch_beta_vae(config):
  """A PyTorch loop of the beta-VAE network over our training split."""
  import torch  # pylint: disable=import-outside-toplevel

  from benchmarks.peers import common  # pylint: disable=import-outside-toplevel
  from benchmarks.peers import torch_conv_vae  # pylint: disable=import-outside-toplevel

  dataset = feed.load_data(config)
  n = dataset.num_examples("train")
  images = torch.from_numpy(dataset.read("train", np.arange(n))["x"]).permute(0, 3, 1, 2)

  device = common.torch_device()

  def train(count: int):
    started = time.perf_counter()
    torch.manual_seed(0)
    model = torch_conv_vae.ConvVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    for _ in range(count):
      x = images[torch.randint(n, (config.batch_size,))].to(device).float()
      loss = model.loss(x, beta=config.model.beta)
      optimizer.zero_grad()
      loss.backward()
      optimizer.step()
    common.torch_wait(device)
    return count, time.perf_counter() - started

  return train


PEERS = {"maf": ("flowjax fit_to_data", flowjax_maf), "beta_vae": ("PyTorch loop", torch_beta_vae)}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("model", choices=sorted(PEERS))
  parser.add_argument("--steps", type=int, default=1000)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()
  config = loop_rate.preset_config(args.model, "default")
  if args.model == "maf":  # flowjax's MAF has none; the step's comparison leaves it out too
    config.model.batch_norm = False
  name, make_peer = PEERS[args.model]
  rates = {"ours": [], "peer": []}
  with tempfile.TemporaryDirectory() as root:
    sides = {"ours": ours(config, root), "peer": make_peer(configs.finalize(config))}
    for train in sides.values():  # a side that compiles once a process (flowjax) does so here
      train(args.steps)
    for round_ in range(args.rounds):  # alternating which side goes first
      for side in sorted(sides, reverse=bool(round_ % 2)):
        rates[side].append(rate(sides[side], args.steps))
  ratios = [a / b for a, b in zip(rates["ours"], rates["peer"])]
  print(
      json.dumps(
          {
              "model": args.model,
              "peer": name,
              "steps": args.steps,
              "ours_steps_per_sec": [round(r, 2) for r in rates["ours"]],
              "peer_steps_per_sec": [round(r, 2) for r in rates["peer"]],
              "ours_over_peer": round(float(np.median(ratios)), 3),
          }
      )
  )


if __name__ == "__main__":
  main()

"""Ours against the peers, side by side in one run on this machine.

  python -m benchmarks.peers.compare [--rounds=3 --seconds=2 --repeats=3]

Runs, in rounds, each side's own script in a fresh process (ours: `benchmarks.bench`; the
peers: the scripts beside this one), rotating the order each round so that no side always
follows the same neighbour, and prints a Markdown table: each side's median steps/s over the
rounds and the ratio of ours to each peer, the median of the per-round ratios. Needs the
`peers` extra (flowjax, zuko, torch): `make bench-peers`.
"""

import argparse
import json
import statistics
import subprocess
import sys

# (name, module, our case it is compared with); ours first in each group
SIDES = [
    ("zoo maf_tabular", "benchmarks.bench --case=maf_tabular --json", None),
    ("flowjax MAF", "benchmarks.peers.flowjax_maf", "zoo maf_tabular"),
    ("zuko MAF", "benchmarks.peers.zuko_maf", "zoo maf_tabular"),
    ("zoo beta_vae_dsprites", "benchmarks.bench --case=beta_vae_dsprites --json", None),
    ("PyTorch conv VAE", "benchmarks.peers.torch_conv_vae", "zoo beta_vae_dsprites"),
]


def steps_per_sec(module: str, seconds: float, repeats: int) -> float:
  command = [sys.executable, "-m", *module.split(), f"--seconds={seconds}", f"--repeats={repeats}"]
  done = subprocess.run(command, capture_output=True, text=True, check=True)
  return json.loads(done.stdout.strip().splitlines()[-1])["steps_per_sec"]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--seconds", type=float, default=2.0)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  rates = {name: [] for name, _, _ in SIDES}
  for r in range(args.rounds):
    order = SIDES[r % len(SIDES) :] + SIDES[: r % len(SIDES)]
    for name, module, _ in order:
      rates[name].append(steps_per_sec(module, args.seconds, args.repeats))
      print(f"round {r + 1}: {name} {rates[name][-1]:.2f} steps/s", file=sys.stderr, flush=True)
  print("| implementation | steps/s (median of rounds; min-max) | ours / this |")
  print("|---|---:|---:|")
  for name, _, ours in SIDES:
    ratio = (
        ""
        if ours is None
        else (f"{statistics.median(o / p for o, p in zip(rates[ours], rates[name])):.2f}")
    )
    print(
        f"| {name} | {statistics.median(rates[name]):.2f} ({min(rates[name]):.2f}-"
        f"{max(rates[name]):.2f}) | {ratio} |"
    )


if __name__ == "__main__":
  main()

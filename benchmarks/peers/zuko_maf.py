"""zuko's MAF on the `maf_tabular` case: D = 6, batch 512, 5 masked autoregressive transforms
of 2 x 100 ReLU units (zuko's default alternating order), Adam 1e-4, maximum likelihood, in
PyTorch, on the GPU where there is one, else with its default threads.

  python benchmarks/peers/zuko_maf.py [--seconds=3 --repeats=5]
"""

import json

import torch
import zuko

from benchmarks.peers import common


def main():
  torch.manual_seed(0)
  device = common.torch_device()
  flow = zuko.flows.MAF(
      features=6, context=0, transforms=5, hidden_features=(100, 100), activation=torch.nn.ReLU
  ).to(device)
  optimizer = torch.optim.Adam(flow.parameters(), lr=1e-4)
  x = torch.randn(512, 6).to(device)

  print(
      json.dumps(
          common.time_torch(
              "zuko_maf",
              lambda: -flow().log_prob(x).mean(),
              optimizer,
              512,
              common.parse_args(),
              device,
          )
      )
  )


if __name__ == "__main__":
  main()

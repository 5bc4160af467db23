"""The `beta_vae_dsprites` network in PyTorch: 64x64x1 binary images, batch 64, four 4x4
stride-2 convolutions of 32-32-64-64 with ReLU, 256 units, a diagonal Gaussian of 10 latents,
the mirrored decoder (dense 256 and 4x4x64, four 4x4 stride-2 transposed convolutions of
64-32-32-1), Bernoulli pixels, beta = 4, Adam 1e-4: the network and loss of
`zoo.models.beta_vae` layer for layer, on the GPU where there is one, else with PyTorch's
default threads.

  python benchmarks/peers/torch_conv_vae.py [--seconds=3 --repeats=5]
"""

import json

import torch
from torch import nn

from benchmarks.peers import common


class ConvVAE(nn.Module):

  def __init__(self, latent_dim=10, features=(32, 32, 64, 64), hidden_dim=256):
    super().__init__()
    channels = (1,) + features
    self.encoder = nn.Sequential(
        *[
            layer
            for i in range(4)
            for layer in (nn.Conv2d(channels[i], channels[i + 1], 4, 2, 1), nn.ReLU())
        ],
        nn.Flatten(),
        nn.Linear(4 * 4 * 64, hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, 2 * latent_dim)
    )
    up = (64, 64, 32, 32, 1)
    self.decoder = nn.Sequential(
        nn.Linear(latent_dim, hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, 4 * 4 * 64),
        nn.ReLU(),
        nn.Unflatten(1, (64, 4, 4)),
        *[
            layer
            for i in range(4)
            for layer in (nn.ConvTranspose2d(up[i], up[i + 1], 4, 2, 1),)
            + ((nn.ReLU(),) if i < 3 else ())
        ]
    )

  def loss(self, x, beta=4.0):
    mean, log_var = self.encoder(x).chunk(2, dim=-1)
    z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
    logits = self.decoder(z)
    log_likelihood = -nn.functional.binary_cross_entropy_with_logits(
        logits, x, reduction="none"
    ).sum((1, 2, 3))
    kl = 0.5 * (mean**2 + log_var.exp() - 1 - log_var).sum(-1)
    return (-log_likelihood + beta * kl).mean()


def main():
  torch.manual_seed(0)
  device = common.torch_device()
  model = ConvVAE().to(device)
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
  x = (torch.rand(64, 1, 64, 64) > 0.8).float().to(device)

  print(
      json.dumps(
          common.time_torch(
              "torch_conv_vae", lambda: model.loss(x), optimizer, 64, common.parse_args(), device
          )
      )
  )


if __name__ == "__main__":
  main()

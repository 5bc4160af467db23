"""The two-player models (WGAN, PixelGAN autoencoders): what the runner's game step relies on."""
from typing import ClassVar

import flax.linen as nn


class Game(nn.Module):
  """A model trained as a game between two players, each the parameters of one top-level
  submodule named after it.

  A subclass sets `players = (inner, outer)` and defines `<player>_loss(batch, train)` ->
  (loss, metrics) for each; the runner's step updates the inner player once per element of a
  stack of batches (WGAN's critic_steps) and then the outer player once, on the last batch, each
  player with its own optimiser and differentiating its own parameters only.
  """
  players: ClassVar[tuple[str, str]]

  def __call__(self, batch, train=False):
    """Every player's loss: what `init` calls, so that every parameter is created."""
    return {player: getattr(self, f"{player}_loss")(batch, train) for player in self.players}

  @nn.nowrap
  def project(self, player: str, params):
    """The player's parameters after an update, projected onto the set they are confined to
    (WGAN's weight clipping); unconstrained by default."""
    del player
    return params

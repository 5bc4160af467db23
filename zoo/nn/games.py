"""The adversarial models (WGAN, PixelGAN autoencoders): what the runner's game step relies on."""

from typing import ClassVar

import flax.linen as nn

from zoo import contract


class Game(contract.Model):
  """A model trained in phases, each an optimiser update of some of its top-level submodules on
  a loss of its own: WGAN's critic and generator; the PixelGAN autoencoder's reconstruction,
  discriminator, regularisation (and semi-supervised) phases, three of which train the encoder.

  A subclass sets `phases = {phase: (submodule, ...)}` in update order and defines
  `<phase>_loss(batch, train)` -> (loss, metrics) for each. The train step
  (`zoo.training.make_game_step`) runs the first phase once per element of a stack of batches
  (`config.first_phase_updates`: WGAN's critic iterations), then every other phase once, in
  order, on the last batch; each phase has its own optimiser state and differentiates its own
  submodules' parameters only.
  """

  phases: ClassVar[dict[str, tuple[str, ...]]]

  def __call__(self, batch, train=False):
    """Every phase's loss: what `init` calls, so that every parameter is created."""
    return {phase: getattr(self, f"{phase}_loss")(batch, train) for phase in self.phases}

  @nn.nowrap
  def project(self, phase: str, params):
    """The parameters `{submodule: params}` a phase has just updated, projected onto the set
    they are confined to (WGAN's weight clipping); unconstrained by default."""
    del phase
    return params

"""beta-VAE (Higgins et al. 2017, beta-VAE: Learning Basic Visual Concepts with a Constrained
Variational Framework): the ELBO with its KL term weighted by beta > 1 (eq. 4), which presses
the code towards the factorised prior and so towards disentangled factors. beta = 1 is the VAE.
"""

from zoo import domains
from zoo import registry
from zoo.nn import vae


@registry.register(
    "beta_vae",
    family="latent",
    paper="Higgins et al. 2017, beta-VAE: Learning Basic Visual Concepts with a Constrained "
    "Variational Framework",
)
class BetaVAE(vae.GaussianVAE):
  """Attributes: those of `zoo.nn.vae.GaussianVAE`, and beta, the KL weight (the paper's 4 on
  dSprites)."""

  beta: domains.NonNegativeFloat = 4.0

  def regulariser(self, mean, log_var, kl):
    """beta * KL(q(z | x) || p(z)), averaged over the batch."""
    del mean, log_var
    return self.beta * kl.mean(), {}

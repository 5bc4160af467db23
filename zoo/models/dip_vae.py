"""DIP-VAE (Kumar, Sattigeri & Balakrishnan 2018, Variational Inference of Disentangled Latent
Concepts from Unlabeled Observations): the ELBO plus a penalty that moves a covariance of the
aggregate posterior q(z) = E_p(x) q(z | x) towards the identity (eq. 5):
  lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2,
with C = Cov_p(x)[mu(x)] for DIP-VAE-I (eq. 6) and C = E_p(x)[Sigma(x)] + Cov_p(x)[mu(x)], the
covariance of q(z) itself, for DIP-VAE-II (eq. 7); the batch estimates the expectations.
"""

from typing import Literal

import jax.numpy as jnp

from zoo import domains
from zoo import registry
from zoo.nn import vae

Variant = Literal["i", "ii"]


def covariance_penalty(covariance, lambda_od: float, lambda_d: float):
  """lambda_od * sum of squared off-diagonal entries + lambda_d * sum (diagonal - 1)^2."""
  diagonal = jnp.diagonal(covariance)
  off_diagonal = covariance - jnp.diag(diagonal)
  return lambda_od * jnp.sum(off_diagonal**2) + lambda_d * jnp.sum((diagonal - 1) ** 2)


def aggregate_covariance(mean, log_var, variant: str):
  """The batch estimate of Cov[mu(x)] (`i`) or of Cov_q(z)[z] (`ii`), (D, D)."""
  centred = mean - mean.mean(0)
  covariance = centred.T @ centred / len(mean)
  if variant == "ii":
    covariance = covariance + jnp.diag(jnp.exp(log_var).mean(0))
  return covariance


@registry.register(
    "dip_vae",
    family="latent",
    paper="Kumar, Sattigeri & Balakrishnan 2018, Variational Inference of Disentangled Latent "
    "Concepts from Unlabeled Observations (DIP-VAE)",
)
class DIPVAE(vae.GaussianVAE):
  """Attributes: those of `zoo.nn.vae.GaussianVAE`, and
  variant: `i` (DIP-VAE-I) or `ii` (DIP-VAE-II).
  lambda_od, lambda_d: the penalty's off-diagonal and diagonal weights; the defaults are
    DIP-VAE-I's setting lambda_d = 10 lambda_od (the config gives DIP-VAE-II lambda_d =
    lambda_od unless told otherwise).
  """

  variant: Variant = "i"
  lambda_od: domains.NonNegativeFloat = 10.0
  lambda_d: domains.NonNegativeFloat = 100.0

  def setup(self):
    super().setup()

  def regulariser(self, mean, log_var, kl):
    """KL(q(z | x) || p(z)) plus the covariance penalty on the batch's aggregate posterior."""
    covariance = aggregate_covariance(mean, log_var, self.variant)
    penalty = covariance_penalty(covariance, self.lambda_od, self.lambda_d)
    return kl.mean() + penalty, {"dip_loss": penalty}

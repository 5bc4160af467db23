"""The Gaussian VAE of the disentanglement papers, written once: beta-VAE and DIP-VAE differ only
in the regulariser they put on the codes (their `regulariser` method).

q(z | x) is a diagonal Gaussian with `latent_dim` dimensions, the prior N(0, I), p(x | z)
Bernoulli per pixel. Two networks map between them (`network`):

fc    Higgins et al. 2017's network for dSprites (appendix A, Table 1, "2D shapes (VAE)"): the
      flattened image through fully connected layers of 1200 and 1200 ReLU units to the mean
      and log-variance; the decoder 1200, 1200 and 1200 tanh units to 4096 Bernoulli logits.
conv  the network of Higgins et al.'s other data sets (Table 1: chairs, CelebA), which
      disentanglement_lib (Locatello et al. 2019) uses for every data set: four 4x4 stride-2
      convolutions of 32, 32, 64 and 64 channels and a 256-unit ReLU layer, the decoder its
      mirror. (disentanglement_lib's third and fourth convolutions are 2x2, not 4x4:
      `methods/shared/architectures.py`, conv_encoder; this trunk's are 4x4 throughout.)
"""

from typing import Literal

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import contract
from zoo import domains
from zoo.metrics import likelihood
from zoo.nn import conv

Network = Literal["conv", "fc"]


class FullyConnectedEncoder(nn.Module):
  """x (B, H, W, C) -> features (B, units[-1]): the flattened image through ReLU layers."""

  units: tuple[int, ...]

  @nn.compact
  def __call__(self, x):
    h = x.reshape(len(x), -1)
    for width in self.units:
      h = nn.relu(nn.Dense(width)(h))
    return h


class FullyConnectedDecoder(nn.Module):
  """z (B, D) -> logits (B, H, W, C): tanh layers of `units`, then a linear layer to every pixel
  plus a per-pixel bias, whose shape records the output shape after the first call (as
  `zoo.nn.conv.ConvDecoder` does), so decoding needs no data."""

  units: tuple[int, ...]

  @nn.compact
  def __call__(self, z, shape=None):
    shape = shape or self.get_variable("params", "output_bias").shape
    h = z
    for width in self.units:
      h = nn.tanh(nn.Dense(width)(h))
    logits = nn.Dense(int(np.prod(shape)), use_bias=False)(h).reshape(len(z), *shape)
    return logits + self.param("output_bias", nn.initializers.zeros_init(), tuple(shape))


class GaussianVAE(contract.Model):
  """Subclasses set the fields below (they are the papers' hyper-parameters) and define
  `regulariser(mean, log_var, kl) -> (penalty, metrics)`, added to the negative log-likelihood.

  Attributes:
    latent_dim: the dimensions of z (10 in both papers).
    network: `fc` or `conv` (the module docstring); the defaults of the fields below are each
      network's paper sizes.
    fc_encoder, fc_decoder: the hidden widths of the `fc` network's encoder and decoder.
    conv_features, hidden_dim: the `conv` network's channels and its dense layer's width.
  """

  latent_dim: domains.PositiveInt = 10
  network: Network = "conv"
  fc_encoder: domains.Widths = (1200, 1200)
  fc_decoder: domains.Widths = (1200, 1200, 1200)
  conv_features: domains.Widths = (32, 32, 64, 64)
  hidden_dim: domains.PositiveInt = 256

  def setup(self):
    if self.network == "fc":
      self.features = FullyConnectedEncoder(tuple(self.fc_encoder))
      self.decoder = FullyConnectedDecoder(tuple(self.fc_decoder))
    else:
      self.features = conv.ConvEncoder(tuple(self.conv_features))
      self.encoder_hidden = nn.Dense(self.hidden_dim)
      self.decoder_hidden = nn.Dense(self.hidden_dim)
      self.decoder = conv.ConvDecoder(tuple(self.conv_features))
    self.posterior = nn.Dense(2 * self.latent_dim)

  def encode(self, x):
    """The mean and log-variance of q(z | x), (B, latent_dim) each."""
    h = self.features(x)
    if self.network == "conv":
      h = nn.relu(self.encoder_hidden(h))
    mean, log_var = jnp.split(self.posterior(h), 2, axis=-1)
    return mean, log_var

  def decode(self, z, shape=None):
    """The Bernoulli logits of p(x | z), (B, H, W, C)."""
    if self.network == "fc":
      return self.decoder(z, shape)
    return self.decoder(nn.relu(self.decoder_hidden(z)), shape)

  def _terms(self, x, rng):
    """Per example: log p(x | z) at one reparameterised z ~ q(z | x), and KL(q(z | x) || N(0, I))
    in closed form; and q's parameters."""
    mean, log_var = self.encode(x)
    q = distrax.Normal(mean, jnp.exp(0.5 * log_var))
    logits = self.decode(q.sample(seed=rng), x.shape[1:])
    log_likelihood = likelihood.bernoulli_log_likelihood(x, logits)
    kl = q.kl_divergence(distrax.Normal(0.0, 1.0)).sum(-1)
    return log_likelihood, kl, mean, log_var

  def loss(self, batch, train=True):
    """-E log p(x | z) plus the paper's regulariser; metrics: the ELBO, its terms, the penalty."""
    del train
    log_likelihood, kl, mean, log_var = self._terms(batch["x"], self.make_rng("sample"))
    penalty, metrics = self.regulariser(mean, log_var, kl)
    return -log_likelihood.mean() + penalty, {
        "elbo": (log_likelihood - kl).mean(),
        "reconstruction": log_likelihood.mean(),
        "kl": kl.mean(),
        **metrics,
    }

  def evaluate(self, batch):
    """Per example: the ELBO, its reconstruction term and the KL, in nats."""
    log_likelihood, kl, _, _ = self._terms(batch["x"], self.make_rng("sample"))
    return {"elbo": log_likelihood - kl, "reconstruction": log_likelihood, "kl": kl}

  def traverse(self, x, values):
    """Latent traversals of one image x, (1, H, W, C): row d holds the means of p(x | z) at the
    posterior mean of x with z_d alone set to each of `values`; (latent_dim, len(values), H, W,
    C). A disentangled code changes one factor of the image along each row."""
    mean, _ = self.encode(x)
    swept = jnp.eye(self.latent_dim, dtype=bool)[:, None, :]
    z = jnp.where(swept, jnp.asarray(values)[None, :, None], mean[0])
    logits = self.decode(z.reshape(-1, self.latent_dim), x.shape[1:])
    return jax.nn.sigmoid(logits).reshape(self.latent_dim, len(values), *x.shape[1:])

  def sample(self, n):
    """n images: the means of p(x | z) at z ~ N(0, I) (`sample` RNG)."""
    z = jax.random.normal(self.make_rng("sample"), (n, self.latent_dim))
    return jax.nn.sigmoid(self.decode(z))

"""The Gaussian VAE of the disentanglement papers, written once: beta-VAE and DIP-VAE differ only
in the regulariser they put on the codes (their `regulariser` method).

The architecture is the one both papers use for 64x64 images (Higgins et al. 2017, appendix;
Kumar et al. 2018, section 6): four 4x4 stride-2 convolutions of 32, 32, 64 and 64 channels and a
256-unit layer to the mean and log-variance of a diagonal Gaussian q(z | x) with 10 dimensions;
the decoder mirrors it into Bernoulli logits. The prior is N(0, I).
"""

from collections.abc import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import contract
from zoo.metrics import likelihood
from zoo.nn import conv


class GaussianVAE(contract.Model):
  """Subclasses set the fields below (they are the papers' hyper-parameters) and define
  `regulariser(mean, log_var, kl) -> (penalty, metrics)`, added to the negative log-likelihood."""

  latent_dim: int = 10
  conv_features: Sequence[int] = (32, 32, 64, 64)
  hidden_dim: int = 256

  def setup(self):
    self.features = conv.ConvEncoder(tuple(self.conv_features))
    self.encoder_hidden = nn.Dense(self.hidden_dim)
    self.posterior = nn.Dense(2 * self.latent_dim)
    self.decoder_hidden = nn.Dense(self.hidden_dim)
    self.decoder = conv.ConvDecoder(tuple(self.conv_features))

  def encode(self, x):
    """The mean and log-variance of q(z | x), (B, latent_dim) each."""
    h = nn.relu(self.encoder_hidden(self.features(x)))
    mean, log_var = jnp.split(self.posterior(h), 2, axis=-1)
    return mean, log_var

  def decode(self, z, shape=None):
    """The Bernoulli logits of p(x | z), (B, H, W, C)."""
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

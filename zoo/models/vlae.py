"""Variational Ladder Autoencoders (Zhao, Song & Ermon 2017, Learning Hierarchical Features from
Generative Models).

`ladder` (the VLAE, the paper's section 4): codes z_1..z_L with independent N(0, I) priors, each
inferred from features of x at its own depth, q(z_l | x) = N(mu_l(h_l), sigma_l(h_l)) with h_1 the
conv features of x and h_{l+1} = f_l(h_l); one generator into which z_l enters at the matching
depth, deeper codes earlier and so through more layers:
  g_L = u_L(z_L),  g_l = u_l(g_{l+1} + gate_l * v_l(z_l)),  p(x | z) = Bernoulli(decoder(g_1)).
`markov` (the hierarchical VAE the paper contrasts, its section 3): p(z_L) prod_l p(z_l | z_{l+1})
p(x | z_1) with q(z_1 | x) prod_l q(z_{l+1} | z_l), whose higher layers the paper shows to be
ignored (their KL near zero) once p(x | z_1) is expressive.

The loss is the negative ELBO, E_q log p(x | z) - sum_l KL_l, with each layer's KL term logged;
as in the paper's code, the KL terms are warmed up in training with weight 1 - exp(-t / tau).
"""

from typing import Literal

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import contract
from zoo import domains
from zoo import registry
from zoo.metrics import likelihood
from zoo.nn import conv
from zoo.nn import mlp

Hierarchy = Literal["ladder", "markov"]


class GaussianHead(nn.Module):
  """features -> N(mu, sigma): a ReLU layer, then the mean and sigma = sigmoid + 0.001 (the
  paper's code)."""

  latent_dim: int
  hidden_dim: int

  @nn.compact
  def __call__(self, h):
    h = mlp.hidden_layers(h, (self.hidden_dim,))
    return distrax.Normal(
        nn.Dense(self.latent_dim)(h), jax.nn.sigmoid(nn.Dense(self.latent_dim)(h)) + 1e-3
    )


def _mlp(hidden_dim, depth=2):
  return nn.Sequential([layer for _ in range(depth) for layer in (nn.Dense(hidden_dim), nn.relu)])


def kl_weight(step, tau):
  """The warm-up's KL weight at training step `step`, 1 - exp(-step / tau), and 1 throughout
  for tau = 0 (no warm-up); without a Python branch on tau, so that a run can sweep it over its
  replicas (`config.replicas`)."""
  return jnp.where(tau > 0, 1 - jnp.exp(-step / jnp.where(tau > 0, tau, 1.0)), 1.0)


@registry.register(
    "vlae",
    family="latent",
    paper="Zhao, Song & Ermon 2017, Learning Hierarchical Features from Generative Models",
)
class VLAE(contract.Model):
  """Attributes:
  latent_dims: the size of each code, z_1 (shallowest) first; the paper's MNIST model has
    three codes of 2.
  hidden_dim: the width of the dense layers (the paper's 1024 for MNIST).
  conv_features: channels of the 4x4 stride-2 convolutions next to the pixels (64, 128).
  hierarchy: `ladder` (VLAE) or `markov` (the hierarchical VAE).
  num_eval_samples: importance samples of the evaluation's log p(x) (a multiple of 100).
  kl_warmup: tau, in training steps, of the KL weight 1 - exp(-t / tau) (the paper's code:
    2000); 0 trains on the ELBO from the start.
  """

  best_by = ("log_prob", "max")
  latent_dims: domains.Widths = (2, 2, 2)
  hidden_dim: domains.PositiveInt = 1024
  conv_features: domains.Widths = (64, 128)
  hierarchy: Hierarchy = "ladder"
  num_eval_samples: domains.PositiveInt = 1000
  kl_warmup: domains.NonNegativeFloat = 2000.0

  def setup(self):
    likelihood.check_num_samples("vlae", self.num_eval_samples)
    depth = len(self.latent_dims)
    self.features = conv.ConvEncoder(tuple(self.conv_features))
    self.decoder = conv.ConvDecoder(tuple(self.conv_features))
    self.posteriors = [GaussianHead(d, self.hidden_dim) for d in self.latent_dims]
    self.upward = [_mlp(self.hidden_dim) for _ in range(depth - 1)]  # h_l -> h_{l+1}, or z_l ->
    if self.hierarchy == "ladder":
      self.downward = [_mlp(self.hidden_dim) for _ in range(depth)]  # u_l
      self.embeddings = [nn.Dense(self.hidden_dim) for _ in range(depth - 1)]  # v_l
      self.gates = [
          self.param(f"gate_{l}", nn.initializers.constant(0.1), (self.hidden_dim,))
          for l in range(depth - 1)
      ]
    else:
      self.priors = [GaussianHead(d, self.hidden_dim) for d in self.latent_dims[:-1]]
      self.downward = [_mlp(self.hidden_dim)]  # z_1 -> decoder input
    self.step = self.variable("schedule", "step", jnp.zeros, (), jnp.int32)

  def sample_posterior(self, x, rng):
    """Codes z_1..z_L drawn from q(z | x) and each layer's KL term, (B,) each: KL(q(z_l | x) ||
    N(0, I)) for the ladder. For the chain, whose z_{l+1} is drawn given z_l, the coupled
    single-sample term log q(z_l | z_{l-1}) - log p(z_l | z_{l+1}) on the drawn codes, and the
    top layer's KL(q(z_L | z_{L-1}) || N(0, I)); each has the expectation of that layer's part of
    KL(q(z | x) || p(z)) under the joint q. (A KL over z_l taken analytically at a z_{l+1} drawn
    from the sampled z_l decouples the two and is biased: -0.12, +0.09 nats on a test chain.)"""
    keys = jax.random.split(rng, len(self.latent_dims))
    h, posteriors, codes = self.features(x), [], []
    for l, (head, key) in enumerate(zip(self.posteriors, keys)):
      if l:
        h = self.upward[l - 1](h if self.hierarchy == "ladder" else codes[-1])
      posteriors.append(head(h))
      codes.append(posteriors[-1].sample(seed=key))
    standard = distrax.Normal(0.0, 1.0)
    kls = [q.kl_divergence(standard).sum(-1) for q in posteriors]
    if self.hierarchy == "markov":
      kls[:-1] = [
          (q.log_prob(z) - prior(above).log_prob(z)).sum(-1)
          for q, z, prior, above in zip(posteriors, codes, self.priors, codes[1:])
      ]
    return codes, kls, posteriors

  def decode(self, codes, shape=None):
    """The logits of p(x | z) for codes z_1..z_L (the chain's decoder reads z_1 only)."""
    if self.hierarchy == "markov":
      return self.decoder(self.downward[0](codes[0]), shape)
    g = self.downward[-1](codes[-1])
    for l in reversed(range(len(codes) - 1)):
      g = self.downward[l](g + self.gates[l] * self.embeddings[l](codes[l]))
    return self.decoder(g, shape)

  def codes_from_noise(self, noise):
    """The prior's codes as a function of standard normal noise, one array per layer: the
    noise itself for the ladder; for the chain z_L = e_L, z_l = mu(z_{l+1}) + sigma(z_{l+1}) e_l."""
    if self.hierarchy == "ladder":
      return list(noise)
    codes = [noise[-1]]
    for prior, e in zip(self.priors[::-1], noise[-2::-1]):
      p = prior(codes[0])
      codes.insert(0, p.loc + p.scale * e)
    return codes

  def _elbo_terms(self, x, rng):
    codes, kls, _ = self.sample_posterior(x, rng)
    return likelihood.bernoulli_log_likelihood(x, self.decode(codes, x.shape[1:])), kls

  def loss(self, batch, train=True):
    """The negative ELBO (eq. 1), its KL terms weighted by the warm-up in training; metrics: the
    ELBO itself, the reconstruction term and each layer's KL."""
    reconstruction, kls = self._elbo_terms(batch["x"], self.make_rng("sample"))
    kl = sum(kls)
    weight = 1.0
    if train:
      weight = kl_weight(self.step.value, self.kl_warmup)
      if not self.is_initializing():
        self.step.value += 1
    metrics = {
        "elbo": (reconstruction - kl).mean(),
        "reconstruction": reconstruction.mean(),
        "kl_weight": jnp.asarray(weight),
        **{f"kl_{l + 1}": kl.mean() for l, kl in enumerate(kls)},
    }
    return -(reconstruction - weight * kl).mean(), metrics

  def log_weights(self, x, rng, num_samples):
    """log p(x, z) - log q(z | x) for `num_samples` draws from q, (B, K): the batch repeated K
    times, so the draws are one batched pass."""
    x = jnp.repeat(x, num_samples, axis=0)
    codes, _, posteriors = self.sample_posterior(x, rng)
    log_q = sum(q.log_prob(z).sum(-1) for q, z in zip(posteriors, codes))
    standard = distrax.Normal(0.0, 1.0)
    log_prior = standard.log_prob(codes[-1]).sum(-1)
    if self.hierarchy == "ladder":
      log_prior += sum(standard.log_prob(z).sum(-1) for z in codes[:-1])
    else:
      log_prior += sum(
          prior(above).log_prob(z).sum(-1)
          for prior, z, above in zip(self.priors, codes[:-1], codes[1:])
      )
    log_likelihood = likelihood.bernoulli_log_likelihood(x, self.decode(codes, x.shape[1:]))
    return (log_likelihood + log_prior - log_q).reshape(-1, num_samples)

  def log_prob(self, x):
    """log p(x) of images x, (B,) in nats: the log of the mean of num_eval_samples importance
    weights p(x, z) / q(z | x), z ~ q (`sample` RNG), the IWAE bound of Burda et al. 2016."""
    return self._importance_sampled_log_prob(x, self.make_rng("sample"))

  def _importance_sampled_log_prob(self, x, rng):
    return likelihood.importance_sampled_log_prob(
        lambda key, k: self.log_weights(x, key, k), rng, len(x), self.num_eval_samples
    )

  def evaluate(self, batch):
    """Per example: the ELBO and its terms, and `log_prob` (nats)."""
    x = batch["x"]
    elbo_rng, sampling_rng = jax.random.split(self.make_rng("sample"))
    reconstruction, kls = self._elbo_terms(x, elbo_rng)
    return {
        "elbo": reconstruction - sum(kls),
        "reconstruction": reconstruction,
        "log_prob": self._importance_sampled_log_prob(x, sampling_rng),
        **{f"kl_{l + 1}": kl for l, kl in enumerate(kls)},
    }

  def _means(self, noise):
    return jax.nn.sigmoid(self.decode(self.codes_from_noise(noise)))

  def sample(self, n):
    """n images: the means of p(x | z) for codes drawn from the prior (`sample` RNG)."""
    keys = jax.random.split(self.make_rng("sample"), len(self.latent_dims))
    return self._means([jax.random.normal(k, (n, d)) for k, d in zip(keys, self.latent_dims)])

  def layer_grid(self, layer, rows, columns):
    """(rows, columns, H, W, C) means of p(x | z) in which only layer `layer`'s code (0 for z_1)
    changes along a row: every other layer's noise is drawn once per row, layer `layer`'s once
    per column and shared by all rows (the paper's Figures 4-6)."""
    keys = jax.random.split(self.make_rng("sample"), len(self.latent_dims))
    noise = []
    for l, (key, d) in enumerate(zip(keys, self.latent_dims)):
      if l == layer:
        e = jnp.broadcast_to(jax.random.normal(key, (1, columns, d)), (rows, columns, d))
      else:
        e = jnp.broadcast_to(jax.random.normal(key, (rows, 1, d)), (rows, columns, d))
      noise.append(e.reshape(rows * columns, d))
    means = self._means(noise)
    return means.reshape(rows, columns, *means.shape[1:])

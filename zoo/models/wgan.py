"""Wasserstein GAN (Arjovsky, Chintala & Bottou 2017), with WGAN-GP (Gulrajani et al. 2017) and
the standard non-saturating GAN (Goodfellow et al. 2014) as the variants it is compared with.

The critic f maximises E f(x) - E f(G(z)) (Algorithm 1) over a set of K-Lipschitz functions:
`wgan` keeps f's weights in [-c, c] by clipping after every critic update; `wgan_gp` adds the
penalty lambda E (||grad f(x_hat)|| - 1)^2 at random interpolates x_hat instead (Gulrajani eq. 3).
The generator minimises -E f(G(z)). The runner's game step does n_critic critic updates per
generator update, each with its own optimiser.
"""

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import domains
from zoo import errors
from zoo import registry
from zoo.nn import dcgan
from zoo.nn import games

Variant = Literal["wgan", "wgan_gp", "gan"]


def gradient_penalty(critic_gradient, real, fake, rng):
  """WGAN-GP's penalty E (||grad_x f(x_hat)||_2 - 1)^2 at x_hat = e x + (1 - e) x~, e ~ U[0, 1]
  per example (Gulrajani et al. eq. 3, Algorithm 1); `critic_gradient(x)` is grad_x f per
  example."""
  e = jax.random.uniform(rng, (len(real),) + (1,) * (real.ndim - 1))
  gradient = critic_gradient(e * real + (1 - e) * fake).reshape(len(real), -1)
  return jnp.mean((jnp.linalg.norm(gradient, axis=-1) - 1) ** 2)


@registry.register("wgan", family="game", paper="Arjovsky, Chintala & Bottou 2017, Wasserstein GAN")
class WGAN(games.Game):
  """Attributes:
  variant: `wgan` (weight clipping, the paper's), `wgan_gp` (gradient penalty) or `gan` (the
    non-saturating GAN: the critic is a discriminator's logit).
  latent_dim: the dimension of z ~ N(0, I) (DCGAN's 100).
  hidden_dims: the MLP players' ReLU layers, for vector data (the toy experiments' 3 x 512).
  width: DCGAN's number of filters of the first critic / last generator layer, for images.
  weight_clip: c of `wgan`: every critic weight is kept in [-c, c].
  penalty_weight: lambda of `wgan_gp`.
  critic_norm: the image critic's normalisation, `batch`, `layer` or `none`
    (`zoo.nn.dcgan.Critic`; the config sets the authors' choice for the variant).
  """

  variant: Variant = "wgan"
  latent_dim: domains.PositiveInt = 100
  hidden_dims: domains.Widths = (512, 512, 512)
  width: domains.PositiveInt = 64
  weight_clip: domains.PositiveFloat = 0.01
  penalty_weight: domains.NonNegativeFloat = 10.0
  critic_norm: dcgan.Norm = "none"

  phases = {"critic": ("critic",), "generator": ("generator",)}

  def setup(self):
    if self.variant == "wgan_gp" and self.critic_norm == "batch":
      raise errors.HyperparameterError(
          "wgan: the gradient penalty is per example, which batch norm's critic is not "
          "(Gulrajani et al. section 4); critic_norm must be layer or none for wgan_gp"
      )
    self.generator = dcgan.Generator(self.hidden_dims, self.width)
    self.critic = dcgan.Critic(self.hidden_dims, self.width, self.critic_norm)

  def _generate(self, n, shape=None, train=False):
    z = jax.random.normal(self.make_rng("sample"), (n, self.latent_dim))
    return self.generator(z, shape, train)

  def critic_loss(self, batch, train=True):
    """Minus the critic's objective: -(E f(x) - E f(G(z))) (+ the penalty), or the
    discriminator's cross-entropy for `gan`. Metrics: the gap E f(x) - E f(G(z)), which for the
    Wasserstein variants is the paper's estimate of W(P_r, P_g) (its Figures 3 and 4)."""
    x = batch["x"]
    fake = jax.lax.stop_gradient(self._generate(len(x), x.shape[1:], train))
    real_score, fake_score = self.critic(x, train), self.critic(fake, train)
    gap = real_score.mean() - fake_score.mean()
    metrics = {"critic_gap": gap}
    if self.variant == "gan":
      loss = jax.nn.softplus(-real_score).mean() + jax.nn.softplus(fake_score).mean()
    else:
      loss = -gap
    if self.variant == "wgan_gp":
      critic_gradient = lambda y: nn.grad(lambda critic, y: critic(y).sum(), self.critic, y)[0]
      penalty = gradient_penalty(critic_gradient, x, fake, self.make_rng("sample"))
      loss = loss + self.penalty_weight * penalty
      metrics["gradient_penalty"] = penalty
    return loss, metrics

  def generator_loss(self, batch, train=True):
    """-E f(G(z)), or the non-saturating -E log D(G(z)) for `gan`."""
    score = self.critic(self._generate(len(batch["x"]), batch["x"].shape[1:], train), train)
    return (jax.nn.softplus(-score) if self.variant == "gan" else -score).mean(), {}

  @nn.nowrap
  def project(self, phase, params):
    """`wgan`'s weight clipping: every critic parameter clipped to [-c, c] after its update."""
    if self.variant == "wgan" and phase == "critic":
      return jax.tree.map(lambda p: jnp.clip(p, -self.weight_clip, self.weight_clip), params)
    return params

  def evaluate(self, batch):
    """Per example: f(x) - f(G(z)), whose mean is the critic's gap on held-out data."""
    x = batch["x"]
    return {"critic_gap": self.critic(x) - self.critic(self._generate(len(x), x.shape[1:]))}

  def sample(self, n):
    """n samples G(z), z ~ N(0, I), drawn with the `sample` RNG."""
    return self._generate(n)

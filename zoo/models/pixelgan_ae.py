"""PixelGAN autoencoders (Makhzani & Frey 2017): an autoencoder whose decoder is a PixelCNN
conditioned on the code z, and whose aggregate posterior q(z) = E_p(x) q(z | x) is matched to
the prior p(z) adversarially, as in adversarial autoencoders, rather than by a KL term.

The objective (section 2) is E_x E_q(z|x) [-log p(x | z)] + KL(q(z) || p(z)): the first term is
the reconstruction phase (encoder and decoder), the second the regularisation phase, in which a
discriminator on z learns to tell prior samples from codes and the encoder then learns to fool
it (the non-saturating generator loss). With a Gaussian prior the code conditions the PixelCNN
through a location-dependent bias (a spatial map computed from z), and the code keeps the
global structure while the PixelCNN fills in local detail; with a categorical prior the code is
a softmax over K clusters and conditions through a location-independent bias, and it takes the
discrete content (the digit class), leaving the style to the PixelCNN.
"""

from collections.abc import Sequence
from typing import Annotated
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import domains
from zoo import errors
from zoo import registry
from zoo.nn import dcgan
from zoo.nn import games
from zoo.nn import mlp
from zoo.nn import pixelcnn

Prior = Literal["gaussian", "categorical"]


class Encoder(nn.Module):
  """x (and, for the noisy encoder, n ~ N(0, I)) -> z by a ReLU MLP: the Gaussian code, or the
  logits of the categorical one. The categorical logits are batch-normalised (a learnt scale,
  no shift), so that every cluster's logit has mean zero over the batch: no cluster can win
  for every x. Without it the deterministic encoder's softmax collapses onto a few clusters,
  where it saturates and the discriminator's gradient through it vanishes (an MLP encoder
  against the discriminator alone on the digits ended in 1 of 30 clusters)."""

  hidden_dims: Sequence[int]
  latent_dim: int
  noise_dim: int
  normalize_logits: bool

  @nn.compact
  def __call__(self, x, train: bool):
    h = x.reshape(len(x), -1)
    if self.noise_dim:
      noise = jax.random.normal(self.make_rng("sample"), (len(x), self.noise_dim))
      h = jnp.concatenate([h, noise], -1)
    h = mlp.hidden_layers(h, self.hidden_dims)
    output = nn.Dense(self.latent_dim)(h)
    if self.normalize_logits:
      output = nn.BatchNorm(use_running_average=not train, use_bias=False)(output)
    return output


class Decoder(nn.Module):
  """The PixelCNN's logits (B, H, W, C, levels) given x and the code: a Gaussian code enters as a
  spatial map (one linear layer from z to an H x W map, a location-dependent bias), a categorical
  code as a vector (a location-independent bias). The image shape is given at `init` and read
  off the per-pixel output bias afterwards."""

  prior: str
  features: int
  num_blocks: int
  levels: int

  @nn.compact
  def __call__(self, x, code):
    shape = x.shape[1:]
    if self.features % shape[-1]:
      raise errors.HyperparameterError(
          f"pixelgan_ae: features ({self.features}) must be a multiple of the image's "
          f"{shape[-1]} channels"
      )
    condition = code
    if self.prior == "gaussian":
      condition = nn.Dense(shape[0] * shape[1])(code).reshape(len(x), shape[0], shape[1], 1)
    logits = pixelcnn.PixelCNN(self.features, self.num_blocks, self.levels)(x, condition)
    return logits + self.param("output_bias", nn.initializers.zeros_init(), (*shape, self.levels))

  def image_shape(self):
    return self.get_variable("params", "output_bias").shape[:-1]


@registry.register(
    "pixelgan_ae", family="game", paper="Makhzani & Frey 2017, PixelGAN Autoencoders"
)
class PixelGANAutoencoder(games.Game):
  """Attributes:
  prior: `gaussian` (global/local decomposition) or `categorical` (clustering: latent_dim is
    the number of clusters K).
  latent_dim: the Gaussian code's size, or K.
  encoder_dims, discriminator_dims: the ReLU MLPs' hidden layers.
  noise_dim: 0 for a deterministic encoder; > 0 for the noisy one, z = f(x, n).
  features, num_blocks: the gated PixelCNN's width and depth.
  num_levels: the values a pixel channel takes, k / (num_levels - 1): 2 for binarised images
    (`preprocess=binarize`), 256 for 8-bit ones (`preprocess=scale`).
  semi_supervised: add the semi-supervised phase, in which the categorical code (K = the
    number of classes) learns the labels of the batch's labelled part (`labeled_x`,
    `labeled_label`) by cross entropy.
  """

  prior: Prior = "gaussian"
  latent_dim: domains.PositiveInt = 8
  encoder_dims: domains.Widths = (1000, 1000)
  discriminator_dims: domains.Widths = (1000, 1000)
  noise_dim: domains.NonNegativeInt = 0
  features: domains.PositiveInt = 64
  num_blocks: domains.PositiveInt = 6
  num_levels: Annotated[int, domains.AT_LEAST_TWO] = 2
  semi_supervised: bool = False

  @property
  def phases(self):
    phases = {
        "reconstruction": ("encoder", "decoder"),
        "discriminator": ("discriminator",),
        "regularization": ("encoder",),
    }
    return {**phases, "semi_supervised": ("encoder",)} if self.semi_supervised else phases

  def setup(self):
    if self.semi_supervised and self.prior != "categorical":
      raise errors.HyperparameterError("pixelgan_ae: semi_supervised needs prior=categorical")
    self.encoder = Encoder(
        tuple(self.encoder_dims),
        self.latent_dim,
        self.noise_dim,
        normalize_logits=self.prior == "categorical",
    )
    self.decoder = Decoder(self.prior, self.features, self.num_blocks, self.num_levels)
    self.discriminator = dcgan.Critic(tuple(self.discriminator_dims), width=0)

  def encode(self, x, train: bool = False):
    """The code of x: z for the Gaussian prior, the cluster probabilities for the categorical."""
    output = self.encoder(x, train)
    return jax.nn.softmax(output) if self.prior == "categorical" else output

  @property
  def num_clusters(self) -> int:
    """K for the categorical prior, 0 for the Gaussian one (its codes are not clusters)."""
    return self.latent_dim if self.prior == "categorical" else 0

  def _prior_sample(self, n):
    rng = self.make_rng("sample")
    if self.prior == "categorical":
      return jax.nn.one_hot(jax.random.randint(rng, (n,), 0, self.latent_dim), self.latent_dim)
    return jax.random.normal(rng, (n, self.latent_dim))

  def _negative_log_likelihood(self, x, train: bool):
    return -pixelcnn.log_likelihood(self.decoder(x, self.encode(x, train)), x)

  def reconstruction_loss(self, batch, train=True):
    """-log p(x | z), z = f(x): the reconstruction phase, in nats per image."""
    return self._negative_log_likelihood(batch["x"], train).mean(), {}

  def discriminator_loss(self, batch, train=True):
    """The discriminator's cross entropy: prior samples are real, codes fake."""
    x = batch["x"]
    real = self.discriminator(self._prior_sample(len(x)))
    fake = self.discriminator(self.encode(x, train))
    return jnp.mean(jax.nn.softplus(-real) + jax.nn.softplus(fake)), {}

  def regularization_loss(self, batch, train=True):
    """The encoder's adversarial loss, -log D(f(x)) (non-saturating)."""
    return jax.nn.softplus(-self.discriminator(self.encode(batch["x"], train))).mean(), {}

  def semi_supervised_loss(self, batch, train=True):
    """The cross entropy of the categorical code on the labelled examples."""
    logits = self.encoder(batch["labeled_x"], train)
    labels = jax.nn.one_hot(batch["labeled_label"], self.latent_dim)
    loss = -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(logits), -1))
    return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["labeled_label"])}

  def evaluate(self, batch):
    """Per example: `reconstruction`, log p(x | f(x)) in nats."""
    return {"reconstruction": -self._negative_log_likelihood(batch["x"], train=False)}

  def _sample_given(self, code):
    shape = (len(code), *self.decoder.image_shape())
    return pixelcnn.sample(
        lambda x: self.decoder(x, code), shape, self.num_levels, self.make_rng("sample")
    )

  def sample(self, n):
    """n images x ~ p(x | z), z ~ p(z), drawn pixel by pixel (`sample` RNG)."""
    return self._sample_given(self._prior_sample(n))

  def decompose(self, num_codes: int, per_code: int):
    """The paper's decomposition figures: row r holds `per_code` PixelCNN samples given one
    code, z_r ~ p(z) (Gaussian), or cluster r (categorical); what changes along a row is what
    the PixelCNN models, what changes down the rows what the code holds.
    (num_codes, per_code, H, W, C)."""
    if self.prior == "categorical":
      code = jax.nn.one_hot(jnp.arange(num_codes) % self.latent_dim, self.latent_dim)
    else:
      code = self._prior_sample(num_codes)
    images = self._sample_given(jnp.repeat(code, per_code, axis=0))
    return images.reshape(num_codes, per_code, *images.shape[1:])

"""NICE: Non-linear Independent Components Estimation (Dinh, Krueger, Bengio 2014).

Additive coupling layers with alternating even/odd partitions (eq. 5, unit Jacobian), each
coupling function an MLP of rectified units, then the diagonal rescaling layer (section 3.3), on
a factorised logistic or Gaussian prior (section 3.4). The log-likelihood is exact:
log p(x) = sum_d log p_H(h_d(x)) + sum_d s_d.
"""

from typing import Literal

import distrax
import jax.numpy as jnp

from zoo import domains
from zoo import registry
from zoo.nn import flows

Prior = Literal["logistic", "gaussian"]


@registry.register(
    "nice",
    family="flow",
    paper="Dinh, Krueger, Bengio 2014, NICE: Non-linear Independent Components Estimation",
)
class NICE(flows.Flow):
  """Attributes:
  num_couplings: additive coupling layers; the paper uses 4.
  hidden_dims: the coupling MLPs' hidden layers; the paper uses 5 of 1000 units for MNIST.
  prior: "logistic" (the paper's choice for its results) or "gaussian".
  """

  num_couplings: domains.PositiveInt = 4
  hidden_dims: domains.Widths = (1000,) * 5
  prior: Prior = "logistic"

  def setup(self):
    self.layers = [
        flows.Coupling(self.hidden_dims, parity=i % 2, affine=False)
        for i in range(self.num_couplings)
    ] + [flows.Rescaling()]

  def _prior(self, size):
    zeros, ones = jnp.zeros(size), jnp.ones(size)
    if self.prior == "logistic":
      return distrax.Independent(distrax.Logistic(zeros, ones), 1)
    return distrax.MultivariateNormalDiag(zeros, ones)

  def base_log_prob(self, u, context):
    del context
    return self._prior(u.shape[-1]).log_prob(u)

  def base_sample(self, rng, n, context):
    del context
    return self._prior(self.layers[0].event_size).sample(seed=rng, sample_shape=(n,))

"""flowjax's MAF on the `maf_tabular` case: D = 6, batch 512, 5 masked autoregressive layers
of 2 x 100 ReLU units (flowjax's default reversal between them), Adam 1e-4, maximum likelihood.
The step is the one flowjax's `fit_to_data` jits (its loss, `eqx.filter_value_and_grad`, an
optax update), written out with the state donated, as ours is.

  python benchmarks/peers/flowjax_maf.py [--seconds=3 --repeats=5]
"""

import functools
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import paramax
from flowjax.distributions import Normal
from flowjax.flows import masked_autoregressive_flow

from benchmarks.peers import common


def main():
  args = common.parse_args()
  flow = masked_autoregressive_flow(
      jax.random.key(0), base_dist=Normal(jnp.zeros(6)), flow_layers=5, nn_width=100, nn_depth=2
  )
  params, static = eqx.partition(
      flow, eqx.is_inexact_array, is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable)
  )
  optimizer = optax.adam(1e-4)
  opt_state = optimizer.init(params)
  x = jax.random.normal(jax.random.key(1), (512, 6))

  def loss(params, x):
    return -paramax.unwrap(eqx.combine(params, static)).log_prob(x).mean()

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, x):
    value, grads = jax.value_and_grad(loss)(params, x)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  box = [params, opt_state]

  def one_step():
    box[0], box[1], _ = step(box[0], box[1], x)

  rates = common.time_step(one_step, lambda: jax.block_until_ready(box[0]), args)
  device = jax.devices()[0]
  name = device.device_kind if device.platform != "cpu" else ""
  print(json.dumps(common.result("flowjax_maf", rates, 512, args, name)))


if __name__ == "__main__":
  main()

"""benchmarks.bench: its FLOP count, its cases, its JSON line and its table."""

import jax
import jax.numpy as jnp
import pytest

import zoo
from benchmarks import bench
from zoo import training


def test_matmul_flops_are_two_m_n_k_and_a_scan_counts_its_length():
  a, b = jnp.ones((4, 5)), jnp.ones((5, 6))
  assert bench.matmul_flops(jax.make_jaxpr(jnp.matmul)(a, b).jaxpr) == 2 * 4 * 5 * 6
  scanned = lambda a, b: jax.lax.scan(lambda c, _: (c, c @ b), a, None, length=3)[1]
  assert bench.matmul_flops(jax.make_jaxpr(scanned)(a, b).jaxpr) == 3 * 2 * 4 * 5 * 6
  assert (
      bench.matmul_flops(
          jax.make_jaxpr(jax.vmap(jnp.matmul))(jnp.ones((7, 4, 5)), jnp.ones((7, 5, 6))).jaxpr
      )
      == 7 * 2 * 4 * 5 * 6
  )


@pytest.mark.parametrize("name", bench.CASES)
def test_every_case_builds_its_model_on_its_shapes(name):
  case = bench.CASES[name]
  config = case.config()
  spec = zoo.get(case.model)
  model = spec.build(**config.model)
  train_step, optimizer = training.make_step(model, config, spec.family == "game")
  batch = bench._random_batch(case, config, ())
  state = jax.eval_shape(lambda: training.init_state(model, optimizer, batch, jax.random.key(0)))
  if spec.family == "game":
    batch = jax.tree.map(lambda x: jnp.stack([x] * config.first_phase_updates), batch)
  new, metrics = jax.eval_shape(train_step, state, batch, jax.random.key(1))
  assert jax.tree.structure(new) == jax.tree.structure(state)
  assert metrics["loss"].shape == ()


def test_measure_gives_the_design_json_and_render_a_row():
  case = bench.Case("maf", "smoke", (2,), "a small MAF", mlp=True)
  result = bench.measure(case, seconds=0.01, repeats=2)
  assert {"steps_per_sec", "examples_per_sec", "compile_sec", "device"} <= set(result)
  assert result["steps_per_sec"] > 0
  assert result["memory_mb"] > 0 and result["matmul_gflop"] > 0
  result.update(case="test_case", roofline_fraction=0.123)
  table = bench.render(
      [
          {
              "machine": "m",
              "date": "d",
              "jax": "j",
              "command": "c",
              "matmul_gflops_per_sec": 1.0,
              "cases": [result],
          }
      ]
  )
  assert "| test_case |" in table and "12.3%" in table

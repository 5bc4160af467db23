"""The train loop compiles once: every model's window of steps (`zoo.training.make_window`) is
compiled once (a game's, of one step, once per number of critic updates its steps take), and
nothing at all is compiled once the first logging window, its evaluation and its checkpoints are
done: a run of four windows compiles nothing from the second window's end of training to the
fourth's."""

import logging
import re

import jax
import pytest

import zoo
from experiments import logs
from experiments import loop
from zoo import configs
from zoo import training


class _Events(logging.Handler):
  """JAX's compile messages and the runner's metric writes, in the order they happen."""

  def __init__(self):
    super().__init__()
    self.events = []

  def emit(self, record):
    match = re.match(r"Compiling jit\((\S+?)\)", record.getMessage())
    if match:
      self.events.append(("compile", match.group(1)))


# The models of the largest smoke steps (30-50 s each on 2 cores) and the game WGAN (19 s) with
# the slow tests; the rest in `make test`.
SLOW_TO_COMPILE = ("beta_vae", "dip_vae", "pixelgan_ae", "vlae", "wgan")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in SLOW_TO_COMPILE else n
        for n in zoo.list_models()
    ],
)
def test_the_train_loop_compiles_its_step_once(name, tmp_path, data_dir, monkeypatch):
  config = zoo.get(name).default_config("smoke")
  window = config.log_every
  config.update(data_dir=data_dir, num_steps=4 * window, eval_every=window, checkpoint_every=window)
  config.scores = ()  # computed after training, and tested in test_vae: time saved
  handler = _Events()
  write = logs.MetricLog.write
  monkeypatch.setattr(
      logs.MetricLog,
      "write",
      lambda self, step, scalars: (
          handler.events.append(("log", step)),
          write(self, step, scalars),
      ),
  )
  logger = logging.getLogger("jax")
  logger.addHandler(handler)
  try:
    with jax.log_compiles():
      loop.train_and_evaluate(config, str(tmp_path))
  finally:
    logger.removeHandler(handler)
  events = handler.events
  steps = [e for e in events if e == ("compile", "window")]
  finalized = configs.finalize(config)
  shapes = (
      {training.first_phase_updates_at(finalized, s) for s in range(config.num_steps)}
      if zoo.get(name).family == "game"
      else {1}
  )
  assert len(steps) == len(shapes)
  late = events[events.index(("log", 2 * window)) : events.index(("log", 4 * window))]
  assert not [function for kind, function in late if kind == "compile"]

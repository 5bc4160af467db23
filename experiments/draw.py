"""Draw a finished run's figures again, of any of its replicas (a run draws its figures from
each setting's first seed only).

  python -m experiments.draw --workdir=DIR [--replica=R] [--out=DIR/figures-R]
      [--figures=traversals,...]

The replica's variables are those `zoo.load(DIR, replica=R)` gives (its best evaluation's,
else its last state) and its figures are drawn from its own seed's random streams, so replica
0's figures are the run's own.
"""

import os

from absl import flags

import zoo
from experiments import cli
from experiments import outputs

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run's directory.")
flags.DEFINE_integer("replica", 0, "Which replica (zoo.load's numbering).")
flags.DEFINE_string("out", None, "Where to write; default DIR/figures-R.")
flags.DEFINE_list("figures", None, "The figures to draw; default the run's config.figures.")


def main(argv) -> int:
  cli.parse_known(argv)
  if not FLAGS.workdir:
    raise zoo.errors.UserError("--workdir is required: the run's directory")
  if not os.path.exists(os.path.join(FLAGS.workdir, zoo.checkpoints.CONFIG)):
    raise zoo.errors.UserError(f"--workdir={FLAGS.workdir}: no run there (no config.json)")
  replicas = zoo.configs.num_replicas(zoo.checkpoints.read_config(FLAGS.workdir))
  if not 0 <= FLAGS.replica < replicas:
    raise zoo.errors.UserError(f"--replica={FLAGS.replica}: the run has replicas 0-{replicas - 1}")
  out = FLAGS.out or os.path.join(FLAGS.workdir, f"figures-{FLAGS.replica}")
  for name in outputs.redraw(FLAGS.workdir, FLAGS.replica, out, FLAGS.figures):
    print(os.path.join(out, name))
  return 0


def console() -> None:
  """The `zoo-draw` command."""
  cli.run(main)


if __name__ == "__main__":
  console()

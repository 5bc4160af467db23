"""Train one model of the zoo.

  python -m experiments.run --model=NAME [--preset=default|smoke|paper|...] [--workdir=DIR]
      [--config.KEY=VALUE ...] [--coordinator_address=H:P --num_processes=N --process_id=I]
      [--distributed] [--heartbeat_timeout=SECONDS] [--allow_config_change]

Started again on the same workdir, it resumes from the last checkpoint, with the config it
trained with (--allow_config_change: or one that changes only how long it trains and how often
it logs, evaluates and checkpoints). A mistake in what was asked for ends with one line on
stderr and exit status 2; a diverged loss with exit status 3; SIGTERM or Ctrl-C while it trains
with a checkpoint at the step it stopped and exit status 143 for SIGTERM, 130 for Ctrl-C (a
second Ctrl-C stops at once). A workdir another run holds is refused. Each process of a
multi-process run trains under a supervisor (`experiments.supervision`): when another process of
the run is lost, it ends within --heartbeat_timeout seconds, with one line and exit status 75;
when another fails, at once, with one line naming it and the failing process's status.
"""

import contextlib
import os

from absl import flags

import zoo
from experiments import checkpointing
from experiments import cli
from experiments import loop
from experiments import report
from experiments import supervision
from zoo import configs

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Registry name of the model: " + ", ".join(zoo.list_models()))
flags.DEFINE_string(
    "preset", "default", f"Configuration preset: {', '.join(configs.PRESETS)}, or a model's own."
)
flags.DEFINE_string("workdir", None, "Where to write; default workdirs/MODEL-PRESET.")
flags.DEFINE_bool(
    "allow_config_change",
    False,
    "Resume a workdir with a config that differs from its config.json in keys that leave each "
    "step as it was (num_steps, log_every, eval_every, checkpoint_every, ...).",
)
flags.DEFINE_string(
    "coordinator_address",
    None,
    "host:port of process 0, for multi-process runs where JAX cannot find it "
    "(see --distributed).",
)
flags.DEFINE_integer("num_processes", None, "Number of processes of a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
flags.DEFINE_bool(
    "distributed",
    None,
    "Start JAX's distributed runtime and let it find the coordinator, process count "
    "and id (Cloud TPU pod slices, SLURM, GKE). Default: on when "
    "--coordinator_address is given or a SLURM step of several tasks or a GKE TPU "
    "slice of several workers is detected.",
)
flags.DEFINE_integer(
    "heartbeat_timeout",
    60,
    "Seconds after which JAX's distributed runtime takes a silent process of a multi-process "
    "run for dead and ends the others (JAX's default: 100).",
)


def parse(argv):
  """The config: in two passes, --model and --preset pick the config that --config.* overrides.
  An unknown flag is an error naming the closest known one; an unknown config key, one naming
  the closest key and the keys its level has."""
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel

  FLAGS.unparse_flags()  # the defaults, whatever an earlier call in this process parsed
  cli.parse_known(argv, also="--config.")
  if not FLAGS.model:
    raise zoo.errors.UserError(f"--model is required: one of {', '.join(zoo.list_models())}")
  config = zoo.get(FLAGS.model).default_config(FLAGS.preset)
  for arg in argv[1:]:
    if arg.startswith("--config."):
      configs.lookup(config, arg[len("--config.") :].split("=", 1)[0])
  for name in [n for n in FLAGS if n == "config" or n.startswith("config.")]:
    delattr(FLAGS, name)  # an earlier call's
  config_flags.DEFINE_config_dict("config", config)
  FLAGS.unparse_flags()
  FLAGS(argv)
  return FLAGS.config


def _several_processes_detected() -> bool:
  """Whether this is one of several processes that `jax.distributed.initialize()` can find on
  its own, as their environment says: a SLURM job step of several tasks, or a GKE TPU slice of
  several workers. (A Cloud TPU VM says so only through its metadata server: --distributed.)"""
  return int(os.environ.get("SLURM_NTASKS", "1")) > 1 or "," in os.environ.get(
      "TPU_WORKER_HOSTNAMES", ""
  )


def _distributed() -> bool:
  """Whether this is a process of a multi-process run, as the flags say, else as detected."""
  if FLAGS.distributed is not None:
    return FLAGS.distributed
  return bool(FLAGS.coordinator_address) or _several_processes_detected()


def _start_processes():
  """JAX's distributed runtime, from the flags where given, else detected; CPU processes
  exchange their collectives with gloo."""
  import jax  # pylint: disable=import-outside-toplevel

  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      FLAGS.coordinator_address,
      FLAGS.num_processes,
      FLAGS.process_id,
      heartbeat_timeout_seconds=FLAGS.heartbeat_timeout,
  )


def main(argv) -> int:
  config = parse(argv)
  workdir = FLAGS.workdir or os.path.join("workdirs", f"{FLAGS.model}-{FLAGS.preset}")
  failures = contextlib.nullcontext()
  if _distributed():
    if not supervision.is_supervised():
      return supervision.supervise(argv, lambda: checkpointing.kept(workdir))
    _start_processes()
    failures = supervision.failures_end_the_run(
        lambda: checkpointing.kept(workdir), FLAGS.heartbeat_timeout
    )
  with failures:
    results = loop.train_and_evaluate(
        config, workdir, allow_config_change=FLAGS.allow_config_change
    )
  print("\n".join(report.final_lines(results, workdir)))
  return 0


def console() -> None:
  """The `zoo-run` command."""
  cli.run(main, "interrupted; run the same command again to resume from the last checkpoint")


if __name__ == "__main__":
  console()

"""What every command of the runner shares: quiet libraries, and a mistake a user can fix (a
flag, a config value, a data set that cannot be had) ends it with one line on stderr and a
non-zero exit status, never a traceback."""

import difflib
import sys
import warnings

import tensorflow_datasets as tfds
from absl import flags
from absl import logging

from experiments import preemption
from zoo import errors


def run(entry, interrupted: str = "interrupted") -> None:
  """`sys.exit(entry(sys.argv))` with library warnings and TFDS progress bars off (--help: the
  command's docstring and flags instead); a flag error
  exits 2, a `zoo.errors.UserError` its `exit_status`, a run stopped on a notice
  (`preemption.Preempted`) 143 for SIGTERM and 130 for SIGINT, Ctrl-C outside training 130 with
  `interrupted` said."""
  warnings.filterwarnings("ignore")
  tfds.disable_progress_bar()
  flags.FLAGS.set_default("verbosity", logging.ERROR)  # kept by parsing, unless --verbosity
  # orbax logs each error of its save threads with a traceback, then raises it where the run
  # waits for the save, which says it in one line (`checkpointing.Checkpoints`)
  logging.get_absl_logger().addFilter(lambda record: "/orbax/" not in record.pathname)
  if {"-h", "--help"} & set(sys.argv[1:]):
    module = sys.modules[entry.__module__]
    print(f"{module.__doc__.strip()}\n\n{flags.FLAGS.module_help(module)}")
    sys.exit(0)
  try:
    status = entry(sys.argv)
  except flags.Error as e:
    print(f"error: {e}", file=sys.stderr)
    status = 2
  except errors.UserError as e:
    print(f"error: {e}", file=sys.stderr)
    status = e.exit_status
  except preemption.Preempted as e:
    print(e, file=sys.stderr)
    status = e.exit_status
  except KeyboardInterrupt:
    print(interrupted, file=sys.stderr)
    status = 130
  sys.exit(status)


def parse_known(argv, also: str = "") -> None:
  """Parse `argv` into absl's FLAGS; a flag that is not defined (nor begins with `also`, flags
  defined once these are parsed) is a `UserError` naming the closest defined one."""
  for arg in flags.FLAGS(argv, known_only=True)[1:]:
    if arg.startswith("-") and not (also and arg.startswith(also)):
      name = arg.lstrip("-").split("=", 1)[0]
      close = difflib.get_close_matches(name, list(flags.FLAGS), n=1)
      raise errors.UserError(
          f"unknown flag --{name}; "
          + (f"did you mean --{close[0]}?" if close else "--help lists the flags")
      )

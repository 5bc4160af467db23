"""What every command of the runner shares: quiet libraries, and a mistake a user can fix (a
flag, a config value, a data set that cannot be had) ends it with one line on stderr and a
non-zero exit status, never a traceback."""

import sys
import warnings

import tensorflow_datasets as tfds
from absl import flags
from absl import logging

from experiments import preemption
from zoo import errors


def run(entry, interrupted: str = "interrupted") -> None:
  """`sys.exit(entry(sys.argv))` with library warnings and TFDS progress bars off; a flag error
  exits 2, a `zoo.errors.UserError` its `exit_status`, a run stopped on a notice
  (`preemption.Preempted`) 143, Ctrl-C outside training 130 with `interrupted` said."""
  warnings.filterwarnings("ignore")
  tfds.disable_progress_bar()
  flags.FLAGS.set_default("verbosity", logging.ERROR)  # kept by parsing, unless --verbosity
  # orbax logs each error of its save threads with a traceback, then raises it where the run
  # waits for the save, which says it in one line (`checkpointing.Checkpoints`)
  logging.get_absl_logger().addFilter(lambda record: "/orbax/" not in record.pathname)
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

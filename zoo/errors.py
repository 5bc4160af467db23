"""Errors a user can cause and fix; runners print them as one line, never a traceback."""


class UserError(Exception):
  """A mistake in what the user asked for: an unknown name, a bad value, missing data."""

  exit_status = 2  # of a command that it ends


class UnknownModelError(UserError, KeyError):
  """A model name that is not in the registry."""

  def __str__(self):
    return self.args[0]


class DatasetUnavailableError(UserError):
  """A data set that is neither prepared locally nor downloadable from here."""


class HyperparameterError(UserError, ValueError):
  """A hyper-parameter value that the model cannot be built with."""


class NonFiniteLossError(UserError):
  """The loss turned NaN or infinite; training stops (the runner keeps its last good
  checkpoint)."""

  exit_status = 3

"""The project's user errors: what the command line reports as one line, naming the file, line or argument.

Everything else (a genuine bug) keeps its traceback. Each class also derives from the built-in exception a
caller would expect (``ValueError``, ``FileNotFoundError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class RLHFGymError(Exception):
    """Base class of the errors caused by the user's input, not by a bug."""


class ConfigError(RLHFGymError, ValueError):
    """A bad argument, option or configuration value."""


class DataError(RLHFGymError, ValueError):
    """A malformed data file or record; the message names the file and line."""


class MissingFileError(RLHFGymError, FileNotFoundError):
    """A file, directory, checkpoint or model that does not exist or cannot be loaded; the message names it."""


class TrainingDivergedError(RLHFGymError, FloatingPointError):
    """A loss or the parameters became NaN/inf during training; the message names what, where and what to try.
    Nothing non-finite is saved."""

"""lape_mm's errors. Every mistake a user can make (a config value, a checkpoint, a dataset, a busy work dir)
is a :class:`LaPEError`, which the tools print as one line naming the problem and the fix."""


class LaPEError(Exception):
    """A user's mistake, with a message that names the problem and the fix."""


class ConfigError(LaPEError, ValueError):
    """A config value that cannot build the model or run it asks for."""


class CheckpointError(LaPEError, RuntimeError):
    """A checkpoint that cannot be loaded safely or does not fit the model."""


class DatasetError(LaPEError, ValueError):
    """A dataset that cannot be trained or evaluated on as configured."""


class WorkDirBusyError(LaPEError, RuntimeError):
    """Another live run holds the work dir."""

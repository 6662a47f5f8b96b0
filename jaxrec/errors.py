"""Errors raised by jaxrec for bad input. Each message names the file, line, field or key."""


class ConfigError(ValueError):
    """A config file or override is invalid (unknown key, bad value)."""


class DataError(ValueError):
    """A data file or directory is missing, empty or malformed."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class CheckpointDamaged(DataError):
    """A checkpoint's files do not match the manifest written with it, or it cannot be read."""


class WorkdirConflict(ConfigError):
    """A workdir belongs to another run (another config or data) or is in use by another process."""

"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class GanimeError(Exception):
    """A mistake the user can fix; the message says what to do."""


class DataError(GanimeError):
    """Bad or missing input data."""


class ConfigError(GanimeError):
    """An invalid preset, flag or config file."""


class CheckpointError(GanimeError):
    """A missing, corrupt or incompatible checkpoint."""


class MissingDependencyError(GanimeError):
    """An optional extra is not installed."""


class MissingWeightsError(GanimeError):
    """Pretrained extractor weights (e.g. Inception) are not available locally."""

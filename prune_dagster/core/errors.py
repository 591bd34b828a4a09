"""The project's own errors: each says which file, sample or setting is at fault."""


class PruneError(ValueError):
    """Base class for every error the project raises on bad input or settings."""


class DatasetError(PruneError):
    """The dataset as a whole cannot be used (empty, one class, mismatched arrays, unreadable)."""


class ConfigError(PruneError):
    """A setting is outside what the step accepts."""

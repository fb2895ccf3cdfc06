"""The project's exception types.

Every error intelliflow raises on bad input is one of these, and its message says what was
wrong and what was expected, e.g. ``ConfigError("recipe key 'optim.lr': expected a float, got 'fast'")``.
They all derive from :class:`IntelliflowError`, so a caller can catch the family at once; each
also derives from the matching built-in (``ValueError``, ``FileNotFoundError``, ...) so generic
handlers keep working.
"""

from __future__ import annotations


class IntelliflowError(Exception):
    """Base class of every intelliflow error."""


class ConfigError(IntelliflowError, ValueError):
    """A recipe, config or command-line option is unknown, ill-typed or out of range."""


class DatasetError(IntelliflowError, ValueError):
    """A dataset file is missing, malformed or inconsistent (the message names the file)."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset file or folder the user named does not exist."""


class MetricError(IntelliflowError, ValueError):
    """Caption results and references do not fit together (missing or extra image ids, ...)."""


class BitstreamError(IntelliflowError, ValueError):
    """A bitstream is corrupted, truncated or was written by another codec."""


class ShapeError(IntelliflowError, ValueError):
    """A tensor does not have the shape a component expects."""


class RegistryError(IntelliflowError, KeyError):
    """An unknown name was asked of a registry (codec, channel, model, dataset)."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(IntelliflowError, ValueError):
    """A checkpoint folder is missing files or does not match the model it is loaded into."""


class NonFiniteLossError(IntelliflowError, FloatingPointError):
    """A training loss became NaN or infinite; the message names the step and the last good checkpoint."""


class PayloadMismatchError(BitstreamError):
    """A well-formed payload for another model, split point or codec than the receiver serves."""


class ServiceError(IntelliflowError, RuntimeError):
    """An edge service refused a request or could not be reached (the message carries its answer)."""

"""Error types. Every user-facing failure is a ``ValueError`` subclass with a one-line message naming the problem."""

import os

DEBUG_ENV = "MMGT_DEBUG"  # set to 1 (or pass `mmgt --debug`) to see tracebacks behind the one-line errors


class MmgtError(ValueError):
    """Base class; the CLI prints ``mmgt: error: <message>`` and exits with status 1."""


class ConfigError(MmgtError):
    """A configuration file or override is invalid (unknown key, wrong type, bad value, unreadable file)."""


class MediaError(MmgtError):
    """An audio, image or video file is missing, unreadable, empty or malformed."""


class NoPersonError(MmgtError):
    """No person was detected where one is required."""


class ModelFolderError(MmgtError):
    """A model or weights folder is missing, incomplete or mismatched."""


def debug_enabled() -> bool:
    """Whether tracebacks are wanted (``MMGT_DEBUG`` set to anything but empty or 0)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")

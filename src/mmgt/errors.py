"""Error types. Every user-facing failure is a ``ValueError`` subclass with a one-line message naming the problem."""


class MmgtError(ValueError):
    """Base class; the CLI prints ``mmgt: error: <message>`` and exits with status 1."""


class MediaError(MmgtError):
    """An audio, image or video file is missing, unreadable, empty or malformed."""


class NoPersonError(MmgtError):
    """No person was detected where one is required."""


class ModelFolderError(MmgtError):
    """A model or weights folder is missing, incomplete or mismatched."""

"""The project's one exception tree."""


class ReleaseGuardError(Exception):
    """Base class of every error release-guard raises on purpose."""


class ConfigError(ReleaseGuardError):
    """A configuration file is invalid: the message names the file, the line and what was
    expected."""

    def __init__(self, message: str, *, path: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.detail = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class InputError(ReleaseGuardError):
    """An input given on the command line cannot be read at all (missing, unreadable)."""


class LimitReached(ReleaseGuardError):
    """Reading an artifact reached a safety limit (ArchiveLimits); the scan fails closed.

    Raised from an Entry stream's read(); checks must let it propagate.
    """


class UnreadableEntry(LimitReached):
    """The bytes of an entry or a container could not be read (corrupt or truncated).

    A LimitReached, so that content checks stop the same way; the walker reports it as an
    `archive/limit` observation that says the data could not be read.
    """

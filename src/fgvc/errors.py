"""Errors that reach the user as one line (the CLI prints ``fgvc: error: <message>``)."""


class FgvcError(Exception):
    """Base class: an error whose message alone tells the user what is wrong and what to do."""


class ConfigError(FgvcError):
    """An unknown key, a wrong type or an impossible value in a config or an override."""


class DataError(FgvcError):
    """A bad annotation file, record, image or metadata value; the message names the file and record."""


def one_line(exc: BaseException) -> str:
    """The user-facing line of an error, also when DataLoader re-raised it with a worker traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    last = lines[-1]
    # DataLoader re-raises as "Caught X in DataLoader worker ...\nOriginal Traceback ...\nX: message".
    prefix = f"{type(exc).__name__}: "
    return last[len(prefix):] if last.startswith(prefix) else last

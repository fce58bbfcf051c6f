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


_OS_HINTS = {  # errno name -> what to do
    "ENOSPC": "the disk is full: free some space and run the command again",
    "EDQUOT": "the disk quota is used up: free some space and run the command again",
    "EROFS": "choose a location you can write to (e.g. output_dir=...)",
    "EACCES": "choose a location you can write to (e.g. output_dir=...), or fix its permissions",
    "EPERM": "choose a location you can write to (e.g. output_dir=...), or fix its permissions",
    "ENOENT": "check the path",
    "ENOTDIR": "a part of the path is a file, not a folder",
    "EISDIR": "the path is a folder, not a file",
}


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error: which file, what failed, what to do."""
    import errno

    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    reason = (exc.strerror or str(exc) or type(exc).__name__).lower()
    hint = _OS_HINTS.get(errno.errorcode.get(exc.errno or 0, ""))
    return f"{where + ': ' if where else ''}{reason}" + (f" ({hint})" if hint else "")

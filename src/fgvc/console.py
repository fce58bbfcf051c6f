"""How fgvc speaks on the console: one letter for the level, then the message, on stderr.

The command line sets it up once; the demo's worker processes set up the same, so their lines read like
the caller's.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(levelname).1s %(message)s"


def log_to_console(level: int) -> None:
    """Log records at ``level`` and above to stderr in fgvc's console format."""
    logging.basicConfig(level=level, format=FORMAT, stream=sys.stderr)

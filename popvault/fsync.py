"""Directory durability: the one ``fsync`` of a directory that every writer of files uses.

A new file, a rename or an unlink is durable only once the directory holding it has been
fsynced (POSIX leaves directory entries in the page cache until then). The vault's local
backend (docs/format.md §3.1, steps 1 and 5) and the Maildir, mbox and eml writers
(Python's ``mailbox.Maildir.add`` is the model) all call :func:`fsync_dir`; it is a leaf
module that imports nothing of popvault.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a new file, rename or unlink in ``directory`` durable. Raises OSError."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["fsync_dir"]

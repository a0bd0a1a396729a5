"""Atomic file writes: write to a temporary sibling, fsync, then ``os.replace``.

A reader sees either the old file or the new one, never half of either; a writer
killed mid-write leaves the old file untouched (and at worst a hidden ``.tmp`` file).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import MCPError

TMP_PREFIX = "."
TMP_SUFFIX = ".mcp-tmp"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside *path* and move it over *path* on success.

    Parameters
    ----------
    path
        Final destination.
    mode
        ``"wb"`` or ``"w"``.

    Raises
    ------
    MCPError
        When the disk is full or the folder is not writable; the old file is intact.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise MCPError(f"Cannot write {path}: {exc.strerror or exc} (folder {path.parent}).") from exc
    try:
        os.close(fd)
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            if exc.errno == errno.ENOSPC:
                raise MCPError(f"The disk is full: could not write {path}; the previous version is intact.") from exc
            raise MCPError(f"Cannot write {path}: {exc.strerror or exc}; the previous version is intact.") from exc
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write *data* to *path* atomically."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write *text* (UTF-8) to *path* atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether *path* is a leftover temporary file of :func:`atomic_write`."""
    name = Path(path).name
    return name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX)

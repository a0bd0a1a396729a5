"""Version tokens of files, so a save never silently overwrites what another writer put there.

A reader keeps the :class:`FileVersion` of the file it read; a writer passes it to
:func:`write_unless_changed`, which refuses (:class:`FileChangedError`) when the file on disk is
no longer that version: another tab, another app process or a job wrote it in between. The check
and the write hold a per-file lock (threads) and an ``flock`` on the folder (processes), so two
writers cannot both pass the check.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import MCPError

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock, the per-file lock and version check still hold
    fcntl = None  # type: ignore[assignment]

_LOCKS: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_LOCKS_GUARD = threading.Lock()


class FileChangedError(MCPError):
    """A file changed on disk since it was read; the save was refused and the file left as it is."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path.name} was changed on disk by someone else (another tab, app or job) since it was "
                         "opened; it was not overwritten.")
        self.path = path


@dataclass(frozen=True)
class FileVersion:
    """What identifies one version of a file: size, modification time (ns) and content hash."""

    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, path: str | os.PathLike) -> FileVersion | None:
        """The version of *path* now, or ``None`` when it does not exist."""
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                digest = hashlib.sha256()
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        return cls(st.st_size, st.st_mtime_ns, digest.hexdigest())

    @staticmethod
    def same(a: FileVersion | None, b: FileVersion | None) -> bool:
        """Whether two versions hold the same content (a rewrite with identical bytes is no change)."""
        if a is None or b is None:
            return a is b
        return a.size == b.size and a.sha256 == b.sha256


def write_unless_changed(path: str | os.PathLike, expected: FileVersion | None, write: Callable[[], object],
                         force: bool = False) -> FileVersion | None:
    """Call *write* (which replaces *path* atomically) unless *path* is no longer version *expected*.

    Parameters
    ----------
    path
        The file.
    expected
        The version read earlier (``None``: the file did not exist then).
    write
        Writes the new content.
    force
        Write even when the file changed ("keep mine").

    Returns
    -------
    FileVersion or None
        The version just written, to pass as *expected* next time.

    Raises
    ------
    FileChangedError
        When the file changed since *expected* and *force* is false; nothing is written.
    """
    path = Path(path)
    with _LOCKS_GUARD:
        lock = _LOCKS[str(path.resolve())]
    with lock, _folder_lock(path.parent):  # tabs of one app, and apps, check and write one after the other
        if not force and not FileVersion.same(FileVersion.of(path), expected):
            raise FileChangedError(path)
        write()
        return FileVersion.of(path)


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on *folder* while a check and write run (nothing where unsupported, e.g. some NFS)."""
    try:
        fd = os.open(folder, os.O_RDONLY) if fcntl is not None else None
    except OSError:
        fd = None
    if fd is None:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock

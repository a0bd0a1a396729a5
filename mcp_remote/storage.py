"""Per-user storage on the server: content-addressed blobs, resumable uploads, datasets, a usage tally.

Layout under ``<storage root>/users/<user>/``::

    blobs/<sha256>        complete, verified uploads
    partial/<sha256>      uploads in progress (resumed from their length)
    datasets/<id>/        files of a dataset (hard links to blobs) + dataset.json
    home/                 the user's LocalBackend home (models/, jobs/)
    usage.json            the tally: bytes and files stored, kept up to date on every write

Every server path is built from a user name (taken from a token), a sha256 (64 hex digits,
checked), a server-made id, or a file name matched against :data:`FILE_NAME`; nothing a
client sends is used as a path otherwise. The quota is checked against the tally before a
byte is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import threading
import time
from pathlib import Path

from mcp_core.atomic import atomic_write_text

from .auth import check_user_name
from .errors import Conflict, Corrupted, InvalidRequest, NotFound, QuotaExceeded

SHA256 = re.compile(r"^[0-9a-f]{64}$")
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
DATASET_ID = re.compile(r"^ds-[0-9a-f]{16}$")
#: Dataset files may be images and pickle-free label images (no ``.npy`` label files).
DATASET_SUFFIXES = (".tif", ".tiff", ".png", ".npy")


def check_sha256(value: str) -> str:
    """*value* when it is 64 lowercase hex digits, else :class:`InvalidRequest`."""
    if not isinstance(value, str) or not SHA256.match(value):
        raise InvalidRequest(f"{value[:80]!r} is not a sha256 (64 lowercase hex digits).")
    return value


def check_file_name(name: str) -> str:
    """*name* when it is a plain file name (no folders, no leading dot), else :class:`InvalidRequest`."""
    if not isinstance(name, str) or not FILE_NAME.match(name) or name in (".", ".."):
        raise InvalidRequest(f"{name[:80]!r} is not an acceptable file name (letters, digits, '.', '_', '-'; no folders).")
    return name


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """The sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


class UserStorage:
    """One user's files on the server.

    Parameters
    ----------
    root
        The server's storage root.
    user
        The user (from their token).
    quota_bytes
        Storage the user may use.
    max_file_bytes
        Largest single upload.
    """

    _locks: dict[str, threading.RLock] = {}
    _reserved: dict[str, int] = {}  # quota held by uploads in progress (in memory: gone with the process)
    _tallies: dict[str, dict[str, int]] = {}  # the tally of each user, saved at most once a second while uploading
    _saved: dict[str, float] = {}
    _locks_guard = threading.Lock()

    def __init__(self, root: str | os.PathLike, user: str, quota_bytes: int, max_file_bytes: int) -> None:
        self.user = check_user_name(user)
        self.dir = Path(root) / "users" / user
        self.blobs = self.dir / "blobs"
        self.partial = self.dir / "partial"
        self.datasets = self.dir / "datasets"
        self.home = self.dir / "home"
        self.quota_bytes = quota_bytes
        self.max_file_bytes = max_file_bytes
        for d in (self.blobs, self.partial, self.datasets, self.home):
            d.mkdir(parents=True, exist_ok=True)
        with UserStorage._locks_guard:
            self.lock = UserStorage._locks.setdefault(str(self.dir), threading.RLock())

    # ---------------------------------------------------------------------------- tally
    def tally(self) -> dict[str, int]:
        """``{"bytes": ..., "files": ...}``: the tally kept in ``usage.json``."""
        key = str(self.dir)
        with self.lock:
            if key not in self._tallies:
                try:
                    data = json.loads((self.dir / "usage.json").read_text("utf-8"))
                    self._tallies[key] = {"bytes": int(data["bytes"]), "files": int(data["files"])}
                except (OSError, ValueError, KeyError):
                    self._tallies[key] = {"bytes": 0, "files": 0}
            return dict(self._tallies[key])

    def _save_tally(self, tally: dict[str, int], now: bool = True) -> None:
        key = str(self.dir)
        self._tallies[key] = dict(tally)
        if now or time.monotonic() - self._saved.get(key, 0.0) > 1.0:
            atomic_write_text(self.dir / "usage.json", json.dumps(tally))
            self._saved[key] = time.monotonic()

    def count(self, nbytes: int, files: int = 0, save_now: bool = True) -> None:
        """Add (or with negative numbers remove) bytes and files to the tally."""
        with self.lock:
            t = self.tally()
            t["bytes"] = max(0, t["bytes"] + nbytes)
            t["files"] = max(0, t["files"] + files)
            self._save_tally(t, save_now)

    def save_tally(self) -> None:
        """Write the tally now (after a stream of :meth:`write_chunk` calls)."""
        with self.lock:
            self._save_tally(self.tally())

    def reserve(self, nbytes: int) -> None:
        """Hold *nbytes* of quota for a write about to happen.

        Raises
        ------
        QuotaExceeded
            When the tally plus reservations plus *nbytes* passes the quota.
        """
        with self.lock:
            held = self._reserved.get(str(self.dir), 0)
            used = self.tally()["bytes"]
            if used + held + nbytes > self.quota_bytes:
                free = max(0, self.quota_bytes - used - held)
                raise QuotaExceeded(f"This would exceed your storage quota: {nbytes} bytes needed, {free} of "
                                    f"{self.quota_bytes} free. Clear remote training files to make room.")
            self._reserved[str(self.dir)] = held + nbytes

    def check_room(self) -> None:
        """Refuse new work (a job that will write files) when the quota is already used up.

        Raises
        ------
        QuotaExceeded
            When the tally has reached the quota.
        """
        if self.tally()["bytes"] >= self.quota_bytes:
            raise QuotaExceeded(f"Your storage quota of {self.quota_bytes} bytes is used up; clear remote training "
                                "files to make room.")

    def release(self, nbytes: int) -> None:
        """Give back reserved quota that was not used."""
        with self.lock:
            self._reserved[str(self.dir)] = max(0, self._reserved.get(str(self.dir), 0) - nbytes)

    # ---------------------------------------------------------------------------- blobs
    def blob(self, sha256: str) -> Path:
        """The stored file of a complete blob.

        Raises
        ------
        NotFound
            When this user has no such blob.
        """
        path = self.blobs / check_sha256(sha256)
        if not path.is_file():
            raise NotFound(f"No uploaded file with sha256 {sha256[:12]}...; upload it first.")
        return path

    def status(self, sha256: str, size: int) -> tuple[int, bool]:
        """``(bytes received, complete)`` of a blob."""
        check_sha256(sha256)
        if (self.blobs / sha256).is_file():
            return (self.blobs / sha256).stat().st_size, True
        part = self.partial / sha256
        return (part.stat().st_size if part.is_file() else 0), False

    def check_upload(self, sha256: str, size: int) -> None:
        """Refuse an upload that is too big before anything is written."""
        check_sha256(sha256)
        if size < 0:
            raise InvalidRequest(f"An upload cannot have a negative size ({size}).")
        if size > self.max_file_bytes:
            raise InvalidRequest(f"The file is {size} bytes; the server accepts files up to {self.max_file_bytes} bytes.")

    def write_chunk(self, sha256: str, size: int, offset: int, data: bytes) -> int:
        """Append *data* at *offset* to the partial upload; returns bytes now received.

        Raises
        ------
        Conflict
            When *offset* is not where the partial file ends.
        InvalidRequest
            When the data would run past the declared size.
        """
        part = self.partial / sha256
        have = part.stat().st_size if part.is_file() else 0
        if offset != have:
            raise Conflict(f"Upload of {sha256[:12]}... resumes at byte {have}, not {offset}.")
        if offset + len(data) > size:
            raise InvalidRequest(f"Upload of {sha256[:12]}... sends more than its declared {size} bytes.")
        with open(part, "ab") as fh:
            fh.write(data)
            fh.flush()
        with self.lock:
            self.count(len(data), 1 if have == 0 and data else 0, save_now=False)
            self.release(len(data))
        return have + len(data)

    def finish(self, sha256: str, size: int) -> None:
        """Verify a fully received upload and move it among the blobs.

        Raises
        ------
        Corrupted
            When its sha256 differs (the partial file is deleted, so the upload starts again).
        """
        part = self.partial / sha256
        if sha256_of(part) != sha256:
            self.remove(part)
            raise Corrupted(f"The uploaded file does not match its sha256 {sha256[:12]}...; it was discarded, upload it again.")
        os.replace(part, self.blobs / sha256)

    def remove(self, path: Path) -> None:
        """Delete one file of this user and take it off the tally."""
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
        self.count(-size, -1)

    # ---------------------------------------------------------------------------- datasets
    def create_dataset(self, name: str, files: list[tuple[str, str]], origins: list[str] | None = None) -> dict:
        """A dataset folder of blobs under their file names; returns its record.

        *origins* are the client's notes on each file (kept as text, never used as paths).

        Raises
        ------
        InvalidRequest
            For a bad or repeated file name, an unsupported file type, or no files.
        NotFound
            When a blob has not been uploaded.
        """
        if not files:
            raise InvalidRequest("A dataset needs at least one file.")
        seen = set()
        for fname, sha in files:
            check_file_name(fname)
            check_sha256(sha)
            if fname.lower() in seen:
                raise InvalidRequest(f"The dataset names {fname!r} twice.")
            if not fname.lower().endswith(DATASET_SUFFIXES):
                raise InvalidRequest(f"{fname!r} is not a dataset file type ({', '.join(DATASET_SUFFIXES)}).")
            seen.add(fname.lower())
            blob = self.blob(sha)
            if fname.lower().endswith(".npy"):
                try:
                    check_plain_npy(blob, fname)
                except InvalidRequest:
                    self.remove(blob)  # a pickle is never kept
                    raise
        dataset_id = f"ds-{secrets.token_hex(8)}"
        folder = self.datasets / dataset_id
        folder.mkdir()
        entries = []
        for i, (fname, sha) in enumerate(files):
            blob = self.blob(sha)
            os.link(blob, folder / fname)  # same bytes as the blob: no extra storage
            origin = str(origins[i])[:4096] if origins and i < len(origins) else ""
            entries.append({"name": fname, "sha256": sha, "size": blob.stat().st_size, "origin": origin})
        record = {"dataset_id": dataset_id, "name": str(name)[:200], "files": entries, "created": time.time()}
        atomic_write_text(folder / "dataset.json", json.dumps(record, indent=1))
        return record

    def dataset(self, dataset_id: str) -> Path:
        """The folder of one of this user's datasets.

        Raises
        ------
        NotFound
            When there is no such dataset (or the id is malformed).
        """
        if not isinstance(dataset_id, str) or not DATASET_ID.match(dataset_id) or not (self.datasets / dataset_id / "dataset.json").is_file():
            raise NotFound(f"There is no dataset {dataset_id[:40]!r}.")
        return self.datasets / dataset_id

    def list_datasets(self) -> list[dict]:
        """Records of this user's datasets, oldest first."""
        out = []
        for folder in sorted(self.datasets.glob("ds-*")):
            try:
                out.append(json.loads((folder / "dataset.json").read_text("utf-8")))
            except (OSError, ValueError):
                continue
        return sorted(out, key=lambda r: r.get("created", 0))

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete a dataset folder (its blobs stay until cleared)."""
        shutil.rmtree(self.dataset(dataset_id))

    def clear(self) -> None:
        """Delete blobs, partial uploads and datasets, and recount."""
        with self.lock:
            for d in (self.blobs, self.partial, self.datasets):
                shutil.rmtree(d, ignore_errors=True)
                d.mkdir()
            t = self.tally()
            t.update(bytes=0, files=0)
            self._save_tally(t)

    def listing(self) -> list[tuple[str, str, int]]:
        """``(kind, name, size)`` of the stored blobs, partial uploads and dataset files."""
        out = []
        for kind, d in (("blob", self.blobs), ("partial", self.partial)):
            out += [(kind, p.name, p.stat().st_size) for p in sorted(d.iterdir()) if p.is_file()]
        for rec in self.list_datasets():
            out += [("dataset", f"{rec['dataset_id']}/{f['name']}", int(f["size"])) for f in rec["files"]]
        return out


def check_plain_npy(path: Path, name: str) -> None:
    """Refuse a ``.npy`` file that needs unpickling (object arrays) or is not an array file.

    Raises
    ------
    InvalidRequest
        When ``np.load(..., allow_pickle=False)`` cannot read it.
    """
    import numpy as np

    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        del arr
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidRequest(f"{name!r} is not a plain .npy array (pickled objects are refused): {exc}.") from exc

"""Per-user storage on the server: content-addressed blobs, resumable uploads, datasets, a disk-usage ledger.

Layout under ``<storage root>/users/<user>/`` (folders 0700, files 0600)::

    blobs/<sha256>        complete, verified uploads
    partial/<sha256>      uploads in progress (resumed from their length)
    datasets/<id>/        files of a dataset (hard links to blobs) + dataset.json
    home/                 the user's LocalBackend home (models/, jobs/)

Every server path is built from a user name (taken from a token), a sha256 (64 hex digits,
checked), a server-made id, or a file name matched against :data:`FILE_NAME`; nothing a
client sends is used as a path otherwise.

The quota counts what the disk holds, not what was sent: :class:`Ledger` measures a user's
folders (allocated blocks, each inode once, folders included; files counted), keeps that
figure while only uploads change it, and measures again after anything else wrote or deleted.
Nothing is kept in a file, so a server killed at any moment starts from what is on disk.
Writes about to happen hold quota first (:class:`Hold`); a hold only shrinks as its bytes
reach the disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from mcp_core.atomic import atomic_write_text

from .auth import check_user_name
from .errors import Conflict, Corrupted, InvalidRequest, NotFound, QuotaExceeded

SHA256 = re.compile(r"[0-9a-f]{64}")
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
DATASET_ID = re.compile(r"ds-[0-9a-f]{16}")
#: Longest name (dataset, model) a client may give, in UTF-8 bytes: what a file system allows.
MAX_NAME_BYTES = 255
#: Dataset files may be images and pickle-free label images (no ``.npy`` label files).
DATASET_SUFFIXES = (".tif", ".tiff", ".png", ".npy")
#: The allocation unit assumed when holding quota for a write (what most file systems use).
BLOCK = 4096


def check_sha256(value: str, field: str = "sha256") -> str:
    """*value* when it is exactly 64 lowercase hex digits, else :class:`InvalidRequest` naming *field*."""
    if not isinstance(value, str) or not SHA256.fullmatch(value):
        raise InvalidRequest(f"The field {field} must be a sha256 of 64 lowercase hex digits and nothing else, "
                             f"not {value[:80]!r}.")
    return value


def check_file_name(name: str, field: str = "name") -> str:
    """*name* when it is a plain file name (no folders, no leading dot), else :class:`InvalidRequest`."""
    if not isinstance(name, str) or not FILE_NAME.fullmatch(name):
        raise InvalidRequest(f"The field {field} must be a plain file name of up to 200 letters, digits, '.', '_' "
                             f"or '-' (no folders), not {str(name)[:80]!r}.")
    return name


def check_name(name: str, field: str) -> str:
    """*name* when it fits in :data:`MAX_NAME_BYTES` UTF-8 bytes, else :class:`InvalidRequest` naming *field*."""
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise InvalidRequest(f"The field {field} is longer than {MAX_NAME_BYTES} bytes.")
    return name


def blocks_for(nbytes: int) -> int:
    """Bytes of whole :data:`BLOCK` blocks a file of *nbytes* takes."""
    return -(-nbytes // BLOCK) * BLOCK


def disk_usage(paths: Iterable[Path]) -> tuple[int, int]:
    """``(allocated bytes, files)`` under *paths*: blocks of every inode once (folders too), files by name.

    Symbolic links are not followed; paths that do not exist count nothing.
    """
    seen: set[tuple[int, int]] = set()
    nbytes = files = 0
    stack = [str(p) for p in paths]
    while stack:
        path = stack.pop()
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            nbytes += st.st_blocks * 512
        if stat.S_ISDIR(st.st_mode):
            try:
                stack += [entry.path for entry in os.scandir(path)]
            except FileNotFoundError:
                continue
        else:
            files += 1
    return nbytes, files


class Hold:
    """Quota held for writes about to happen; it only shrinks, as :meth:`use` moves bytes onto the disk figure."""

    def __init__(self, ledger: Ledger, user: str, nbytes: int, files: int) -> None:
        self.ledger, self.user, self.bytes, self.files = ledger, user, nbytes, files

    def use(self, nbytes: int, files: int) -> None:
        """*nbytes* and *files* are now on disk: count them, and take them off this hold."""
        self.ledger._use(self, nbytes, files)

    def close(self) -> None:
        """Give back what this hold has left."""
        self.ledger._use(self, 0, 0, close=True)

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Ledger:
    """Every user's disk usage, measured from the disk, and the quota held for writes in progress.

    Parameters
    ----------
    quota_bytes
        Allocated bytes each user may use.
    max_files
        Files each user may have.
    folders_of
        ``user -> paths`` holding everything the server keeps for that user.
    """

    def __init__(self, quota_bytes: int, max_files: int, folders_of: Callable[[str], list[Path]]) -> None:
        self.quota_bytes = quota_bytes
        self.max_files = max_files
        self.folders_of = folders_of
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}
        self._used: dict[str, list[int]] = {}
        self._held: dict[str, list[int]] = {}

    def lock(self, user: str) -> threading.RLock:
        """The lock serialising *user*'s accounted writes."""
        with self._guard:
            return self._locks.setdefault(user, threading.RLock())

    def usage(self, user: str) -> tuple[int, int]:
        """``(bytes, files)`` *user* has on disk (measured again after :meth:`stale`)."""
        with self.lock(user):
            if user not in self._used:
                self._used[user] = list(disk_usage(self.folders_of(user)))
            return self._used[user][0], self._used[user][1]

    def stale(self, user: str) -> None:
        """Something besides an upload wrote or deleted *user*'s files: measure at the next look."""
        with self.lock(user):
            self._used.pop(user, None)

    def held(self, user: str) -> tuple[int, int]:
        """``(bytes, files)`` held for *user*'s writes in progress."""
        with self.lock(user):
            held = self._held.get(user, [0, 0])
            return held[0], held[1]

    def hold(self, user: str, nbytes: int, files: int = 0, what: str = "This") -> Hold:
        """Hold quota for a write of *nbytes* and *files* new files.

        Raises
        ------
        QuotaExceeded
            When usage plus what is held plus this would pass the quota or the file limit.
        """
        if nbytes < 0 or files < 0:
            raise ValueError("a hold cannot be negative")
        with self.lock(user):
            used, nfiles = self.usage(user)
            held = self._held.setdefault(user, [0, 0])
            free = max(0, self.quota_bytes - used - held[0])
            if nbytes > free:
                raise QuotaExceeded(f"{what} would exceed your storage quota: {nbytes} bytes needed, {free} of "
                                    f"{self.quota_bytes} free. Clear remote training files to make room.")
            if nfiles + held[1] + files > self.max_files:
                raise QuotaExceeded(f"{what} would pass the limit of {self.max_files} files per user. Clear "
                                    "remote training files to make room.")
            held[0] += nbytes
            held[1] += files
            return Hold(self, user, nbytes, files)

    def _use(self, hold: Hold, nbytes: int, files: int, close: bool = False) -> None:
        with self.lock(hold.user):
            if hold.user in self._used:
                used = self._used[hold.user]
                used[0] = max(0, used[0] + nbytes)
                used[1] = max(0, used[1] + files)
            take_b = hold.bytes if close else min(max(nbytes, 0), hold.bytes)
            take_f = hold.files if close else min(max(files, 0), hold.files)
            hold.bytes -= take_b
            hold.files -= take_f
            held = self._held.setdefault(hold.user, [0, 0])
            held[0] = max(0, held[0] - take_b)
            held[1] = max(0, held[1] - take_f)


def private_dir(path: Path) -> Path:
    """Make *path* (and missing parents) a folder only the server's account can open."""
    if not path.is_dir():
        if not path.parent.is_dir():
            private_dir(path.parent)
        path.mkdir(mode=0o700, exist_ok=True)
    return path


class UserStorage:
    """One user's files on the server.

    Parameters
    ----------
    root
        The server's storage root.
    user
        The user (from their token).
    ledger
        The server's disk-usage ledger.
    max_file_bytes
        Largest single upload.
    """

    _uploading: set[tuple[str, str]] = set()  # (user folder, sha256) of upload streams now open
    _uploading_guard = threading.Lock()

    def __init__(self, root: str | os.PathLike, user: str, ledger: Ledger, max_file_bytes: int) -> None:
        self.user = check_user_name(user)
        self.dir = Path(root) / "users" / user
        self.blobs = self.dir / "blobs"
        self.partial = self.dir / "partial"
        self.datasets = self.dir / "datasets"
        self.home = self.dir / "home"
        self.ledger = ledger
        self.quota_bytes = ledger.quota_bytes
        self.max_file_bytes = max_file_bytes
        for d in (self.blobs, self.partial, self.datasets, self.home):
            private_dir(d)

    # ---------------------------------------------------------------------------- usage
    def usage(self) -> tuple[int, int]:
        """``(bytes, files)`` this user has on disk."""
        return self.ledger.usage(self.user)

    def hold(self, nbytes: int, files: int = 0, what: str = "This") -> Hold:
        """Hold quota for a write (see :meth:`Ledger.hold`)."""
        return self.ledger.hold(self.user, nbytes, files, what)

    def changed(self) -> None:
        """This user's files changed other than by an upload: measure them again."""
        self.ledger.stale(self.user)

    # ---------------------------------------------------------------------------- blobs
    def blob(self, sha256: str, field: str = "sha256") -> Path:
        """The stored file of a complete blob.

        Raises
        ------
        NotFound
            When this user has no such blob.
        """
        path = self.blobs / check_sha256(sha256, field)
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
        """Refuse an upload that is empty or too big before anything is written."""
        check_sha256(sha256)
        if size < 1:
            raise InvalidRequest(f"The field size must be at least 1 byte, not {size}: empty files are not stored.")
        if size > self.max_file_bytes:
            raise InvalidRequest(f"The field size is {size} bytes; the server accepts files up to "
                                 f"{self.max_file_bytes} bytes.")

    def begin_upload(self, sha256: str, size: int) -> Hold:
        """Claim the upload of *sha256* for one stream and hold the quota the rest of the file needs.

        Raises
        ------
        Conflict
            When another stream is uploading the same file, or the part received is longer than *size*.
        QuotaExceeded
            When the rest of the file does not fit in the quota or the file limit.
        """
        key = (str(self.dir), sha256)
        with self._uploading_guard:
            if key in self._uploading:
                raise Conflict(f"The file {sha256[:12]}... is being uploaded by another call; wait for it to end.")
            self._uploading.add(key)
        try:
            part = self.partial / sha256
            st = part.stat() if part.is_file() else None
            have = st.st_size if st else 0
            if have > size:
                raise Conflict(f"The field size ({size}) is smaller than the {have} bytes already received of "
                               f"{sha256[:12]}...; send the size the upload started with.")
            allocated = st.st_blocks * 512 if st else 0
            return self.hold(max(0, blocks_for(size) + BLOCK - allocated), 0 if st else 1, "This upload")
        except BaseException:
            self.end_upload(sha256)
            raise

    def end_upload(self, sha256: str) -> None:
        """Let another stream upload *sha256*."""
        with self._uploading_guard:
            self._uploading.discard((str(self.dir), sha256))

    def write_chunk(self, hold: Hold, sha256: str, size: int, offset: int, data: bytes) -> int:
        """Append *data* at *offset* to the partial upload held by *hold*; returns bytes now received.

        Raises
        ------
        Conflict
            When *offset* is not where the partial file ends.
        InvalidRequest
            When the data would run past the declared size.
        """
        part = self.partial / sha256
        with self.ledger.lock(self.user):
            fd = os.open(part, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                before = os.fstat(fd)
                if offset != before.st_size:
                    raise Conflict(f"Upload of {sha256[:12]}... resumes at byte {before.st_size}, not {offset}.")
                if offset + len(data) > size:
                    raise InvalidRequest(f"Upload of {sha256[:12]}... sends more than the {size} bytes its field "
                                         "size declared.")
                os.write(fd, data)
                after = os.fstat(fd)
            finally:
                os.close(fd)
            new = before.st_size == 0 and before.st_blocks == 0 and offset == 0
            hold.use((after.st_blocks - before.st_blocks) * 512, 1 if new else 0)
        return after.st_size

    def partial_digest(self, sha256: str) -> hashlib._Hash:
        """A sha256 fed with the bytes of *sha256*'s partial upload so far (read once, when a stream starts).

        The upload stream feeds it each chunk it writes, so :meth:`finish` needs no second read.
        """
        h = hashlib.sha256()
        part = self.partial / sha256
        if part.is_file():
            with open(part, "rb") as fh:
                while block := fh.read(1 << 22):
                    h.update(block)
        return h

    def finish(self, sha256: str, digest: str) -> None:
        """Move a fully received upload among the blobs once *digest*, the sha256 of the bytes written, matches.

        Raises
        ------
        Corrupted
            When its sha256 differs (the partial file is deleted, so the upload starts again).
        """
        part = self.partial / sha256
        if digest != sha256:
            self.remove(part)
            raise Corrupted(f"The uploaded file does not match its sha256 {sha256[:12]}...; it was discarded, upload it again.")
        os.replace(part, self.blobs / sha256)

    def remove(self, path: Path) -> None:
        """Delete one file of this user."""
        path.unlink(missing_ok=True)
        self.changed()

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
        QuotaExceeded
            When the folder and its record do not fit in the quota.
        """
        check_name(str(name), "name")
        if not files:
            raise InvalidRequest("The field files is empty: a dataset needs at least one file.")
        seen = set()
        for i, (fname, sha) in enumerate(files):
            check_file_name(fname, f"files[{i}].name")
            check_sha256(sha, f"files[{i}].sha256")
            if fname.lower() in seen:
                raise InvalidRequest(f"The field files[{i}].name repeats {fname!r}.")
            if not fname.lower().endswith(DATASET_SUFFIXES):
                raise InvalidRequest(f"The field files[{i}].name, {fname!r}, is not a dataset file type "
                                     f"({', '.join(DATASET_SUFFIXES)}).")
            seen.add(fname.lower())
            blob = self.blob(sha, f"files[{i}].sha256")
            if fname.lower().endswith(".npy"):
                try:
                    check_plain_npy(blob, fname)
                except InvalidRequest:
                    self.remove(blob)  # a pickle is never kept
                    raise
        dataset_id = f"ds-{secrets.token_hex(8)}"
        folder = self.datasets / dataset_id
        entries = []
        for i, (fname, sha) in enumerate(files):
            origin = str(origins[i])[:4096] if origins and i < len(origins) else ""
            entries.append({"name": fname, "sha256": sha, "size": self.blob(sha).stat().st_size, "origin": origin})
        record = {"dataset_id": dataset_id, "name": str(name), "files": entries, "created": time.time()}
        text = json.dumps(record, indent=1)
        # The record, the folder, and the folder's entries (a hard link costs a name, not the file's blocks).
        estimate = blocks_for(len(text.encode("utf-8"))) + blocks_for(sum(len(f) + 16 for f, _ in files)) + 2 * BLOCK
        with self.hold(estimate, len(files) + 1, "This dataset"):
            folder.mkdir(mode=0o700)
            try:
                for fname, sha in files:
                    os.link(self.blob(sha), folder / fname)  # same bytes as the blob: no extra storage
                atomic_write_text(folder / "dataset.json", text)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            finally:
                self.changed()
        return record

    def dataset(self, dataset_id: str) -> Path:
        """The folder of one of this user's datasets.

        Raises
        ------
        NotFound
            When there is no such dataset (or the id is malformed).
        """
        if (not isinstance(dataset_id, str) or not DATASET_ID.fullmatch(dataset_id)
                or not (self.datasets / dataset_id / "dataset.json").is_file()):
            raise NotFound(f"There is no dataset {dataset_id[:40]!r}.")
        return self.datasets / dataset_id

    def origin(self, dataset_folder: Path, name: str) -> str:
        """The origin note the client gave file *name* of a dataset folder ('' when none or unreadable)."""
        try:
            record = json.loads((Path(dataset_folder) / "dataset.json").read_text("utf-8"))
            return next((str(f.get("origin", "")) for f in record["files"] if f["name"] == name), "")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return ""

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
        self.changed()

    def clear(self) -> None:
        """Delete blobs, partial uploads and datasets."""
        with self.ledger.lock(self.user):
            for d in (self.blobs, self.partial, self.datasets):
                shutil.rmtree(d, ignore_errors=True)
                private_dir(d)
            self.changed()

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

"""Annotation history: every save of a ``_seg.npy`` appends a version to one store per project folder.

Layout, beside the label files::

    .mcp_history/
        objects/ab/abcdef...            content-addressed blobs (name = sha256 of the stored bytes)
        log/<label file name>.jsonl     one JSON line per version of that label file

A blob is zlib-compressed: a JSON header (shape, dtype, classes, class names and colours) and the
masks, either whole (a *key* version) or as the XOR with the previous version inside the box of
changed pixels (a *delta*: an edit costs bytes in proportion to what it touched). Every
:data:`KEY_EVERY`-th version, and any change of shape or dtype, is a key version, so rebuilding a
version reads at most :data:`KEY_EVERY` blobs. Nothing read back is unpickled: JSON and raw arrays.

A version records the time, the author (OS user), an action summary computed from the change
("drew 3, deleted 1, assigned 2 to 'mitotic'", prefixed by what the caller says, e.g. "model run
with M"), the model or job that produced it, and ``state``: the sha256 of its content, the
identity trained models record.

Crash safety: the label file is written first (atomically, by the caller); the blob is written
atomically before its log line is appended and fsync'd; a log line cut short by a kill is skipped
by readers and the next append starts on a fresh line; a blob left without a log line is removed
by a later pruning. A lock file per label file orders concurrent writers.

Retention (:func:`prune`, run after each append): every version of the last :data:`KEEP_DAYS`
days, then the last version of each day; the newest version is always kept, and so is every
version a trained model references (training pins them: :func:`pin_current`, kept in
``pins/<label file name>.json`` as ``{state: [model, ...]}``; an unreadable pin file stops pruning
that history rather than risk dropping one). Kept versions whose base was dropped are re-encoded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import hashlib
import json
import logging
import os
import re
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes, atomic_write_text
from .errors import LabelFileError, MCPError, ParameterError
from .labels.labelset import LabelSet

log = logging.getLogger(__name__)

STORE = ".mcp_history"
#: A key (whole) version at least every this many versions.
KEY_EVERY = 16
#: Days during which every version is kept; older ones are thinned to one per day.
KEEP_DAYS = 7
#: Unreferenced blobs younger than this (seconds) are left alone: a writer may be about to log them.
ORPHAN_GRACE_S = 3600
_CACHE: OrderedDict[str, tuple[str, LabelSet]] = OrderedDict()  # newest version per label file
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Version:
    """One stored version of a label file."""

    n: int
    time: float
    author: str
    action: str
    source: str
    state: str
    blob: str
    base: int | None
    objects: int

    @property
    def when(self) -> str:
        """Local time, to the second."""
        return dt.datetime.fromtimestamp(self.time).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Changes:
    """What changed between two versions, as mask ids (of the old version for ``deleted``, else the new)."""

    added: np.ndarray
    deleted: np.ndarray
    edited: np.ndarray
    reclassed: np.ndarray

    def summary(self, new: LabelSet) -> str:
        """``"drew 3, deleted 1, edited 2, assigned 2 to 'mitotic'"`` (or ``"no change"``)."""
        parts = [f"{verb} {len(ids)}" for verb, ids in (("drew", self.added), ("deleted", self.deleted),
                                                          ("edited", self.edited)) if len(ids)]
        if len(self.reclassed):
            cls, counts = np.unique(new.classes[self.reclassed], return_counts=True)
            parts += [f"assigned {c} to {new.class_names[k]!r}" for k, c in zip(cls, counts)]
        return ", ".join(parts) or "no change"


def changes(old: LabelSet | None, new: LabelSet) -> Changes:
    """Objects added, deleted, reshaped and re-classed from *old* to *new* (everything is added when *old* is None)."""
    new_ids = new.ids
    if old is None:
        empty = np.zeros(0, np.int64)
        return Changes(new_ids.astype(np.int64), empty, empty, empty)
    old_ids = old.ids
    if old.shape != new.shape:
        return Changes(new_ids.astype(np.int64), old_ids.astype(np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    both = np.intersect1d(old_ids, new_ids)
    diff = old.masks != new.masks
    touched = np.union1d(old.masks[diff], new.masks[diff])
    edited = np.intersect1d(both, touched)
    old_cls = old.classes[both]
    new_cls = new.classes[both]
    return Changes(np.setdiff1d(new_ids, old_ids).astype(np.int64), np.setdiff1d(old_ids, new_ids).astype(np.int64),
                   edited.astype(np.int64), both[old_cls != new_cls].astype(np.int64))


# ------------------------------------------------------------------------------------ paths and log
def store_of(label_file: str | os.PathLike) -> Path:
    """The history store of the project folder that holds *label_file*."""
    return Path(label_file).parent / STORE


def _log_file(label_file: Path) -> Path:
    return store_of(label_file) / "log" / f"{label_file.name}.jsonl"


def _pins_file(label_file: Path) -> Path:
    return store_of(label_file) / "pins" / f"{label_file.name}.json"


def _pins(label_file: Path) -> dict[str, list[str]]:
    """``{state: [model, ...]}`` of a label file's pinned versions (``{}`` without pins).

    Raises
    ------
    LabelFileError
        The pin file exists but is not such a JSON object.
    """
    path = _pins_file(label_file)
    if not path.exists():
        return {}
    try:
        pins = json.loads(path.read_text("utf-8"))
        if not (isinstance(pins, dict) and all(isinstance(m, list) for m in pins.values())):
            raise ValueError("not an object of lists")
    except (OSError, ValueError) as exc:
        raise LabelFileError(f"The history pins of {label_file.name} are unreadable ({exc}).") from exc
    return pins


def _blob_file(store: Path, digest: str) -> Path:
    return store / "objects" / digest[:2] / digest


@contextlib.contextmanager
def _locked(label_file: Path) -> Iterator[None]:
    import fcntl

    lock = _log_file(label_file).with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def versions(label_file: str | os.PathLike) -> list[Version]:
    """Stored versions of a label file, oldest first (lines cut short by a crash are skipped)."""
    path = _log_file(Path(label_file))
    if not path.exists():
        return []
    out = []
    for line in path.read_text("utf-8", errors="replace").splitlines():
        try:
            out.append(Version(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return out


def _version(label_file: Path, n: int) -> Version:
    for v in versions(label_file):
        if v.n == n:
            return v
    known = [v.n for v in versions(label_file)]
    raise ParameterError(f"{label_file.name} has no version {n} in its history "
                         f"({'versions ' + ', '.join(map(str, known)) if known else 'no history yet'}).")


# ------------------------------------------------------------------------------------ blobs
def _state(ls: LabelSet) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([list(ls.shape), str(ls.masks.dtype), ls.classes.tolist(), ls.class_names,
                         ls.class_colors]).encode())
    h.update(memoryview(np.ascontiguousarray(ls.masks)).cast("B"))  # no copy; hashlib lets other threads run
    return h.hexdigest()


def _encode(ls: LabelSet, base: LabelSet | None) -> bytes:
    header = {"shape": list(ls.shape), "dtype": str(ls.masks.dtype), "classes": ls.classes.tolist(),
              "class_names": list(ls.class_names), "class_colors": list(ls.class_colors), "delta": base is not None}
    body = ls.masks
    if base is not None:  # the XOR inside the box of changed pixels
        diff = ls.masks != base.masks
        rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
        box = [int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1] if len(rows) else [0, 0, 0, 0]
        header["box"] = box
        body = np.bitwise_xor(ls.masks[box[0]:box[1], box[2]:box[3]], base.masks[box[0]:box[1], box[2]:box[3]])
    return zlib.compress(json.dumps(header).encode() + b"\0" + np.ascontiguousarray(body).tobytes(), 6)


def _decode(data: bytes, base: LabelSet | None, where: str) -> LabelSet:
    try:
        raw = zlib.decompress(data)
        head, _, body = raw.partition(b"\0")
        header = json.loads(head)
        dtype = np.dtype(header["dtype"])
        if dtype.kind != "u":
            raise ValueError(f"mask dtype {dtype}")
        height, width = header["shape"]
        y0, y1, x0, x1 = header["box"] if header.get("delta") else (0, height, 0, width)
        masks = np.frombuffer(body, dtype).reshape(y1 - y0, x1 - x0)
        if header.get("delta"):
            if base is None or base.masks.shape != (height, width) or base.masks.dtype != dtype:
                raise LabelFileError(f"The history of {where} is damaged (a delta without its base).")
            whole = base.masks.copy()
            whole[y0:y1, x0:x1] ^= masks
            masks = whole
    except (zlib.error, ValueError, KeyError, TypeError) as exc:
        raise LabelFileError(f"The history of {where} is damaged ({exc}).") from exc
    return LabelSet(masks.copy(), np.asarray(header["classes"], np.uint16), header["class_names"],
                    header["class_colors"])


def _write_blob(store: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = _blob_file(store, digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    return digest


def _read_blob(store: Path, digest: str, where: str) -> bytes:
    if not re.fullmatch(r"[0-9a-f]{64}", str(digest)):
        raise LabelFileError(f"The history of {where} is damaged (a version names no valid blob).")
    path = _blob_file(store, digest)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LabelFileError(f"The history of {where} is missing a stored version ({path.name}).") from exc
    if hashlib.sha256(data).hexdigest() != digest:
        raise LabelFileError(f"The history of {where} is damaged (blob {digest[:12]} does not match its name).")
    return data


def _rebuild(label_file: Path, target: Version, by_n: dict[int, Version]) -> LabelSet:
    with _CACHE_LOCK:
        cached = _CACHE.get(str(label_file))
    if cached and cached[0] == target.state:
        return cached[1].copy()
    chain = [target]
    while chain[-1].base is not None:
        base = by_n.get(chain[-1].base)
        if base is None:
            raise LabelFileError(f"The history of {label_file.name} is damaged (version {chain[-1].base} is gone).")
        chain.append(base)
    ls = None
    store = store_of(label_file)
    for v in reversed(chain):
        ls = _decode(_read_blob(store, v.blob, label_file.name), ls, label_file.name)
    return ls  # type: ignore[return-value]


def _remember(label_file: Path, state: str, ls: LabelSet) -> None:
    with _CACHE_LOCK:
        _CACHE[str(label_file)] = (state, ls.copy())
        _CACHE.move_to_end(str(label_file))
        while len(_CACHE) > 8:
            _CACHE.popitem(last=False)


# ------------------------------------------------------------------------------------ public API
def load_version(label_file: str | os.PathLike, n: int) -> LabelSet:
    """Version *n* of a label file (masks, classes, class names and colours).

    Raises
    ------
    ParameterError
        No such version.
    LabelFileError
        The store is damaged.
    """
    label_file = Path(label_file)
    target = _version(label_file, n)
    return _rebuild(label_file, target, {v.n: v for v in versions(label_file)})


def current_version(label_file: str | os.PathLike) -> Version | None:
    """The newest stored version, or None without history."""
    found = versions(label_file)
    return found[-1] if found else None


def record(label_file: str | os.PathLike, labelset: LabelSet, action: str | None = None, source: str | None = None,
           now: float | None = None) -> Version:
    """Append *labelset* as the newest version of *label_file* (nothing new when its content is unchanged).

    Parameters
    ----------
    label_file
        The ``_seg.npy`` just written.
    labelset
        What was written.
    action
        What the caller did, put before the computed summary ("model run with M", "restored version 3").
    source
        The model or job that produced the labels, if any.
    now
        Time of the version (default: now).

    Returns
    -------
    Version
        The new version, or the newest one when nothing changed.
    """
    label_file = Path(label_file)
    store = store_of(label_file)
    now = time.time() if now is None else now
    labelset = labelset.copy()  # the app may edit it while this runs in a save thread
    state = _state(labelset)
    with _locked(label_file):
        known = versions(label_file)
        last = known[-1] if known else None
        if last is not None and last.state == state:
            return last
        by_n = {v.n: v for v in known}
        try:
            previous = _rebuild(label_file, last, by_n) if last is not None else None
        except LabelFileError as exc:  # a damaged store: this version is stored whole, so it stands alone
            log.warning("%s", exc)
            previous = None
        depth = _depth(last, by_n)
        use_base = (previous is not None and depth + 1 < KEY_EVERY and previous.shape == labelset.shape
                    and previous.masks.dtype == labelset.masks.dtype)
        blob = _write_blob(store, _encode(labelset, previous if use_base else None))
        what = changes(previous, labelset).summary(labelset)
        if previous is None:
            what = f"{'first version' if last is None else 'stored whole'}: {labelset.count} object(s)"
        version = Version(n=(last.n + 1) if last else 1, time=now, author=_author(),
                          action=f"{action}: {what}" if action else what, source=source or "", state=state,
                          blob=blob, base=last.n if use_base else None, objects=labelset.count)
        _append(_log_file(label_file), version)
        _remember(label_file, state, labelset)
        _prune_locked(label_file, now, KEEP_DAYS)
    return version


def record_quietly(label_file: str | os.PathLike, labelset: LabelSet, action: str | None = None,
                   source: str | None = None) -> None:
    """:func:`record`, logging instead of raising: the label file itself is already safely written."""
    try:
        record(label_file, labelset, action, source)
    except (MCPError, OSError) as exc:
        log.warning("The annotation history of %s was not updated: %s", Path(label_file).name, exc)


def restore(label_file: str | os.PathLike, n: int, image_path: str | os.PathLike | None = None) -> Version:
    """Write version *n* back to the label file; the restore is itself a new version.

    Raises
    ------
    ParameterError
        No such version.
    """
    from .labels import save_labels

    label_file = Path(label_file)
    ls = load_version(label_file, n)
    save_labels(label_file, ls, image_path=image_path, action=f"restored version {n}")
    return current_version(label_file)  # type: ignore[return-value]


def prune(label_file: str | os.PathLike, now: float | None = None, keep_days: float = KEEP_DAYS) -> int:
    """Apply the retention rule to one label file's history; returns how many versions were dropped."""
    label_file = Path(label_file)
    with _locked(label_file):
        return _prune_locked(label_file, time.time() if now is None else now, keep_days)


def pin_current(label_file: str | os.PathLike, model: str | os.PathLike) -> dict:
    """Record that *model* is trained on the newest version of *label_file*: retention never drops it.

    Returns
    -------
    dict
        ``{"annotation_version": n, "annotation_state": sha256}`` of that version, or ``{}`` without history.
        An unreadable pin file is logged and left as it is (pruning then keeps every version of that file).
    """
    label_file = Path(label_file)
    with _locked(label_file):
        v = current_version(label_file)
        if v is None:
            return {}
        try:
            pins = _pins(label_file)
        except LabelFileError as exc:
            log.warning("%s; version %d is not pinned for %s.", exc, v.n, model)
            return {"annotation_version": v.n, "annotation_state": v.state}
        users = pins.setdefault(v.state, [])
        if str(model) not in users:
            users.append(str(model))
            _pins_file(label_file).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(_pins_file(label_file), json.dumps(pins, indent=1))
    return {"annotation_version": v.n, "annotation_state": v.state}


def pinned_by(label_file: str | os.PathLike) -> dict[str, list[str]]:
    """``{state: [model, ...]}``: the versions of *label_file* that trained models reference (see :func:`pin_current`).

    Raises
    ------
    LabelFileError
        The pin file is unreadable.
    """
    return _pins(Path(label_file))


# ------------------------------------------------------------------------------------ internals
def _author() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _depth(v: Version | None, by_n: dict[int, Version]) -> int:
    depth = 0
    while v is not None and v.base is not None:
        depth += 1
        v = by_n.get(v.base)
    return depth


def _append(path: Path, version: Version) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab+") as fh:
        torn = False
        if fh.seek(0, os.SEEK_END) > 0:
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"  # a line cut short by a kill: start a fresh one
        fh.write((b"\n" if torn else b"") + json.dumps(asdict(version)).encode() + b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def _keep(found: list[Version], now: float, keep_days: float) -> set[int]:
    recent = now - keep_days * 86400
    keep = {found[-1].n} | {v.n for v in found if v.time >= recent}
    last_of_day: dict[dt.date, int] = {}
    for v in found:
        if v.time < recent:
            last_of_day[dt.datetime.fromtimestamp(v.time, dt.timezone.utc).date()] = v.n
    return keep | set(last_of_day.values())


def _prune_locked(label_file: Path, now: float, keep_days: float) -> int:
    found = versions(label_file)
    if not found:
        return 0
    try:
        pinned = set(_pins(label_file))
    except LabelFileError as exc:
        log.warning("%s; its versions are all kept.", exc)
        return 0
    kept_n = _keep(found, now, keep_days) | {v.n for v in found if v.state in pinned}
    if len(kept_n) == len(found):
        return 0
    by_n = {v.n: v for v in found}
    store = store_of(label_file)
    kept: list[Version] = []
    previous: LabelSet | None = None
    depth = 0
    for v in found:
        if v.n not in kept_n:
            continue
        ls = _rebuild(label_file, v, by_n)
        if v.base is None or (kept and v.base == kept[-1].n):
            new = v
        else:
            use_base = previous is not None and previous.shape == ls.shape and previous.masks.dtype == ls.masks.dtype
            blob = _write_blob(store, _encode(ls, previous if use_base else None))
            new = Version(**{**asdict(v), "blob": blob, "base": kept[-1].n if use_base else None})
        depth = depth + 1 if new.base is not None else 0
        if depth >= KEY_EVERY:
            new = Version(**{**asdict(new), "blob": _write_blob(store, _encode(ls, None)), "base": None})
            depth = 0
        kept.append(new)
        previous = ls
    atomic_write_text(_log_file(label_file), "".join(json.dumps(asdict(v)) + "\n" for v in kept))
    _collect_garbage(store)
    return len(found) - len(kept)


def _collect_garbage(store: Path) -> None:
    """Delete blobs no log refers to (older than :data:`ORPHAN_GRACE_S`)."""
    used = set()
    for path in (store / "log").glob("*.jsonl"):
        for line in path.read_text("utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError, TypeError, KeyError):
                used.add(json.loads(line)["blob"])
    for blob in (store / "objects").glob("*/*"):
        with contextlib.suppress(OSError):
            if blob.name not in used and time.time() - blob.stat().st_mtime > ORPHAN_GRACE_S:
                blob.unlink()

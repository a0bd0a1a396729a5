"""Content digests of files: model weights, uploads, prediction records."""

from __future__ import annotations

import hashlib
import os


def sha256_of(path: str | os.PathLike, chunk: int = 4 << 20) -> str:
    """The SHA-256 (hex) of a file's bytes, read *chunk* bytes at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()

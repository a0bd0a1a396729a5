"""Fetching cellpose's pretrained weights (``cpsam``) through cellpose's own download path, with progress.

:func:`fetch_weights` runs ``python -m mcp_core.weights NAME`` in a child process: the child imports
cellpose (and with it torch) and calls ``cellpose.models.cache_model_path``, which downloads the file
into cellpose's model folder (``CELLPOSE_LOCAL_MODELS_PATH`` or ``~/.cellpose/models``) with
``cellpose.utils.download_url_to_file``; the child reports that function's progress as JSON lines
(:data:`REPORT_PREFIX`). The caller (the app, the server) never imports torch. ``$MULTICELLPOSE_WEIGHTS_URL``
replaces cellpose's download address (a mirror of ``https://huggingface.co/mouseland/cellpose-sam/resolve/main/``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .catalog import PRETRAINED, pretrained_path, weights_dir
from .errors import ModelError

#: Base address of the weight files instead of cellpose's (the file name is appended).
URL_ENV = "MULTICELLPOSE_WEIGHTS_URL"
#: The child reports progress at most this often, on lines starting with this.
REPORT_EVERY_S = 0.2
REPORT_PREFIX = "mcp-progress "


def fetch_weights(name: str = "cpsam", progress: Callable[[int, int], None] | None = None) -> Path:
    """Download cellpose's pretrained weights *name* into its model folder, unless already there.

    Parameters
    ----------
    name
        One of :data:`mcp_core.catalog.PRETRAINED`.
    progress
        Called with ``(bytes done, bytes total)`` while the file comes in (total 0 when the server sends no size).

    Returns
    -------
    Path
        The weights file.

    Raises
    ------
    ModelError
        For an unknown name, or when the download fails (offline): the message says where to copy the file.
    """
    if name not in PRETRAINED:
        raise ModelError(f"There are no pretrained weights named {name!r}; known: {', '.join(PRETRAINED)}.")
    try:
        return pretrained_path(name)
    except ModelError:
        pass
    with tempfile.TemporaryFile("w+") as log:  # the child's progress bar and messages (a pipe could fill up)
        proc = subprocess.Popen([sys.executable, "-m", "mcp_core.weights", name], stdout=subprocess.PIPE,
                                stderr=log, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if progress is not None and line.startswith(REPORT_PREFIX):  # anything else cellpose may print is not ours
                report = json.loads(line[len(REPORT_PREFIX):])
                progress(int(report["done"]), int(report["total"]))
        if proc.wait() != 0:
            log.seek(0)
            errors = log.read().strip().splitlines()
            raise ModelError(errors[-1] if errors else f"Downloading the {name} weights failed "
                             f"(exit status {proc.returncode}).")
    return pretrained_path(name)


def _download(name: str) -> None:
    """In the child: cellpose's own download, its progress bar turned into JSON lines on standard output."""
    from cellpose import models, utils  # imports torch: only in this child process
    from tqdm import tqdm

    class Reporting(tqdm):
        last = 0.0

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            now = time.monotonic()
            if now - self.last >= REPORT_EVERY_S or (self.total and self.n >= self.total):
                self.last = now
                print(REPORT_PREFIX + json.dumps({"done": int(self.n), "total": int(self.total or 0)}), flush=True)
            return shown

    if os.environ.get(URL_ENV):
        models._MODEL_URL = os.environ[URL_ENV].rstrip("/") + "/"
    models.MODEL_DIR = weights_dir()  # cellpose read the environment at its import; follow it now too
    utils.tqdm = Reporting
    pretrained_path(name, download=True)


if __name__ == "__main__":
    try:
        _download(sys.argv[1])
    except ModelError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(1)

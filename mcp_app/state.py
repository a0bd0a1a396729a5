"""App state shared by the pages: the project folder and the backend. Knows nothing of the UI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mcp_core.backend import Backend, LocalBackend
from mcp_core.filenames import label_path, masks_tiff_pair
from mcp_core.io import list_images


@dataclass
class ImageEntry:
    """One image of the project and whether it has labels or predictions."""

    path: Path
    labelled: bool
    predicted: bool


@dataclass
class AppState:
    """The open project and the backend every page talks to."""

    folder: Path
    backend: Backend = field(default_factory=LocalBackend)

    def images(self) -> list[ImageEntry]:
        """Images of the folder with their label status (frame labels count as labelled)."""
        out = []
        for p in list_images(self.folder):
            stem_glob = label_path(p).name.replace("_seg.npy", "")
            labelled = label_path(p).exists() or masks_tiff_pair(p) is not None or any(
                self.folder.glob(f"{stem_glob}__*_seg.npy"))
            predicted = label_path(p, kind="pred").exists() or any(self.folder.glob(f"{stem_glob}__*_pred.npy"))
            out.append(ImageEntry(p, labelled, predicted))
        return out

    def close(self) -> None:
        """Release resources at shutdown."""

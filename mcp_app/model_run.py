"""A model run on the open image: one path for the Trainer's "Run model" and the Analyzer's "This image"."""

from __future__ import annotations

from nicegui import ui

from mcp_core.backend import Backend
from mcp_core.labels.files import gui_flows
from mcp_core.params import SegmentParams

from . import compute
from .workspace import Workspace


async def run_on_open_image(backend: Backend, ws: Workspace, params: SegmentParams, keep_existing: bool,
                            button: ui.element) -> int:
    """Segment the open image and put the result in as one undoable, autosaved edit.

    The file then records what produced it: the thresholds, the per-object confidence and the
    action (for the annotation history). A result with no objects changes nothing.

    Returns
    -------
    int
        Objects found (0 also when nothing could run; the user is told why).
    """
    if ws.editor.image is None or not params.model:
        ui.notify("Open an image and pick a model first.", type="warning")
        return 0
    button.props("loading")
    try:
        [result] = await compute.segment(backend, [ws.editor.image], params)
    except Exception as exc:
        ui.notify(f"The model could not run: {exc}", type="negative", multi_line=True)
        return 0
    finally:
        button.props(remove="loading")
    found = int(result.masks.max()) if result.masks.size else 0
    if not found:
        ui.notify(f"0 objects found by {params.model}: the labels are left as they were.", type="warning")
        return 0

    def put():
        patch = ws.editor.replace(result.masks, result.classes, result.class_names, keep_existing)
        labels = ws.editor.labels
        labels.flow_threshold, labels.cellprob_threshold = params.flow_threshold, params.cellprob_threshold
        labels.confidence = dict(result.confidence) or None
        if result.flows is not None and result.cellprob is not None:  # for upstream cellpose's GUI
            labels.flows = gui_flows(result.flows, result.cellprob)
        return patch

    ws.editor.action = f"model run with {params.model}"
    ws.edit(put)
    ui.notify(f"{found} objects found by {params.model}.")
    return found

"""bioimage.io model packages (spec 0.5) of MultiCellPose models, written and checked with ``bioimageio.spec``/``core``.

What the package holds:

- ``raw`` input: ``(batch, channel=3, y, x)`` float32 intensities of one tile of the model's size,
  scaled per channel by bioimage.io's ``scale_range`` (1st percentile to 0, 99th to 1, as cellpose
  normalises); the channels are the ones the model was trained on, in order.
- ``prediction`` output: ``(batch, channel, y, x)``: the class logits (background first), flow Y,
  flow X and the cell probability logit, in the model's channel order. Instance masks come from
  cellpose's dynamics (``cellpose.dynamics.resize_and_compute_masks``) and each mask's class is the
  majority vote of the class argmax over its pixels; neither step is part of the package.
- TorchScript weights (the network traced on CPU), a sample input and its expected output, a
  cover image (the sample and its masks coloured by class), the class names and colours
  (``config.multicellpose``) and the model card (:mod:`mcp_core.model_card`) as documentation.

``bioimageio.spec`` and ``bioimageio.core`` are imported only here, when a package is made.
"""

from __future__ import annotations

import getpass
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MCPError, ParameterError

#: Percentiles mapped to 0 and 1 (cellpose's normalisation).
PERCENTILES = (1.0, 99.0)
#: bioimage.io's ``scale_range`` epsilon.
EPS = 1e-6
CELLPOSE_CITATION = ("Stringer, C., Wang, T., Michaelos, M. & Pachitariu, M. Cellpose: a generalist algorithm for "
                     "cellular segmentation. Nature Methods 18, 100-106 (2021).")
CELLPOSE_DOI = "10.1038/s41592-020-01018-x"


@dataclass
class PackageCheck:
    """Outcome of validating a package (``bioimageio.spec``) and running its test (``bioimageio.core``)."""

    path: Path
    valid: bool
    test_passed: bool
    details: str

    @property
    def ok(self) -> bool:
        return self.valid and self.test_passed


def channel_ids(names: list[str]) -> list[str]:
    """bioimage.io identifiers for output channel names (``class:round`` -> ``class_round``), unique."""
    out: list[str] = []
    for name in names:
        ident = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_").lower() or "channel"
        while ident in out:
            ident += "_"
        out.append(ident)
    return out


def scale_range(image: np.ndarray) -> np.ndarray:
    """``(C, Y, X)`` intensities scaled per channel as the package's preprocessing does (linear percentiles)."""
    x = np.asarray(image, np.float32)
    lo = np.percentile(x, PERCENTILES[0], axis=(1, 2), keepdims=True)
    hi = np.percentile(x, PERCENTILES[1], axis=(1, 2), keepdims=True)
    return ((x - lo) / (hi - lo + EPS)).astype(np.float32)


def _sample(model, bsize: int) -> np.ndarray:
    """A synthetic ``(3, bsize, bsize)`` float32 sample with the model's class cues."""
    from .synthetic import make_sample

    n_object_classes = min(max(model.n_classes - 1, 2), 3)
    image = make_sample(0, shape=(bsize, bsize), n_classes=n_object_classes, n_channels=2)[0].astype(np.float32)
    return np.concatenate([image.transpose(2, 0, 1), np.zeros((1, bsize, bsize), np.float32)])


def _cover(path: Path, raw: np.ndarray, masks: np.ndarray, classes: np.ndarray, colors: list[str]) -> None:
    """A 2:1 PNG: the sample's first channel beside its masks coloured by class."""
    from PIL import Image

    gray = scale_range(raw[:1])[0].clip(0, 1)
    left = np.repeat((gray * 255).astype(np.uint8)[..., None], 3, axis=2)
    palette = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colors] or [[128, 128, 128]], np.uint8)
    cls = classes[masks].astype(np.int64) % len(palette)
    right = np.where((masks > 0)[..., None], palette[cls], 0).astype(np.uint8)
    Image.fromarray(np.concatenate([left, right], axis=1)).save(path)


def _readme(model_path: Path, name: str, order: list[str], bsize: int) -> str:
    from .model_card import card_markdown

    usage = [
        "", "## Using this package", "",
        f"Input `raw`: one {bsize}x{bsize} tile, 3 channels (batch, channel, y, x), scaled per channel from the "
        f"{PERCENTILES[0]:g}th percentile (0) to the {PERCENTILES[1]:g}th (1). Larger images are tiled.",
        f"Output `prediction`: {', '.join(order)}. Masks: cellpose's dynamics on the flows and cell probability "
        "(`cellpose.dynamics.resize_and_compute_masks`); each mask's class is the majority of the class argmax "
        "over its pixels. MultiCellPose itself does all of this: `multicellpose segment --model M`.",
        "", "## Validation", "",
        "The scores above were measured by MultiCellPose on the held-out test split (AP at IoU 0.5 with cellpose's "
        "`metrics.average_precision`, class accuracy on matched objects). The package's test input and expected "
        "output were written by the exporter from the traced network, and the package was validated with "
        "`bioimageio.spec` and tested with `bioimageio.core` when it was made.",
    ]
    return card_markdown(model_path, name) + "\n".join(usage) + "\n"


def export_bioimageio(model_path: str | os.PathLike, out: str | os.PathLike, name: str | None = None,
                      license_id: str = "BSD-3-Clause", authors: list[str] | None = None) -> Path:
    """Write a bioimage.io model package (a ``.zip``) of a saved model.

    Parameters
    ----------
    model_path
        The model's ``.pth`` file (with its JSON sidecar).
    out
        The ``.zip`` to write (atomically).
    name
        Model name in the package (default: the file name).
    license_id
        SPDX licence identifier of the weights.
    authors
        Author names (default: the OS user).

    Raises
    ------
    ParameterError
        An output path that is not a ``.zip``.
    MCPError
        When ``bioimageio.spec`` refuses the description.
    """
    import tifffile
    import torch
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as bio

    from .model import open_model
    from .params import SegmentParams
    from .segment import segment

    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise ParameterError(f"A bioimage.io package is a .zip file; got {out.name}.")
    model_path = Path(model_path)
    model = open_model(model_path, device="cpu")
    bsize = model.bsize
    name = name or model_path.stem
    order = [*(f"class:{n}" for n in model.class_names), "flow_y", "flow_x", "cellprob"] if model.n_classes else \
        ["flow_y", "flow_x", "cellprob"]

    class Readout(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)[0]

    net = model.net.eval()
    raw = _sample(model, bsize)
    with tempfile.TemporaryDirectory() as tmp_dir, torch.inference_mode():
        tmp = Path(tmp_dir)
        example = torch.from_numpy(scale_range(raw)[None])
        with warnings.catch_warnings():  # TorchScript's deprecation and tracer notices: the tile size is fixed
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(Readout(net), example, check_trace=False)
        traced.save(str(tmp / "weights.pt"))
        expected = traced(example).numpy()
        np.save(tmp / "test_input.npy", raw[None])
        np.save(tmp / "test_output.npy", expected)
        tifffile.imwrite(tmp / "sample_input.tif", raw[None])
        tifffile.imwrite(tmp / "sample_output.tif", expected)
        [result] = segment(model, [raw[:2].transpose(1, 2, 0)], SegmentParams(bsize=bsize, channels=[0, 1]))
        _cover(tmp / "cover.png", raw, result.masks, result.classes, list(model.class_colors))
        (tmp / "README.md").write_text(_readme(model_path, name, order, bsize), "utf-8")
        descr = _description(bio, tmp, name, order, bsize, model, license_id, authors, torch.__version__)
        fd, partial = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".zip", dir=out.parent)
        os.close(fd)
        try:
            save_bioimageio_package(descr, output_path=Path(partial))
            os.replace(partial, out)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    return out


def _description(bio, tmp: Path, name: str, order: list[str], bsize: int, model, license_id: str,
                 authors: list[str] | None, torch_version: str):
    from pydantic import ValidationError

    try:
        raw_axes = [bio.BatchAxis(), bio.ChannelAxis(channel_names=[bio.Identifier(f"c{i}") for i in range(3)]),
                    bio.SpaceInputAxis(id=bio.AxisId("y"), size=bsize),
                    bio.SpaceInputAxis(id=bio.AxisId("x"), size=bsize)]
        ref = {a: bio.SizeReference(tensor_id=bio.TensorId("raw"), axis_id=bio.AxisId(a)) for a in ("y", "x")}
        out_axes = [bio.BatchAxis(), bio.ChannelAxis(channel_names=[bio.Identifier(c) for c in channel_ids(order)]),
                    bio.SpaceOutputAxis(id=bio.AxisId("y"), size=ref["y"]),
                    bio.SpaceOutputAxis(id=bio.AxisId("x"), size=ref["x"])]
        scaling = bio.ScaleRangeDescr(kwargs=bio.ScaleRangeKwargs(
            axes=[bio.AxisId("y"), bio.AxisId("x")], min_percentile=PERCENTILES[0], max_percentile=PERCENTILES[1],
            eps=EPS))
        return bio.ModelDescr(
            name=name if len(name) >= 5 else f"{name} (MultiCellPose)",
            description="Multi-class CellposeSAM model (MultiCellPose): class logits, cellpose flows and cell "
                        "probability for instance segmentation with one class per object.",
            authors=[bio.Author(name=a) for a in (authors or [getpass.getuser()])],
            cite=[bio.CiteEntry(text=CELLPOSE_CITATION, doi=bio.Doi(CELLPOSE_DOI))],
            license=bio.LicenseId(license_id),
            documentation=bio.FileDescr(source=tmp / "README.md"),
            covers=[bio.FileDescr(source=tmp / "cover.png")],
            tags=["cellpose", "instance-segmentation", "semantic-segmentation", "2d", "multicellpose"],
            inputs=[bio.InputTensorDescr(id=bio.TensorId("raw"), axes=raw_axes, preprocessing=[scaling],
                                         test_tensor=bio.FileDescr(source=tmp / "test_input.npy"),
                                         sample_tensor=bio.FileDescr(source=tmp / "sample_input.tif"),
                                         data=bio.IntervalOrRatioDataDescr(type="float32"))],
            outputs=[bio.OutputTensorDescr(id=bio.TensorId("prediction"), axes=out_axes,
                                           test_tensor=bio.FileDescr(source=tmp / "test_output.npy"),
                                           sample_tensor=bio.FileDescr(source=tmp / "sample_output.tif"))],
            weights=bio.WeightsDescr(torchscript=bio.TorchscriptWeightsDescr(
                source=tmp / "weights.pt", pytorch_version=bio.Version(torch_version.split("+")[0]))),
            config={"multicellpose": {"class_names": list(model.class_names), "class_colors": list(model.class_colors),
                                      "channel_order": order, "diameter": float(model.diameter),
                                      "diam_mean": float(model.diam_mean), "bsize": bsize,
                                      "image_channels": model.meta.get("channels")}},
        )
    except ValidationError as exc:
        raise MCPError(f"bioimage.io refused the model description: {exc}") from exc


def check_package(path: str | os.PathLike) -> PackageCheck:
    """Validate a package with ``bioimageio.spec``; run its test (sample in, expected out) with ``bioimageio.core`` on CPU."""
    from bioimageio.core import test_model
    from bioimageio.spec import load_description
    from bioimageio.spec.model.v0_5 import ModelDescr

    path = Path(path)
    descr = load_description(path)
    valid = isinstance(descr, ModelDescr) and descr.validation_summary.status in ("passed", "valid-format")
    if not valid:
        return PackageCheck(path, False, False, descr.validation_summary.format())
    with warnings.catch_warnings():  # TorchScript's deprecation notice on load
        warnings.simplefilter("ignore", FutureWarning)
        summary = test_model(path, devices=["cpu"])
    return PackageCheck(path, True, summary.status == "passed", summary.format())

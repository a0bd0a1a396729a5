"""Blockwise segmentation of large images into OME-Zarr labels, and the OME-Zarr image reader."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dask
import numpy as np
import pytest
import tifffile
import torch
import zarr
from scipy import ndimage
from skimage.segmentation import watershed

from mcp_core.blockwise import segment_blockwise
from mcp_core.errors import ImageReadError, ParameterError
from mcp_core.evaluation import matched_pairs
from mcp_core.io import list_images, open_image
from mcp_core.model import build_model
from mcp_core.params import SegmentParams
from mcp_core.synthetic import make_sample

NAMES = ["unassigned", "round", "elongated"]


def write_ome_zarr(path, image_yxc: np.ndarray, chunk: int = 512) -> None:
    from ome_zarr.writer import write_image

    group = zarr.open_group(str(path), mode="w")
    with dask.config.set(scheduler="synchronous"):  # not on a dask cluster another test may have made the default
        write_image(np.moveaxis(image_yxc, -1, 0), group, axes="cyx", scale_factors=[2],
                    storage_options={"chunks": (image_yxc.shape[-1], chunk, chunk)})


def rim_watershed(block: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A classical segmenter of the synthetic images: bright interiors seed a watershed; class by channel."""
    total = block[..., :2].sum(-1)
    seeds, _ = ndimage.label(total > 0.9)
    masks = watershed(-total, seeds, mask=total > 0.3)
    n = int(masks.max(initial=0))
    ch0 = ndimage.mean(block[..., 0], masks, np.arange(1, n + 1))
    ch1 = ndimage.mean(block[..., 1], masks, np.arange(1, n + 1))
    classes = np.concatenate([[0], np.where(np.asarray(ch0) > np.asarray(ch1), 1, 2)]).astype(np.uint16)
    return masks, classes, NAMES


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    """A 3000 x 3000, 2-channel mosaic of 6 x 6 synthetic fields (12 different ones) as OME-Zarr (512-pixel chunks)."""
    fields = [make_sample(seed, shape=(500, 500), dtype="float32")[0] for seed in range(12)]
    tiles = [fields[(7 * i) % 12] for i in range(36)]
    image = np.concatenate([np.concatenate(tiles[r * 6:(r + 1) * 6], axis=1) for r in range(6)], axis=0)
    path = tmp_path_factory.mktemp("mosaic") / "mosaic.ome.zarr"
    write_ome_zarr(path, image)
    return path, image


def test_blockwise_mosaic_matches_whole_image_and_opens_with_ome_zarr(mosaic):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    path, image = mosaic
    whole, whole_classes, _ = rim_watershed(image)
    events = []
    out = segment_blockwise(path, path, segmenter=rim_watershed, block=512, overlap=64,
                            progress=lambda kind, data: events.append(data))
    assert out["blocks"] == 36 and out["shape"] == (3000, 3000) and out["cut"] == 0
    assert out["levels"][:2] == [(3000, 3000), (1500, 1500)] and out["levels"][-1] == (375, 375)
    assert {e["stage"] for e in events} >= {"segmenting", "writing", "level 1"}

    nodes = list(Reader(parse_url(str(path)))())  # the image with its labels, as napari opens it
    [node] = [n for n in nodes if any(isinstance(spec, Label) for spec in n.specs)]
    assert node.metadata["name"] == "cells" and nodes[0].data[0].shape == (2, 3000, 3000)
    with dask.config.set(scheduler="synchronous"):
        labels = np.asarray(node.data[0])
    assert labels.shape == (3000, 3000) and len(node.data) == len(out["levels"])
    group = zarr.open_group(str(path / "labels" / "cells"), mode="r")
    classes = np.asarray(group["classes"])
    assert len(classes) == out["objects"] + 1 == labels.max() + 1
    assert group.attrs["ome"]["image-label"]["multicellpose"]["class_names"] == NAMES
    assert zarr.open_group(str(path / "labels"), mode="r").attrs["ome"]["labels"] == ["cells"]

    # AP@0.5 (cellpose's definition, tp / (tp + fp + fn), from the one-to-one IoU > 0.5 pairs) and classes kept.
    found, paired = matched_pairs(whole, labels)
    n_whole, n_blocks = len(np.unique(whole)) - 1, len(np.unique(labels)) - 1
    ap50 = len(found) / (n_whole + n_blocks - len(found))
    assert ap50 >= 0.95 and np.mean(whole_classes[found] == classes[paired]) >= 0.99, ap50
    # No object is cut at a seam: every whole-image object across a block border is found whole...
    seams = np.zeros(image.shape[:2], bool)
    seams[np.arange(512, 3000, 512), :] = seams[:, np.arange(512, 3000, 512)] = True
    crossing = np.setdiff1d(np.unique(whole[seams]), [0])
    assert len(crossing) > 100 and np.isin(crossing, found).all()
    # ...and no blockwise object comes in two pieces.
    for obj, box in enumerate(ndimage.find_objects(labels), start=1):
        assert box is not None and ndimage.label(labels[box] == obj)[1] == 1, obj


def test_ome_zarr_reader_and_labels_written_again(mosaic, tmp_path):
    path, image = mosaic
    assert path in list_images(path.parent)
    with open_image(path) as src:
        assert src.frames == [""] and src.meta.axes == "CYX" and src.meta.extra["levels"][:2] == [(3000, 3000), (1500, 1500)]
        np.testing.assert_array_equal(src.read(), image)
    movie = tmp_path / "movie.zarr"
    data = np.arange(2 * 3 * 40 * 30, dtype=np.uint16).reshape(2, 3, 40, 30)
    from ome_zarr.writer import write_image

    with dask.config.set(scheduler="synchronous"):
        write_image(data, zarr.open_group(str(movie), mode="w"), axes="tzyx", scale_factors=[],
                    scale={"y": 0.5, "x": 0.25, "t": 1.0, "z": 1.0},
                    axes_units={"y": "micrometer", "x": "micrometer"})
    with open_image(movie) as src:
        assert src.frames == [f"T{t}_Z{z}" for t in range(2) for z in range(3)]
        assert src.meta.pixel_size == (0.5, 0.25)
        np.testing.assert_array_equal(src.read("T1_Z2")[..., 0], data[1, 2])
    # Labels written twice under one name are listed once; another name is added.
    small = tmp_path / "small.ome.zarr"
    write_ome_zarr(small, make_sample(5, shape=(300, 260), dtype="float32")[0], chunk=128)
    for name in ("cells", "cells", "nuclei"):
        out = segment_blockwise(small, small, segmenter=rim_watershed, block=128, overlap=64, name=name)
        assert out["objects"] > 0 and out["levels"] == [(300, 260), (150, 130), (75, 65)]
    assert zarr.open_group(str(small / "labels"), mode="r").attrs["ome"]["labels"] == ["cells", "nuclei"]
    with pytest.raises(ParameterError, match="between 0 and the block size"):
        segment_blockwise(small, small, segmenter=rim_watershed, block=128, overlap=200)
    with pytest.raises(ParameterError, match="has 6 frames"):
        segment_blockwise(movie, tmp_path / "m.zarr", segmenter=rim_watershed)
    plain = tmp_path / "plain.zarr"
    zarr.open_group(str(plain), mode="w").create_array("0", shape=(4, 4), dtype="uint8")
    with pytest.raises(ImageReadError, match="without OME-Zarr 'multiscales' metadata"):
        open_image(plain)


def test_model_blocks_on_a_cluster_equal_blocks_in_process(dask_client, tmp_path):
    model = build_model("tiny", NAMES, device="cpu", seed=7, bsize=128)
    with torch.no_grad():
        model.net.out.bias[-model.net.ps ** 2:] += 3.0
    model_file = model.save(tmp_path / "tiny3.pth")
    image = make_sample(3, shape=(600, 520))[0]
    tifffile.imwrite(tmp_path / "big.tif", np.moveaxis(image, -1, 0), tile=(128, 128), metadata={"axes": "CYX"})
    params = SegmentParams(bsize=128, flow_threshold=0.0, niter=50)
    with pytest.raises(ParameterError, match="at least two object diameters"):
        segment_blockwise(tmp_path / "big.tif", tmp_path / "x.zarr", model=model_file, params=params, block=256, overlap=10)
    exe = shutil.which("multicellpose", path=str(Path(sys.executable).parent))
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    cli = subprocess.run([exe, "segment", "--model", str(model_file), "--input", str(tmp_path / "big.tif"), "--output",
                          str(tmp_path / "here"), "--flow-threshold", "0", "--niter", "50", "--blockwise", "256"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert cli.returncode == 0, cli.stderr
    objects = int(re.search(r"big.tif: (\d+) objects in 9 blocks, labels in .*big.ome.zarr/labels/cells", cli.stdout)[1])
    there = segment_blockwise(tmp_path / "big.tif", tmp_path / "there.zarr", model=model_file, params=params,
                              block=256, client=dask_client)
    assert there["objects"] == objects > 0 and there["blocks"] == 9 and there["class_names"] == NAMES
    a = zarr.open_array(str(tmp_path / "here" / "big.ome.zarr" / "labels" / "cells" / "0"), mode="r")[:]
    b = zarr.open_array(str(tmp_path / "there.zarr" / "labels" / "cells" / "0"), mode="r")[:]
    np.testing.assert_array_equal(a, b)
    assert a.shape == (600, 520) and len(np.unique(a)) == objects + 1

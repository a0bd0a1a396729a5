"""A real Nikon ND2 file through the reader: frames, pixel size and every plane checked against the raw chunks.

The fixture ``fixtures/nd2/example-zstack.nd2`` (606 KB, MIT licence beside it) is a test file of
Arcadia Science's arcadia-microscopy-tools: 11 Z planes of 128x128 uint16, one channel (FITC),
acquired with NIS-Elements; their ``known-metadata.yml`` gives the XY step 0.323390342594048 µm
as NIS-Elements reports it.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mcp_core.io import open_image

ND2 = Path(__file__).parent / "fixtures" / "nd2" / "example-zstack.nd2"
CHUNK_MAGIC = 0x0ABECEDA


def raw_plane(data: bytes, index: int, shape: tuple[int, int]) -> np.ndarray:
    """Plane *index* read straight from the file's ``ImageDataSeq|<index>!`` chunk.

    A chunk is a header (uint32 magic 0x0ABECEDA, uint32 name length, uint64 data length), the
    name (padded to the name length), then the data: an 8-byte timestamp and the pixels.
    """
    name = f"ImageDataSeq|{index}!".encode()
    at = data.find(name)
    magic, name_length, data_length = struct.unpack("<IIQ", data[at - 16:at])
    assert magic == CHUNK_MAGIC and data_length == 8 + 2 * shape[0] * shape[1]
    return np.frombuffer(data, "<u2", count=shape[0] * shape[1], offset=at + name_length + 8).reshape(shape)


def test_nd2_frames_metadata_and_planes():
    with open_image(ND2) as src:
        assert src.frames == [f"Z{z}" for z in range(11)]
        meta = src.meta
        assert (meta.axes, meta.shape, meta.dtype) == ("ZYXC", (11, 128, 128, 1), "uint16")
        assert meta.pixel_size == pytest.approx((0.323390342594048, 0.323390342594048))  # as NIS-Elements says
        planes = [src.read(frame) for frame in src.frames]
    data = ND2.read_bytes()
    for z, plane in enumerate(planes):  # still readable after the file is closed
        assert plane.shape == (128, 128, 1) and plane.dtype == np.uint16
        np.testing.assert_array_equal(plane[..., 0], raw_plane(data, z, (128, 128)))
    assert not np.array_equal(planes[0], planes[10])  # the planes differ: the Z order matters


def test_a_plane_outlives_its_closed_file():
    # the reader once returned views of the file's memory map: touching one after closing crashed Python
    code = ("from mcp_core.io import open_image\n"
            f"with open_image({str(ND2)!r}) as src:\n    plane = src.read('Z3')\n"
            "print(int(plane.sum()))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) == int(raw_plane(ND2.read_bytes(), 3, (128, 128)).sum(dtype=np.int64))

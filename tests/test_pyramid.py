"""Display pyramids: levels of in-memory images and of OME-Zarr files, the level for a zoom, tiles."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import zarr

from mcp_core.pyramid import Pyramid, open_pyramid


def write_ome_zarr(path, image_yxc: np.ndarray, levels: int = 3, chunk: int = 256) -> None:
    """An OME-Zarr image with *levels* resolution levels (each half the one before)."""
    from ome_zarr.writer import write_image

    with dask.config.set(scheduler="synchronous"):
        write_image(np.moveaxis(image_yxc, -1, 0), zarr.open_group(str(path), mode="w"), axes="cyx",
                    scale_factors=[2 ** k for k in range(1, levels)],
                    storage_options={"chunks": (image_yxc.shape[-1], chunk, chunk)})


def test_levels_of_an_array_are_strided_views_down_to_the_smallest():
    image = np.arange(1000 * 600 * 2, dtype=np.uint16).reshape(1000, 600, 2)
    pyr = Pyramid.of_array(image, smallest=200)
    assert pyr.shapes == [(1000, 600), (500, 300), (250, 150), (125, 75)]
    np.testing.assert_array_equal(pyr.read(2), image[::4, ::4])
    np.testing.assert_array_equal(pyr.read(1, 10, 20, 30, 45), image[::2, ::2][10:20, 30:45])
    assert np.shares_memory(pyr.read(1), image)  # nothing computed or copied
    assert [pyr.factor(k) for k in range(4)] == [1, 2, 4, 8]
    assert pyr.level_for(1.0) == 0 and pyr.level_for(3.0) == 0  # zoomed in: full resolution
    assert pyr.level_for(0.5) == 1 and pyr.level_for(0.3) == 1 and pyr.level_for(0.25) == 2
    assert pyr.level_for(0.01) == 3  # never coarser than the coarsest level
    assert pyr.level_within(600) == 1 and pyr.level_within(1000) == 0 and pyr.level_within(10) == 3


def test_tiles_cover_a_level_and_are_cut_at_its_edges():
    image = np.random.default_rng(0).integers(0, 255, (700, 1100, 1), dtype=np.uint8)
    pyr = Pyramid.of_array(image)
    np.testing.assert_array_equal(pyr.tile(0, 1, 2, size=512), image[512:700, 1024:1100])
    assert pyr.tile(0, 0, 0, size=512).shape == (512, 512, 1)
    with pytest.raises(IndexError, match=r"tile \(2, 0\) is outside level 0 \(700x1100 pixels in 512-pixel tiles\)"):
        pyr.tile(0, 2, 0, size=512)
    with pytest.raises(IndexError, match="level 9 does not exist: this image has levels 0-3"):
        pyr.read(9)


def test_ome_zarr_levels_are_read_lazily_from_the_file(tmp_path):
    image = np.random.default_rng(1).integers(0, 4000, (1024, 768, 2), dtype=np.uint16)
    path = tmp_path / "big.ome.zarr"
    write_ome_zarr(path, image, levels=3)
    pyr = open_pyramid(path)
    assert pyr.shapes == [(1024, 768), (512, 384), (256, 192)]
    np.testing.assert_array_equal(pyr.tile(0, 1, 1, size=512), image[512:1024, 512:768])
    assert pyr.read(2).shape == (256, 192, 2)
    assert pyr.level_for(0.3) == 1  # 2x the full-res pixel size is finer than a screen pixel at 0.3; 4x is not
    assert open_pyramid(tmp_path / "flat.tif") is None  # not a multiscale format: the caller uses its array

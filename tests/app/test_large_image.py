"""A large OME-Zarr image is browsed without loading it whole: an overview level first, full-resolution tiles
only where zoomed in (the editor, and the real app in Chromium counting what the page fetched)."""

from __future__ import annotations

import gzip

import dask
import numpy as np
import pytest
import zarr

from mcp_app.editor import OVERVIEW_SIDE, Editor
from mcp_app.project import Item, Project
from mcp_core.pyramid import TILE

from .browser import App, wait

SHAPE = (4096, 3072)  # levels 4096x3072, 2048x1536, 1024x768 (the overview)


def write_large(folder) -> np.ndarray:
    """A 2-channel uint16 OME-Zarr with three levels; returns its full-resolution pixels ``(Y, X, C)``."""
    from ome_zarr.writer import write_multiscale

    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.ogrid[: SHAPE[0], : SHAPE[1]]
    image = np.stack([(yy + 3 * xx) % 4001, (7 * yy + xx) % 3001], axis=-1).astype(np.uint16)
    planes = np.moveaxis(image, -1, 0)
    with dask.config.set(scheduler="synchronous"):  # levels made here: every 2nd and 4th pixel
        write_multiscale([planes, planes[:, ::2, ::2], planes[:, ::4, ::4]],
                         zarr.open_group(str(folder / "slide.ome.zarr"), mode="w"), axes="cyx",
                         storage_options={"chunks": (2, 512, 512)})
    return image


def planar(blob: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """``pixels.bin``-encoded bytes back to ``(Y, X, C)``."""
    return np.moveaxis(np.frombuffer(gzip.decompress(blob), "<u2").reshape(shape[2], shape[0], shape[1]), 0, -1)


def test_the_editor_sends_an_overview_and_tiles_and_never_reads_the_image_whole(tmp_path):
    image = write_large(tmp_path / "p")
    ed = Editor(Project.open(tmp_path / "p"))
    ed.open(Item(tmp_path / "p" / "slide.ome.zarr"))
    assert ed.image is None  # nothing holds the full-resolution pixels
    info = ed.pixel_info()
    assert (info["height"], info["width"], info["channels"], info["dtype"]) == (*SHAPE, 2, "uint16")
    assert info["levels"] == [[4096, 3072], [2048, 1536], [1024, 768]] and info["level"] == 2 and info["tile"] == TILE
    assert max(info["levels"][info["level"]]) <= OVERVIEW_SIDE
    np.testing.assert_array_equal(planar(ed.pixel_bytes(), (1024, 768, 2)), image[::4, ::4])
    np.testing.assert_array_equal(planar(ed.tile_bytes(0, 3, 5), (TILE, 3072 - 5 * TILE, 2)),
                                  image[3 * TILE:4 * TILE, 5 * TILE:])
    with pytest.raises(IndexError):
        ed.tile_bytes(0, 8, 0)
    assert ed.labels.shape == SHAPE and ed.labels.count == 0
    assert ed.display.high[0] > ed.display.low[0]  # contrast from the overview


def resources(browser, part: str) -> list[tuple[str, int]]:
    """(name, decoded bytes) of the media the page fetched whose address holds *part*."""
    return [tuple(r) for r in browser.execute_script(
        "return performance.getEntriesByType('resource').filter((e) => e.name.includes(arguments[0]))"
        ".map((e) => [e.name, e.decodedBodySize])", part)]


def test_the_page_shows_an_overview_then_tiles_of_the_zoomed_view_only(browser, tmp_path):
    image = write_large(tmp_path / "p")
    full_bytes = image.nbytes
    server = App(tmp_path / "p", tmp_path / "home")
    try:
        server.login(browser)
        browser.get(server.url + "/trainer")
        wait(browser, "window.mcpCanvas && window.mcpLoadedAt")
        assert browser.execute_script("return [window.mcpCanvas.W, window.mcpCanvas.H]") == [3072, 4096]
        [(_, overview)] = resources(browser, "/pixels.bin")
        assert overview == 1024 * 768 * 2 * 2 == full_bytes // 16  # the overview level, not the full resolution
        assert resources(browser, "/tile/") == []  # fitted to the window: the overview is fine enough
        assert browser.execute_script("return window.mcpCanvas.valuesAt(5, 6)") == [
            [int(image[4, 4, 0]), int(image[4, 4, 1])], False]  # the cursor readout says it is the overview's value
        # Zoom to full resolution around the image's centre: only the tiles in view come, at level 0.
        browser.execute_script("""const c = window.mcpCanvas, r = c.$refs.view;
            c.scale = 1; c.tx = r.width / 2 - 1536; c.ty = r.height / 2 - 2048; c.draw();""")
        view = browser.execute_script("return [window.mcpCanvas.$refs.view.width, window.mcpCanvas.$refs.view.height]")
        most = (view[0] // TILE + 2) * (view[1] // TILE + 2)
        wait(browser, "[...window.mcpCanvas.pyramid.tiles.values()].filter((t) => t.canvas).length > 0 && "
                      "[...window.mcpCanvas.pyramid.tiles.values()].every((t) => t.canvas)")
        tiles = resources(browser, "/tile/")
        assert 0 < len(tiles) <= most and all("/tile/0/" in name for name, _ in tiles)
        assert sum(size for _, size in tiles) <= most * TILE * TILE * 4 < full_bytes
        # A tile holds the file's full-resolution pixels where it lies.
        key, first = browser.execute_script("""const [k, t] = [...window.mcpCanvas.pyramid.tiles.entries()][0];
            return [k, [t.raw[0][0], t.raw[1][0], t.raw[0][t.w + 1]]]""")
        _, ty, tx = map(int, key.split("/"))
        y, x = ty * TILE, tx * TILE
        assert first == [int(image[y, x, 0]), int(image[y, x, 1]), int(image[y + 1, x + 1, 0])]
        assert browser.execute_script(f"return window.mcpCanvas.valuesAt({x + 3}, {y + 5})") == [
            [int(image[y + 5, x + 3, 0]), int(image[y + 5, x + 3, 1])], True]  # the readout, exact where a tile is
        assert resources(browser, "/pixels.bin")[0][1] == overview  # and the overview was not fetched again
    finally:
        server.stop()

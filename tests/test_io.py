"""Image readers: every format written by its own library, the real LIF fixtures, laziness, bad input."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mcp_core.errors import ImageReadError
from mcp_core.io import list_formats, list_images, open_image, read_frame
from mcp_core.io import registry
from mcp_core.io.registry import Reader, hookimpl
from mcp_core.io.source import ImageMeta, ImageSource


def rng_image(shape, dtype=np.uint16, seed=0):
    return np.random.default_rng(seed).integers(0, 4000 if dtype == np.uint16 else 250, size=shape).astype(dtype)


# ----------------------------------------------------------------------------- TIFF
def test_ome_tiff_tzc(tmp_path):
    data = rng_image((3, 4, 2, 24, 32))
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(path, data, metadata={"axes": "TZCYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5})
    with open_image(path) as src:
        assert src.meta.axes == "TZYXC"
        assert src.meta.sizes == {"T": 3, "Z": 4, "Y": 24, "X": 32, "C": 2}
        assert src.meta.pixel_size == (0.5, 0.25)
        assert src.meta.dtype == "uint16"
        assert len(src.frames) == 12 and src.frames[0] == "T0_Z0" and src.frames[-1] == "T2_Z3"
        for t, z in [(0, 0), (2, 1), (1, 3)]:
            np.testing.assert_array_equal(src.read(f"T{t}_Z{z}"), np.moveaxis(data[t, z], 0, -1))
        np.testing.assert_array_equal(src.read(), np.moveaxis(data[0, 0], 0, -1))


def test_imagej_hyperstack_and_single_plane(tmp_path):
    data = rng_image((5, 3, 20, 30), np.uint8)
    tifffile.imwrite(tmp_path / "ij.tif", data, imagej=True, metadata={"axes": "TCYX"})
    src = open_image(tmp_path / "ij.tif")
    assert src.frames == [f"T{i}" for i in range(5)]
    np.testing.assert_array_equal(src.read("T3"), np.moveaxis(data[3], 0, -1))
    tifffile.imwrite(tmp_path / "grey.tif", data[0, 0])
    src = open_image(tmp_path / "grey.tif")
    assert src.frames == [""]
    assert src.read("").shape == (20, 30, 1)


@pytest.mark.parametrize("planar", [False, True])
def test_rgb_tiff(tmp_path, planar):
    data = rng_image((20, 30, 3), np.uint8)
    if planar:
        tifffile.imwrite(tmp_path / "rgb.tif", np.moveaxis(data, -1, 0), photometric="rgb", planarconfig="separate")
    else:
        tifffile.imwrite(tmp_path / "rgb.tif", data, photometric="rgb")
    np.testing.assert_array_equal(read_frame(tmp_path / "rgb.tif"), data)


def test_multi_series_tiff_are_scenes(tmp_path):
    a, b = rng_image((2, 16, 16)), rng_image((24, 20), seed=1)
    with tifffile.TiffWriter(tmp_path / "two.tif") as tw:
        tw.write(a, metadata={"axes": "TYX"})
        tw.write(b, metadata={"axes": "YX"})
    src = open_image(tmp_path / "two.tif")
    assert src.frames == ["S0_T0", "S0_T1", "S1"]
    np.testing.assert_array_equal(src.read("S0_T1")[..., 0], a[1])
    np.testing.assert_array_equal(src.read("S1")[..., 0], b)


def test_flex_extension_reads_as_tiff(tmp_path):
    data = rng_image((2, 16, 16))
    tifffile.imwrite(tmp_path / "plate.flex", data)
    assert len(open_image(tmp_path / "plate.flex").frames) == 2


# ------------------------------------------------------------------ other formats
@pytest.mark.parametrize("mode,shape", [("L", (20, 30)), ("RGB", (20, 30, 3)), ("RGBA", (20, 30, 4))])
def test_png(tmp_path, mode, shape):
    from PIL import Image

    data = rng_image(shape, np.uint8)
    Image.fromarray(data, mode=mode).save(tmp_path / "a.png")
    out = read_frame(tmp_path / "a.png")
    np.testing.assert_array_equal(out, data if data.ndim == 3 else data[..., None])


def test_jpeg(tmp_path):
    from PIL import Image

    data = np.full((32, 48, 3), 120, np.uint8)
    Image.fromarray(data).save(tmp_path / "a.jpg", quality=95)
    out = read_frame(tmp_path / "a.jpg")
    assert out.shape == (32, 48, 3) and np.abs(out.astype(int) - 120).max() <= 3


@pytest.mark.parametrize(
    "shape,frames,plane",
    [
        ((20, 30), [""], lambda a, f: a[..., None]),
        ((20, 30, 3), [""], lambda a, f: a),
        ((2, 20, 30), [""], lambda a, f: np.moveaxis(a, 0, -1)),
        ((6, 20, 30), [f"Z{i}" for i in range(6)], lambda a, f: a[int(f[1:]), :, :, None]),
        ((4, 20, 30, 2), [f"Z{i}" for i in range(4)], lambda a, f: a[int(f[1:])]),
    ],
)
def test_npy(tmp_path, shape, frames, plane):
    data = rng_image(shape)
    np.save(tmp_path / "a.npy", data)
    src = open_image(tmp_path / "a.npy")
    assert src.frames == frames
    for f in frames:
        np.testing.assert_array_equal(src.read(f), plane(data, f))


@pytest.mark.parametrize("encoding", ["raw", "gzip"])
def test_nrrd(tmp_path, encoding):
    import nrrd

    data = rng_image((5, 20, 30))  # Z, Y, X in C order
    nrrd.write(str(tmp_path / "a.nrrd"), data, header={"encoding": encoding, "spacings": [0.5, 0.5, 2.0]},
               index_order="C")
    src = open_image(tmp_path / "a.nrrd")
    assert src.frames == [f"Z{i}" for i in range(5)]
    np.testing.assert_array_equal(src.read("Z3")[..., 0], data[3])
    assert src.meta.pixel_size == (0.5, 0.5)


def test_nrrd_vector_channels(tmp_path):
    import nrrd

    data = rng_image((20, 30, 3), np.uint8)
    nrrd.write(str(tmp_path / "rgb.nrrd"), data, header={"kinds": ["vector", "domain", "domain"]}, index_order="C")
    np.testing.assert_array_equal(read_frame(tmp_path / "rgb.nrrd"), data)


@pytest.mark.parametrize("endian", ["little", "big"])
def test_dax(tmp_path, endian):
    data = rng_image((7, 16, 24))
    data.astype(">u2" if endian == "big" else "<u2").tofile(tmp_path / "movie.dax")
    (tmp_path / "movie.inf").write_text(
        f"binning = 1 x 1\ndata type = 16 bit integers (binary, {endian} endian)\n"
        "frame dimensions = 24 x 16\nnumber of frames = 7\nx_start = 1\n"
    )
    src = open_image(tmp_path / "movie.dax")
    assert src.frames == [f"T{i}" for i in range(7)]
    np.testing.assert_array_equal(src.read("T5")[..., 0], data[5])
    assert list_images(tmp_path) == [tmp_path / "movie.dax"]


def test_dax_without_inf(tmp_path):
    np.zeros((2, 4, 4), "<u2").tofile(tmp_path / "m.dax")
    with pytest.raises(ImageReadError, match=r"m\.dax has no m\.inf"):
        open_image(tmp_path / "m.dax")


# ----------------------------------------------------------------------- real files
def test_lif_fixture_matches_reference_planes(shared_fixtures):
    lif = shared_fixtures / "lif"
    src = open_image(lif / "testdata_2channel_xz.lif")
    assert src.meta.extra["series"] == ["xzt", "xzy", "xz"]  # every image in the file is a scene
    assert src.frames[0] == "S0_T0" and "S2" in src.frames
    c0_t0 = tifffile.imread(lif / "xz_c0_t0.tif")
    c1_t8 = tifffile.imread(lif / "xz_c1_t8.tif")
    plane0, plane8 = src.read("S0_T0"), src.read("S0_T8")
    assert plane0.shape[2] == 2
    np.testing.assert_array_equal(plane0[..., 0], c0_t0)
    np.testing.assert_array_equal(plane8[..., 1], c1_t8)


def test_lif_wavelength_sweep(shared_fixtures):
    from readlif.reader import LifFile

    path = shared_fixtures / "lif" / "LeicaLASX_wavelength-sweep_example.lif"
    src = open_image(path)
    im = LifFile(str(path)).get_image(0)
    first_scene = [f for f in src.frames if f.startswith("S0_")]
    assert len(first_scene) == im.dims_n[5]  # one frame per emission wavelength
    np.testing.assert_array_equal(src.read(first_scene[4])[..., 0],
                                  np.asarray(im.get_plane(requested_dims={5: 4})))


# ---------------------------------------------------------------------------- laziness
def test_open_and_read_one_frame_reads_about_one_frame(tmp_path):
    n, h, w = 200, 256, 256
    path = tmp_path / "long.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(rng_image((n, h, w)), metadata={"axes": "TYX"})
    frame_bytes = h * w * 2
    tracemalloc.start()
    with open_image(path) as src:
        assert len(src.frames) == n
        plane = src.read("T150")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert plane.shape == (h, w, 1)
    assert peak < 4 * frame_bytes, f"peak {peak} bytes for a {frame_bytes}-byte frame of a {n}-frame file"


# ------------------------------------------------------------------------- bad input
def _truncated_tiff(tmp_path: Path) -> Path:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, rng_image((4, 64, 64)))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: d / "missing.tif", "does not exist"),
        (lambda d: _write(d / "x.xyz", b"abc"), "unknown image type"),
        (lambda d: _write(d / "empty.tif", b""), "empty"),
        (lambda d: _write(d / "junk.tif", b"not a tiff at all" * 10), "not a readable TIFF"),
        (lambda d: _write(d / "junk.png", b"\x89PNG garbage"), "not a readable PNG"),
        (lambda d: np.save(d / "line.npy", np.arange(10)) or d / "line.npy", "cannot be an image"),
        (lambda d: np.save(d / "obj.npy", np.array([{"a": 1}], dtype=object)) or d / "obj.npy", "pickled"),
        (lambda d: np.save(d / "c.npy", np.zeros((4, 4), complex)) or d / "c.npy", "pixel values"),
        (lambda d: d, "is a folder"),
        (lambda d: _write(d / "a_seg.npy", b"x"), "label or prediction file"),
    ],
)
def test_bad_input_raises_one_error_type_naming_the_file(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ImageReadError, match=message) as info:
        open_image(path)
    assert str(path) in str(info.value)


def test_truncated_tiff_names_file(tmp_path):
    path = _truncated_tiff(tmp_path)
    with pytest.raises(ImageReadError) as info:
        src = open_image(path)
        for f in src.frames:
            src.read(f)
    assert str(path) in str(info.value)


def test_truncated_dax(tmp_path):
    np.zeros((2, 4, 4), "<u2").tofile(tmp_path / "m.dax")
    (tmp_path / "m.inf").write_text("frame dimensions = 4 x 4\nnumber of frames = 5\n")
    with pytest.raises(ImageReadError, match="truncated"):
        open_image(tmp_path / "m.dax")


def test_unknown_frame(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", rng_image((3, 8, 8)))
    src = open_image(tmp_path / "a.tif")
    for bad in ("T9", "Z0", "nonsense"):
        with pytest.raises(ImageReadError, match="has no frame"):
            src.read(bad)


# --------------------------------------------------------------------------- folders
def test_list_images_natural_order_skips_derived_files(tmp_path):
    for name in ["img10.tif", "img2.tif", "img1.png", "img1_seg.npy", "img2_pred.npy", "img2_masks.tif",
                 "img2_classes.tif", "notes.txt", ".img3.tif.abc.mcp-tmp", "Img3.npy", "img10__T1_seg.npy"]:
        (tmp_path / name).write_bytes(b"x")
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["img1.png", "img2.tif", "Img3.npy", "img10.tif"]


def test_list_images_not_a_folder(tmp_path):
    with pytest.raises(ImageReadError, match="not a folder"):
        list_images(tmp_path / "nope")


# --------------------------------------------------------------------- third-party readers
class _FooReader:
    """A third-party reader plugin: ``.foo`` files hold a 2x2 image of their first byte."""

    @staticmethod
    @hookimpl
    def mcp_image_readers():
        def open_foo(path):
            value = path.read_bytes()[0]
            meta = ImageMeta("YXC", (2, 2, 1), {"Y": 2, "X": 2, "C": 1}, "uint8")
            return ImageSource(path, {}, lambda _: np.full((2, 2), value, np.uint8), meta)

        return [Reader("foo", (".foo",), open_foo, "test format")]


def test_third_party_reader_registers_through_the_hook(tmp_path):
    pm = registry.plugin_manager()
    plugin = _FooReader()
    pm.register(plugin, name="foo-reader")
    try:
        assert list_formats()["foo"] == (".foo",)
        (tmp_path / "x.foo").write_bytes(b"\x07")
        assert read_frame(tmp_path / "x.foo")[0, 0, 0] == 7
        assert list_images(tmp_path) == [tmp_path / "x.foo"]
    finally:
        pm.unregister(plugin)
    assert "foo" not in list_formats()
    assert set(list_formats()) >= {"tiff", "raster", "npy", "nd2", "lif", "nrrd", "dax"}


@pytest.mark.parametrize("shape,axes", [((4, 16, 16), "TYX"), ((3, 16, 16, 2), "TYXC"), ((3, 16, 16, 3), "TYXS")])
def test_tiff_whose_pages_are_not_planes(tmp_path, shape, axes):
    """tifffile stores small TYX stacks as one page of samples and TYXC as one row per page."""
    data = rng_image(shape, np.uint8)
    tifffile.imwrite(tmp_path / "odd.tif", data, metadata={"axes": axes})
    src = open_image(tmp_path / "odd.tif")
    assert src.frames == [f"T{i}" for i in range(shape[0])]
    np.testing.assert_array_equal(src.read("T2"), data[2] if data.ndim == 4 else data[2][..., None])

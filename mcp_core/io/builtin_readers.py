"""Built-in image readers, registered through the same hook a third-party package uses.

Each ``open_*`` function reads metadata only; pixels are read one frame at a time by
the returned :class:`ImageSource`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ..errors import ImageReadError
from .registry import Reader, hookimpl
from .source import ImageMeta, ImageSource
from .zarr_reader import open_ome_zarr

_CHANNEL_AXES = "CS"  # tifffile: C channel, S samples (RGB)


# --------------------------------------------------------------------------- TIFF
def open_tiff(path: Path) -> ImageSource:
    """TIFF, OME-TIFF, FLEX and other tifffile-readable files; every series is a scene ``S``."""
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
        series = [s for s in tif.series if s.shape]
    except Exception as exc:
        raise ImageReadError(f"{path} is not a readable TIFF file: {exc}.") from exc
    if not series:
        tif.close()
        raise ImageReadError(f"{path} holds no image data.")
    layouts = [_tiff_layout(s, path) for s in series]
    first = layouts[0]

    def read_plane(index: dict[str, int]) -> np.ndarray:
        s = index.get("S", 0)
        return _tiff_read(series[s], layouts[s], index)

    s0 = series[0]
    n = len(series)
    axes = "S" + first["axes"] if n > 1 else first["axes"]
    shape = ((n,) if n > 1 else ()) + tuple(first["shape"])
    meta = ImageMeta(
        axes=axes,
        shape=shape,
        sizes=dict(zip(axes, shape)),
        dtype=str(s0.dtype),
        pixel_size=_tiff_pixel_size(tif),
        extra={"series": [s.name for s in series], "scenes": [(lay["axes"], tuple(lay["shape"])) for lay in layouts],
               "is_ome": bool(tif.is_ome), "channel_names": _ome_channel_names(tif)},
    )
    return ImageSource(path, [lay["frame_sizes"] for lay in layouts], read_plane, meta, close=tif.close)


def _tiff_layout(series, path: Path) -> dict:
    """Map a tifffile series onto (frame axes, channel axes, page-internal axes)."""
    axes = series.axes
    page_axes = series.keyframe.axes  # squeezed axes inside one page, e.g. YX, YXS, SYX
    n_page = len(page_axes)
    if axes[-n_page:] != page_axes or "Y" not in page_axes or "X" not in page_axes:
        return _tiff_whole_layout(series, path)
    lead_axes, lead_shape = axes[:-n_page], series.shape[: len(axes) - n_page]
    frame_sizes, channels = {}, 1
    named = {}
    for ax, n in zip(lead_axes, lead_shape):
        if ax in _CHANNEL_AXES:
            channels *= n
            continue
        name = ax if ax in "TZ" else ("T" if "T" not in lead_axes and "T" not in named else ax)
        if name in named:  # a second unknown axis: give it its own letter
            name = ax
        named[name] = ax
        frame_sizes[name] = n
    n_pages = math.prod(lead_shape)
    if len(series.pages) < n_pages:
        raise ImageReadError(f"{path} is truncated: {len(series.pages)} of {n_pages} image planes are present.")
    out_axes = "".join(named) + "YXC"
    page_ch = math.prod(series.keyframe.shape[i] for i, a in enumerate(page_axes) if a == "S")
    out_shape = [frame_sizes[a] for a in named] + [
        series.keyframe.shape[page_axes.index("Y")],
        series.keyframe.shape[page_axes.index("X")],
        channels * page_ch,
    ]
    return {
        "lead_axes": lead_axes,
        "lead_shape": lead_shape,
        "named": named,
        "frame_sizes": frame_sizes,
        "axes": out_axes,
        "shape": out_shape,
        "page_axes": page_axes,
    }


def _tiff_whole_layout(series, path: Path) -> dict:
    """Layout of a series whose pages do not hold whole planes (e.g. several frames stored as the
    samples of one page, or one image row per page): read whole on first use, then sliced."""
    axes, shape = series.axes, tuple(series.shape)
    if "Y" not in axes or "X" not in axes or sum(a in _CHANNEL_AXES for a in axes) > 1:
        raise ImageReadError(f"{path} has an unsupported TIFF layout (axes {axes}).")
    named = {}
    for ax in axes:
        if ax not in "YX" and ax not in _CHANNEL_AXES:
            named[ax if ax in "TZ" or "T" in named or "T" in axes else "T"] = ax
    out_axes = "".join({v: k for k, v in named.items()}.get(a, "C" if a in _CHANNEL_AXES else a) for a in axes)
    frame_sizes = {name: shape[axes.index(nat)] for name, nat in named.items()}
    plane_axes = "".join(named) + "YXC"
    plane_shape = [frame_sizes[a] for a in named] + [shape[axes.index("Y")], shape[axes.index("X")],
                                                       next((shape[i] for i, a in enumerate(axes) if a in _CHANNEL_AXES), 1)]
    return {"whole": out_axes, "cache": {}, "named": named, "frame_sizes": frame_sizes, "axes": plane_axes,
            "shape": plane_shape}


def _tiff_read(series, layout: dict, index: dict[str, int]) -> np.ndarray:
    if "whole" in layout:
        if "array" not in layout["cache"]:
            layout["cache"]["array"] = series.asarray()
        return _plane_of(layout["cache"]["array"], layout["whole"], index)
    lead_axes, lead_shape = layout["lead_axes"], layout["lead_shape"]
    by_native = {nat: index.get(name, 0) for name, nat in layout["named"].items()}
    channel_dims = [i for i, a in enumerate(lead_axes) if a in _CHANNEL_AXES]
    planes = []
    for ch in np.ndindex(*(lead_shape[i] for i in channel_dims)):
        coords = []
        for i, a in enumerate(lead_axes):
            coords.append(ch[channel_dims.index(i)] if i in channel_dims else by_native[a])
        page_no = int(np.ravel_multi_index(coords, lead_shape)) if lead_shape else 0
        page = series.pages[page_no]
        if page is None:
            raise ImageReadError(f"plane {page_no} is missing")
        arr = page.asarray()
        page_axes = layout["page_axes"]
        if page_axes == "SYX":
            arr = np.moveaxis(arr, 0, -1)
        planes.append(arr if arr.ndim == 3 else arr[:, :, None])
    return np.concatenate(planes, axis=2)


def _ome_channel_names(tif) -> list[str]:
    """The ``Name`` of each ``Channel`` of an OME-TIFF's first image (empty when not OME or unnamed)."""
    if not tif.is_ome:
        return []
    import xml.etree.ElementTree as ET

    try:
        pixels = next(el for el in ET.fromstring(tif.ome_metadata).iter() if el.tag.endswith("Pixels"))
    except (ET.ParseError, StopIteration):
        return []
    return [el.get("Name", "") for el in pixels if el.tag.endswith("Channel")]


def _tiff_pixel_size(tif) -> tuple[float, float] | None:
    try:
        if tif.is_ome:
            import xml.etree.ElementTree as ET

            root = ET.fromstring(tif.ome_metadata)
            for el in root.iter():
                if el.tag.endswith("Pixels") and el.get("PhysicalSizeX"):
                    x = float(el.get("PhysicalSizeX"))
                    return (float(el.get("PhysicalSizeY", x)), x)
        if tif.is_imagej and tif.imagej_metadata and tif.imagej_metadata.get("unit") in ("micron", "um", "µm"):
            page = tif.pages[0]
            xr, yr = page.tags["XResolution"].value, page.tags["YResolution"].value
            return (yr[1] / yr[0], xr[1] / xr[0])
    except Exception:
        return None
    return None


# ----------------------------------------------------------------- PNG / JPEG
def open_raster(path: Path) -> ImageSource:
    """PNG, JPEG, BMP and GIF through Pillow (one frame)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            mode, size = im.mode, im.size
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageReadError(f"{path} is not a readable {path.suffix.lstrip('.').upper()} image: {exc}.") from exc
    channels = {"1": 1, "L": 1, "I": 1, "F": 1, "I;16": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 3, "PA": 4}.get(mode, 3)

    def read_plane(_: dict[str, int]) -> np.ndarray:
        with Image.open(path) as im:
            if im.mode in ("P", "PA"):
                im = im.convert("RGBA" if im.mode == "PA" else "RGB")
            elif im.mode not in ("1", "L", "I", "F", "I;16", "LA", "RGB", "RGBA"):
                im = im.convert("RGB")
            return np.asarray(im)

    meta = ImageMeta(axes="YXC", shape=(size[1], size[0], channels), sizes={"Y": size[1], "X": size[0], "C": channels},
                     dtype="uint16" if mode == "I;16" else "uint8")
    return ImageSource(path, {}, read_plane, meta)


# --------------------------------------------------------------------------- NPY
def open_npy(path: Path) -> ImageSource:
    """A plain NumPy array: YX, YXC (C <= 5), CYX (C <= 5), ZYX, ZYXC or ZCYX. Never unpickles."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ImageReadError(f"{path} is not an image array (it holds pickled Python objects: {exc}).") from exc
    except Exception as exc:
        raise ImageReadError(f"{path} is not a readable .npy file: {exc}.") from exc
    axes = _guess_array_axes(arr.shape, path)
    if arr.dtype.kind not in "uifb":
        raise ImageReadError(f"{path} does not hold pixel values (dtype {arr.dtype}).")
    return _array_source(path, arr, axes)


def _guess_array_axes(shape: tuple[int, ...], path: Path) -> str:
    small = 5
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3:
        if shape[2] <= small:
            return "YXC"
        return "CYX" if shape[0] <= small else "ZYX"
    if len(shape) == 4:
        if shape[3] <= small:
            return "ZYXC"
        if shape[1] <= small:
            return "ZCYX"
    raise ImageReadError(f"{path} has shape {shape}, which cannot be an image (expected YX, YXC, CYX, ZYX or ZYXC).")


def _array_source(path: Path, arr: np.ndarray, axes: str, meta_extra: dict | None = None,
                  pixel_size: tuple[float, float] | None = None) -> ImageSource:
    """An ImageSource over an in-memory or memory-mapped array with the given axes."""
    frame_axes = [a for a in axes if a not in "YXC"]

    def read_plane(index: dict[str, int]) -> np.ndarray:
        return _plane_of(arr, axes, index)

    meta = ImageMeta(axes=axes, shape=tuple(arr.shape), sizes=dict(zip(axes, arr.shape)), dtype=str(arr.dtype),
                     pixel_size=pixel_size, extra=meta_extra or {})
    return ImageSource(path, {a: arr.shape[axes.index(a)] for a in frame_axes}, read_plane, meta)


# --------------------------------------------------------------------------- ND2
def open_nd2(path: Path) -> ImageSource:
    """Nikon ND2 through the ``nd2`` package; positions (P) become scenes (S)."""
    import nd2

    try:
        f = nd2.ND2File(path)
        sizes = dict(f.sizes)
    except Exception as exc:
        raise ImageReadError(f"{path} is not a readable ND2 file: {exc}.") from exc
    coord_axes = [a for a in sizes if a not in ("C", "Y", "X", "S")]
    coord_shape = tuple(sizes[a] for a in coord_axes)
    names = {a: ("S" if a == "P" else a) for a in coord_axes}
    c, y, x, s = sizes.get("C", 1), sizes["Y"], sizes["X"], sizes.get("S", 1)

    def read_plane(index: dict[str, int]) -> np.ndarray:
        seq = int(np.ravel_multi_index([index[names[a]] for a in coord_axes], coord_shape)) if coord_axes else 0
        frame = np.array(f.read_frame(seq)).reshape(c, y, x, s)  # a copy: the file's memory map closes with it
        return np.moveaxis(frame, 0, 2).reshape(y, x, c * s)

    try:
        vs = f.voxel_size()
        pixel_size = (float(vs.y), float(vs.x))
    except Exception:
        pixel_size = None
    axes = "".join(names[a] for a in coord_axes) + "YXC"
    shape = coord_shape + (y, x, c * s)
    try:  # channel names, when each channel is one sample (not RGB)
        channel_names = [ch.channel.name for ch in f.metadata.channels or []] if s == 1 else []
    except Exception:
        channel_names = []
    meta = ImageMeta(axes=axes, shape=shape, sizes=dict(zip(axes, shape)), dtype=str(f.dtype), pixel_size=pixel_size,
                     extra={"channel_names": channel_names})
    return ImageSource(path, {names[a]: sizes[a] for a in coord_axes}, read_plane, meta, close=f.close)


# --------------------------------------------------------------------------- LIF
#: readlif dimension numbers -> our axis letters (1 x, 2 y, 3 z, 4 t, 5 detection wavelength, 10 mosaic tile).
_LIF_AXES = {2: "Y", 3: "Z", 4: "T", 5: "L", 6: "U", 7: "V", 8: "W", 9: "I", 10: "M"}


def open_lif(path: Path) -> ImageSource:
    """Leica LIF through ``readlif``: every image in the file is a scene ``S``.

    A plane spans the file's two display dimensions (X and Y, or X and Z for an XZ scan,
    which then comes back as a Z-by-X plane); a Y axis outside the plane indexes frames.
    """
    from readlif.reader import LifFile

    try:
        lif = LifFile(str(path))
        images = [lif.get_image(i) for i in range(lif.num_images)]
    except Exception as exc:
        raise ImageReadError(f"{path} is not a readable LIF file: {exc}.") from exc
    if not images:
        raise ImageReadError(f"{path} holds no images.")
    layouts = [_lif_layout(im) for im in images]
    first = layouts[0]

    def read_plane(index: dict[str, int]) -> np.ndarray:
        im = images[index.get("S", 0)]
        display, frame_dims = _lif_layout(im)
        requested = {d: index.get(_LIF_AXES[d], 0) for d in frame_dims}
        planes = [np.asarray(im.get_plane(display_dims=display, c=c, requested_dims=requested)) for c in range(im.channels)]
        return np.stack(planes, axis=-1)

    im0 = images[0]
    display, frame_dims = first
    n = len(images)
    ny, nx = im0.dims_n[display[1]], im0.dims_n[display[0]]
    axes = ("S" if n > 1 else "") + "".join(_LIF_AXES[d] for d in frame_dims) + "YXC"
    shape = ((n,) if n > 1 else ()) + tuple(frame_dims.values()) + (ny, nx, im0.channels)
    try:
        scale = im0.scale_n
        pixel_size = (1 / scale[display[1]], 1 / scale[display[0]]) if scale.get(display[0]) else None
    except Exception:
        pixel_size = None
    bits = max(im0.bit_depth) if im0.bit_depth else 8
    meta = ImageMeta(axes=axes, shape=shape, sizes=dict(zip(axes, shape)), dtype="uint8" if bits <= 8 else "uint16",
                     pixel_size=pixel_size, extra={"series": [im.name for im in images], "display_dims": display})
    scenes = [{_LIF_AXES[d]: k for d, k in dims.items()} for _, dims in layouts]
    return ImageSource(path, scenes, read_plane, meta)


def _lif_layout(im) -> tuple[tuple[int, int], dict[int, int]]:
    display = tuple(im.display_dims)
    frame_dims = {d: n for d, n in sorted(im.dims_n.items()) if d not in display and d in _LIF_AXES}
    return display, frame_dims


# -------------------------------------------------------------------------- NRRD
def open_nrrd(path: Path) -> ImageSource:
    """NRRD through ``pynrrd``; raw encodings are memory-mapped, compressed ones read on first use."""
    import nrrd

    try:
        header = nrrd.read_header(str(path))
    except Exception as exc:
        raise ImageReadError(f"{path} is not a readable NRRD file: {exc}.") from exc
    sizes = [int(n) for n in header["sizes"]][::-1]  # C order
    kinds = [str(k).lower() for k in header.get("kinds", ["domain"] * len(sizes))][::-1]
    spatial = [i for i, k in enumerate(kinds) if k in ("domain", "space", "time")]
    channel = [i for i, k in enumerate(kinds) if i not in spatial]
    if len(spatial) < 2 or len(channel) > 1:
        raise ImageReadError(f"{path} has NRRD sizes {header['sizes']} with kinds {header.get('kinds')}, which is not an image.")
    names = ["Z", "T"][: len(spatial) - 2]
    if len(spatial) > 4:
        raise ImageReadError(f"{path} has {len(spatial)} spatial dimensions; at most 4 (T, Z, Y, X) are supported.")
    axes = [""] * len(sizes)
    for i, name in zip(spatial, names[::-1] + ["Y", "X"]):
        axes[i] = name
    for i in channel:
        axes[i] = "C"
    cache: dict[str, np.ndarray] = {}

    def data() -> np.ndarray:
        if "a" not in cache:
            try:
                if header.get("encoding") == "raw" and "data file" not in header and "datafile" not in header:
                    with open(path, "rb") as fh:
                        nrrd.read_header(fh)
                        offset = fh.tell()
                    dtype = nrrd.reader._determine_datatype(header)
                    cache["a"] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(sizes))
                else:
                    cache["a"], _ = nrrd.read(str(path), index_order="C")
            except Exception as exc:
                raise ImageReadError(f"Cannot read the pixels of {path}: {exc} (is the file truncated?).") from exc
        return cache["a"]

    ax = "".join(axes)
    frame_axes = [a for a in ax if a not in "YXC"]
    dtype = str(nrrd.reader._determine_datatype(header))
    meta = ImageMeta(axes=ax, shape=tuple(sizes), sizes=dict(zip(ax, sizes)), dtype=dtype, pixel_size=_nrrd_spacing(header))
    return ImageSource(path, {a: sizes[ax.index(a)] for a in frame_axes}, lambda i: _plane_of(data(), ax, i), meta)


def _plane_of(arr: np.ndarray, axes: str, index: dict[str, int]) -> np.ndarray:
    """Slice one frame out of an array with *axes* and return it as (Y, X[, C])."""
    key = tuple(index.get(a, 0) if a not in "YXC" else slice(None) for a in axes)
    plane = np.asarray(arr[key])
    rest = [a for a in axes if a in "YXC"]
    return np.ascontiguousarray(np.transpose(plane, [rest.index(a) for a in "YXC" if a in rest]))


def _nrrd_spacing(header: dict) -> tuple[float, float] | None:
    try:
        if "spacings" in header:
            sp = [float(v) for v in header["spacings"]]
            return (sp[1], sp[0])
        if "space directions" in header:
            dirs = [d for d in header["space directions"] if d is not None and not np.any(np.isnan(np.asarray(d, float)))]
            if len(dirs) >= 2:
                return (float(np.linalg.norm(dirs[1])), float(np.linalg.norm(dirs[0])))
    except Exception:
        return None
    return None


# --------------------------------------------------------------------------- DAX
_INF_FIELD = re.compile(r"^\s*([^=]+?)\s*=\s*(.+?)\s*$")


def open_dax(path: Path) -> ImageSource:
    """DAX (raw uint16 movie, STORM-style) with its ``.inf`` description beside it."""
    inf = path.with_suffix(".inf")
    if not inf.exists():
        raise ImageReadError(f"{path} has no {inf.name} beside it; a DAX file needs its .inf description.")
    fields = {}
    for line in inf.read_text(errors="replace").splitlines():
        m = _INF_FIELD.match(line)
        if m:
            fields[m.group(1).lower()] = m.group(2)
    try:
        w, h = (int(v) for v in re.findall(r"\d+", fields["frame dimensions"])[:2])
        n = int(fields["number of frames"])
    except (KeyError, ValueError) as exc:
        raise ImageReadError(f"{inf} lacks 'frame dimensions' or 'number of frames'.") from exc
    big = "big endian" in fields.get("data type", "").lower()
    expected = w * h * n * 2
    actual = path.stat().st_size
    if actual < expected:
        raise ImageReadError(f"{path} is truncated: {actual} bytes, {expected} expected for {n} frames of {w}x{h}.")
    arr = np.memmap(path, dtype=">u2" if big else "<u2", mode="r", shape=(n, h, w))
    return _array_source(path, arr, "TYX")


@hookimpl
def mcp_image_readers() -> list[Reader]:
    """The built-in readers."""
    return [
        Reader("tiff", (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".flex", ".btf", ".tf8"), open_tiff,
               "TIFF, OME-TIFF, FLEX (tifffile)"),
        Reader("raster", (".png", ".jpg", ".jpeg", ".bmp", ".gif"), open_raster, "PNG, JPEG, BMP, GIF (Pillow)"),
        Reader("npy", (".npy",), open_npy, "NumPy arrays (no pickles)"),
        Reader("nd2", (".nd2",), open_nd2, "Nikon ND2 (nd2)"),
        Reader("lif", (".lif",), open_lif, "Leica LIF, every image a scene (readlif)"),
        Reader("nrrd", (".nrrd", ".nhdr"), open_nrrd, "NRRD (pynrrd)"),
        Reader("dax", (".dax",), open_dax, "DAX raw uint16 movies with .inf"),
        Reader("ome-zarr", (".zarr", ".ome.zarr"), open_ome_zarr, "OME-Zarr (NGFF) folders, read lazily (zarr)"),
    ]

"""``multicellpose measure``, ``plugins``, ``tracks-export`` and ``export``: measurement and label exports, headless.

Examples::

    multicellpose measure project/ --plugins basic,clusters --param basic.annulus_gap=3 --source seg
    multicellpose measure project/ -p basic,association --source seg --second "{stem}_nuclei_masks.tif"
    multicellpose plugins list
    multicellpose plugins validate my_package.my_plugin
    multicellpose tracks-export measurements.csv --values area,mean_c0
    multicellpose export project/ --format geojson --source pred
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .errors import MCPError, ParameterError


def _param_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_param_options(options: list[str], json_file: Path | None = None) -> dict[str, dict[str, Any]]:
    """``{plugin: {parameter: value}}`` from ``--params FILE.json`` then ``plugin.parameter=value`` options.

    Values are read as JSON when they parse (``3``, ``2.5``, ``true``), else as text.

    Raises
    ------
    ParameterError
        A malformed option or JSON file.
    """
    out: dict[str, dict[str, Any]] = {}
    if json_file is not None:
        try:
            loaded = json.loads(Path(json_file).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ParameterError(f"Cannot read parameters from {json_file}: {exc}.") from exc
        if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
            raise ParameterError(f"{json_file} must hold {{\"plugin\": {{\"parameter\": value}}}}.")
        out = {k: dict(v) for k, v in loaded.items()}
    for opt in options:
        key, sep, value = opt.partition("=")
        plugin, dot, name = key.partition(".")
        if not sep or not dot or not plugin or not name:
            raise ParameterError(f"--param {opt!r} must look like plugin.parameter=value, e.g. basic.annulus_gap=3.")
        out.setdefault(plugin.strip(), {})[name.strip()] = _param_value(value.strip())
    return out


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _default_out(paths: list[Path], name: str) -> Path:
    return (paths[0] if len(paths) == 1 and paths[0].is_dir() else Path.cwd()) / name


def _progress(quiet: bool):
    if quiet:
        return None

    def report(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)

    return report


def _quiet_log() -> None:
    """Skipped images are printed by the command itself, not twice through the log."""
    logger = logging.getLogger("mcp_core.measure")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False


def _measure(args: argparse.Namespace) -> int:
    from .measure import run_measurements
    from .measure.tables import write_table

    _quiet_log()
    params = parse_param_options(args.param, args.params)
    out = args.out or _default_out(args.paths, "measurements.csv")
    if args.format:
        out = out.with_suffix("." + args.format)
    result = run_measurements(args.paths, _split(args.plugins), params, source=args.source, series=args.series,
                              progress=_progress(args.quiet), reviews=args.review_dir is not None,
                              second_source=args.second)
    for message in result.skipped:
        print(f"skipped: {message}", file=sys.stderr)
    if result.frames.empty:
        print(f"error: nothing was measured ({len(result.skipped)} skipped); no table written.", file=sys.stderr)
        return 1
    written = [write_table(result.objects, out)]
    for name, table in result.tables.items():
        written.append(write_table(table, out.with_name(f"{out.stem}_{name}{out.suffix}")))
    if args.review_dir is not None:
        written += _write_reviews(result.reviews, args.review_dir)
    what = "predictions (_pred.npy)" if result.source == "pred" else "labels (_seg.npy)"
    print(f"Measured {len(result.objects)} objects in {len(result.frames)} frame(s) of "
          f"{result.frames['image'].nunique()} image(s) from {what}; {len(result.skipped)} skipped.")
    for path in written:
        print(f"wrote {path}")
    return 0


def _write_reviews(reviews: dict, folder: Path) -> list[Path]:
    import tifffile

    from .atomic import atomic_write
    from .filenames import image_stem

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for (image, frame, plugin), labels in reviews.items():
        path = folder / f"{image_stem(image)}{'__' + frame if frame else ''}_{plugin}_review.tif"
        with atomic_write(path) as fh:
            tifffile.imwrite(fh, labels.astype("uint32" if labels.max(initial=0) > 65535 else "uint16"),
                             compression="zlib")
        paths.append(path)
    return paths


def _plugins_list(args: argparse.Namespace) -> int:
    from .measure import list_plugins
    from .measure.registry import catalog

    plugins = list_plugins()
    if args.json:
        print(json.dumps([p.summary() for p in plugins], indent=1))
    else:
        for p in plugins:
            params = ", ".join(f"{k}={v.default!r}" for k, v in p.params.model_fields.items())
            print(f"{p.name:20s} {p.scope:6s} {p.title}: {p.description}")
            print(f"{'':27s} parameters: {params or 'none'}")
            if p.tables or p.overlays or p.second_labels:
                extras = [f"tables: {', '.join(p.tables)}" if p.tables else "",
                          f"overlays: {', '.join(p.overlays)}" if p.overlays else "",
                          "needs a second label set (--second)" if p.second_labels else ""]
                print(f"{'':27s} {'; '.join(e for e in extras if e)}")
            print(f"{'':27s} from {p.source}")
    for problem in catalog().problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 0


def _plugins_validate(args: argparse.Namespace) -> int:
    from .measure.validate import validate

    reports = validate(args.plugin)
    for r in reports:
        if r.ok:
            print(f"{r.plugin}: OK ({len(r.passed)} checks: {'; '.join(r.passed)})")
        else:
            print(f"{r.plugin}: {len(r.problems)} problem(s)")
            for problem in r.problems:
                print(f"  - {problem}")
    return 0 if all(r.ok for r in reports) else 1


def _tracks_export(args: argparse.Namespace) -> int:
    from .measure import run_measurements
    from .measure.tables import read_table, write_table
    from .measure.tracks import track_positions, tracks_wide

    values = _split(args.values)
    inputs = args.inputs
    if len(inputs) == 1 and inputs[0].suffix.lower() in (".csv", ".parquet"):
        df = read_table(inputs[0])
        default_prefix = inputs[0].with_suffix("")
    else:
        _quiet_log()
        params = parse_param_options(args.param, args.params)
        plugins = ["tracking", *[n for n in _split(args.plugins) if n != "tracking"]]
        result = run_measurements(inputs, plugins, params, source=args.source, series=args.series,
                                  progress=_progress(args.quiet))
        for message in result.skipped:
            print(f"skipped: {message}", file=sys.stderr)
        df = result.objects
        default_prefix = _default_out(inputs, "tracks")
    prefix = args.out or default_prefix
    wide = write_table(tracks_wide(df, values), Path(f"{prefix}_wide.csv"))
    positions = write_table(track_positions(df), Path(f"{prefix}_positions.csv"))
    print(f"{df['track_id'].nunique()} track(s) over {df['track_t'].nunique()} time point(s)")
    print(f"wrote {wide}\nwrote {positions}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_labels, export_path
    from .io import open_image
    from .labels import load_labels_for
    from .measure import resolve_images

    images = resolve_images(args.paths)
    folder = args.out or (args.paths[0] if len(args.paths) == 1 and args.paths[0].is_dir()
                          else images[0].parent) / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    written, missing = 0, []
    for path in images:
        try:
            with open_image(path) as src:
                frames = list(src.frames)
        except MCPError as exc:
            missing.append(str(exc))
            continue
        for frame in frames:
            try:
                labels = load_labels_for(path, frame, args.source)
            except MCPError as exc:
                missing.append(str(exc))
                continue
            if labels is None:
                missing.append(f"{path.name}{' frame ' + frame if frame else ''} has no {args.source} labels")
                continue
            for out in export_labels(labels, export_path(path, frame, args.format, folder), args.format, frame):
                print(f"wrote {out}")
                written += 1
    for m in missing:
        print(f"skipped: {m}", file=sys.stderr)
    if not written:
        print("error: nothing was exported.", file=sys.stderr)
        return 1
    return 0


def _add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", choices=("pred", "seg"), default="pred",
                   help="measure the model's predictions (_pred.npy, default) or the labels (_seg.npy)")


def _add_params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--param", action="append", default=[], metavar="PLUGIN.NAME=VALUE",
                   help="a plugin parameter, e.g. basic.annulus_gap=3 (repeatable)")
    p.add_argument("--params", type=Path, default=None, metavar="FILE.json",
                   help='parameters as JSON: {"plugin": {"name": value}}')


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``measure``, ``plugins``, ``tracks-export`` and ``export``."""
    p = sub.add_parser("measure", help="measure every labelled object into one table (CSV or Parquet)")
    p.add_argument("paths", nargs="+", type=Path, help="project folder(s) or image files")
    p.add_argument("-p", "--plugins", default="basic", help="comma-separated plugin names (default: basic)")
    _add_params(p)
    _add_source(p)
    p.add_argument("--second", default=None, metavar="SOURCE",
                   help="second label set for plugins that need one (association: children of the measured "
                        "objects): pred, seg, or a file name beside each image with {stem} for the image's name, "
                        "e.g. '{stem}_nuclei_masks.tif' ({frame} for the frame id)")
    p.add_argument("--series", choices=("file", "folder"), default="file",
                   help="time series for tracking: the T frames of each file, or the files in name order")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="table to write (.csv or .parquet; default: measurements.csv in the folder)")
    p.add_argument("--format", choices=("csv", "parquet"), default=None, help="force the table format")
    p.add_argument("--review-dir", type=Path, default=None, help="also write plugins' review label images here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_measure)

    p = sub.add_parser("plugins", help="list or validate measurement plugins")
    plugin_sub = p.add_subparsers(dest="plugins_command", metavar="ACTION", required=True)
    q = plugin_sub.add_parser("list", help="installed plugins and their parameters")
    q.add_argument("--json", action="store_true", help="full descriptions with parameter JSON schemas")
    q.set_defaults(func=_plugins_list)
    q = plugin_sub.add_parser("validate", help="check a plugin's contract and dry-run it on synthetic data")
    q.add_argument("plugin", help="an installed plugin's name, a module (my_pkg.plugin) or a .py file")
    q.set_defaults(func=_plugins_validate)

    p = sub.add_parser("tracks-export", help="wide time-series table and positions of tracked objects")
    p.add_argument("inputs", nargs="+", type=Path,
                   help="a measurement table made with the tracking plugin, or image files / folders to track")
    p.add_argument("--values", default="", help="comma-separated measurement columns to spread out per track")
    p.add_argument("-p", "--plugins", default="basic",
                   help="when tracking images: plugins to run besides tracking, for --values (default: basic)")
    p.add_argument("-o", "--out", type=Path, default=None, help="output prefix (writes PREFIX_wide.csv and "
                                                                 "PREFIX_positions.csv)")
    _add_params(p)
    _add_source(p)
    p.add_argument("--series", choices=("file", "folder"), default="file",
                   help="time series: the T frames of each file, or the files in name order")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_tracks_export)

    p = sub.add_parser("export", help="export labels: ImageJ ROI zip, QuPath GeoJSON or label TIFF")
    p.add_argument("paths", nargs="+", type=Path, help="project folder(s) or image files")
    p.add_argument("--format", choices=("roi", "geojson", "tiff"), required=True)
    p.add_argument("--source", choices=("pred", "seg"), default="seg",
                   help="export the labels (_seg.npy, default) or the model's predictions (_pred.npy)")
    p.add_argument("-o", "--out", type=Path, default=None, help="folder to write to (default: <folder>/exports)")
    p.set_defaults(func=_export)

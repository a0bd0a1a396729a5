"""``multicellpose plugins validate``: check a plugin's declaration and dry-run it on tiny synthetic cases.

Each violation is one sentence saying what is wrong and, where it helps, how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .contract import (check_declaration, frame_output, overlays_output, review_output, series_output, series_overlays,
                       split_output, table_output, tables_output)
from .plugin import FrameData, Plugin, PluginError
from .registry import catalog, load_module, plugins_of_module


@dataclass
class ValidationReport:
    """What validating one plugin found.

    Attributes
    ----------
    plugin
        The plugin's name (or the module, when no plugin could be read from it).
    problems
        Contract violations; empty when the plugin passes.
    passed
        The checks and dry runs that passed, for the record.
    """

    plugin: str
    problems: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def frame_cases() -> list[tuple[str, FrameData]]:
    """Tiny frames a frame plugin must handle: two classes and channels, one channel, gaps in ids, no objects.

    Each carries a second label set (other objects of the same size of image) for plugins that need one.
    """
    from ..synthetic import make_sample

    image, labels = make_sample(seed=7, shape=(64, 64), n_classes=2, n_channels=2, n_objects=6)
    second = make_sample(seed=9, shape=(64, 64), n_classes=2, n_channels=1, n_objects=10)[1].masks
    masks, classes, names = labels.masks, labels.classes, tuple(labels.class_names)
    gappy = np.where(np.isin(masks, [2, 4]), 0, masks)
    empty = np.zeros_like(masks)

    def frame(m, img, cls, other=second) -> FrameData:
        return FrameData.build(m, img, cls, names, image_name="dry-run.tif", second=other)

    return [
        ("a 64x64 frame with 2 classes and 2 channels", frame(masks, image, classes)),
        ("a 1-channel frame", frame(masks, image[..., :1], classes)),
        ("a frame whose mask ids have gaps (2 and 4 missing)", frame(gappy, image, classes)),
        ("a frame without objects", frame(empty, image, None)),
        ("a frame whose second label set is empty", frame(masks, image, classes, np.zeros_like(second))),
    ]


def series_cases() -> list[tuple[str, list[FrameData]]]:
    """Tiny time series: objects drifting right over 3 frames, and a series with an empty middle frame."""
    from ..synthetic import make_sample

    image, labels = make_sample(seed=8, shape=(64, 64), n_classes=2, n_channels=2, n_objects=5)
    names = tuple(labels.class_names)

    def at(t: int, empty: bool = False) -> FrameData:
        masks = np.zeros_like(labels.masks) if empty else np.roll(labels.masks, 2 * t, axis=1)
        return FrameData.build(masks, np.roll(image, 2 * t, axis=1), labels.classes, names,
                               image_name="dry-run.tif", frame=f"T{t}")

    return [("3 frames of drifting objects", [at(0), at(1), at(2)]),
            ("3 frames, the middle one empty", [at(0), at(1, empty=True), at(2)])]


def table_cases() -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """Tiny per-object tables for table plugins: two images, and no objects at all."""
    frames = pd.DataFrame({"image": ["a.tif", "b.tif"], "frame": ["", ""], "height": [64, 64], "width": [64, 64],
                           "pixel_size_y": [0.5, np.nan], "pixel_size_x": [0.5, np.nan], "n_objects": [3, 2],
                           "labels_file": ["a_seg.npy", "b_seg.npy"]})
    objects = pd.DataFrame({"image": ["a.tif"] * 3 + ["b.tif"] * 2, "frame": [""] * 5, "mask_id": [1, 2, 3, 1, 2],
                            "class_id": [1, 2, 1, 1, 2], "class_name": ["round", "long", "round", "round", "long"],
                            "area": [10.0, 20.0, 30.0, 40.0, 50.0], "mean_c0": [1.0, 2.0, 3.0, 4.0, 5.0]})
    return [("a table of 5 objects in 2 images", objects, frames),
            ("an empty table", objects.iloc[:0], frames.iloc[:0])]


def _attempt(report: ValidationReport, what: str, run: Callable[[], object]) -> None:
    try:
        run()
    except PluginError as exc:
        report.problems.append(f"On {what}: {exc}")
    except ValueError as exc:
        hint = " (plugins must not write into their inputs; copy an array first)" if "read-only" in str(exc) else ""
        report.problems.append(f"On {what}: raised ValueError: {exc}{hint}")
    except Exception as exc:
        report.problems.append(f"On {what}: raised {type(exc).__name__}: {exc}")
    else:
        report.passed.append(f"dry run on {what}")


def _extra_tables_checked(plugin: Plugin, out: Any, n_channels: int) -> Any:
    """Check the extra tables of a dry run's output; returns its overlays for the caller to check."""
    _, tables, overlays = split_output(plugin, out)
    tables_output(plugin, tables, n_channels, "the dry run")
    return overlays


def validate_plugin(plugin: Plugin) -> ValidationReport:
    """Check the declaration, then dry-run the plugin with default parameters on tiny synthetic cases."""
    report = ValidationReport(plugin.name if isinstance(plugin.name, str) else repr(plugin.name))
    report.problems += check_declaration(plugin)
    if report.problems:
        return report
    report.passed.append("declaration (name, title, description, parameter schema, columns, compute)")
    params = plugin.defaults()
    if plugin.scope == "frame":
        for what, data in frame_cases():
            def run(data=data) -> None:
                out = plugin.compute(data, params)
                frame_output(plugin, out, data)
                overlays_output(plugin, _extra_tables_checked(plugin, out, data.n_channels), data)
                if plugin.review is not None:
                    review_output(plugin, plugin.review(data, params), data)
            _attempt(report, what, run)
    elif plugin.scope == "series":
        for what, frames in series_cases():
            def run_series(frames=frames) -> None:
                out = plugin.compute(frames, params)
                series_output(plugin, out, frames)
                series_overlays(plugin, _extra_tables_checked(plugin, out, frames[0].n_channels), frames)
            _attempt(report, what, run_series)
    else:
        for what, objects, frames in table_cases():
            _attempt(report, what, lambda o=objects, f=frames: table_output(plugin, plugin.compute(o, f, params)))
    return report


def validate(spec: str) -> list[ValidationReport]:
    """Validate an installed plugin by name, or every plugin of a module (dotted name or ``.py`` file).

    A module that cannot be imported or has no hook gives one report with that problem.
    """
    installed = catalog().plugins
    if spec in installed:
        return [validate_plugin(installed[spec])]
    try:
        plugins = plugins_of_module(load_module(spec), spec)
    except PluginError as exc:
        return [ValidationReport(spec, [str(exc)])]
    if not plugins:
        return [ValidationReport(spec, [f"{spec}: mcp_measure_plugins() returned no plugins."])]
    reports = [validate_plugin(p) for p in plugins]
    for p, r in zip(plugins, reports):
        other = installed.get(p.name)
        if other is not None and other.source != p.source:
            r.problems.append(f"the name {p.name!r} is already used by the installed plugin from {other.source}; "
                              f"choose another name.")
    return reports

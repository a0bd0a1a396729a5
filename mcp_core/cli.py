"""Headless subcommands of ``multicellpose`` (usable on a cluster node with no display).

Each subcommand module adds itself with ``register(subparsers)``; heavy imports (torch)
happen inside the command function, so ``multicellpose --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from .errors import ImageReadError, LabelFileError, MCPError
from .threads import configure_environment


class _Notes(logging.Handler):
    """Keeps what a library logged (tifffile's complaints about a damaged file) instead of printing it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def suffix(self) -> str:
        """`` (tifffile: first message)`` for an error line, or ``""``."""
        return f" (tifffile: {self.messages[0]})" if self.messages else ""


@contextlib.contextmanager
def _library_notes() -> Iterator[_Notes]:
    """Fold tifffile's log warnings into our messages instead of letting them spill onto stderr."""
    notes = _Notes()
    logger = logging.getLogger("tifffile")
    old = logger.propagate
    logger.addHandler(notes)
    logger.propagate = False
    try:
        yield notes
    finally:
        logger.removeHandler(notes)
        logger.propagate = old


def _demo(args: argparse.Namespace) -> int:
    from .synthetic import write_demo_project

    sizes = {k: v for k, v in (("n_images", args.images), ("n_labelled", args.labelled)) if v is not None}
    folder = write_demo_project(args.folder, n_classes=args.classes, **sizes)
    print(f"Demo project written to {folder}")
    return 0


def _formats(args: argparse.Namespace) -> int:
    from .io import list_formats

    for name, exts in list_formats().items():
        print(f"{name:8s} {' '.join(exts)}")
    return 0


def _info(args: argparse.Namespace) -> int:
    """One line per file; an unreadable one gets an error line and the others go on (exit 1)."""
    from .io import open_image

    failed = 0
    for path in args.paths:
        with _library_notes() as notes:
            try:
                with open_image(path) as src:
                    m = src.meta
                    frames = len(src.frames)
            except (MCPError, OSError) as exc:
                print(f"error: {_reason(exc)}{notes.suffix()}", file=sys.stderr)
                failed += 1
                continue
        px = f", pixel {m.pixel_size[1]:.4g} x {m.pixel_size[0]:.4g} µm" if m.pixel_size else ""
        damaged = f"; damaged metadata ({notes.messages[0]})" if notes.messages else ""
        print(f"{path}: axes {m.axes} shape {m.shape} {m.dtype}{px}; {frames} frame(s){damaged}")
    return 1 if failed else 0


def _reason(exc: BaseException) -> str:
    """One sentence for an error, naming the file for an ``OSError``."""
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}."
    return str(exc)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the core subcommands to a parser's subparsers."""
    p = sub.add_parser("demo", help="write a small synthetic demo project")
    p.add_argument("folder", type=Path)
    p.add_argument("--images", type=int, help="number of images (default 24)")
    p.add_argument("--labelled", type=int, help="how many of them are labelled (default 20)")
    p.add_argument("--classes", type=int, default=2, choices=(2, 3))
    p.set_defaults(func=_demo)
    p = sub.add_parser("formats", help="list the image formats that can be read")
    p.set_defaults(func=_formats)
    p = sub.add_parser("info", help="describe image files (axes, shape, frames)")
    p.add_argument("paths", nargs="+", type=Path)
    p.set_defaults(func=_info)
    from . import cli_model

    cli_model.register(sub)
    from . import cli_measure

    cli_measure.register(sub)
    from . import cli_review

    cli_review.register(sub)


def run(args: argparse.Namespace) -> int:
    """Run a parsed subcommand, turning project errors into one-line messages.

    An input that cannot be read (image, label file, folder) exits 1, other errors 2; tifffile's
    warnings never reach stderr on their own: an error line carries the first one.
    """
    configure_environment()  # before any command imports torch; job workers inherit it
    with _library_notes() as notes:
        try:
            return int(args.func(args) or 0)
        except (ImageReadError, LabelFileError, OSError) as exc:
            print(f"error: {_reason(exc)}{notes.suffix()}", file=sys.stderr)
            return 1
        except MCPError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

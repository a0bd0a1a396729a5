"""Headless subcommands of ``multicellpose`` (usable on a cluster node with no display).

Each subcommand module adds itself with ``register(subparsers)``; heavy imports (torch)
happen inside the command function, so ``multicellpose --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import MCPError
from .threads import configure_environment


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
    from .io import open_image

    for path in args.paths:
        with open_image(path) as src:
            m = src.meta
            px = f", pixel {m.pixel_size[1]:.4g} x {m.pixel_size[0]:.4g} µm" if m.pixel_size else ""
            print(f"{path}: axes {m.axes} shape {m.shape} {m.dtype}{px}; {len(src.frames)} frame(s)")
    return 0


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
    """Run a parsed subcommand, turning project errors into one-line messages."""
    configure_environment()  # before any command imports torch; job workers inherit it
    try:
        return int(args.func(args) or 0)
    except MCPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

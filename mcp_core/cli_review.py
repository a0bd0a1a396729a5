"""``multicellpose suggest``, ``history`` and ``export-model``: human-in-the-loop commands, headless.

Examples::

    multicellpose suggest project/ --model models/nuclei_v1.pth -n 10
    multicellpose history project/cells.tif
    multicellpose history project/cells.tif --restore 3
    multicellpose export-model models/nuclei_v1.pth --format bioimageio nuclei_v1.zip
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _suggest(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .cli_model import resolve_model
    from .model import open_model
    from .params import SegmentParams
    from .suggest import suggest

    model = open_model(resolve_model(args.model), device=args.device)
    params = SegmentParams(bsize=model.bsize, diameter=args.diameter or 0.0)

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"[{done}/{total}] frames segmented", file=sys.stderr, flush=True)

    found = suggest(args.folder, model, args.n, params, args.diversity, progress)
    if args.json:
        print(json.dumps([asdict(s) for s in found], indent=1))
        return 0
    print(f"{'rank':>4}  {'doubt':>5}  {'new':>5}  {'objects':>7}  image")
    for s in found:
        where = Path(s.image).name + (f" frame {s.frame}" if s.frame else "")
        print(f"{s.rank:>4}  {s.doubt:5.3f}  {s.diversity:5.3f}  {s.n_objects:>7}  {where}")
    return 0


def _label_file(target: Path, frame: str) -> Path:
    from .filenames import label_path

    return target if target.name.endswith("_seg.npy") else label_path(target, frame, "seg")


def _history(args: argparse.Namespace) -> int:
    from . import history

    label_file = _label_file(args.image, args.frame)
    if args.restore is not None:
        image = None if args.image.name.endswith("_seg.npy") else args.image
        v = history.restore(label_file, args.restore, image_path=image)
        print(f"Restored version {args.restore} of {label_file.name} as version {v.n} ({v.objects} objects).")
        return 0
    found = history.versions(label_file)
    if not found:
        print(f"{label_file.name} has no history yet (it is recorded from the next save on).")
        return 0
    pins = history.pinned_by(label_file)
    print(f"{'#':>4}  {'time':19s}  {'author':10s}  {'objects':>7}  action")
    for v in found:
        trained = ", ".join(Path(m).name for m in pins.get(v.state, []))
        print(f"{v.n:>4}  {v.when:19s}  {v.author[:10]:10s}  {v.objects:>7}  {v.action}"
              + (f" [{v.source}]" if v.source else "") + (f" (trained {trained})" if trained else ""))
    return 0


def _export_model(args: argparse.Namespace) -> int:
    from .bioimage_package import check_package, export_bioimageio
    from .cli_model import resolve_model

    out = export_bioimageio(resolve_model(args.model), args.out, name=args.name, license_id=args.license,
                            authors=args.author or None)
    print(f"wrote {out}")
    if args.no_check:
        return 0
    check = check_package(out)
    print(f"bioimageio.spec validation: {'passed' if check.valid else 'FAILED'}; "
          f"bioimageio.core test on CPU: {'passed' if check.test_passed else 'FAILED'}")
    if not check.ok:
        print(check.details, file=sys.stderr)
    return 0 if check.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``suggest``, ``history`` and ``export-model``."""
    from .suggest import DIVERSITY

    p = sub.add_parser("suggest", help="rank a project's unlabelled frames: which to label next")
    p.add_argument("folder", type=Path, help="project folder (frames with a _seg.npy count as labelled)")
    p.add_argument("--model", required=True, help="model file, or a model name in $MULTICELLPOSE_HOME")
    p.add_argument("-n", type=int, default=10, help="how many frames to list (default 10)")
    p.add_argument("--diversity", type=float, default=DIVERSITY,
                   help=f"weight of the diversity term against the doubt (default {DIVERSITY}; 0 = doubt only)")
    p.add_argument("--diameter", type=float, default=None, help="object diameter in pixels (0: the model's own)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--json", action="store_true", help="print the ranking as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_suggest)

    p = sub.add_parser("history", help="list the saved versions of an image's labels, or restore one")
    p.add_argument("image", type=Path, help="the image (or its _seg.npy file)")
    p.add_argument("--frame", default="", help="frame id of a multi-frame image (e.g. S0_T1)")
    p.add_argument("--restore", type=int, default=None, metavar="N",
                   help="write version N back to the label file (recorded as a new version)")
    p.set_defaults(func=_history)

    p = sub.add_parser("export-model", help="write a model as a bioimage.io package (spec 0.5), validated and tested")
    p.add_argument("model", help="model file, or a model name in $MULTICELLPOSE_HOME")
    p.add_argument("out", type=Path, help="the package to write (.zip)")
    p.add_argument("--format", choices=("bioimageio",), default="bioimageio", help="package format")
    p.add_argument("--name", default=None, help="model name in the package (default: the file name)")
    p.add_argument("--license", default="BSD-3-Clause", help="SPDX licence of the weights (default BSD-3-Clause)")
    p.add_argument("--author", action="append", default=[], help="an author's name (repeatable; default: you)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the bioimageio.spec validation and bioimageio.core test run")
    p.set_defaults(func=_export_model)

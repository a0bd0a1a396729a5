"""``multicellpose suggest``: human-in-the-loop commands, headless.

Examples::

    multicellpose suggest project/ --model models/nuclei_v1.pth -n 10
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _suggest(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .model import open_model
    from .params import SegmentParams
    from .suggest import suggest

    model = open_model(args.model, device=args.device)
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


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``suggest``."""
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

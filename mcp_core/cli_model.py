"""``multicellpose train`` and ``multicellpose segment``: headless training and inference (HPC nodes).

Options left out take the defaults of :class:`~mcp_core.params.TrainParams` and
:class:`~mcp_core.params.SegmentParams`, so the CLI, the GUI and scripts share one set of defaults.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from .errors import ParameterError
from .params import BASE_DEPENDENT, FINETUNE_DEFAULTS, SCRATCH_DEFAULTS, SegmentParams, TrainParams
from .schema_cli import add_options, build, given


def _legacy_finetune(args: argparse.Namespace) -> dict[str, Any]:
    """The seed's ``--use-lora [--lora-blocks N]`` and ``--unfreeze-blocks N`` as ``finetune`` fields."""
    if args.lora_blocks is not None and not args.use_lora:
        raise ParameterError("--lora-blocks needs --use-lora.")
    if args.use_lora:
        return {"finetune": "lora", **({"finetune_blocks": args.lora_blocks} if args.lora_blocks is not None else {})}
    if args.unfreeze_blocks:
        return {"finetune": "last_n", "finetune_blocks": args.unfreeze_blocks}
    return {}


def _train(args: argparse.Namespace) -> int:
    """Train; SIGTERM or Ctrl+C stops within one batch and saves the weights (exit status 130)."""
    from tqdm import tqdm

    from .catalog import PRETRAINED, pretrained_path
    from .params import resolve_train_params

    if args.slurm_config is not None and not args.slurm:
        raise ParameterError("--slurm-config needs --slurm.")
    if args.train_debug:
        logging.basicConfig(level=logging.DEBUG)
        if args.train_debug_steps is None:
            args.train_debug_steps = 2
    elif args.train_debug_steps is not None:
        raise ParameterError("--train-debug-steps needs --train-debug.")
    params = resolve_train_params(build(TrainParams, {**given(args, args.fields), **_legacy_finetune(args)}))
    if not Path(args.train_dir).is_dir():
        raise ParameterError(f"--train-dir {args.train_dir} is not a folder.")
    if params.base_model in PRETRAINED:
        pretrained_path(params.base_model, download=args.download_weights)
    if args.slurm:
        return _submit_training(args, params)

    from .train import model_file, train

    print(f"Model will be saved to {model_file(params)}", file=sys.stderr)
    bar = tqdm(total=params.epochs, unit="epoch", desc="training", dynamic_ncols=True, disable=args.quiet)

    def progress(kind: str, data: dict) -> None:
        if kind == "log":
            bar.write(data.get("message", ""), file=sys.stderr)
        elif kind == "loss":
            post = {"train": f"{data['train_loss']:.4f}"}
            if data.get("test_loss") is not None:
                post["test"] = f"{data['test_loss']:.4f}"
            bar.set_postfix(post, refresh=False)
        elif kind == "progress" and data.get("stage") == "training":
            bar.update(int(data["epoch"]) - bar.n)
        elif kind == "progress" and data.get("stage") == "evaluating":
            bar.set_description("scoring")

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        result = train(args.train_dir, params, progress=progress, should_stop=stop.is_set)
    finally:
        bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"{'Cancelled; checkpoint' if result.cancelled else 'Model'} saved to {result.model_path} "
          f"({result.epochs_done} epochs, {result.elapsed_s:.0f} s, {result.n_train} train / {result.n_test} test frames)")
    m = result.metrics
    if m:
        print(f"Test: AP@0.5 {m['ap50']:.3f}, error rate {m['error_rate']:.3f} (tp {m['tp']}, fp {m['fp']}, fn {m['fn']})")
        for name, s in (m.get("per_class") or {}).items():
            print(f"  {name:20s} precision {s['precision']:.3f} recall {s['recall']:.3f} f1 {s['f1']:.3f} (n={s['support']})")
    return 130 if result.cancelled else 0


def _submit_training(args: argparse.Namespace, params) -> int:
    """``train --slurm``: submit the training through submitit; the job is followed like any other."""
    import dataclasses

    from .backend import default_home
    from .cluster import resources
    from .jobs import JobStore
    from .slurm import submit_job
    from .train import model_file

    target = model_file(params).resolve()
    fields = {**dataclasses.asdict(params), "save_path": str(target)}
    store = JobStore(default_home() / "jobs")
    info, slurm_id = submit_job(store, "train", fields, {"dataset": str(Path(args.train_dir).resolve())},
                                resources(args.slurm_config))
    print(f"Submitted Slurm job {slurm_id}: job {info.job_id}, model {target}; events in "
          f"{store.jobs_dir / info.job_id / 'events.jsonl'}")
    return 0


def resolve_model(name: str) -> str:
    """A model file path, a pretrained name, or the name of a model in ``$MULTICELLPOSE_HOME/models``."""
    from .backend import default_home
    from .catalog import PRETRAINED, ModelCatalog

    if Path(name).is_file() or name in PRETRAINED:
        return name
    return ModelCatalog(default_home() / "models").resolve(name)


def _segment(args: argparse.Namespace) -> int:
    fields = {"model": args.model, **given(args, args.fields)}
    build(SegmentParams, fields)  # report bad options before loading anything
    spec = resolve_model(args.model)
    from .model import open_model
    from .io import image_files
    from .segment import segment_files

    files = image_files(args.input)
    if not files:
        raise ParameterError(f"No images found in {', '.join(map(str, args.input))}.")
    if args.overlap is not None and not args.blockwise:
        raise ParameterError("--overlap needs --blockwise.")
    if args.blockwise:
        return _segment_blockwise(args, spec, files, fields)
    if args.cluster:
        return _segment_on_cluster(args, spec, files, fields)
    model = open_model(spec, device=args.device)
    params = build(SegmentParams, fields)
    bar, progress = _frame_bar(args.quiet)

    try:
        out = segment_files(model, files, params, folder=args.output, progress=progress)
    finally:
        bar.close()
    print(f"Wrote {len(out['written'])} prediction file(s)" + (f" to {args.output}" if args.output else " beside the images")
          + (f"; skipped {len(out['skipped'])} unreadable file(s)" if out["skipped"] else "") + ".")
    return 1 if out["skipped"] and not out["written"] else 0


def _frame_bar(quiet: bool):
    """A progress bar over frames (on standard error) and the job-event callback that drives it."""
    from tqdm import tqdm

    bar = tqdm(total=None, unit="frame", desc="segmenting", dynamic_ncols=True, disable=quiet)

    def progress(kind: str, data: dict) -> None:
        if kind == "progress":
            bar.total = data["total"]
            bar.update(data["done"] - bar.n)
        elif kind == "log":
            bar.write(data.get("message", ""), file=sys.stderr)

    return bar, progress


def _segment_on_cluster(args: argparse.Namespace, spec: str, files: list, fields: dict[str, Any]) -> int:
    """``segment --cluster``: one task per frame on dask workers; frames already done are skipped."""
    from .distributed import segment_folder

    params = _worker_params(args, spec, fields)
    bar, progress = _frame_bar(args.quiet)

    try:
        out = segment_folder(spec, files, params, args.output, args.cluster, args.cluster_config, progress)
    finally:
        bar.close()
    print(f"Done {len(out['done'])}, skipped {len(out['skipped'])} (already segmented), failed {len(out['failed'])} "
          f"frame(s) in {out['elapsed']:.0f} s" + (f"; predictions in {args.output}" if args.output else "") + ".")
    for f in out["failed"]:
        print(f"  failed: {f['image']} {f['frame']}: {f['error']}".replace("  :", ":"))
    return 1 if out["failed"] else 0


def _worker_params(args: argparse.Namespace, spec: str, fields: dict[str, Any]):
    """Segmentation parameters for workers that load the model themselves."""
    if args.device:
        raise ParameterError("--device applies to one process; with --cluster or --blockwise each worker uses "
                             "its own GPU (or the CPU).")
    return build(SegmentParams, fields)


def _segment_blockwise(args: argparse.Namespace, spec: str, files: list, fields: dict[str, Any]) -> int:
    """``segment --blockwise N``: each 2-D image in N-pixel blocks, labels to OME-Zarr (here or on --cluster)."""
    import contextlib

    from tqdm import tqdm

    from .blockwise import segment_blockwise
    from .cluster import open_client
    from .errors import MCPError
    from .filenames import image_stem

    params = _worker_params(args, spec, fields)
    failed = 0
    with open_client(args.cluster, args.cluster_config) if args.cluster else contextlib.nullcontext() as client:
        for path in files:
            if args.output:
                out = Path(args.output) / f"{image_stem(path)}.ome.zarr"
            else:  # into the image's own OME-Zarr, or a new one beside it
                out = path if path.name.lower().endswith(".zarr") else path.with_name(f"{image_stem(path)}.ome.zarr")
            bar = tqdm(total=None, unit="block", desc=path.name, dynamic_ncols=True, disable=args.quiet)

            def progress(kind: str, data: dict, bar=bar, name=path.name) -> None:
                bar.set_description(f"{name}: {data['stage']}", refresh=False)
                bar.total = data["total"]
                bar.update(data["done"] - bar.n)

            try:
                result = segment_blockwise(path, out, model=spec, params=params, block=args.blockwise,
                                           overlap=args.overlap, client=client, progress=progress)
            except MCPError as exc:
                bar.close()
                print(f"failed: {path}: {exc}", file=sys.stderr)
                failed += 1
                continue
            bar.close()
            print(f"{path}: {result['objects']} objects in {result['blocks']} blocks, labels in {out}/labels/cells"
                  + (f" ({result['cut']} objects larger than the overlap)" if result["cut"] else "") + ".")
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``segment`` to a parser's subparsers.

    Their parameter options are generated from :class:`~mcp_core.params.TrainParams` and
    :class:`~mcp_core.params.SegmentParams` (:func:`mcp_core.schema_cli.add_options`).
    """
    p = sub.add_parser("train", help="train a multi-class CellposeSAM model on a folder of labelled images",
                       description="Train on every labelled frame (_seg.npy, _masks/_classes) of --train-dir. "
                                   "Options not given take the defaults shared with the app.")
    p.add_argument("--train-dir", required=True, help="folder of images with labels")
    split, mode = p.add_mutually_exclusive_group(), p.add_mutually_exclusive_group()
    by_base = {k: f"the base model's: {FINETUNE_DEFAULTS[k]} to fine-tune cpsam, {SCRATCH_DEFAULTS[k]} from scratch "
                  "(unet, tiny)" for k in BASE_DEPENDENT}
    fields = add_options(p, TrainParams, skip={"class_colors"}, default_text=by_base,
                         groups={"test_dir": split, "test_ratio": split, "finetune": mode})
    mode.add_argument("--use-lora", action="store_true", help="same as --finetune lora")
    mode.add_argument("--unfreeze-blocks", type=int, metavar="N", help="same as --finetune last_n --finetune-blocks N")
    p.add_argument("--lora-blocks", type=int, metavar="N", help="with --use-lora: same as --finetune-blocks N")
    p.add_argument("--train-debug", action="store_true", help="debug logging and short epochs (2 steps unless "
                                                                  "--train-debug-steps says otherwise)")
    p.add_argument("--download-weights", action="store_true", help="let cellpose download missing cpsam weights")
    p.add_argument("--slurm", action="store_true",
                   help="submit the training as a Slurm job (submitit) and return; follow it in the app's jobs")
    p.add_argument("--slurm-config", metavar="FILE",
                   help="JSON file whose \"cluster\" section gives the job's resources "
                        "(default $MULTICELLPOSE_HOME/cluster.json, else 1 GPU, 8 cores, 48GB, 8 hours)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train, fields=fields)

    p = sub.add_parser("segment", help="segment images with a model and write _pred.npy files",
                       description="Segment every frame of the input images. Options not given take the app's defaults.")
    p.add_argument("--model", required=True, help="model file, cpsam/cpsam_v2, or a model name in $MULTICELLPOSE_HOME")
    p.add_argument("--input", required=True, nargs="+", help="image files and/or folders")
    p.add_argument("--output", help="folder for the _pred.npy files (default: beside each image)")
    fields = add_options(p, SegmentParams, skip={"model"})
    p.add_argument("--save-flows", dest="return_flows", action="store_true", default=None, help="same as --return-flows")
    p.add_argument("--device", help="torch device (default: cuda if available)")
    p.add_argument("--cluster", metavar="SPEC",
                   help="run on dask workers: local (one per GPU), local:N, slurm (see --cluster-config) or "
                        "tcp://host:port; frames already segmented with the same model and options are skipped")
    p.add_argument("--blockwise", type=int, metavar="N",
                   help="segment each (large, 2-D) image in N-pixel blocks and write OME-Zarr labels "
                        "(into an OME-Zarr input, else <output or image folder>/<name>.ome.zarr)")
    p.add_argument("--overlap", type=int, metavar="PX",
                   help="margin around each block with --blockwise (default: two object diameters)")
    p.add_argument("--cluster-config", metavar="FILE",
                   help="JSON file with a \"cluster\" section for --cluster slurm (default $MULTICELLPOSE_HOME/cluster.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_segment, fields=fields)

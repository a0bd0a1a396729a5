"""Train on the demo project as the app's Trainer does (its default settings, a training job) and score the result.

Target (issue 12): on 2 idle CPU cores the job finishes in at most 2 minutes, with AP@0.5 >= 0.8 and class accuracy
>= 0.9 on the demo's test images. Prints the job's wall time (from submission to its final event), AP@0.5 and class
accuracy on the test split the job held out and on 4 fresh images of the same generator, and the load average
(other work on the machine inflates the time).

    .venv/bin/python benchmarks/train_demo_bench.py [--base unet|tiny|cpsam] [--epochs N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from mcp_core.backend import LocalBackend
from mcp_core.catalog import OFFLINE_BASE
from mcp_core.evaluation import evaluate
from mcp_core.jobs import FINAL_STATES
from mcp_core.params import SegmentParams, TrainParams, resolve_train_params
from mcp_core.synthetic import CLASS_NAMES, make_sample, write_demo_project


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default=OFFLINE_BASE)
    ap.add_argument("--epochs", type=int, help="default: the base model's")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = write_demo_project(Path(tmp) / "demo")
        classes = list(CLASS_NAMES[:3])
        backend = LocalBackend(home=Path(tmp) / "home")
        params = TrainParams(model_name="demo_model", base_model=args.base, epochs=args.epochs, class_names=classes)
        used = resolve_train_params(params)
        t0 = time.time()
        job = backend.submit_training(project, params)
        seq, final = 0, None
        while final is None:
            time.sleep(0.5)
            for ev in backend.events(job.job_id, seq):
                seq = ev.seq
                if ev.kind in ("done", "failed") or ev.data.get("state") in FINAL_STATES:
                    final = ev
        wall = time.time() - t0
        if final.kind == "failed" or final.data.get("state") == "failed":
            raise SystemExit(f"training failed: {final.data}")
        metrics = final.data["metrics"]
        held_out = [make_sample(1000 + i) for i in range(4)]
        results = backend.segment([img for img, _ in held_out], SegmentParams(model="demo_model"))
        fresh = evaluate([lab.masks for _, lab in held_out], [lab.classes for _, lab in held_out],
                         [r.masks for r in results], [r.classes for r in results], classes)
    print(f"demo project: {final.data['n_train']} training / {final.data['n_test']} test images; base {args.base}, "
          f"{used.epochs} epochs x {used.nimg_per_epoch} crops of {used.bsize} px, lr {used.learning_rate:g}, "
          f"wd {used.weight_decay:g}, batch {used.batch_size}")
    print(f"training job: {wall:.0f} s from submission to its result (target <= 120 s on 2 idle cores)")
    for name, m in (("test split", metrics), ("4 fresh images", fresh)):
        print(f"{name:15s} AP@0.5 {m['ap50']:.3f} (target >= 0.8)   class accuracy {m['class_accuracy']:.3f} "
              f"(target >= 0.9)   tp {m['tp']} fp {m['fp']} fn {m['fn']}")
    print(f"load average {' '.join(open('/proc/loadavg').read().split()[:3])}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()

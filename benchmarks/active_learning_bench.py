"""Does "label this next" help? Active learning against random picks on synthetic multi-class data.

Scenario (per seed): a pool of unlabelled synthetic images, most holding two object classes
(round, elongated) and a few also holding a third, rarer one (small); the user has labelled 2
images of the common kind and trained a model. They label 4 more, chosen either by
:func:`mcp_core.suggest.rank` (mean object doubt + embedding diversity, labelled images counted as
known) or at random, and retrain. Both arms train the ``tiny`` network from scratch with the same
seed and settings, and are scored on one fixed test set (AP@0.5 with cellpose's metrics, class
accuracy of matched objects). Printed: mean and standard deviation over seeds, and per seed.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/active_learning_bench.py [--seeds 3] [--epochs 60]

Measured on the shared 2-core CPU here (load ~9): one training of 30 epochs took ~4 min, and at
30 epochs every arm scored AP 0 (seed 0: both arms also picked 2 of the 3 rare images), so the
comparison needs a GPU or >= 100 epochs per training (the demo reaches AP >= 0.8 at 100 epochs on 16
images); nothing is claimed from the CPU run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from mcp_core.evaluation import evaluate
from mcp_core.labels import LabelSet, save_labels
from mcp_core.model import MultiClassModel
from mcp_core.params import SegmentParams, TrainParams
from mcp_core.segment import segment
from mcp_core.suggest import predict_with_embedding, prediction_doubt, rank
from mcp_core.synthetic import CLASS_NAMES, make_sample

SIZE = 128


def make_pool(seed: int, n_pool: int, n_rare: int) -> list[tuple[np.ndarray, LabelSet]]:
    """*n_pool* images; the last *n_rare* hold the third class as well (shuffled by the caller)."""
    return [make_sample(10_000 * seed + i, shape=(SIZE, SIZE), n_classes=3 if i >= n_pool - n_rare else 2)
            for i in range(n_pool)]


def train_on(items: list[tuple[np.ndarray, LabelSet]], folder: Path, seed: int, epochs: int) -> MultiClassModel:
    """Train ``tiny`` from scratch on *items* (written to *folder*)."""
    from mcp_core.train import train

    folder.mkdir(parents=True)
    for i, (image, labels) in enumerate(items):
        tifffile.imwrite(folder / f"img_{i:02d}.tif", np.moveaxis(image, -1, 0), photometric="minisblack",
                         metadata={"axes": "CYX"})
        save_labels(folder / f"img_{i:02d}_seg.npy", labels)
    params = TrainParams(base_model="tiny", model_name="m", class_names=list(CLASS_NAMES), epochs=epochs,
                         test_ratio=0.0, seed=seed, save_path=str(folder / "m.pth"))
    return MultiClassModel.load(train(folder, params).model_path, device="cpu")


def score(model: MultiClassModel, test: list[tuple[np.ndarray, LabelSet]]) -> dict[str, float]:
    results = segment(model, [img for img, _ in test], SegmentParams(bsize=model.bsize))
    lookup = {n: i for i, n in enumerate(model.class_names)}
    truth = [np.array([lookup[lab.class_names[c]] for c in lab.classes]) for _, lab in test]
    out = evaluate([lab.masks for _, lab in test], truth, [r.masks for r in results], [r.classes for r in results],
                   model.class_names)
    return {"ap50": out["ap50"], "class_accuracy": out.get("class_accuracy", 0.0)}


def choose(model: MultiClassModel, labelled: list, candidates: list, k: int, diversity: float) -> list[int]:
    """Indices into *candidates* picked by the "label this next" ranking."""
    params = SegmentParams(bsize=model.bsize)
    known = np.stack([predict_with_embedding(model, img, params)[1] for img, _ in labelled])
    doubts, embs = [], []
    for img, _ in candidates:
        result, emb = predict_with_embedding(model, img, params)
        doubts.append(prediction_doubt(result))
        embs.append(emb)
    return [i for i, _, _ in rank(doubts, np.stack(embs), known, diversity)[:k]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--pool", type=int, default=12, help="unlabelled images to choose from")
    ap.add_argument("--rare", type=int, default=3, help="pool images that also hold the rare third class")
    ap.add_argument("--add", type=int, default=4, help="images labelled in the second round")
    ap.add_argument("--diversity", type=float, default=0.5)
    args = ap.parse_args()
    test = ([make_sample(900_000 + i, shape=(SIZE, SIZE), n_classes=3) for i in range(4)]
            + [make_sample(950_000 + i, shape=(SIZE, SIZE), n_classes=2) for i in range(4)])
    rows = []
    t0 = time.time()
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        pool = make_pool(seed, args.pool, args.rare)
        common = list(range(args.pool - args.rare))
        start = [int(i) for i in rng.choice(common, 2, replace=False)]
        rest = [i for i in range(args.pool) if i not in start]
        with tempfile.TemporaryDirectory() as tmp:
            first = train_on([pool[i] for i in start], Path(tmp) / "start", seed, args.epochs)
            picked = [rest[i] for i in choose(first, [pool[i] for i in start], [pool[i] for i in rest], args.add,
                                               args.diversity)]
            randomly = [int(i) for i in rng.choice(rest, args.add, replace=False)]
            row = {"seed": seed, "start": score(first, test)}
            for arm, extra in (("suggested", picked), ("random", randomly)):
                model = train_on([pool[i] for i in start + extra], Path(tmp) / arm, seed, args.epochs)
                row[arm] = score(model, test)
                row[f"{arm}_rare"] = sum(i >= args.pool - args.rare for i in extra)
        rows.append(row)
        print(f"seed {seed}: start AP {row['start']['ap50']:.3f} | suggested AP {row['suggested']['ap50']:.3f} "
              f"acc {row['suggested']['class_accuracy']:.3f} ({row['suggested_rare']} rare) | random AP "
              f"{row['random']['ap50']:.3f} acc {row['random']['class_accuracy']:.3f} ({row['random_rare']} rare)",
              flush=True)
    print(f"\n{args.seeds} seeds, pool {args.pool} ({args.rare} with the rare class), start 2 + {args.add}, "
          f"{args.epochs} epochs, tiny from scratch, test set 8 images; {time.time() - t0:.0f} s")
    print(f"{'arm':10s} {'AP@0.5':>15s} {'class accuracy':>15s} {'rare picked':>12s}")
    for arm in ("start", "suggested", "random"):
        ap50 = np.array([r[arm]["ap50"] for r in rows])
        acc = np.array([r[arm]["class_accuracy"] for r in rows])
        rare = np.mean([r.get(f"{arm}_rare", 0) for r in rows])
        print(f"{arm:10s} {ap50.mean():7.3f} ± {ap50.std():5.3f} {acc.mean():7.3f} ± {acc.std():5.3f} {rare:12.1f}")


if __name__ == "__main__":
    main()

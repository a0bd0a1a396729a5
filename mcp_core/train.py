"""Training a multi-class CellposeSAM model on a folder of labelled images.

Loss: cellpose's segmentation loss (MSE of the flows times 5, halved, plus BCE of the cell
probability) times ``seg_loss_weight``, plus the class cross-entropy with smoothed class
weights (:func:`mcp_core.dataset.class_weights`) times ``class_loss_weight``; pixels of masks
without a class are left out of the class term. AdamW on the parameters the fine-tuning mode
opens (:mod:`mcp_core.finetune`), linear warm-up then cosine decay of the learning rate. An epoch
is ``nimg_per_epoch`` random crops (each training frame equally often), or one crop of every
training frame when it is 0; settings left unset take the base model's defaults
(:func:`mcp_core.params.resolve_train_params`).

Progress goes to a callback as ``(kind, data)`` with the job event kinds: ``"progress"``,
``"loss"``, ``"log"``, ``"artifact"``. ``should_stop`` is polled before every batch: a
cancelled run saves its current weights (a loadable checkpoint) and returns.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .augment import random_affine
from .classmap import IGNORE
from .dataset import Sample, class_weights, load_samples, split
from .errors import ParameterError
from .evaluation import evaluate
from .filenames import label_path
from .finetune import merge_lora, select_trainable
from .history import pin_current
from .model import MultiClassModel, build_model
from .params import SegmentParams, TrainParams, TrainResult, resolve_train_params, to_dict
from .segment import segment_prepared
from .train_artifacts import write_training_artifacts
from .train_debug import batch_line

log = logging.getLogger(__name__)

Progress = Callable[[str, dict], None]
#: While training, the model file is refreshed at most this often (and always at the end or on cancel).
CHECKPOINT_EVERY_S = 120.0
#: Fraction of all steps spent warming the learning rate up.
WARMUP_FRACTION = 0.05
#: Test crops scored for a test loss (a seeded, fixed selection, the same each time).
MAX_TEST_CROPS = 32
#: Epochs between two test losses (cellpose scores every 10th epoch: a forward pass over the test crops each epoch
#: costs about a sixth of a small CPU training).
TEST_LOSS_EVERY = 10


def loss_fn(y: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None, seg_weight: float = 1.0,
            class_weight: float = 1.0) -> torch.Tensor:
    """Segmentation loss as in cellpose plus class cross-entropy.

    Parameters
    ----------
    y
        Network output ``(B, K + 3, H, W)``: class logits, flow Y, flow X, cell probability.
    target
        ``(B, 4, H, W)``: class id (:data:`~mcp_core.classmap.IGNORE` = no class), cell probability,
        flow Y, flow X.
    weights
        Per-class weights of the cross-entropy, or ``None``.
    """
    flow_loss = nn.functional.mse_loss(y[:, -3:-1], 5.0 * target[:, 2:4]) / 2.0
    prob_loss = nn.functional.binary_cross_entropy_with_logits(y[:, -1], (target[:, 1] > 0.5).to(y.dtype))
    loss = seg_weight * (flow_loss + prob_loss)
    if y.shape[1] > 3:
        cls = target[:, 0].round().long()
        if bool((cls != IGNORE).any()):
            loss = loss + class_weight * nn.functional.cross_entropy(y[:, :-3].float(), cls, weight=weights,
                                                                     ignore_index=IGNORE)
    return loss


def learning_rate(step: int, total: int, base: float) -> float:
    """Linear warm-up over :data:`WARMUP_FRACTION` of the steps, then cosine decay to 5 % of *base*."""
    warm = max(1, int(WARMUP_FRACTION * total))
    if step < warm:
        return base * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def model_file(params: TrainParams) -> Path:
    """Where the model goes: ``save_path`` itself if it names a ``.pth``/``.pt`` file, else ``save_path/<model_name>.pth``."""
    base = Path(params.save_path) if params.save_path else Path.cwd() / "models"
    return base if base.suffix in (".pth", ".pt") else base / f"{params.model_name}.pth"


def train(dataset: str | os.PathLike, params: TrainParams, progress: Progress | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train a model on the labelled frames of a folder.

    Parameters
    ----------
    dataset
        Folder of images with ``_seg.npy`` (or ``_masks``/``_classes``) labels, frames included.
    params
        Everything else (base model, split, epochs, fine-tuning mode...). ``class_names`` with two
        or more entries fixes the class channels (matched to the files by name); otherwise the
        classes found in the files are used.
    progress
        Called with ``(kind, data)``; kinds ``progress``, ``loss``, ``log``, ``artifact``.
    should_stop
        Polled before every batch; ``True`` stops training and keeps a checkpoint.

    Returns
    -------
    TrainResult
        Model file, test metrics (AP@0.5, error rate, per-class precision/recall/F1), losses.

    Raises
    ------
    ParameterError
        No usable training data, or options that do not fit the model.
    ModelError
        The base model cannot be built.
    """
    emit = progress or (lambda kind, data: None)
    stop = should_stop or (lambda: False)
    t0 = time.time()
    params = resolve_train_params(params)
    device = torch.device(params.device) if params.device else (torch.device("cuda") if torch.cuda.is_available()
                                                                 else torch.device("cpu"))
    _say(emit, f"Reading labelled images from {dataset}")
    load = {"channels": params.channels, "device": device}
    samples, names, colors = load_samples(
        dataset, params.class_names, on_item=lambda i, n: emit("progress", {"stage": "loading", "done": i, "total": n,
                                                                             "fraction": 0.0, "message": f"reading {i}/{n}"}),
        **load)
    if params.test_dir:
        train_set = samples
        test_set = load_samples(params.test_dir, names or ["unassigned"], **load)[0]
    else:
        train_set, test_set = split(samples, params.test_ratio, params.seed)
    replay: list[Sample] = []
    if params.replay_dir and params.replay_fraction > 0:
        replay = load_samples(params.replay_dir, names or ["unassigned"], **load)[0]
    kept = [s for s in train_set if s.n_masks >= params.min_train_masks]
    if len(kept) < len(train_set):
        _say(emit, f"{len(train_set) - len(kept)} training frame(s) with fewer than {params.min_train_masks} masks left out.")
    replay = [s for s in replay if s.n_masks >= params.min_train_masks]
    if not kept:
        raise ParameterError(f"No training frames in {dataset}: {len(samples)} labelled frame(s) found, "
                             f"{len(train_set)} in the training split, none with at least {params.min_train_masks} masks.")
    train_set = kept

    model = build_model(params.base_model, names, params.class_colors or colors, device=device, bsize=params.bsize,
                        seed=params.seed)
    net = model.net
    diam = float(np.mean([s.diameter for s in train_set]))
    net.diam_labels.data = torch.tensor([diam], device=device)
    if not params.rescale:
        net.diam_mean.data = torch.tensor([diam], device=device)
    scale_to = model.diam_mean
    trainable = select_trainable(net, params.finetune, params.finetune_blocks, params.lora_rank)
    optimizer = torch.optim.AdamW(trainable, lr=params.learning_rate, weight_decay=params.weight_decay)
    k = model.n_classes
    weights = torch.from_numpy(class_weights(train_set + replay, k)).to(device) if k > 1 else None
    path = model_file(params)
    model.meta.update({"channels": params.channels, "training": to_dict(params), "data": _data_record(train_set, test_set, replay, path),
                       "class_weights": weights.tolist() if weights is not None else None, "state": "training"})

    n_crops = params.nimg_per_epoch or len(train_set)
    n_replay = math.ceil(params.replay_fraction * n_crops) if replay else 0
    steps_per_epoch = math.ceil((n_crops + n_replay) / params.batch_size)
    if params.train_debug_steps:
        steps_per_epoch = min(steps_per_epoch, params.train_debug_steps)
    total_steps = steps_per_epoch * params.epochs
    _say(emit, f"Training {model.architecture['name']} ({sum(p.numel() for p in trainable):,} trainable parameters) on "
               f"{len(train_set)} frame(s) ({n_crops} crops +{n_replay} replayed per epoch), testing on {len(test_set)}, "
               f"classes {names[1:] if names else 'none'}, device {device}; {params.epochs} epochs, tile {model.bsize}, "
               f"learning rate {params.learning_rate:g}, weight decay {params.weight_decay:g}.")

    rng = np.random.default_rng(params.seed)
    torch.manual_seed(params.seed)
    train_losses: list[float] = []
    test_losses: list[float] = []
    step, cancelled, last_save = 0, False, time.time()
    epoch = 0
    t_train = time.time()
    for epoch in range(params.epochs):
        order = [train_set[i] for i in _draw(rng, len(train_set), n_crops)]
        if n_replay:
            order += [replay[i] for i in rng.choice(len(replay), size=n_replay, replace=n_replay > len(replay))]
            order = [order[i] for i in rng.permutation(len(order))]
        net.train()
        total, count = 0.0, 0
        for b in range(steps_per_epoch):
            if stop():
                cancelled = True
                break
            batch = order[b * params.batch_size:(b + 1) * params.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps, params.learning_rate)
            t_batch = time.perf_counter()
            loss = _step(model, batch, params, rng, scale_to, weights, device, optimizer)
            if log.isEnabledFor(logging.DEBUG):  # --train-debug
                log.debug(batch_line(epoch + 1, b + 1, steps_per_epoch, time.perf_counter() - t_batch, loss, device))
            total += loss * len(batch)
            count += len(batch)
            step += 1
        if cancelled:
            break
        train_losses.append(total / max(count, 1))
        scored = test_set and _scores_test_loss(epoch + 1, params.epochs)
        test_losses.append(_test_loss(model, test_set, params, scale_to, weights, device) if scored else float("nan"))
        elapsed = time.time() - t0
        per = (time.time() - t_train) / (epoch + 1)
        eta = per * (params.epochs - epoch - 1)
        emit("loss", {"epoch": epoch + 1, "train_loss": train_losses[-1],
                      "test_loss": test_losses[-1] if scored else None, "lr": optimizer.param_groups[0]["lr"]})
        emit("progress", {"stage": "training", "epoch": epoch + 1, "epochs": params.epochs,
                          "fraction": (epoch + 1) / params.epochs, "elapsed": elapsed, "eta": eta,
                          "message": f"epoch {epoch + 1}/{params.epochs}"})
        if time.time() - last_save > CHECKPOINT_EVERY_S and epoch + 1 < params.epochs:
            _save(model, path, train_losses, test_losses, "training", epoch + 1)
            last_save = time.time()

    epochs_done = len(train_losses)
    metrics: dict[str, Any] = {}
    if cancelled:
        _save(model, path, train_losses, test_losses, "cancelled", epochs_done)
        _say(emit, f"Cancelled after {epochs_done} epoch(s); the checkpoint is {path}.")
    else:
        merge_lora(net)
        if test_set:
            emit("progress", {"stage": "evaluating", "fraction": 1.0, "elapsed": time.time() - t0, "eta": 0.0,
                              "message": "scoring the test images"})
            metrics = score(model, test_set)
        model.meta["metrics"] = metrics
        _save(model, path, train_losses, test_losses, "done", epochs_done)
    emit("artifact", {"path": str(path), "kind": "model", "name": path.stem})
    return TrainResult(model_path=str(path), metrics=metrics, train_losses=train_losses,
                       test_losses=[float(x) for x in test_losses], epochs_done=epochs_done, cancelled=cancelled,
                       elapsed_s=time.time() - t0, class_names=list(model.class_names), n_train=len(train_set),
                       n_test=len(test_set))


def score(model: MultiClassModel, samples: Sequence[Sample], params: SegmentParams | None = None) -> dict[str, Any]:
    """Segment *samples* with *model* and score them (:func:`mcp_core.evaluation.evaluate`)."""
    params = params or SegmentParams()
    images = [np.moveaxis(s.image, 0, -1) for s in samples]
    results = segment_prepared(model, images, params)
    return evaluate([s.masks for s in samples], [s.classes for s in samples], [r.masks for r in results],
                    [r.classes for r in results], model.class_names if model.n_classes else ())


def _step(model: MultiClassModel, batch: Sequence[Sample], params: TrainParams, rng: np.random.Generator,
          scale_to: float, weights: torch.Tensor | None, device: torch.device, optimizer: torch.optim.Optimizer) -> float:
    rescale = [scale_to / s.diameter for s in batch] if params.rescale else None
    x, y = random_affine([s.image for s in batch], [s.target for s in batch], model.bsize, params.scale_range, rng,
                         rescale=rescale, device=device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = model.net(x)[0]
    loss = loss_fn(out.float(), y, weights, params.seg_loss_weight, params.class_loss_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.item())


def _scores_test_loss(epoch: int, epochs: int) -> bool:
    """Whether epoch *epoch* (from 1) gets a test loss: as upstream cellpose, at epoch 5 and every
    :data:`TEST_LOSS_EVERY` epochs, and here also at the first and the last (a short run still has a curve)."""
    return epoch in (1, 5, epochs) or epoch % TEST_LOSS_EVERY == 0


def _test_loss(model: MultiClassModel, test_set: Sequence[Sample], params: TrainParams, scale_to: float,
               weights: torch.Tensor | None, device: torch.device) -> float:
    rng = np.random.default_rng(params.seed + 1)  # the same crops every epoch
    picks = [test_set[i % len(test_set)] for i in range(min(MAX_TEST_CROPS, max(len(test_set), params.batch_size)))]
    model.net.eval()
    total = 0.0
    with torch.inference_mode():
        for b in range(0, len(picks), params.batch_size):
            batch = picks[b:b + params.batch_size]
            rescale = [scale_to / s.diameter for s in batch] if params.rescale else None
            x, y = random_affine([s.image for s in batch], [s.target for s in batch], model.bsize, params.scale_range,
                                 rng, rescale=rescale, device=device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = model.net(x)[0]
            total += float(loss_fn(out.float(), y, weights, params.seg_loss_weight, params.class_loss_weight)) * len(batch)
    model.net.train()
    return total / len(picks)


def _draw(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """*count* indices below *n* in random order, each index as often as possible alike (whole permutations first)."""
    reps = np.concatenate([rng.permutation(n) for _ in range(math.ceil(count / n))])
    return reps[:count]


def _save(model: MultiClassModel, path: Path, train_losses: list[float], test_losses: list[float], state: str,
          epochs_done: int) -> None:
    model.meta.update({"state": state, "epochs_done": epochs_done,
                       "losses": {"train": train_losses, "test": [None if x != x else x for x in test_losses]}})
    model.save(path)
    write_training_artifacts(path)


def _data_record(train: Sequence[Sample], test: Sequence[Sample], replay: Sequence[Sample], model: Path
                 ) -> dict[str, Any]:
    """File names, frames, content hashes and annotation-history versions of the data a model saw (for the sidecar).

    Those versions are pinned to *model* in the history, so retention keeps them.
    """
    def rows(samples: Sequence[Sample]) -> list[dict[str, Any]]:
        return [{"file": Path(s.source).name, "frame": s.frame, "sha256": s.digest,
                 **pin_current(label_path(s.source, s.frame, "seg"), model)} for s in samples]

    digest = hashlib.sha256("".join(s.digest for s in (*train, *test, *replay)).encode()).hexdigest()
    return {"digest": digest, "train": rows(train), "test": rows(test), "replay": rows(replay)}


def _say(emit: Progress, message: str) -> None:
    log.info(message)
    emit("log", {"message": message})


""""Label this next": rank a project's unlabelled frames by the model's doubt, keeping the top ones diverse.

Each unlabelled frame is segmented once. Its *doubt* is the mean uncertainty
(:func:`mcp_core.confidence.object_uncertainty`) of its most doubtful objects, the top
:data:`TOP_FRACTION` of them (1 when the model finds no object at all): a frame is worth labelling
when some of its objects puzzle the model, however many easy ones surround them. Its *embedding*
is the network's encoder features (``encoder.neck`` of a ViT, the deepest block of a U-Net)
averaged over space and tiles. Frames are then picked greedily: each pick maximises

    relative doubt + diversity * distance to the nearest frame already labelled or picked / largest such distance

where the relative doubt maps the candidates' doubts onto [0, 1] (least to most doubtful), so both
terms span the same range whatever the model's overall level of doubt, and the distance is the
cosine distance of centred embeddings: ten near-copies of one hard image do not fill the top ten.

Measured by ``benchmarks/active_learning_bench.py`` (synthetic pool in which a quarter of the images
hold a class the first model never saw; its header has the figures).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .confidence import object_uncertainty
from .errors import MCPError, ParameterError
from .filenames import label_path, masks_tiff_pair
from .params import SegmentParams, SegmentResult

#: Default weight of the diversity term against the relative doubt (0.5 let it push images of an unseen class out of
#: the picks in the active-learning benchmark: such images resemble each other).
DIVERSITY = 0.25
#: Fraction of a frame's objects, the most doubtful ones, whose mean uncertainty is the frame's doubt.
TOP_FRACTION = 0.25
#: Labelled frames (evenly spread over the list) whose embeddings count as known.
MAX_KNOWN = 32


@dataclass
class Suggestion:
    """One frame to label, in ranked order."""

    rank: int
    image: str
    frame: str
    doubt: float
    diversity: float
    score: float
    n_objects: int


def prediction_doubt(result: SegmentResult, top: float = TOP_FRACTION) -> float:
    """Mean uncertainty of a prediction's most doubtful objects (the *top* fraction, at least one), in [0, 1].

    1 when it has no scored object.
    """
    ids = np.unique(result.masks[result.masks > 0])
    if not len(ids) or not result.confidence:
        return 1.0
    u = object_uncertainty({k: np.asarray(v)[ids] for k, v in result.confidence.items() if k != "confidence"})
    u = np.sort(u[np.isfinite(u)])[::-1]
    return float(u[:max(1, int(np.ceil(top * len(u))))].mean()) if len(u) else 1.0


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def rank(doubt: Sequence[float], embeddings: np.ndarray, known: np.ndarray | None = None,
         diversity: float = DIVERSITY) -> list[tuple[int, float, float]]:
    """Greedy order of candidates by doubt plus distance to what is already labelled or picked.

    Parameters
    ----------
    doubt
        Per candidate; mapped onto [0, 1] (least to most doubtful) before the diversity term is added.
    embeddings
        ``(n, d)`` per candidate.
    known
        ``(m, d)`` embeddings of frames already labelled (their neighbours are worth less).
    diversity
        Weight of the distance term (0 = doubt only).

    Returns
    -------
    list of (index, diversity term, score)
        Every candidate once, best first.
    """
    doubt = np.asarray(doubt, float)
    if len(doubt):  # relative doubt: least doubtful 0, most doubtful 1
        doubt = (doubt - doubt.min()) / max(float(np.ptp(doubt)), 1e-12)
    emb = np.asarray(embeddings, float).reshape(len(doubt), -1)
    known = np.zeros((0, emb.shape[1])) if known is None else np.asarray(known, float).reshape(-1, emb.shape[1])
    if diversity < 0:
        raise ParameterError(f"The diversity weight must be >= 0, got {diversity}.")
    centre = np.concatenate([emb, known]).mean(axis=0)
    cand, ref = _unit(emb - centre), _unit(known - centre)
    nearest = (1.0 - cand @ ref.T).min(axis=1) if len(ref) else np.full(len(cand), np.inf)
    left = list(range(len(cand)))
    order = []
    while left:
        d = nearest[left]
        top = d[np.isfinite(d)].max(initial=0.0)
        term = np.where(np.isfinite(d), d / top if top > 0 else 0.0, 1.0)
        score = doubt[left] + diversity * term
        best = int(np.argmax(score))
        i = left.pop(best)
        order.append((i, float(term[best]), float(score[best])))
        nearest = np.minimum(nearest, 1.0 - cand @ cand[i])
    return order


@contextlib.contextmanager
def _encoder_features(net) -> Iterator[list[np.ndarray]]:
    """Collect the space-averaged features of every tile the network sees (ViT: ``encoder.neck``, U-Net: its
    deepest block)."""
    neck = getattr(getattr(net, "encoder", None), "neck", None)
    if neck is None:
        neck = getattr(net, "bottleneck", None)
    if neck is None:
        raise ParameterError(f"A {type(net).__name__} network has no layer to take image embeddings from.")
    feats: list[np.ndarray] = []
    handle = neck.register_forward_hook(lambda mod, inp, out: feats.append(out.float().mean(dim=(2, 3)).cpu().numpy()))
    try:
        yield feats
    finally:
        handle.remove()


def predict_with_embedding(model, image: np.ndarray, params: SegmentParams) -> tuple[SegmentResult, np.ndarray]:
    """Segment one image and return its prediction and its embedding (mean encoder features over its tiles)."""
    from .segment import segment

    with _encoder_features(model.net) as feats:
        [result] = segment(model, [image], params)
    return result, np.concatenate(feats).mean(axis=0)


def unlabelled_frames(folder: str | os.PathLike) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """``(unlabelled, labelled)`` frames ``(image path, frame id)`` of a project folder.

    Raises
    ------
    ImageReadError
        When the folder does not exist.
    """
    from .io import image_files
    from .io import open_image

    unlabelled, labelled = [], []
    for path in image_files([folder]):
        try:
            with open_image(path) as src:
                frames = list(src.frames)
        except MCPError:
            continue
        for frame in frames:
            done = label_path(path, frame, "seg").exists() or (not frame and masks_tiff_pair(path) is not None)
            (labelled if done else unlabelled).append((path, frame))
    return unlabelled, labelled


def suggest(folder: str | os.PathLike, model, n: int = 10, params: SegmentParams | None = None,
            diversity: float = DIVERSITY, progress: Callable[[int, int], None] | None = None) -> list[Suggestion]:
    """The *n* unlabelled frames of *folder* most worth labelling next (see the module docstring).

    Parameters
    ----------
    folder
        A project folder; frames with a ``_seg.npy`` (or a ``_masks`` pair) count as labelled, and up
        to :data:`MAX_KNOWN` of them are segmented for their embeddings.
    model
        A loaded :class:`~mcp_core.model.MultiClassModel` or what :func:`~mcp_core.model.open_model` accepts.
    n
        How many to return.
    params
        Segmentation parameters (the model's tile size by default).
    diversity
        Weight of the diversity term.
    progress
        Called with ``(frames done, total)``.

    Raises
    ------
    ParameterError
        ``n < 1``, or a folder without unlabelled frames.
    """
    from .io import open_image
    from .model import MultiClassModel, open_model

    if n < 1:
        raise ParameterError(f"Ask for at least one suggestion (got n={n}).")
    model = model if isinstance(model, MultiClassModel) else open_model(model)
    params = params or SegmentParams()
    todo, done = unlabelled_frames(folder)
    done = done[:: max(1, len(done) // MAX_KNOWN)][:MAX_KNOWN]
    if not todo:
        raise ParameterError(f"{folder} has no unlabelled frames to suggest.")
    doubts, embs, counts, known = [], [], [], []
    items = todo + done
    for i, (path, frame) in enumerate(items):
        with open_image(path) as src:
            image = src.read(frame)
        result, emb = predict_with_embedding(model, image, params)
        if i < len(todo):
            doubts.append(prediction_doubt(result))
            counts.append(int(len(np.unique(result.masks)) - 1))
            embs.append(emb)
        else:
            known.append(emb)
        if progress:
            progress(i + 1, len(items))
    order = rank(doubts, np.stack(embs), np.stack(known) if known else None, diversity)
    return [Suggestion(r + 1, str(todo[i][0]), todo[i][1], float(doubts[i]), term, score, counts[i])
            for r, (i, term, score) in enumerate(order[:n])]

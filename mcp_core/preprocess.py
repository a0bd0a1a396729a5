"""Turning a ``(Y, X, C)`` frame into what the network reads, the same way in training and inference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from cellpose import transforms

from .errors import ParameterError

#: The network reads this many channels; fewer are zero-padded, more are cut (as cellpose does).
NET_CHANNELS = 3


def prepare_image(image: np.ndarray, channels: Sequence[int] | None = None,
                  normalize: tuple[float, float] | None = (1.0, 99.0)) -> np.ndarray:
    """Pick channels, pad to three and normalise percentiles per channel.

    Parameters
    ----------
    image
        ``(Y, X)`` or ``(Y, X, C)``.
    channels
        Which channels to feed (up to three, in order); the first three by default.
    normalize
        Lower and upper percentiles mapped to 0 and 1 (cellpose's ``normalize_img``);
        ``None`` leaves intensities as they are.

    Returns
    -------
    ndarray
        ``(Y, X, 3)`` float32.

    Raises
    ------
    ParameterError
        When a channel index does not exist or more than three are asked for.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ParameterError(f"An image must be (Y, X) or (Y, X, C), got shape {img.shape}.")
    if channels is not None:
        channels = list(channels)
        if len(channels) > NET_CHANNELS:
            raise ParameterError(f"At most {NET_CHANNELS} channels can be fed to the model, got {channels}.")
        bad = [c for c in channels if not -img.shape[-1] <= c < img.shape[-1]]
        if bad:
            raise ParameterError(f"Channel(s) {bad} do not exist: the image has {img.shape[-1]} channel(s).")
        img = img[..., channels]
    img = img[..., :NET_CHANNELS].astype(np.float32, copy=True)
    if normalize is not None:
        lo, hi = float(normalize[0]), float(normalize[1])
        if not 0 <= lo < hi <= 100:
            raise ParameterError(f"Normalisation percentiles must satisfy 0 <= low < high <= 100, got {normalize}.")
        img = transforms.normalize_img(img, percentile=(lo, hi), axis=-1)
    if img.shape[-1] < NET_CHANNELS:
        img = np.concatenate([img, np.zeros((*img.shape[:2], NET_CHANNELS - img.shape[-1]), np.float32)], axis=-1)
    return img

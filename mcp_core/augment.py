"""Training augmentation: random rotation, scale, flip and crop of images with class maps and flows.

Upstream ``cellpose.transforms.random_rotate_and_resize`` moves only cell probability and
flows. Here one affine sampling grid per sample moves the image and cell probability
(bilinear), the class map (nearest neighbour, so classes never blend) and the flows
(bilinear, then the vectors are rotated and flipped with the image).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F


def random_affine(images: Sequence[np.ndarray], targets: Sequence[np.ndarray], bsize: int, scale_range: float,
                  rng: np.random.Generator, rescale: Sequence[float] | None = None, rotate: bool = True,
                  device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``bsize`` crops of rotated, scaled and flipped samples.

    Parameters
    ----------
    images
        ``(C, Y, X)`` float arrays.
    targets
        ``(4, Y, X)``: class id, cell probability, flow Y, flow X.
    bsize
        Output tile size.
    scale_range
        Scale factor drawn uniformly from ``1 ± scale_range / 2``.
    rng
        Random generator (seeded by the caller).
    rescale
        Extra scale factor per sample (e.g. to bring objects to the model's diameter).
    rotate
        Rotate by a uniform random angle (else only flips and crops).

    Returns
    -------
    x : Tensor ``(B, C, bsize, bsize)``
    y : Tensor ``(B, 4, bsize, bsize)``
    """
    xs, ys = [], []
    half = (bsize - 1) / 2
    oy, ox = torch.meshgrid(torch.arange(bsize, dtype=torch.float32, device=device) - half,
                            torch.arange(bsize, dtype=torch.float32, device=device) - half, indexing="ij")
    for n, (img, tgt) in enumerate(zip(images, targets)):
        ly, lx = img.shape[-2:]
        scale = (1 - scale_range / 2) + scale_range * rng.random()
        if rescale is not None:
            scale *= float(rescale[n])
        theta = (2 * rng.random() - 1) * np.pi if rotate else 0.0
        flip = rng.random() > 0.5
        # Centre of the crop in input pixels: anywhere that keeps the crop inside the scaled image.
        span = np.maximum(np.array([ly, lx]) * scale - bsize, 0) / (2 * scale)
        cy = (ly - 1) / 2 + (2 * rng.random() - 1) * span[0]
        cx = (lx - 1) / 2 + (2 * rng.random() - 1) * span[1]
        c, s = float(np.cos(theta)), float(np.sin(theta))
        dx = -ox if flip else ox
        # Output offset (dy, dx) -> input offset R(theta) @ (dy, dx) / scale.
        iy = cy + (c * oy - s * dx) / scale
        ix = cx + (s * oy + c * dx) / scale
        grid = torch.stack([ix / max(lx - 1, 1) * 2 - 1, iy / max(ly - 1, 1) * 2 - 1], dim=-1)[None]
        img_t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None].to(device)
        tgt_t = torch.from_numpy(np.ascontiguousarray(tgt, dtype=np.float32))[None].to(device)
        x = F.grid_sample(img_t, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        cls = F.grid_sample(tgt_t[:, :1], grid, mode="nearest", padding_mode="zeros", align_corners=True)
        rest = F.grid_sample(tgt_t[:, 1:], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        # Vectors move with the image: v_out = F R^T v_in (F negates x when flipped).
        fy, fx = rest[:, 1].clone(), rest[:, 2].clone()
        vy = c * fy + s * fx
        vx = -s * fy + c * fx
        rest[:, 1], rest[:, 2] = vy, (-vx if flip else vx)
        xs.append(x)
        ys.append(torch.cat([cls, rest], dim=1))
    return torch.cat(xs), torch.cat(ys)

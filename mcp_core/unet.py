"""A small convolutional base that trains from scratch on a CPU: a residual U-Net with cellpose's readout.

Cellpose 4 ships only its ViT (``CPSAM``); its earlier convolutional ``CPnet`` is gone. This network
plays that role for offline training: four resolution levels of residual 3x3 convolution blocks, skip
connections, and a 1x1 readout of ``nout`` channels per pixel in the order of :mod:`mcp_core.model`
(class logits, flow Y, flow X, cell probability). It subclasses cellpose's ``BaseModel``, so it carries
``diam_mean``/``diam_labels`` like ``CPSAM``, and ``forward`` returns ``(y, style)`` as ``CPSAM`` does.
Being fully convolutional it works on any tile size that is a multiple of ``2 ** (levels - 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from cellpose.vit import BaseModel
from torch import nn
from torch.nn import functional as F


class ResBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a (1x1 when the width changes) shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x))


class UNet(BaseModel):
    """Residual U-Net with widths *nbase* per level (e.g. ``[16, 32, 64, 128]``) and *nout* output channels."""

    def __init__(self, nbase: Sequence[int], nout: int, nchan: int = 3) -> None:
        super().__init__(dtype=torch.float32)
        widths = [int(c) for c in nbase]
        self.nbase, self.nout, self.ps = widths, int(nout), 1
        self.down = nn.ModuleList(ResBlock(a, b) for a, b in zip([nchan, *widths[:-1]], widths))
        self.up = nn.ModuleList(ResBlock(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(len(widths) - 1)))
        self.out = nn.Conv2d(widths[0], self.nout, 1)

    @property
    def bottleneck(self) -> nn.Module:
        """The deepest block: its output, averaged over space, is the network's image embedding."""
        return self.down[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], dim=1))
        return self.out(x), torch.zeros((x.shape[0], 256), device=x.device)

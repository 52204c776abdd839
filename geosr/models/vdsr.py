"""VDSR (Kim, Lee and Lee, CVPR 2016), multichannel.

``depth`` weight layers of 3x3 convolutions: the first maps the bands to ``width`` features, the
next ``depth - 2`` map features to features, each followed by ReLU, and the last maps back to the
bands. The network predicts the residual (the detail missing from the interpolated input), which the
caller adds to the interpolated input. Each layer widens the receptive field by one pixel on each
side, so the receptive radius is ``depth`` pixels of the fine grid.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class VDSR(nn.Module):
    """Very deep residual super-resolution network.

    Parameters
    ----------
    in_channels
        Number of bands in and out.
    depth
        Number of convolution layers (20 in the paper), at least 2.
    width
        Number of features of the hidden layers (64 in the paper).
    """

    def __init__(self, in_channels: int = 1, depth: int = 20, width: int = 64) -> None:
        super().__init__()
        if in_channels < 1 or depth < 2 or width < 1:
            raise ValueError(f"invalid VDSR shape: in_channels={in_channels}, depth={depth}, width={width}")
        self.in_channels, self.depth, self.width = in_channels, depth, width
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, in_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.reset_parameters()

    @property
    def receptive_radius(self) -> int:
        """Pixels on each side of an output pixel that influence it."""
        return self.depth

    def reset_parameters(self) -> None:
        """He (Kaiming) normal initialisation of every convolution, zero biases."""
        for module in self.body:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        last = self.body[-1]
        nn.init.normal_(last.weight, std=math.sqrt(2.0 / (9 * self.width)) * 0.1)

    def residual(self, ilr: torch.Tensor) -> torch.Tensor:
        """The detail to add to the interpolated input ``ilr`` of shape (N, C, H, W)."""
        return self.body(ilr)

    def forward(self, ilr: torch.Tensor) -> torch.Tensor:
        """Super-resolved output: the interpolated input plus the predicted residual."""
        return ilr + self.body(ilr)

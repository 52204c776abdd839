"""VDSR (Kim, Lee and Lee, CVPR 2016), multichannel.

``depth`` weight layers of 3x3 convolutions: the first maps the bands to ``width`` features, the
next ``depth - 2`` map features to features, each followed by ReLU, and the last maps back to the
bands. The network predicts the residual (the detail missing from the interpolated input), which the
caller adds to the interpolated input. Each layer widens the receptive field by one pixel on each
side, so the receptive radius is ``depth`` pixels of the fine grid.

With ``cell_input`` the network also sees, for each band, the coarse value of the input cell that
holds each fine pixel (the input repeated onto the fine grid), whose steps show where the cell edges
fall: a convolution cannot otherwise tell where a fine pixel sits inside its cell.
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
    cell_input
        Take each band's input cells (the coarse values repeated onto the fine grid) as extra input
        channels, after the interpolated bands (see :meth:`inputs`).
    """

    def __init__(self, in_channels: int = 1, depth: int = 20, width: int = 64, cell_input: bool = False) -> None:
        super().__init__()
        if in_channels < 1 or depth < 2 or width < 1:
            raise ValueError(f"invalid VDSR shape: in_channels={in_channels}, depth={depth}, width={width}")
        self.in_channels, self.depth, self.width, self.cell_input = in_channels, depth, width, bool(cell_input)
        first = in_channels * (2 if cell_input else 1)
        layers: list[nn.Module] = [nn.Conv2d(first, width, 3, padding=1), nn.ReLU(inplace=True)]
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

    def inputs(self, ilr: torch.Tensor, cells: torch.Tensor | None = None) -> torch.Tensor:
        """The network's input: the interpolated bands ``ilr`` (N, C, H, W), followed, for a network
        with ``cell_input``, by the input cells ``cells`` of the same shape."""
        if not self.cell_input:
            return ilr
        if cells is None:
            raise ValueError("this network takes the input cells too: pass cells")
        return torch.cat([ilr, cells], dim=1)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The detail to add to the interpolated bands, from the network's input ``x`` (:meth:`inputs`)."""
        return self.body(x)

    def forward(self, ilr: torch.Tensor, cells: torch.Tensor | None = None) -> torch.Tensor:
        """Super-resolved output: the interpolated input plus the predicted residual."""
        return ilr + self.body(self.inputs(ilr, cells))

    def with_cell_input(self) -> VDSR:
        """A copy that also takes the input cells, computing exactly what this network computes until
        trained further: the first layer's weights for the new channels start at zero."""
        if self.cell_input:
            raise ValueError("this network already takes the input cells")
        wider = VDSR(self.in_channels, self.depth, self.width, cell_input=True)
        state = {k: v.clone() for k, v in self.state_dict().items()}
        first = state["body.0.weight"]
        state["body.0.weight"] = torch.cat([first, torch.zeros_like(first)], dim=1)
        wider.load_state_dict(state)
        return wider.to(first.device)

"""The ``backprojection`` model: classical back-projection through geosr's pipeline, nothing learned.

``python -m geosr.models.classical [--output PATH]`` writes ``geosr/models/weights/backprojection.safetensors``.

Its network is the smallest VDSR (two 3x3 convolutions of one feature) with every weight zero, so its
residual is zero and its output is the ``consistent`` interpolation, the limit of iterative
back-projection (Lanczos-3 up, then the cell-average error added back until the output's cell averages
equal the input), conserved at whole scales. Everything else is the pipeline every model runs in:
georeferencing, nodata, seam-free tiles, dask, the QGIS tool. It is the best classical method on
every held-out raster and scale of ``python -m geosr.training.heldout`` but three (bicubic on the oxygen
window at x4, the cubic spline on the 500 hPa height at x2, Lanczos on the CFSv2 precipitation at x2);
use it where ``geosr evaluate``
shows a learned model losing to back-projection on a sample of your own data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from geosr.models.card import ModelCard
from geosr.models.files import save_model
from geosr.models.registry import WEIGHTS_DIR
from geosr.models.vdsr import VDSR
from geosr.tiling import CONSISTENT


def backprojection_card() -> ModelCard:
    return ModelCard(
        name="backprojection",
        in_channels=1,
        depth=2,
        width=1,
        bands=["any"],
        units=[""],
        interpolation=CONSISTENT.description,
        conserve=True,
        description=(
            "Classical iterative back-projection, no learned weights: the consistent interpolation (the limit "
            "of Lanczos-3 back-projection, whose cell averages equal the input) through geosr's pipeline, "
            "conserved at whole scales. Its network's weights are all zero, so it adds nothing. Back-projection "
            "is the best classical method on all but three of the held-out rasters and scales of "
            "geosr.training.heldout (bicubic on the oxygen window at x4, the cubic spline on the 500 hPa height "
            "at x2, Lanczos on the CFSv2 precipitation at x2); use this where geosr evaluate shows a learned "
            "model losing to it on your data."
        ),
        training={
            "command": "python -m geosr.models.classical",
            "data": "none: nothing is learned",
        },
    )


def zero_network() -> VDSR:
    """A 2-layer, 1-feature VDSR whose every weight and bias is zero: its residual is zero."""
    network = VDSR(1, depth=2, width=1)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
    return network


def write(output: Path | None = None) -> Path:
    """Write the ``backprojection`` model file (default: among the shipped models) and its card as
    ``NAME.md`` beside it."""
    card = backprojection_card()
    path = save_model(zero_network(), card, output or WEIGHTS_DIR / "backprojection.safetensors")
    lines = [f"# Model card: `{card.name}`", "", card.description, ""]
    lines += [f"- **{key}**: {getattr(card, key)}" for key in ("architecture", "depth", "width", "interpolation")]
    lines += [f"- **conserve**: {card.conserve}", ""]
    lines += [f"Made by `{card.training['command']}`; {card.training['data']}.", ""]
    path.with_suffix(".md").write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m geosr.models.classical", description=__doc__)
    parser.add_argument("--output", type=Path, default=None, help="model file (default: the shipped one)")
    print(write(parser.parse_args(argv).output))


if __name__ == "__main__":
    main()

"""Self-calibration's gain estimate one and two levels above the input, against the truth's.

For each validation grid of a model kind (benchmarks/compare_validation.py's parts, never trained on,
never held out) and copies of it smoothed by Gaussians of 1 and 2 fine pixels (parts ``P~1``, ``P~2``, as
in compare_calibration.py), at x2, x3 and x4, the unclipped least-squares residual scale
(geosr.calibrate's ``<input - interpolation, model - interpolation> / |model - interpolation|^2``, default
conserved output) measured three ways:

* ``truth``: the grid averaged by the scale and restored, against the grid itself (the gain that would
  be best, unknowable at run time);
* ``g1``: the input's estimation window averaged once more and restored, against the input (what
  self-calibration uses, before clipping to [0, 1] and without its valid-pixel requirement or its
  smaller-scale fallback; ``nan`` where the window averaged by the scale has fewer than
  geosr.calibrate.MIN_CELLS cells a side);
* ``g2``: the same one level higher (the window averaged by the scale, averaged again and restored).

It asks whether detail missing below the input's grid (a smoothed field, such as a climate model's
orography) shows at the input as a gain that fades from ``g2`` to ``g1``, so that ``g1^2 / g2`` would
extrapolate it. Prints one line per grid and scale. Needs the fetched rasters
(``python -m geosr.training.fetch``). The record: benchmarks/results/calibration_levels.md.

Usage: python benchmarks/calibration_levels.py KIND [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("dem", "climate"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from compare_calibration import cases, with_smoothed
    from compare_validation import validation_parts

    from geosr.calibrate import MIN_CELLS, _sums, window
    from geosr.degrade import area_average
    from geosr.models.files import load_model
    from geosr.predict import Downscaler

    torch.set_num_threads(args.threads)
    downscaler = Downscaler(load_model(args.kind, "cpu"), device="cpu")
    parts = with_smoothed(validation_parts(args.kind), [1.0, 2.0])

    def gain(grid: np.ndarray, scale: int) -> float:
        """The unclipped residual scale restoring ``grid`` from its average by ``scale`` (nan: too small)."""
        h, w = grid.shape[0] // scale * scale, grid.shape[1] // scale * scale
        if min(h, w) // scale < MIN_CELLS:
            return float("nan")
        product, power, _ = _sums(downscaler, grid[None, :h, :w], scale)
        return float(product[0] / power[0]) if power[0] > 0 else float("nan")

    for part, i, scale, fine in cases(parts):
        coarse = area_average(fine, scale)
        source = coarse[window(coarse.shape, scale)]
        h2, w2 = source.shape[0] // scale * scale, source.shape[1] // scale * scale
        g1, g2 = gain(source, scale), gain(area_average(source[:h2, :w2], scale), scale)
        print(
            f"{part}{i} x{scale}: input {coarse.shape[0]}x{coarse.shape[1]}, truth {gain(fine, scale):.2f}, "
            f"g1 {g1:.2f}, g2 {g2:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

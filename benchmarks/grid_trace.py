"""How much of the input grid shows in an output: east-west steps across cell edges against inside cells.

Usage: ``python benchmarks/grid_trace.py [--scale 4] [--model dem]``

The held-out Jacksboro columns are area-averaged by ``scale`` and restored by back-projection and by
the model (plain and conserved). For each output, the mean |difference| between horizontally
neighbouring pixels that straddle a coarse-cell edge is divided by the mean inside cells (interior,
border of 2 x scale pixels cropped). 1 means no trace of the grid; the true DEM is the reference.
"""

from __future__ import annotations

import argparse

import numpy as np

from geosr.degrade import area_average
from geosr.evaluate import classical
from geosr.predict import downscale
from geosr.training.sources import JACKSBORO_TEST, jacksboro


def edge_ratio(z: np.ndarray, scale: int) -> float:
    steps = np.abs(np.diff(z, axis=1))[2 * scale : -2 * scale, 2 * scale : -2 * scale]
    columns = np.arange(2 * scale, z.shape[1] - 1 - 2 * scale)
    edge = (columns + 1) % scale == 0  # between the last column of one cell and the first of the next
    return float(steps[:, edge].mean() / steps[:, ~edge].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--model", default="dem")
    args = parser.parse_args()
    s = args.scale
    truth = jacksboro()[:, JACKSBORO_TEST]
    truth = truth[: truth.shape[0] // s * s, : truth.shape[1] // s * s]
    coarse = area_average(truth, s)
    outputs = {
        "true DEM": truth,
        "back-projection": classical(coarse, s, "backprojection"),
        "model, plain": downscale(coarse, s, args.model, conserve=False, device="cpu"),
        "model, conserved": downscale(coarse, s, args.model, conserve=True, device="cpu"),
    }
    print(f"jacksboro columns [262, 403) at x{s}, model {args.model}: |east-west step| across cell edges / inside")
    for name, z in outputs.items():
        print(f"  {name:18s} {edge_ratio(z, s):.3f}")


if __name__ == "__main__":
    main()

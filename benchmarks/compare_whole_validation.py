"""Conserved RMSE of model files on whole validation rasters: what inference gives, no padded patches.

For each validation raster of the model kind (:func:`compare_validation.validation_parts`; the largest
window without nodata of each) and scale, the raster is area-averaged by the scale, restored by each
model (``geosr.evaluate.evaluate_array``, conserved output, border of 2 x scale cropped), and each
model's RMSE is compared with the first model's. Needs the fetched rasters (``python -m
geosr.training.fetch``).

Usage: python benchmarks/compare_whole_validation.py {dem,climate} BASE_MODEL MODEL [MODEL ...] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def validation_windows(kind: str, scales: list[int]) -> Iterator[tuple[str, np.ndarray, int]]:
    """(label, raster, scale) for every validation raster of ``kind`` (its largest window without nodata,
    cropped to whole cells of the scale) and scale at which it has at least 8 pixels a side per scale."""
    from compare_validation import validation_parts

    from geosr.training.heldout import _largest_valid_window

    for part, rasters in validation_parts(kind).items():
        for index, raster in enumerate(rasters):
            truth = _largest_valid_window(raster[0])
            for scale in scales:
                if min(truth.shape) < 8 * scale:
                    continue
                h, w = (n - n % scale for n in truth.shape)
                yield f"{part}{index} {h}x{w}", truth[:h, :w], scale


def print_summary(changes: dict[Any, list[float]], label: Callable[[Any], str] = str) -> None:
    """Each candidate's mean and worst change (per cent; negative: lower RMSE) over the pairs."""
    for key, values in changes.items():
        print(f"{label(key)}: mean change {np.mean(values):+.2f}%, worst {max(values):+.2f}%, over {len(values)} pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("dem", "climate"))
    parser.add_argument("models", nargs="+", metavar="MODEL", help="the first is the base the others are compared with")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scales", default="2,3,4")
    args = parser.parse_args()
    import torch

    from geosr.evaluate import evaluate_array

    torch.set_num_threads(args.threads)
    base, *others = args.models
    changes: dict[str, list[float]] = {m: [] for m in others}
    for label, truth, scale in validation_windows(args.kind, [int(s) for s in args.scales.split(",")]):
        results = {m: evaluate_array(truth, scale, m, device="cpu", methods=()) for m in args.models}
        reference = results[base]["model_conserved"].rmse
        line = [f"{label} x{scale}: {base} {reference:.5g}"]
        for m in others:
            got = results[m]["model_conserved"].rmse
            changes[m].append(100 * (got / reference - 1))
            line.append(f"{m} {got:.5g} ({changes[m][-1]:+.2f}%)")
        print("; ".join(line), flush=True)
    print_summary(changes)


if __name__ == "__main__":
    main()

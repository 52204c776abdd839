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
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("dem", "climate"))
    parser.add_argument("models", nargs="+", metavar="MODEL", help="the first is the base the others are compared with")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scales", default="2,3,4")
    args = parser.parse_args()
    import torch
    from compare_validation import validation_parts

    from geosr.evaluate import evaluate_array
    from geosr.training.heldout import _largest_valid_window

    torch.set_num_threads(args.threads)
    base, *others = args.models
    changes: dict[str, list[float]] = {m: [] for m in others}
    for part, rasters in validation_parts(args.kind).items():
        for index, raster in enumerate(rasters):
            truth = _largest_valid_window(raster[0])
            for scale in (int(s) for s in args.scales.split(",")):
                if min(truth.shape) < 8 * scale:
                    continue
                results = {m: evaluate_array(truth, scale, m, device="cpu", methods=()) for m in args.models}
                reference = results[base]["model_conserved"].rmse
                line = [f"{part}{index} {truth.shape[0]}x{truth.shape[1]} x{scale}: {base} {reference:.5g}"]
                for m in others:
                    got = results[m]["model_conserved"].rmse
                    changes[m].append(100 * (got / reference - 1))
                    line.append(f"{m} {got:.5g} ({changes[m][-1]:+.2f}%)")
                print("; ".join(line), flush=True)
    for m, values in changes.items():
        print(f"{m}: mean change {np.mean(values):+.2f}%, worst {max(values):+.2f}%, over {len(values)} pairs")


if __name__ == "__main__":
    main()

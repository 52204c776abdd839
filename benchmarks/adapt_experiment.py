"""Test-time adaptation of ``dem`` to the input raster: does fine-tuning on the input's own coarser copy pay?

For each validation raster of ``dem`` (:func:`compare_whole_validation.validation_windows`, the largest
window without nodata of each) and scale, the raster is area-averaged by the scale (the "input"), the shipped
``dem`` is fine-tuned on pairs cut from that input alone (the input averaged once more by the scale,
and the input), and the fine-tuned model restores the input; its conserved RMSE against the truth is
compared with the shipped ``dem``'s. The decision rule is in ``benchmarks/results/adapt_experiment.md``.

Usage: python benchmarks/adapt_experiment.py [--threads 2] [--steps 200] [--lrs 1e-5,1e-4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def adapted_model(coarse: np.ndarray, scale: int, lr: float, steps: int, output: Path) -> Path:
    """The shipped ``dem`` fine-tuned on ``coarse`` (y, x) as its own high-resolution raster at ``scale``."""
    from geosr.models.files import load_model
    from geosr.training.data import normalise
    from geosr.training.train import TrainConfig, train

    patch = 24 if min(coarse.shape) >= 48 else 12
    config = TrainConfig(
        scales=(scale,),
        patch=patch,
        batch_size=16,
        steps_per_epoch=steps // 4,
        epochs=4,
        lr=lr,
        loss="relative",
        interpolation="consistent",
        precision="bf16",
        val_samples=16,
        seed=0,
    )
    raster = normalise(coarse[None])
    card = load_model("dem", "cpu").card
    train([raster], [raster], config, output, card, init="dem", log=lambda line: None)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lrs", default="1e-5,1e-4")
    parser.add_argument("--scales", default="2,3,4")
    args = parser.parse_args()
    import torch
    from compare_whole_validation import print_summary, validation_windows

    from geosr.degrade import area_average
    from geosr.evaluate import evaluate_array

    torch.set_num_threads(args.threads)
    lrs = [float(x) for x in args.lrs.split(",")]
    changes: dict[float, list[float]] = {lr: [] for lr in lrs}
    with tempfile.TemporaryDirectory(prefix="geosr-adapt-") as tmp:
        for label, fine, scale in validation_windows("dem", [int(s) for s in args.scales.split(",")]):
            coarse = area_average(fine[None], scale)[0]
            base = evaluate_array(fine, scale, "dem", device="cpu", methods=("backprojection",))
            shipped = base["model_conserved"].rmse
            line = [f"{label} x{scale}: backprojection {base['backprojection'].rmse:.5g}, dem {shipped:.5g}"]
            for lr in lrs:
                start = time.perf_counter()
                name = f"{label.split()[0]}{scale}_{lr}.safetensors"
                model = adapted_model(coarse, scale, lr, args.steps, Path(tmp) / name)
                got = evaluate_array(fine, scale, str(model), device="cpu", methods=())["model_conserved"].rmse
                change = 100 * (got / shipped - 1)
                changes[lr].append(change)
                line.append(f"lr {lr:g} {got:.5g} ({change:+.2f}%, {time.perf_counter() - start:.0f} s)")
            print("; ".join(line), flush=True)
    print_summary(changes, lambda lr: f"lr {lr:g}")


if __name__ == "__main__":
    main()

"""The paper's SGD recipe against Adam on the DEM training data, same network, data and step budget.

SGD: momentum 0.9, weight decay 1e-4, learning rate 0.1, gradients clipped to [-theta/lr, theta/lr]
with theta = 0.01 (Kim et al. 2016). Adam: learning rate 2e-4. Both: 20-layer VDSR, batches of 16
48-pixel patches mixing scales 2, 3 and 4, bf16 autocast (``--precision fp32`` where the CPU has no bf16
instructions), seed 0. Prints the validation RMSE
(normalised units) after each epoch, and bicubic's (the network's input here).

Data: the real Jacksboro DEM's training columns [0, 190) and 48 synthetic terrains (256 x 256, seed
0), validation on its columns [190, 262) and 8 synthetic terrains (128 x 128, seed 1): the DEM data
the comparison was made on, kept here as the shipped models' training data grow (nothing to fetch).
The figures in README and `benchmarks/results/compare_optimizers_cpu.txt` were measured with the
training code of 2026-11-25; it has changed since, so a rerun prints other numbers (a validation
RMSE of 0.4807 before training where the stored run had 0.3718).

Usage: python benchmarks/compare_optimizers.py [--epochs 6] [--steps 50] [--threads 1] [--precision bf16|fp32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from geosr.models.card import ModelCard
from geosr.training.data import normalise
from geosr.training.sources import JACKSBORO_TRAIN, JACKSBORO_VAL, jacksboro, synthetic_terrain
from geosr.training.train import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=50, help="steps per epoch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--precision",
        choices=["bf16", "fp32"],
        default="bf16",
        help="bf16 (as recorded) is emulated, about 17 times slower than fp32, on a CPU without bf16 instructions",
    )
    args = parser.parse_args()
    real = jacksboro()
    train_sets = [real[None, :, JACKSBORO_TRAIN]] + [s[None] for s in synthetic_terrain(48, 256, 0)]
    val_sets = [real[None, :, JACKSBORO_VAL]] + [s[None] for s in synthetic_terrain(8, 128, 1)]
    rasters, val = [normalise(r) for r in train_sets], [normalise(r) for r in val_sets]
    weights = [0.3] + [0.7 / (len(rasters) - 1)] * (len(rasters) - 1)
    for optimizer, lr in (("sgd", 0.1), ("adam", 2e-4)):
        config = TrainConfig(
            optimizer=optimizer,
            lr=lr,
            epochs=args.epochs,
            steps_per_epoch=args.steps,
            precision=args.precision,
            threads=args.threads,
            interpolation="bicubic",
            loss="mse",
        )
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            summary = train(
                rasters,
                val,
                config,
                Path(tmp) / "m.safetensors",
                ModelCard(name="compare", in_channels=1),
                weights=weights,
                log=lambda line: None,
            )
        curve = ", ".join(f"{h['val_rmse']:.4f}" for h in summary["history"])
        bicubic = summary["history"][-1]["val_interpolation"]
        print(
            f"{optimizer} lr {lr:g}: val RMSE by epoch [{curve}] (start {summary['initial_val_rmse']:.4f}, "
            f"bicubic {bicubic:.4f}); {summary['steps']} steps in {time.perf_counter() - started:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()

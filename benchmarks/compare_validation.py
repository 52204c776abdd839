"""Validation RMSE of candidate models, part by part: what the training records' decision rules measure.

Prints, for each model file, the plain and conserved RMSE (normalised units, 512 validation patches of
48 pixels, bf16, the same seed for every model; missing cells next to data filled with the model card's
``fill_trend``, as inference fills them) and how much lower each is than the ``consistent``
input's, on each validation part of the model kind (never trained on, never held out):

* ``dem``: a = the Jacksboro columns [190, 262), b = the 1-degree Earth relief outside its held-out
  window and the USA, c = the southern quarter of the SRTM DEM near Erzurum, d = that of the Gironde DEM;
* ``climate``: a = the iris-sample-data validation grids (GloSea4 member 13, NEMO March), b = the
  observed ocean grids' Indian Ocean (OISST, surface oxygen), c = the spectral-model grids (ERA5 500 hPa
  geopotential and 850 hPa temperature, GEFS sea-level pressure); and on each whole c grid at x2, x3,
  x4 the conserved output against the best of cubic spline, Lanczos and back-projection.

Needs the fetched rasters (``python -m geosr.training.fetch``).

Usage: python benchmarks/compare_validation.py {dem,climate} MODEL [MODEL ...] [--threads N]
"""

from __future__ import annotations

import argparse

import numpy as np


def validation_parts(kind: str) -> dict[str, list[np.ndarray]]:
    """The validation parts of a model kind, each a list of (1, y, x) rasters."""
    from geosr.training import sources

    if kind == "dem":
        erzurum, gironde = sources.more_dem_sets()[1]
        return {
            "a": [sources.jacksboro()[None, :, sources.JACKSBORO_VAL]],
            "b": [sources.relief_validation()],
            "c": [erzurum[None]],
            "d": [gironde[None]],
        }
    return {
        "a": sources.iris_climate_sets()[1],
        "b": sources.observed_ocean_sets()[1],
        "c": sources.spectral_validation(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("dem", "climate"))
    parser.add_argument("models", nargs="+", metavar="MODEL")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    from geosr.evaluate import best_classical, evaluate_array
    from geosr.models.files import load_model
    from geosr.training.data import normalise
    from geosr.training.train import Batches, TrainConfig, evaluate_batches

    torch.set_num_threads(args.threads)
    parts = validation_parts(args.kind)
    config = TrainConfig(interpolation="consistent", val_samples=512, precision="bf16")
    by_trend: dict[float, dict[str, object]] = {}  # the patches of each fill trend (a card's), cut once
    for model in args.models:
        loaded = load_model(model, "cpu")
        network, trend = loaded.network, loaded.card.fill_trend
        if trend not in by_trend:  # missing cells filled as inference fills them for this model
            by_trend[trend] = {
                name: Batches([normalise(r) for r in rasters], config, config.seed + 7, fill_trend=trend).batch(
                    config.val_samples
                )
                for name, rasters in parts.items()
            }
        for name, val in by_trend[trend].items():
            plain, conserved, base = evaluate_batches(network, val, torch.device("cpu"), "bf16")
            print(
                f"{model} [{name}]: plain {plain:.5f} ({100 * (1 - plain / base):+.2f}%), conserved {conserved:.5f} "
                f"({100 * (1 - conserved / base):+.2f}%), consistent {base:.5f}",
                flush=True,
            )
        if args.kind != "climate":
            continue
        for i, grid in enumerate(parts["c"]):
            row = []
            for scale in (2, 3, 4):
                methods = ("cubic_spline", "lanczos", "backprojection")
                results = evaluate_array(grid[0], scale, model, device="cpu", methods=methods)
                best = best_classical(results)
                row.append(
                    f"x{scale} {100 * (1 - results['model_conserved'].rmse / results[best].rmse):+.1f}% vs {best}"
                )
            print(f"{model} [c{i} whole]: " + ", ".join(row), flush=True)


if __name__ == "__main__":
    main()

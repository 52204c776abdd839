"""Would a self-check on the user's own raster tell when the model loses to back-projection?

For every held-out raster and scale of ``python -m geosr.training.heldout`` (run
``python -m geosr.training.fetch`` first): the true gain is how much lower the shipped model's conserved
RMSE is than back-projection's against the real fine raster; the self-check gain is the same measured
one level up, as a user could without the fine raster: the coarse input is area-averaged once more by
the scale, restored onto the coarse grid by the model and by back-projection, and compared with the
coarse input (border of 2 x scale cells cropped). Where the coarse input has fewer than 8 x scale
cells on a side the self-check is "too small".

Usage: ``python benchmarks/self_check.py``
"""

from __future__ import annotations

import warnings

import numpy as np

from geosr.degrade import area_average
from geosr.evaluate import classical, conserve, evaluate_array, measure
from geosr.predict import downscale
from geosr.training.heldout import climate_rasters, dem_rasters


def self_check_gain(coarse: np.ndarray, scale: int, model: str) -> float | None:
    """1 - RMSE(model) / RMSE(back-projection) one level up, or None if the input is too small."""
    h, w = (coarse.shape[0] // scale) * scale, (coarse.shape[1] // scale) * scale
    if min(h, w) < 8 * scale:
        return None
    truth = coarse[:h, :w]
    coarser = area_average(truth, scale)
    back = classical(coarser, scale, "backprojection")
    restored = conserve(downscale(coarser, scale, model, conserve=False).astype(np.float64), coarser, scale)
    return 1 - measure(restored, truth, coarser, scale).rmse / measure(back, truth, coarser, scale).rmse


def main() -> None:
    warnings.filterwarnings("ignore", message="Dataset has no geotransform")
    for model, rasters in (("dem", dem_rasters()), ("climate", climate_rasters())):
        for name, raster in rasters.items():
            for scale in (2, 3, 4):
                if min(raster.shape) < 8 * scale:
                    continue
                results = evaluate_array(raster, scale, model, methods=("backprojection",), device="cpu")
                true_gain = 1 - results["model_conserved"].rmse / results["backprojection"].rmse
                h, w = (raster.shape[0] // scale) * scale, (raster.shape[1] // scale) * scale
                gain = self_check_gain(area_average(raster[:h, :w], scale), scale, model)
                check = "too small" if gain is None else f"{100 * gain:+6.1f}%"
                line = f"{model:8s} {name[:44]:44s} x{scale}  true {100 * true_gain:+6.1f}%  self-check {check}"
                print(line, flush=True)


if __name__ == "__main__":
    main()

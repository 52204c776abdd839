"""The degradation model: coarse rasters are cell averages of fine ones.

Coarse DEMs and climate grids hold the mean of the surface over each cell, so training pairs and
evaluation pairs are made by *area-averaging* a fine raster over non-overlapping ``factor x factor``
blocks (the fine raster is first cropped to a multiple of ``factor``, dropping the last rows and
columns). A coarse cell with any nodata fine cell is nodata. The same function is used everywhere:
training, evaluation and the classical baselines.
"""

from __future__ import annotations

import numpy as np


def area_average(fine: np.ndarray, factor: int) -> np.ndarray:
    """Average ``fine`` (..., y, x) over ``factor x factor`` blocks; NaN where any fine cell is NaN."""
    if int(factor) != factor or factor < 1:
        raise ValueError(f"area averaging needs a whole factor >= 1, got {factor}")
    factor = int(factor)
    h, w = fine.shape[-2] // factor, fine.shape[-1] // factor
    if h == 0 or w == 0:
        raise ValueError(f"raster of shape {fine.shape[-2:]} is smaller than one {factor} x {factor} cell")
    cropped = np.asarray(fine, dtype=np.float64)[..., : h * factor, : w * factor]
    blocks = cropped.reshape(*cropped.shape[:-2], h, factor, w, factor)
    return blocks.mean(axis=(-3, -1))

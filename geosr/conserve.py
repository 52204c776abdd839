"""Mass conservation: make every coarse cell's average of the fine output equal the coarse value.

For a whole scale ``s`` each coarse cell covers an ``s x s`` block of fine pixels. The correction adds
to every fine pixel the difference between its cell's coarse value and the cell's current average,
so after it the average over each cell equals the input exactly (up to float rounding). It only
reads the cell's own pixels, so it is local and keeps tiling seam-free as long as every cell
touching a tile's core is computed exactly (the tiler adds ``s`` pixels to the halo).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geosr.degrade import area_average


def conserve(fine: np.ndarray, coarse: np.ndarray, scale: int) -> np.ndarray:
    """Correct a (..., y*s, x*s) ``fine`` array so its ``s x s`` block means equal ``coarse``."""
    error = coarse - area_average(fine, scale)
    return fine + np.repeat(np.repeat(error, scale, axis=-2), scale, axis=-1)


def conserve_torch(fine: Any, coarse_up: Any, scale: int) -> Any:
    """Torch version for training: ``coarse_up`` is the coarse raster repeated onto the fine grid."""
    import torch.nn.functional as F

    error = F.avg_pool2d(coarse_up - fine, scale)
    return fine + F.interpolate(error, scale_factor=scale, mode="nearest")

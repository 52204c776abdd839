"""Training and evaluation sources available offline: matplotlib's real DEMs and synthetic terrain.

Real rasters (matplotlib ``sample_data``):

* ``jacksboro``: SRTM 3-arc-second DEM of the Jacksboro fault, Tennessee, 344 x 403 int16 metres.
  Split by columns: ``[0, 190)`` training, ``[190, 262)`` validation, ``[262, 403)`` held out
  for evaluation (never seen in training or validation).
* ``topobathy``: 91 x 120 topography and bathymetry; held out entirely for evaluation.

Synthetic terrain: fractional Brownian surfaces (spectral slope beta in [2.0, 3.6]) and ridged
surfaces (1 - |fBm|), rounded to whole metres like SRTM.
"""

from __future__ import annotations

import matplotlib.cbook
import numpy as np

from geosr.testing import fbm_surface

JACKSBORO_TRAIN = slice(0, 190)
JACKSBORO_VAL = slice(190, 262)
JACKSBORO_TEST = slice(262, 403)


def jacksboro() -> np.ndarray:
    """The whole Jacksboro DEM, (y, x) float64 metres, row 0 north."""
    with matplotlib.cbook.get_sample_data("jacksboro_fault_dem.npz") as sample:
        return np.asarray(sample["elevation"], dtype=np.float64)


def topobathy() -> np.ndarray:
    """matplotlib's topography/bathymetry sample, (y, x) float64 metres."""
    with matplotlib.cbook.get_sample_data("topobathy.npz") as sample:
        return np.asarray(sample["topo"], dtype=np.float64)


def synthetic_terrain(n: int, size: int, seed: int) -> list[np.ndarray]:
    """``n`` synthetic DEMs of ``size`` x ``size`` metres-valued pixels."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        beta = float(rng.uniform(2.0, 3.6))
        relief = float(np.exp(rng.uniform(np.log(50), np.log(2000))))
        surface = fbm_surface((size, size), beta=beta, seed=seed * 1000 + i, relief=1.0, base=0.0).astype(np.float64)
        if i % 3 == 2:
            surface = 1.0 - np.abs(2.0 * surface - 1.0)
        out.append(np.round(surface * relief + rng.uniform(0, 1000)))
    return out


def dem_training_sets(n_synthetic: int = 48, size: int = 256, seed: int = 0) -> tuple[list, list]:
    """(train, validation) lists of (1, y, x) rasters for the ``dem`` model, not yet normalised."""
    real = jacksboro()
    train = [real[None, :, JACKSBORO_TRAIN]] + [s[None] for s in synthetic_terrain(n_synthetic, size, seed)]
    val = [real[None, :, JACKSBORO_VAL]] + [s[None] for s in synthetic_terrain(8, 128, seed + 1)]
    return train, val

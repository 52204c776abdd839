"""Training and evaluation sources available offline: matplotlib's real DEMs and synthetic terrain.

Real rasters (matplotlib ``sample_data``):

* ``jacksboro``: SRTM 3-arc-second DEM of the Jacksboro fault, Tennessee, 344 x 403 int16 metres.
  Split by columns: ``[0, 190)`` training, ``[190, 262)`` validation, ``[262, 403)`` held out
  for evaluation (never seen in training or validation).
* ``topobathy``: 91 x 120 topography and bathymetry; held out entirely for evaluation.

Synthetic terrain: fractional Brownian surfaces (spectral slope beta in [2.0, 3.6]) and ridged
surfaces (1 - |fBm|), rounded to whole metres like SRTM.

Synthetic climate fields (near-surface temperature in kelvin): a smooth large-scale field (fBm with
beta in [3.5, 5.0]), a north-south gradient, and an altitude term (lapse rate 4-8 K/km) over a
synthetic terrain or over the training part of the Jacksboro DEM, which puts terrain-shaped detail
into a smooth field as in real near-surface temperature.
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


def synthetic_climate(n: int, size: int, seed: int) -> list[np.ndarray]:
    """``n`` synthetic near-surface temperature fields (kelvin) of ``size`` x ``size`` pixels."""
    rng = np.random.default_rng(seed)
    real = jacksboro()[:, JACKSBORO_TRAIN]
    out = []
    for i in range(n):
        smooth = fbm_surface(
            (size, size), beta=float(rng.uniform(3.5, 5.0)), seed=seed * 1000 + i, relief=1.0, base=0.0
        )
        gradient = np.linspace(0.0, 1.0, size)[:, None] * float(rng.uniform(-10, 10))
        field = 288.0 + float(rng.uniform(2, 25)) * (smooth - 0.5) + gradient
        lapse = float(rng.uniform(4e-3, 8e-3))
        if i % 4 == 3:
            y0 = int(rng.integers(0, real.shape[0] - min(size, real.shape[0]) + 1))
            patch = real[y0 : y0 + size, :size]
            field = field[: patch.shape[0], : patch.shape[1]] - lapse * (patch - patch.min())
        elif i % 2 == 1:
            relief = float(np.exp(rng.uniform(np.log(100), np.log(3000))))
            terrain = fbm_surface((size, size), beta=float(rng.uniform(2.2, 3.4)), seed=seed * 2000 + i, relief=relief)
            field = field - lapse * terrain
        out.append(field.astype(np.float64))
    return out


def climate_training_sets(n_synthetic: int = 48, size: int = 192, seed: int = 10) -> tuple[list, list]:
    """(train, validation) lists of (1, y, x) synthetic temperature fields for the ``climate`` model.

    No real climate raster is used: the real ones are kept for evaluation (see ``climate_eval_rasters``).
    """
    train = [f[None] for f in synthetic_climate(n_synthetic, size, seed)]
    val = [f[None] for f in synthetic_climate(8, 128, seed + 1)]
    return train, val

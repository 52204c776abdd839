"""Training samples: random fine patches, their area-averaged coarse versions, and the ILR.

A sample is cut from a fine raster that has already been normalised with its own whole-raster
per-band statistics, exactly as inference does. For scale ``s`` a fine window of
``patch + 2 * margin * s`` pixels is area-averaged, interpolated back to the fine grid with the same
kernel as inference (:mod:`geosr.tiling`; the margin is the kernel's ``margin``), and the margin is
cut off, so the ILR inside the patch (almost) never sees a patch edge.

Augmentation: flips and 90-degree rotations (square pixels only), and a random gain and
offset of the normalised values, so the network meets rasters whose relief differs from the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geosr.degrade import area_average
from geosr.stats import BandStats
from geosr.tiling import BICUBIC, Kernel, Span, interpolation_matrix

#: Coarse pixels around a patch for the bicubic kernel (see ``Kernel.margin`` for the others).
MARGIN = BICUBIC.margin


def normalise(raster: np.ndarray) -> np.ndarray:
    """Standardise a (band, y, x) float raster with its own per-band statistics (NaN kept)."""
    stats = BandStats.of_block(raster)
    std = np.where(stats.std > 0, stats.std, 1.0)
    return (raster - stats.mean[:, None, None]) / std[:, None, None]


def ilr_of(coarse: np.ndarray, fine_shape: tuple[int, int], kernel: Kernel = BICUBIC) -> np.ndarray:
    """Interpolation of a (band, y, x) coarse array onto a fine grid of ``fine_shape``."""
    (h, w), (ho, wo) = coarse.shape[-2:], fine_shape
    rows = interpolation_matrix(Span(0, ho), Span(0, h), h, ho, kernel)
    cols = interpolation_matrix(Span(0, wo), Span(0, w), w, wo, kernel)
    return np.matmul(np.matmul(rows, coarse), cols.T)


@dataclass
class Sample:
    ilr: np.ndarray  # (band, p, p) normalised interpolated coarse input
    coarse_up: np.ndarray  # (band, p, p) the coarse input repeated onto the fine grid
    scale: int
    target: np.ndarray  # (band, p, p) normalised fine truth
    valid: np.ndarray  # (band, p, p) bool


def cut_sample(
    raster: np.ndarray,
    scale: int,
    patch: int,
    rng: np.random.Generator,
    *,
    square_pixels: bool = True,
    gain_range: tuple[float, float] = (0.3, 3.0),
    offset_range: float = 1.0,
    kernel: Kernel = BICUBIC,
) -> Sample | None:
    """A random training sample from a normalised (band, y, x) raster, or None if it has nodata only."""
    side = patch + 2 * kernel.margin * scale
    _, h, w = raster.shape
    if h < side or w < side:
        return None
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    fine = raster[:, y0 : y0 + side, x0 : x0 + side]
    if square_pixels:
        fine = np.rot90(fine, int(rng.integers(0, 4)), axes=(1, 2))
    if rng.random() < 0.5:
        fine = fine[:, :, ::-1]
    if rng.random() < 0.5:
        fine = fine[:, ::-1, :]
    gain = float(np.exp(rng.uniform(np.log(gain_range[0]), np.log(gain_range[1]))))
    fine = np.ascontiguousarray(fine) * gain + rng.uniform(-offset_range, offset_range)
    valid = np.isfinite(fine)
    if valid.mean() < 0.5:
        return None
    coarse = area_average(fine, scale)
    coarse = np.where(np.isfinite(coarse), coarse, 0.0)
    ilr = ilr_of(coarse, fine.shape[-2:], kernel)
    m = kernel.margin * scale
    cut = (slice(None), slice(m, m + patch), slice(m, m + patch))
    coarse_up = np.repeat(np.repeat(coarse, scale, axis=-2), scale, axis=-1)
    return Sample(
        ilr[cut].astype(np.float32),
        coarse_up[cut].astype(np.float32),
        scale,
        np.nan_to_num(fine[cut]).astype(np.float32),
        valid[cut],
    )

"""Whole-raster, per-band statistics used for normalisation.

Normalising every tile with the statistics of the whole raster (never of the tile) is what makes
tiled output equal whole-raster output, and what makes the pipeline equivariant: for ``a > 0``,
``downscale(a * x + b) == a * downscale(x) + b``. Statistics are accumulated block by block with
Chan's parallel update, so a raster larger than memory can be summarised in one streaming pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: A band whose standard deviation is at most this fraction of its largest magnitude is constant: a spread
#: that small is the float64 rounding of its mean (a constant 1234.6 averages to 1234.6 +- 1e-13), not
#: data, and normalising by it would blow the rounding up to unit variance, which a multiband model then
#: mixes into the other bands (``f(a*x + b)`` would differ from ``a*f(x) + b``; no raster holds real detail
#: 12 orders of magnitude below its values, and such a band still gets interpolated, only not refined).
CONSTANT_RTOL = 1e-12


def valid_mask(block: np.ndarray, nodata: float | None = None) -> np.ndarray:
    """True where a pixel holds data: finite, and not equal to ``nodata``.

    A float block is compared with ``nodata`` in its own precision, as GDAL compares a band's nodata (a
    double) with its pixels: float32 pixels of -3.4e38 are nodata -3.4e38, whether ``nodata`` comes as a
    Python float or as a float64 NumPy scalar (which NumPy 2 would otherwise compare in float64, where
    the two differ)."""
    floating = np.issubdtype(block.dtype, np.floating)
    valid = np.isfinite(block) if floating else np.ones(block.shape, bool)
    if nodata is not None and not np.isnan(nodata):
        if floating:
            with np.errstate(over="ignore"):  # beyond the type's range: infinite, invalid already
                nodata = block.dtype.type(nodata)
        valid &= block != nodata
    return valid


def unmasked(block: Any) -> Any:
    """``block`` itself, or for a NumPy masked array its values with NaN in the masked cells (as floats):
    ``np.asarray`` and ``np.block`` would keep the numbers stored under the mask as data."""
    if not np.ma.isMaskedArray(block):
        return block
    return np.ma.filled(block.astype(block.dtype if block.dtype.kind == "f" else np.float64), np.nan)


def as_float(block: np.ndarray, nodata: float | None = None) -> np.ndarray:
    """Copy of ``block`` as float64 with NaN wherever it holds no data (masked cells included)."""
    block = unmasked(block)
    out = np.asarray(block, dtype=np.float64).copy()
    out[~valid_mask(np.asarray(block), nodata)] = np.nan
    return out


@dataclass(frozen=True)
class BandStats:
    """Count, mean, sum of squared deviations (M2) and largest magnitude of the valid pixels of each band."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    absmax: np.ndarray

    @classmethod
    def of_block(cls, block: np.ndarray) -> BandStats:
        """Statistics of a (band, y, x) float block whose invalid pixels are NaN."""
        flat = block.reshape(block.shape[0], -1)
        valid = np.isfinite(flat)
        count = valid.sum(axis=1).astype(np.float64)
        absmax = np.where(valid, np.abs(flat), 0.0).max(axis=1, initial=0.0)
        # values near the float64 limit overflow the sums: the statistics become inf, and
        # geosr.predict.check_magnitudes refuses such a raster by its absmax before they are used
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.where(valid, flat, 0.0).sum(axis=1)
            mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
            dev = np.where(valid, flat - mean[:, None], 0.0)
            return cls(count, mean, (dev * dev).sum(axis=1), absmax)

    def merge(self, other: BandStats) -> BandStats:
        """Statistics of the union of two disjoint sets of pixels (Chan et al.)."""
        n = self.count + other.count
        with np.errstate(over="ignore", invalid="ignore"):
            delta = other.mean - self.mean
            safe = np.where(n > 0, n, 1.0)
            mean = self.mean + delta * other.count / safe
            m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / safe
        return BandStats(n, mean, m2, np.maximum(self.absmax, other.absmax))

    @classmethod
    def combine(cls, parts: Iterable[BandStats]) -> BandStats:
        result: BandStats | None = None
        for part in parts:
            result = part if result is None else result.merge(part)
        if result is None:
            raise ValueError("no statistics to combine")
        return result

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation of each band (0 for a constant or empty band, and for one whose
        spread is only the rounding of its mean: :data:`CONSTANT_RTOL`)."""
        safe = np.where(self.count > 0, self.count, 1.0)
        std = np.sqrt(np.maximum(self.m2, 0.0) / safe)
        return np.where(std > CONSTANT_RTOL * self.absmax, std, 0.0)

    @property
    def empty_bands(self) -> list[int]:
        """Zero-based indices of bands without a single valid pixel."""
        return [int(i) for i in np.flatnonzero(self.count == 0)]

"""Training samples: random fine patches, their area-averaged coarse versions, and the ILR.

A sample is cut from a fine raster that has already been normalised with its own whole-raster
per-band statistics, exactly as inference does. For each raster and scale ``s`` the whole raster is
area-averaged once and interpolated back to the fine grid with the model's kernel
(:mod:`geosr.tiling`), exactly as inference interpolates the whole raster (edges replicated at the
raster's own border); patches are then cut at whole coarse cells from the fine raster, its ILR and
its coarse values alike. So the ILR of a patch is what inference would compute there, whatever the
kernel's support, and patches can come from any part of a raster at least one patch wide.

Augmentation, applied to the fine patch, its ILR and its coarse values alike (every step commutes
with interpolation and area averaging): flips and 90-degree rotations (square pixels only), and a
random gain and offset of the normalised values, so the network meets rasters whose relief differs
from the mean. A patch always starts on a cell boundary (after the flips too); when its size is not a
multiple of the scale, its last row and column of cells are partial. Coarse cells without data are
filled from their neighbours over ``fill`` rings, as inference fills them
(:func:`geosr.tiling.extend_into_missing`), and the rest enter as the (augmented) mean; with ``fill`` 0 all
of them enter as the mean, as the shipped models were trained. A coarse cell with any fine pixel missing is missing:
none of its fine pixels is a target (inference writes nodata over the whole of such a cell, and
conserving towards the filled value would teach the network nothing but the filling).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geosr.degrade import area_average
from geosr.stats import BandStats
from geosr.tiling import BICUBIC, Kernel, Span, extend_into_missing, interpolation_matrix


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


class Prepared:
    """A normalised (band, y, x) raster with its area average and ILR at one whole ``scale`` (missing cells
    next to data filled over ``fill`` rings with the model card's ``trend``, as inference fills them; the
    others 0, the mean)."""

    def __init__(
        self, raster: np.ndarray, scale: int, kernel: Kernel = BICUBIC, fill: int = 0, trend: float = 0.0
    ) -> None:
        _, h, w = raster.shape
        h, w = (h // scale) * scale, (w // scale) * scale
        self.scale = int(scale)
        self.fine = np.asarray(raster[:, :h, :w], dtype=np.float32)
        coarse = area_average(self.fine, scale) if h and w else np.zeros((raster.shape[0], 0, 0))
        missing = ~np.isfinite(coarse)
        if missing.any():
            # inference writes nodata over the whole of a coarse nodata cell: its fine pixels are no target
            block = np.repeat(np.repeat(missing, scale, axis=-2), scale, axis=-1)
            self.fine = np.where(block, np.float32(np.nan), self.fine)
        coarse = np.where(missing, 0.0, coarse)
        if fill and missing.any():
            coarse = extend_into_missing(coarse, ~missing, fill, trend)
        self.coarse = coarse.astype(np.float32)
        self.ilr = ilr_of(coarse, (h, w), kernel).astype(np.float32) if h and w else self.fine.copy()

    def can_cut(self, patch: int) -> bool:
        """Whether :meth:`cut` can ever give a sample: some patch it may cut (a window of whole cells at a cell
        boundary, cut to ``patch`` from any of its corners as the flips and turns leave it) has at least half of
        its pixels valid. Exact, from a summed-area table of the valid pixels."""
        s = self.scale
        bands, h, w = self.fine.shape
        if h < patch or w < patch:
            return False
        table = np.zeros((h + 1, w + 1), dtype=np.int64)
        table[1:, 1:] = np.isfinite(self.fine).sum(axis=0).cumsum(axis=0).cumsum(axis=1)
        ys = s * np.arange((h - patch) // s + 1)
        xs = s * np.arange((w - patch) // s + 1)
        extra = -(-patch // s) * s - patch  # the whole-cell window's pixels beyond the patch
        for dy in {0, extra}:
            for dx in {0, extra}:
                top, left = (ys + dy)[:, None], (xs + dx)[None, :]
                bottom, right = top + patch, left + patch
                counts = table[bottom, right] - table[top, right] - table[bottom, left] + table[top, left]
                if (2 * counts >= bands * patch * patch).any():  # valid.mean() >= 0.5
                    return True
        return False

    def cut(
        self,
        patch: int,
        rng: np.random.Generator,
        *,
        square_pixels: bool = True,
        gain_range: tuple[float, float] = (0.3, 3.0),
        offset_range: float = 1.0,
    ) -> Sample | None:
        """A random sample of ``patch`` x ``patch`` fine pixels, or None if it is too small or mostly nodata."""
        s = self.scale
        _, h, w = self.fine.shape
        if h < patch or w < patch:
            return None
        y0 = s * int(rng.integers(0, (h - patch) // s + 1))
        x0 = s * int(rng.integers(0, (w - patch) // s + 1))
        # a window of whole cells (it fits: h and w are whole cells), augmented, then cut to the patch from
        # its first row and column, so that the patch's cells start at its first pixel whatever the flips
        # (a patch cut first and flipped after would start with a partial cell when ``patch % s``)
        cells = -(-patch // s)
        size = cells * s
        coarse = self.coarse[:, y0 // s : y0 // s + cells, x0 // s : x0 // s + cells]
        coarse_up = np.repeat(np.repeat(coarse, s, axis=-2), s, axis=-1)
        window = (slice(None), slice(y0, y0 + size), slice(x0, x0 + size))
        stack = np.stack([self.fine[window], self.ilr[window], coarse_up])
        if square_pixels:
            stack = np.rot90(stack, int(rng.integers(0, 4)), axes=(2, 3))
        if rng.random() < 0.5:
            stack = stack[..., ::-1]
        if rng.random() < 0.5:
            stack = stack[..., ::-1, :]
        stack = stack[..., :patch, :patch]
        gain = float(np.exp(rng.uniform(np.log(gain_range[0]), np.log(gain_range[1]))))
        stack = np.ascontiguousarray(stack) * gain + rng.uniform(-offset_range, offset_range)
        fine, ilr, coarse_up = stack
        valid = np.isfinite(fine)
        if valid.mean() < 0.5:
            return None
        return Sample(
            ilr.astype(np.float32),
            coarse_up.astype(np.float32),
            s,
            np.nan_to_num(fine).astype(np.float32),
            valid,
        )


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
    """One random sample from a normalised (band, y, x) raster (see :class:`Prepared`)."""
    return Prepared(raster, scale, kernel).cut(
        patch, rng, square_pixels=square_pixels, gain_range=gain_range, offset_range=offset_range
    )

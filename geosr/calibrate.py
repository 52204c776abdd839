"""Self-calibration: how much of the network's detail a raster's own coarser copy supports.

A network trained on some fields can add detail of the right pattern but the wrong amount, or of the
wrong pattern, to a field unlike them (a band-limited reanalysis mean has no detail below its grid,
and a model that learned near-surface temperature invents some). Nothing finer than the input is
known at run time, but the input itself can be averaged once more by the same scale and restored by
the model: for each band the least-squares scale of the residual that best restores the input,

    alpha = <input - interpolation, model - interpolation> / |model - interpolation|^2,

clipped to [0, 1], estimates how much of the residual the field supports (by the self-similarity of
natural fields across scales). The band's residual is then multiplied by ``alpha`` everywhere: one
number per band for the whole raster, so tiles still stitch without seams and tiled output equals
whole-raster output. It never amplifies the detail, only withdraws what the input does not support.

The estimate is computed on at most the central :data:`MAX_WINDOW` x :data:`MAX_WINDOW` input
pixels (bounded time and memory: about 1/scale^2 of the work of a raster of that size; one pixel
more where that centres the window exactly), at whole scales only, and only where the averaged copy
has at least :data:`MIN_CELLS` cells on each side and its valid pixels fill as many; where the window
is too small for that at the run's scale, at the largest smaller whole scale where it is not
(:func:`estimation_scale`: a 16 x 36 grid run at x4 is estimated at x2), and where none, ``alpha`` = 1
(the model as trained); band by band for a 1-band model, so that memory follows one band. With a
self-ensemble, whose output mirrors exactly as its input does, the sums also take the cells aligned
with the window's far edges where they differ (those of the mirrored raster: up to 4 restorations),
so that the gains mirror too. A border of 2 x scale pixels is left out of the sums when
the averaged copy has at least :data:`CROP_CELLS` cells on each side. The restorations conserve
(each input cell's mean kept), whether or not the run does, so a plain and a conserved run of the
same raster get the same gains and differ only by conservation. On a global grid whose window is every column
(:func:`residual_gains`' ``periodic``), the restorations wrap around, no columns are left out of the sums and
they take the cells starting at every column offset: the gains do not depend on where its columns start.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geosr.degrade import area_average
from geosr.stats import BandStats

#: Largest side, in input pixels, of the window the gains are estimated on (its centre)
MAX_WINDOW = 1024
#: Fewest cells per side of the input averaged once more for an estimate (else the gain is 1)
MIN_CELLS = 6
#: Cells per side from which a border of 2 x scale pixels is left out of the estimate
CROP_CELLS = 12
#: Largest gain: the detail is withdrawn, never amplified (higher clips were measured and not adopted:
#: benchmarks/results/calibration_max_gain.md)
MAX_GAIN = 1.0


def whole_scale(scale: float) -> int | None:
    """``scale`` as an int when it is whole (2, 3.0), else ``None``."""
    rounded = round(float(scale))
    return rounded if rounded >= 2 and abs(float(scale) - rounded) < 1e-9 else None


def window(shape: tuple[int, int], scale: float, periodic: bool = False) -> tuple[slice, slice]:
    """The central window of an input of ``shape`` (y, x) the gains are estimated on: a whole number of
    ``scale`` x ``scale`` cells, at most :data:`MAX_WINDOW` pixels per side, and one pixel more where that
    centres it exactly (so that a flipped raster's window is the flipped window; at a fractional
    scale, which is not calibrated, any whole number of pixels).

    ``periodic`` (a global grid, whose columns wrap around): every column, and as many central rows as keep
    the window's area within :data:`MAX_WINDOW` x :data:`MAX_WINDOW` pixels (728 rows of a 0.25-degree grid's
    1440 columns, 291 of a 0.1-degree grid's 3600), so that the window does not move with the meridian where
    the columns start. Where the columns are not a whole number of cells (they cannot wrap in cells), the
    central window as for any grid."""
    factor = whole_scale(scale) or 1
    if periodic and shape[1] % factor == 0:  # every column (whole cells round the globe); fewer rows if wide
        rows = max(MAX_WINDOW * MAX_WINDOW // max(shape[1], 1), factor)
        return _centred(shape[0], rows, factor), slice(0, shape[1])
    return _centred(shape[0], MAX_WINDOW, factor), _centred(shape[1], MAX_WINDOW, factor)


def _centred(n: int, limit: int, factor: int) -> slice:
    """The central span of an axis of ``n`` pixels: a whole number of cells of ``factor``, at most ``limit``
    pixels, and one pixel more where that centres it exactly."""
    size = min(n, limit) // factor * factor
    size += (n - size) % 2
    start = (n - size) // 2
    return slice(start, start + size)


def band_groups(bands: int, channels: int) -> list[list[int]]:
    """The bands (0-based) a model of ``channels`` channels takes together: each band alone for a 1-band
    model, else all of them. Gains are estimated group by group, so that memory follows the window of
    one group, not of every band of a long stack."""
    return [[b] for b in range(bands)] if channels == 1 else [list(range(bands))]


def residual_gains(downscaler: Any, source: np.ndarray, scale: float, periodic: bool = False) -> np.ndarray:
    """Per-band residual gains in [0, 1] for a (band, y, x) float input window with NaN for nodata
    (:func:`window` of the raster), estimated with ``downscaler`` (a :class:`geosr.predict.Downscaler`)
    as described in the module docstring. Ones where no estimate can be made: too small a window, or
    fewer valid pixels than :data:`MIN_CELLS` x :data:`MIN_CELLS` cells.

    ``periodic``: the window is every column of a global grid (:func:`geosr.io.periodic_columns`). Where its
    width is a whole number of cells, the restorations wrap around and the sums take the cells starting at
    every column offset (0 to the scale - 1), so that the gains do not depend on where the grid's columns
    start: the same grid from -180 or from 0 degrees gets the same gains, and its output is the same rolled."""
    factor = whole_scale(scale)
    at = None if factor is None else estimation_scale(source.shape[1:], factor)
    if at is None:
        return np.ones(source.shape[0])
    groups = band_groups(source.shape[0], downscaler.model.card.in_channels)
    wrap = periodic and source.shape[-1] % at == 0
    return np.concatenate([_group_gains(downscaler, source[group], at, wrap) for group in groups])


def estimation_scale(shape: tuple[int, int], factor: int) -> int | None:
    """The whole scale the gains of a window of ``shape`` (y, x) are estimated at for a run at ``factor``:
    ``factor`` where the window averaged by it has at least :data:`MIN_CELLS` cells on each side, else the
    largest smaller whole scale (down to 2) where it has, else ``None`` (no estimate: the gains are 1).

    A small grid (a 2.5-degree global field of 16 x 36 cells run at x4) has too few cells once averaged
    by the run's scale; the detail the same model adds at a smaller scale is the best evidence left of
    how much of it the field supports."""
    for candidate in range(factor, 1, -1):
        if min(shape) // candidate >= MIN_CELLS:
            return candidate
    return None


def _group_gains(downscaler: Any, source: np.ndarray, factor: int, periodic: bool = False) -> np.ndarray:
    bands = source.shape[0]
    # The cells start at the window's first pixel. A self-ensemble promises output that mirrors (and
    # rotates) exactly as the input does, so its gains must too: where the window is not a whole number
    # of cells, the sums also take the cells that end at its last pixel (those of the mirrored raster).
    shifts = [sorted({0, n % factor}) if downscaler.ensemble > 1 else [0] for n in source.shape[1:]]
    if periodic:  # every column offset, the columns wrapping: the same sums wherever the grid's columns start
        shifts[1] = list(range(factor))
    h, w = (n // factor * factor for n in source.shape[1:])
    products, powers, counts = np.zeros(bands), np.zeros(bands), np.zeros(bands)
    for dy in shifts[0]:
        for dx in shifts[1]:
            if periodic:
                target = np.roll(np.asarray(source, dtype=np.float64), -dx, axis=-1)[:, dy : dy + h]
            else:
                target = np.asarray(source, dtype=np.float64)[:, dy : dy + h, dx : dx + w]
            product, power, count = _sums(downscaler, target, factor, periodic)
            products, powers, counts = products + product, powers + power, counts + count
    gains = np.ones(bands)
    enough = counts >= (MIN_CELLS * factor) ** 2 * len(shifts[0]) * len(shifts[1])
    for b in range(bands):
        if powers[b] > 0 and enough[b]:
            gains[b] = float(np.clip(products[b] / powers[b], 0.0, MAX_GAIN))
    return gains


def _sums(
    downscaler: Any, target: np.ndarray, factor: int, periodic: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per band, ``<input - interpolation, model - interpolation>``, ``|model - interpolation|^2`` and the
    number of valid pixels of ``target`` (a whole number of cells) restored from its average by ``factor``
    (its columns wrapping around where ``periodic``)."""
    from geosr.predict import plan_tiles, tile_window

    bands = target.shape[0]
    coarse = area_average(target, factor)
    stats = BandStats.of_block(coarse)
    # conserved, whatever the run asks, so that plain and conserved runs get the same gains
    missing = bool(np.isnan(coarse).any())
    plan = plan_tiles(
        coarse.shape[1:],
        factor,
        downscaler.tile_size,
        downscaler.model,
        conserve=True,
        missing=missing,
        periodic=periodic,
    )

    def restore(with_gains: np.ndarray) -> np.ndarray:
        out = np.empty_like(target)
        tiles = ((t, tile_window(coarse, t, plan)) for t in plan)
        for tile, core in downscaler.run(plan, stats, tiles, gains=with_gains):
            out[:, tile.rows.core.as_slice(), tile.cols.core.as_slice()] = core
        return out

    base, full = restore(np.zeros(bands)), restore(np.ones(bands))
    border = 2 * factor if min(coarse.shape[1:]) >= CROP_CELLS else 0
    side = 0 if periodic else border  # a global grid's columns have no edge to leave out
    inner = (slice(None), slice(border, target.shape[1] - border), slice(side, target.shape[2] - side))
    error, detail = (target - base)[inner], (full - base)[inner]
    products, powers, counts = np.zeros(bands), np.zeros(bands), np.zeros(bands)
    for b in range(bands):
        ok = np.isfinite(error[b]) & np.isfinite(detail[b])
        products[b], powers[b] = (error[b][ok] * detail[b][ok]).sum(), (detail[b][ok] ** 2).sum()
        counts[b] = ok.sum()
    return products, powers, counts

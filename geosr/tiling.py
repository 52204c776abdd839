"""Pure tiling maths: which output tiles to compute, the halo around each, and the input window
that feeds it.

The network runs on the fine (output) grid. A pixel of its output depends on the interpolated input
within ``receptive_radius`` fine pixels (one per 3x3 convolution). Each output tile therefore owns a
*core* window and is computed on an *extended* window that adds a halo of ``receptive_radius`` fine
pixels on every side that is not a raster edge; the interpolated input of the extended window is
built from an *input* window that adds the interpolation kernel's support on the coarse grid.
Interpolation weights are computed from global pixel indices (edges replicated at the raster's own
border, never at a tile's), so a tile sees exactly the values the whole raster would. The last tile
of each axis is kept even when it is smaller than the others (no tile is ever dropped).

Interpolation kernel: Keys' cubic convolution with a = -0.5 (the classical "bicubic"), support of
two coarse pixels either side, fine pixel centre ``j`` sampled at coarse coordinate
``(j + 0.5) * n_in / n_out - 0.5``, edge pixels replicated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Half-width of the interpolation kernel, in coarse pixels.
KERNEL_SUPPORT = 2


@dataclass(frozen=True)
class Span:
    """A half-open range ``[start, stop)`` of pixel indices along one axis."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    def as_slice(self) -> slice:
        return slice(self.start, self.stop)


@dataclass(frozen=True)
class AxisTile:
    """One tile along one axis: fine core and extended spans and the coarse input span."""

    core: Span
    extended: Span
    source: Span


@dataclass(frozen=True)
class Tile:
    """A 2-D tile: its position in the tile grid and its row and column spans."""

    index: tuple[int, int]
    rows: AxisTile
    cols: AxisTile

    @property
    def core_shape(self) -> tuple[int, int]:
        return self.rows.core.size, self.cols.core.size

    @property
    def extended_shape(self) -> tuple[int, int]:
        return self.rows.extended.size, self.cols.extended.size

    @property
    def core_in_extended(self) -> tuple[slice, slice]:
        """Slices that cut the core out of an array covering the extended window."""
        r, c = self.rows, self.cols
        return (
            slice(r.core.start - r.extended.start, r.core.stop - r.extended.start),
            slice(c.core.start - c.extended.start, c.core.stop - c.extended.start),
        )


def cubic_kernel(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel evaluated at distances ``t``."""
    t = np.abs(t)
    t2, t3 = t * t, t * t * t
    near = (a + 2) * t3 - (a + 3) * t2 + 1
    far = a * t3 - 5 * a * t2 + 8 * a * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _taps(out_span: Span, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Global coarse indices (clamped to the raster) and weights for each fine pixel of a span."""
    j = np.arange(out_span.start, out_span.stop, dtype=np.float64)
    u = (j + 0.5) * (n_in / n_out) - 0.5
    base = np.floor(u).astype(np.int64)
    offsets = np.arange(-KERNEL_SUPPORT + 1, KERNEL_SUPPORT + 1)
    idx = base[:, None] + offsets[None, :]
    weights = cubic_kernel(u[:, None] - idx)
    return np.clip(idx, 0, n_in - 1), weights


def source_span(out_span: Span, n_in: int, n_out: int) -> Span:
    """Coarse pixels needed to interpolate the fine pixels of ``out_span``."""
    idx, _ = _taps(out_span, n_in, n_out)
    return Span(int(idx.min()), int(idx.max()) + 1)


def interpolation_matrix(out_span: Span, in_span: Span, n_in: int, n_out: int) -> np.ndarray:
    """Matrix ``M`` (fine pixels x coarse pixels) with ``fine = M @ coarse[in_span]`` along one axis."""
    idx, weights = _taps(out_span, n_in, n_out)
    if idx.min() < in_span.start or idx.max() >= in_span.stop:
        raise ValueError(f"input span {in_span} does not cover the kernel support of {out_span}")
    matrix = np.zeros((out_span.size, in_span.size), dtype=np.float64)
    rows = np.repeat(np.arange(out_span.size), idx.shape[1])
    np.add.at(matrix, (rows, (idx - in_span.start).ravel()), weights.ravel())
    return matrix


def plan_axis(n_in: int, n_out: int, tile: int, halo: int) -> list[AxisTile]:
    """Split ``n_out`` fine pixels into cores of ``tile`` pixels (the last may be smaller)."""
    if tile <= 0:
        raise ValueError(f"tile size must be positive, got {tile}")
    tiles = []
    for start in range(0, n_out, tile):
        core = Span(start, min(start + tile, n_out))
        extended = Span(max(0, core.start - halo), min(n_out, core.stop + halo))
        tiles.append(AxisTile(core, extended, source_span(extended, n_in, n_out)))
    return tiles


def tile_pair(tile_size: int | tuple[int, int]) -> tuple[int, int]:
    """(rows, columns) of a tile size given as one number or a pair; each must be positive."""
    pair = (tile_size, tile_size) if np.isscalar(tile_size) else tuple(tile_size)
    if len(pair) != 2 or min(int(v) for v in pair) < 1:
        raise ValueError(f"tile size must be a positive number of pixels or a pair of them, got {tile_size}")
    return int(pair[0]), int(pair[1])


@dataclass(frozen=True)
class TilePlan:
    """Every tile needed to cover an ``out_shape`` fine grid from an ``in_shape`` coarse grid."""

    in_shape: tuple[int, int]
    out_shape: tuple[int, int]
    tile_size: tuple[int, int]
    halo: int
    row_tiles: tuple[AxisTile, ...]
    col_tiles: tuple[AxisTile, ...]

    @classmethod
    def build(
        cls, in_shape: tuple[int, int], out_shape: tuple[int, int], tile_size: int | tuple[int, int], halo: int
    ) -> TilePlan:
        """Plan with square tiles of ``tile_size`` or (rows, columns) tiles of ``tile_size``."""
        sizes = tile_pair(tile_size)
        rows = plan_axis(in_shape[0], out_shape[0], sizes[0], halo)
        cols = plan_axis(in_shape[1], out_shape[1], sizes[1], halo)
        return cls(tuple(in_shape), tuple(out_shape), sizes, halo, tuple(rows), tuple(cols))

    @property
    def grid_shape(self) -> tuple[int, int]:
        return len(self.row_tiles), len(self.col_tiles)

    def __len__(self) -> int:
        return len(self.row_tiles) * len(self.col_tiles)

    def __iter__(self):
        for i, r in enumerate(self.row_tiles):
            for j, c in enumerate(self.col_tiles):
                yield Tile((i, j), r, c)

    def matrices(self, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
        """Row and column interpolation matrices for a tile's extended window."""
        (h, w), (ho, wo) = self.in_shape, self.out_shape
        return (
            interpolation_matrix(tile.rows.extended, tile.rows.source, h, ho),
            interpolation_matrix(tile.cols.extended, tile.cols.source, w, wo),
        )


def footprint_index(n_in: int, n_out: int, out_span: Span) -> np.ndarray:
    """Coarse pixel containing each fine pixel centre of ``out_span`` (global indices)."""
    j = np.arange(out_span.start, out_span.stop, dtype=np.float64)
    return np.minimum(np.floor((j + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def halo_fraction(tile_size: int, halo: int) -> float:
    """Share of the computed pixels that belong to halos for an interior tile."""
    return 1.0 - tile_size**2 / (tile_size + 2 * halo) ** 2


__all__ = [
    "KERNEL_SUPPORT",
    "AxisTile",
    "Span",
    "Tile",
    "TilePlan",
    "cubic_kernel",
    "footprint_index",
    "halo_fraction",
    "interpolation_matrix",
    "plan_axis",
    "source_span",
]

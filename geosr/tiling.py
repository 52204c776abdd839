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

Missing coarse cells (nodata) next to data are filled before interpolating by :func:`extend_into_missing`:
``rounds`` times, every missing cell with a known neighbour (of eight) takes their mean, so the data
extends smoothly into a void or the sea instead of meeting a cliff (the band mean), which spoilt the
interpolation and the network's detail over the last cells before the edge. A cell's fill depends only
on cells within ``rounds`` of it (one more with a model's ``fill_trend``, which continues a slope into the
first missing ring), so a plan built with ``fill`` (:func:`fill_radius`: every cell that can reach valid
output) pads each input window by that many cells (:func:`fill_padding`) and tiles stay exact.

Interpolation kernels (:data:`KERNELS`), all sampling fine pixel centre ``j`` at coarse coordinate
``(j + 0.5) * n_in / n_out - 0.5`` with edge pixels replicated:

* ``bicubic``: Keys' cubic convolution with a = -0.5, support of two coarse pixels either side;
* ``consistent``: the limit of iterative back-projection (Lanczos-3 up, then repeatedly add the
  Lanczos-upsampled error of the cell averages). With ``L`` the (row-normalised) Lanczos-3
  interpolation and ``A`` the area average, back-projection converges to ``L (A L)^-1``; away from
  the edges ``A L`` is a convolution of the coarse grid whose inverse ``h`` decays geometrically, so
  the limit is the fixed kernel ``K(t) = sum_k h[k] L(t - k)``, truncated where ``|h| < 1e-8``
  (:data:`CONSISTENT_RADIUS` coarse pixels). Its output's cell averages equal the input (to 1e-7)
  away from the raster edges, and it is local, so tiles stay exact. For a fractional scale the cell
  average is the continuous box average.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from geosr.errors import InputError

#: Half-width of the bicubic interpolation kernel, in coarse pixels.
KERNEL_SUPPORT = 2
#: Coarse pixels of the inverse filter kept on each side by the ``consistent`` kernel.
CONSISTENT_RADIUS = 14


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


def lanczos_kernel(t: np.ndarray) -> np.ndarray:
    """Lanczos-3 kernel normalised so that its weights at any sampling phase sum to one."""
    t = np.asarray(t, dtype=np.float64)
    raw = np.where(np.abs(t) < 3, np.sinc(t) * np.sinc(t / 3), 0.0)
    phase = t - np.floor(t)
    total = sum(np.sinc(phase + m) * np.sinc((phase + m) / 3) for m in range(-3, 3))
    return raw / total


@functools.lru_cache(maxsize=64)
def _inverse_filter(scale: float) -> np.ndarray:
    """Taps ``h[-R..R]`` of the inverse of ``A L`` (area average after Lanczos-3) on the coarse grid."""
    whole = float(scale).is_integer()
    n = int(scale) if whole else 64
    phases = (np.arange(n) + 0.5) / n - 0.5
    d = np.arange(-3, 4)
    g = lanczos_kernel(d[:, None] + phases[None, :]).mean(axis=1)
    size = 256
    spectrum = np.zeros(size)
    spectrum[d % size] = g
    h = np.real(np.fft.ifft(1.0 / np.fft.fft(spectrum)))
    r = CONSISTENT_RADIUS
    taps = np.concatenate([h[-r:], h[: r + 1]])
    return taps / taps.sum()


@dataclass(frozen=True)
class Kernel:
    """A separable interpolation kernel.

    ``support``: half-width in coarse pixels; ``description``: the text model cards store (it starts
    with ``name``).
    """

    name: str
    support: int
    description: str

    def weights(self, t: np.ndarray, scale: float) -> np.ndarray:
        """Weights at distances ``t`` (coarse pixels) for a fine grid ``scale`` times finer."""
        if self.name == "bicubic":
            return cubic_kernel(t)
        # A whole scale has only ``scale`` sampling phases: evaluate each distinct distance once (and
        # once per run: every tile of a whole scale has the same ones).
        # float64 whatever ``t`` holds: the cache is keyed by the distances' bytes, read back as float64
        distances, where = np.unique(np.round(np.asarray(t, dtype=np.float64), 10), return_inverse=True)
        values = _consistent_weights(round(scale, 9), distances.tobytes())
        return values[where].reshape(np.shape(t))


@functools.lru_cache(maxsize=32)
def _consistent_weights(scale: float, distances: bytes) -> np.ndarray:
    """The consistent kernel's weights at the float64 ``distances`` (bytes, hashable) for ``scale``."""
    d = np.frombuffer(distances, dtype=np.float64)
    h = _inverse_filter(scale)
    r = CONSISTENT_RADIUS
    values = sum(h[k + r] * lanczos_kernel(d - k) for k in range(-r, r + 1))
    values.flags.writeable = False  # shared by every caller
    return values


BICUBIC = Kernel("bicubic", KERNEL_SUPPORT, "bicubic (Keys a=-0.5), edges replicated")
CONSISTENT = Kernel(
    "consistent",
    CONSISTENT_RADIUS + 3,
    "consistent (limit of Lanczos-3 iterative back-projection: cell averages equal the input), edges replicated",
)
KERNELS = {k.name: k for k in (BICUBIC, CONSISTENT)}


def kernel_named(description: str) -> Kernel:
    """The kernel a model card's ``interpolation`` text names (it starts with the kernel's name)."""
    for name, kernel in KERNELS.items():
        if description.split(" ", 1)[0].strip(",.:;").lower() == name:
            return kernel
    raise ValueError(f"unknown interpolation {description!r}; known: {', '.join(KERNELS)}")


def _taps(
    out_span: Span, n_in: int, n_out: int, kernel: Kernel = BICUBIC, periodic: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Global coarse indices (clamped to the raster; on a ``periodic`` axis, unwrapped: -1 is the last pixel seen
    from the first, ``n_in`` the first seen from the last) and weights for each fine pixel of a span."""
    j = np.arange(out_span.start, out_span.stop, dtype=np.float64)
    u = (j + 0.5) * (n_in / n_out) - 0.5
    base = np.floor(u).astype(np.int64)
    offsets = np.arange(-kernel.support + 1, kernel.support + 1)
    idx = base[:, None] + offsets[None, :]
    weights = kernel.weights(u[:, None] - idx, n_out / n_in)
    return (idx if periodic else np.clip(idx, 0, n_in - 1)), weights


def source_span(out_span: Span, n_in: int, n_out: int, kernel: Kernel = BICUBIC, periodic: bool = False) -> Span:
    """Coarse pixels needed to interpolate the fine pixels of ``out_span`` (unwrapped on a ``periodic`` axis)."""
    idx, _ = _taps(out_span, n_in, n_out, kernel, periodic)
    return Span(int(idx.min()), int(idx.max()) + 1)


def interpolation_matrix(
    out_span: Span, in_span: Span, n_in: int, n_out: int, kernel: Kernel = BICUBIC, periodic: bool = False
) -> np.ndarray:
    """Matrix ``M`` (fine pixels x coarse pixels) with ``fine = M @ coarse[in_span]`` along one axis (on a
    ``periodic`` axis, spans in unwrapped indices: :func:`wrapped_indices`)."""
    idx, weights = _taps(out_span, n_in, n_out, kernel, periodic)
    if idx.min() < in_span.start or idx.max() >= in_span.stop:
        raise ValueError(f"input span {in_span} does not cover the kernel support of {out_span}")
    matrix = np.zeros((out_span.size, in_span.size), dtype=np.float64)
    rows = np.repeat(np.arange(out_span.size), idx.shape[1])
    np.add.at(matrix, (rows, (idx - in_span.start).ravel()), weights.ravel())
    return matrix


def plan_axis(
    n_in: int,
    n_out: int,
    tile: int,
    halo: int,
    kernel: Kernel = BICUBIC,
    from_end: bool = False,
    pad: int = 0,
    periodic: bool = False,
) -> list[AxisTile]:
    """Split ``n_out`` fine pixels into cores of ``tile`` pixels (the last may be smaller; with
    ``from_end``, the first, so that the cores counted from the far end are whole tiles). Each input
    span gets ``pad`` more coarse pixels on either side, within the raster (for the fill of missing
    cells, :func:`extend_into_missing`). On a ``periodic`` axis (the longitudes of a global grid, whose last
    column neighbours its first) the halo, the kernel's support and the padding reach across the raster's
    edges to the other side: the extended and input spans are unwrapped indices, beyond ``0`` and ``n``, which
    :func:`wrapped_indices` maps back onto the raster."""
    if tile <= 0:
        raise ValueError(f"tile size must be positive, got {tile}")
    starts = sorted({0, *range(n_out % tile if from_end else 0, n_out, tile)})
    tiles = []
    for start, stop in zip(starts, [*starts[1:], n_out], strict=True):
        core = Span(start, stop)
        if periodic:
            extended = Span(core.start - halo, core.stop + halo)
            source = source_span(extended, n_in, n_out, kernel, periodic=True)
            tiles.append(AxisTile(core, extended, Span(source.start - pad, source.stop + pad)))
            continue
        extended = Span(max(0, core.start - halo), min(n_out, core.stop + halo))
        source = source_span(extended, n_in, n_out, kernel)
        tiles.append(AxisTile(core, extended, Span(max(0, source.start - pad), min(n_in, source.stop + pad))))
    return tiles


def wrapped_indices(span: Span, n: int) -> np.ndarray:
    """The raster's own indices (0 to ``n - 1``) of an unwrapped ``span`` of a periodic axis of ``n`` pixels."""
    return np.arange(span.start, span.stop) % n


def wrapped_pieces(span: Span, n: int) -> list[Span]:
    """An unwrapped ``span`` of a periodic axis of ``n`` pixels as spans within the raster, in order: their
    windows, read and put side by side, are the span's (a span within the raster is itself)."""
    pieces = []
    start = span.start
    while start < span.stop:
        turn = start // n
        stop = min(span.stop, (turn + 1) * n)
        pieces.append(Span(start - turn * n, stop - turn * n))
        start = stop
    return pieces


def tile_pair(tile_size: int | tuple[int, int]) -> tuple[int, int]:
    """(rows, columns) of a tile size given as one number or a pair; each must be positive."""
    try:
        pair = (tile_size, tile_size) if np.isscalar(tile_size) else tuple(tile_size)
        good = len(pair) == 2 and min(int(v) for v in pair) >= 1
    except (TypeError, ValueError):
        good = False
    if not good:
        raise InputError(f"tile size must be a positive number of pixels or a pair of them, got {tile_size!r}")
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
    kernel: Kernel = BICUBIC
    conserve: bool = False
    fill: int = 0
    fill_trend: float = 0.0
    #: whether the columns are periodic (a global grid's longitudes: :func:`plan_axis`)
    periodic: bool = False

    @classmethod
    def build(
        cls,
        in_shape: tuple[int, int],
        out_shape: tuple[int, int],
        tile_size: int | tuple[int, int],
        halo: int,
        kernel: Kernel = BICUBIC,
        conserve: bool = False,
        from_end: tuple[bool, bool] = (False, False),
        fill: int = 0,
        fill_trend: float = 0.0,
        periodic: bool = False,
    ) -> TilePlan:
        """Plan with square tiles of ``tile_size`` or (rows, columns) tiles of ``tile_size``.

        ``conserve`` records that the tiles' cells are to be conserved (the caller's halo covers it).
        ``from_end`` lays the tiles of the rows (columns) from their far end (:func:`plan_axis`): a raster
        run mirrored and written back so gets whole tiles from its own first row (column).
        ``fill`` is the rounds of :func:`extend_into_missing` the tiles' missing cells get, with
        ``fill_trend`` its trend; the input windows are padded by :func:`fill_padding` cells, so that every
        tile fills its cells as the whole raster would. ``periodic``: the columns wrap around (the
        longitudes of a global grid; :func:`plan_axis`), so that the output has no seam where they meet.
        """
        sizes = tile_pair(tile_size)
        pad = fill_padding(fill, fill_trend)
        rows = plan_axis(in_shape[0], out_shape[0], sizes[0], halo, kernel, from_end[0], pad)
        cols = plan_axis(in_shape[1], out_shape[1], sizes[1], halo, kernel, from_end[1], pad, periodic)
        return cls(
            tuple(in_shape),
            tuple(out_shape),
            sizes,
            halo,
            tuple(rows),
            tuple(cols),
            kernel,
            conserve,
            fill,
            fill_trend,
            periodic,
        )

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
            interpolation_matrix(tile.rows.extended, tile.rows.source, h, ho, self.kernel),
            interpolation_matrix(tile.cols.extended, tile.cols.source, w, wo, self.kernel, self.periodic),
        )


def footprint_index(n_in: int, n_out: int, out_span: Span) -> np.ndarray:
    """Coarse pixel containing each fine pixel centre of ``out_span`` (global indices); a centre on the edge
    between two coarse pixels (at fractional scales such as 2.5) counts as in the later one."""
    return footprint_pair(n_in, n_out, out_span)[0]


def footprint_pair(n_in: int, n_out: int, out_span: Span, periodic: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The coarse pixels on either side of each fine pixel centre of ``out_span``: (later, earlier), the
    same pixel twice but for a centre exactly on the edge between two (at fractional scales: x2.5 puts the
    centre of every fifth fine pixel on a cell edge). Exact, in integers: fine centre ``j + 0.5`` is at
    ``(2j + 1) * n_in / (2 * n_out)`` coarse pixels. A rule that takes both for such centres (nodata where
    either is missing) is the same whichever way the raster is mirrored. On a ``periodic`` axis, an unwrapped
    ``out_span`` gives unwrapped pixels (beyond the raster's edges, not clamped to them)."""
    j = np.arange(out_span.start, out_span.stop, dtype=np.int64)
    numerator = (2 * j + 1) * n_in
    later = numerator // (2 * n_out)
    earlier = np.where(numerator % (2 * n_out) == 0, later - 1, later)
    if periodic:
        return later, earlier
    return np.minimum(later, n_in - 1), np.clip(earlier, 0, n_in - 1)


def fill_radius(halo: int, scale: float, kernel: Kernel = BICUBIC) -> int:
    """Coarse cells around valid data that can reach valid output through the network (``halo`` fine
    pixels) and the kernel: the rounds of :func:`extend_into_missing` that fill every one of them."""
    return int(np.ceil(halo / scale)) + kernel.support + 1


def fill_padding(rounds: int, trend: float = 0.0) -> int:
    """Cells by which an input window is padded so that :func:`extend_into_missing` fills its inside as
    the whole raster would: ``rounds``, one more with a trend (its first round reads two cells out)."""
    return rounds + 1 if rounds and trend else rounds


def extend_into_missing(z: np.ndarray, valid: np.ndarray, rounds: int, trend: float = 0.0) -> np.ndarray:
    """``z`` (..., y, x) with its missing cells (``valid`` False) next to data filled: in each of
    ``rounds`` rounds, every missing cell with known cells among its eight neighbours takes their mean
    and is known from then on. With a ``trend`` t, in the first round each valid neighbour ``n1`` counts
    as ``n1 + t * (n1 - n2)``, ``n2`` the cell beyond it in the same direction where that is valid (a
    slope continues a little into the first missing ring instead of meeting a plateau). Cells further
    than ``rounds`` from data keep their value in ``z``. The fill commutes with ``a * z + b``, flips and
    transposes (the neighbours are added in pairs of opposites, so exactly), and a cell's fill depends
    only on the cells within ``rounds`` of it (``rounds + 1`` with a trend: :func:`fill_padding`). Each
    round visits only the cells next to the last round's, so a void costs what its rim does."""
    out = np.array(z, dtype=np.float64, copy=True)
    valid = np.broadcast_to(np.asarray(valid, dtype=bool), out.shape)
    if rounds <= 0 or valid.all() or not valid.any():
        return out
    shape = out.shape
    h, w = shape[-2:]
    # every band (and leading index) padded by two missing cells on each side: flat indices then reach a
    # cell's neighbours, and the cells beyond them, by fixed offsets and never the next band's
    pad = ((0, 0), (2, 2), (2, 2))
    values = np.pad(out.reshape(-1, h, w), pad).ravel()
    known = np.pad(valid.reshape(-1, h, w), pad).ravel()
    inside = np.pad(np.ones((1, h, w), dtype=bool), pad)
    inside = np.broadcast_to(inside, (values.size // inside.size, h + 4, w + 4)).ravel()
    row = w + 4
    # opposite neighbours in pairs: N S, W E, NW SE, NE SW
    pairs = ((-row, row), (-1, 1), (-row - 1, row + 1), (-row + 1, row - 1))
    neighbours = np.array([o for pair in pairs for o in pair])
    missing = ~known & inside
    # the first rim: missing cells with a known neighbour
    rim = np.flatnonzero(missing)
    rim = rim[known[rim[:, None] + neighbours].any(axis=1)]
    for step in range(rounds):
        if not rim.size:
            break
        around = rim[:, None] + neighbours
        took = known[around]
        terms = np.where(took, values[around], 0.0)
        if step == 0 and trend:
            beyond = around + neighbours  # in the first round every known neighbour is valid data
            slope = np.where(took & known[beyond], terms - values[beyond], 0.0)
            terms = terms + trend * slope
        sums = ((terms[:, 0] + terms[:, 1]) + (terms[:, 2] + terms[:, 3])) + (
            (terms[:, 4] + terms[:, 5]) + (terms[:, 6] + terms[:, 7])
        )
        values[rim] = sums / took.sum(axis=1)
        known[rim] = True
        following = np.unique(around.ravel())
        rim = following[~known[following] & inside[following]]
    filled = values.reshape(-1, h + 4, w + 4)[:, 2:-2, 2:-2]
    return filled.reshape(shape)


def halo_fraction(tile_size: int, halo: int) -> float:
    """Share of the computed pixels that belong to halos for an interior tile."""
    return 1.0 - tile_size**2 / (tile_size + 2 * halo) ** 2


__all__ = [
    "BICUBIC",
    "CONSISTENT",
    "CONSISTENT_RADIUS",
    "KERNELS",
    "KERNEL_SUPPORT",
    "Kernel",
    "AxisTile",
    "Span",
    "Tile",
    "TilePlan",
    "cubic_kernel",
    "extend_into_missing",
    "fill_padding",
    "fill_radius",
    "footprint_index",
    "footprint_pair",
    "halo_fraction",
    "interpolation_matrix",
    "kernel_named",
    "lanczos_kernel",
    "plan_axis",
    "source_span",
]

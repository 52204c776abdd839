"""The inference core shared by the command line, the xarray accessor and the QGIS tool.

Steps for every tile, all on the fine grid:

1. normalise the coarse input window with whole-raster per-band statistics; missing cells next to
   data are filled from their neighbours (:func:`geosr.tiling.extend_into_missing`, the input window
   padded to keep tiles exact), those further away become the band mean (0 after normalisation), so
   valid output never depends on the stored nodata value;
2. interpolate it to the tile's extended window with the model's kernel of :mod:`geosr.tiling`
   (the "ILR": bicubic, or ``consistent``, the limit of back-projection);
3. add the residual predicted by the network (skipped for a constant band);
4. when conserving (``conserve=True``, or by default for a model whose card says so, at whole
   scales), correct every coarse cell touching the core so that its fine pixels average to the
   coarse value (:mod:`geosr.conserve`; whole scales only, the halo grows by one cell);
5. undo the normalisation, keep the core, and set to NaN every fine pixel whose footprint (the
   coarse cell containing its centre; both cells for a centre on their shared edge) holds no data.

Works on (band, y, x) or (y, x) numpy arrays (eager) and dask arrays (lazy, one task per tile).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import math
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosr.background import ahead
from geosr.calibrate import band_groups, residual_gains, whole_scale
from geosr.calibrate import window as calibration_window
from geosr.conserve import conserve
from geosr.devices import DEVICES, device_name, select_device  # noqa: F401  (geosr.predict.select_device)
from geosr.errors import GeosrError, InputError, ModelError, ScaleError
from geosr.georef import check_scale, output_shape
from geosr.models.card import ModelCard
from geosr.stats import BandStats, as_float, unmasked
from geosr.tiling import (
    Span,
    Tile,
    TilePlan,
    extend_into_missing,
    fill_radius,
    footprint_pair,
    tile_pair,
    wrapped_indices,
    wrapped_pieces,
)

if TYPE_CHECKING:
    from geosr.models.files import LoadedModel

#: Output pixels per tile side. Large enough that the halo costs little (about 8% for an interior
#: tile of a 20-layer model), small enough that a tile's activations stay near 1 GB.
DEFAULT_TILE_SIZE = 1024
PRECISIONS = ("fp32", "bf16", "fp16")
#: Sizes of the self-ensemble: the model alone, averaged over the four flips (identity, left-right,
#: up-down, both), or over all eight flips and 90-degree rotations (square pixels only).
ENSEMBLES = (1, 4, 8)

ProgressCallback = Callable[[int, int], None]

#: Name prefix of the tile tasks of a dask graph (:func:`downscale`'s lazy path): ``(name, 0, i, j)``, one per tile.
TILE_TASKS = "geosr-tiles-"


#: Called (with no argument) as each tile task of a lazy downscale finishes in this process; see :func:`watching_tiles`.
_TILE_WATCHERS: list[Callable[[], None]] = []


def count_tiles(collection: Any) -> int:
    """The tile tasks in the graph of a dask collection (an array, a DataArray or a Dataset of lazy downscales).

    Counted on the high-level graph, whose layers keep their names: dask's optimisation may fuse a tile
    with the tasks after it under another key."""
    graph = collection.__dask_graph__()
    if graph is None:
        return 0
    layers = getattr(graph, "layers", {"": graph})
    return sum(
        1
        for layer in layers.values()
        for key in layer
        if isinstance(key, tuple) and len(key) == 4 and isinstance(key[0], str) and key[0].startswith(TILE_TASKS)
    )


@contextlib.contextmanager
def watching_tiles(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback()`` each time a tile task of a lazy downscale finishes in this process, while inside (from
    the thread that ran it: the threaded and synchronous schedulers; not on other processes' workers)."""
    _TILE_WATCHERS.append(callback)
    try:
        yield
    finally:
        _TILE_WATCHERS.remove(callback)


def _whole(in_shape: tuple[int, int], scale: float) -> bool:
    """Whether every coarse cell becomes exactly ``round(scale)`` x ``round(scale)`` fine pixels."""
    return output_shape(in_shape[0], in_shape[1], scale) == (in_shape[0] * round(scale), in_shape[1] * round(scale))


def check_switch(value: Any, name: str) -> None:
    """Refuse a switch (``conserve``, ``calibrate``) that is not True, False or None: a string such as
    "no" or "off" is truthy, and taken as a bool it would turn the switch on."""
    if value is not None and not isinstance(value, bool | np.bool_):
        raise InputError(f"{name} must be True, False or None (as the model's card says), got {value!r}")


def conserves(card: ModelCard, conserve: bool | None, in_shape: tuple[int, int], scale: float) -> bool:
    """Whether a run conserves: as asked, or (``None``) as the card says where the scale is whole."""
    check_switch(conserve, "conserve")
    if conserve is not None:
        return bool(conserve)
    return bool(card.conserve) and _whole(in_shape, scale)


def calibrates(card: ModelCard, calibrate: bool | None, scale: float) -> bool:
    """Whether a run self-calibrates (:mod:`geosr.calibrate`): as asked, or (``None``) as the card
    says; only ever at whole scales (give it :func:`calibration_scale`): asked for at another scale, it
    is refused."""
    check_switch(calibrate, "calibrate")
    if calibrate and whole_scale(scale) is None:  # asked for, like --conserve, it is refused where it cannot be
        raise InputError(
            f"self-calibration needs a whole scale (2, 3, 4...), got {scale:.10g}; "
            "drop --calibrate (calibrate=True in Python) or use a whole scale"
        )
    return bool(card.calibrate if calibrate is None else calibrate) and whole_scale(scale) is not None


def calibration_scale(in_shape: tuple[int, int], scale: float) -> float:
    """The scale the gains of a raster of shape ``in_shape`` are estimated at: ``round(scale)`` where every
    coarse cell becomes exactly that many fine pixels a side, as for conservation (a scale such as
    2.0000001, from ``--resolution``, makes the fine grid of 2 and is run as 2), else ``scale``."""
    whole = round(float(scale))
    return float(whole) if whole >= 2 and _whole(in_shape, scale) else float(scale)


@dataclass(frozen=True)
class CalibrationPlan:
    """What a self-calibrating run estimates its gains on: the scale, the input window and the groups
    of bands (0-based) read and estimated together (:func:`calibration_plan`)."""

    scale: float
    rows: slice
    cols: slice
    groups: list[list[int]]
    #: the window is every column of a global grid: the gains' restorations wrap around (geosr.calibrate)
    periodic: bool = False


def calibration_plan(
    card: ModelCard,
    calibrate: bool | None,
    bands: int,
    in_shape: tuple[int, int],
    scale: float,
    periodic: bool = False,
) -> CalibrationPlan | None:
    """How a run of ``bands`` bands of shape ``in_shape`` at ``scale`` estimates its gains, or ``None`` when it
    does not calibrate (:func:`calibrates`): the same for every front door, which reads each group's window
    as it can (a GeoTIFF window, a numpy slice, a dask task) and passes it to :meth:`Downscaler.gains`.
    ``periodic``: the raster's columns wrap around; its gains then wrap too where the window is every column."""
    at = calibration_scale(in_shape, scale)
    if not calibrates(card, calibrate, at):
        return None
    rows, cols = calibration_window(in_shape, at, periodic)  # a global grid's: every column
    every_column = cols.start == 0 and cols.stop == in_shape[1]
    return CalibrationPlan(at, rows, cols, band_groups(bands, card.in_channels), periodic and every_column)


def plan_tiles(
    in_shape: tuple[int, int],
    scale: float,
    tile_size: int | tuple[int, int],
    model: LoadedModel,
    conserve: bool | None,
    from_end: tuple[bool, bool] = (False, False),
    missing: bool = True,
    periodic: bool = False,
) -> TilePlan:
    """Tile plan for ``model``: its kernel, a halo covering its receptive radius (plus one coarse
    cell when conserving), and conservation as asked or as its card says (:func:`conserves`);
    ``from_end`` as for :meth:`geosr.tiling.TilePlan.build`. With ``missing`` (the raster may have
    missing cells), the tiles fill the missing cells next to data (:func:`geosr.tiling.fill_radius`;
    their input windows are padded for it); a raster known to have none reads no more than it needs.
    ``periodic``: the columns wrap around (a global grid's longitudes, :func:`geosr.io.periodic_columns`)."""
    halo = model.receptive_radius
    conserve = conserves(model.card, conserve, in_shape, scale)
    if conserve:
        if not _whole(in_shape, scale):
            raise ScaleError(
                f"conservation needs a whole scale (2, 3, 4...), got {scale:.10g}; drop --conserve (conserve=True in "
                "Python) or use a whole scale"
            )
        halo += round(scale)
    out_shape = output_shape(in_shape[0], in_shape[1], scale)
    fill = fill_radius(halo, scale, model.card.kernel) if missing else 0
    return TilePlan.build(
        in_shape,
        out_shape,
        tile_size,
        halo,
        model.card.kernel,
        conserve,
        from_end,
        fill,
        model.card.fill_trend,
        periodic,
    )


def check_bands(card: ModelCard, n_bands: int) -> None:
    """Refuse a raster whose band count a model cannot take (a 1-band model takes any)."""
    if card.in_channels not in (1, n_bands):
        raise ModelError(
            f"model {card.name!r} takes {card.in_channels} bands but the raster has {n_bands}; "
            f"use a 1-band model (applied to each band) or a raster with {card.in_channels} bands"
        )


def check_batch_size(batch_size: Any) -> int:
    """``batch_size`` as a whole number of tiles of at least 1, else refused in one line."""
    try:
        batch = int(batch_size) if float(batch_size) == int(batch_size) else 0
    except (TypeError, ValueError, OverflowError):
        batch = 0
    if batch < 1 or isinstance(batch_size, bool):
        raise InputError(f"batch size must be a whole number of at least 1, got {batch_size!r}")
    return batch


def _autocast_dtype(precision: str) -> Any:
    import torch

    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _cpu_computes(precision: str) -> bool:
    """Whether this CPU has instructions for ``precision``'s arithmetic (oneDNN's own test: AVX-512 BF16 or AMX
    for bf16, AVX-512 FP16 or AMX-FP16 for fp16); True for fp32, and when PyTorch cannot tell."""
    import torch

    test = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}.get(precision)
    if test is None:
        return True
    try:
        return bool(getattr(torch.ops.mkldnn, test)())
    except (AttributeError, RuntimeError):
        return True


#: Precisions already warned about in this process (:func:`warn_emulated_precision`).
_EMULATED_WARNED: set[str] = set()


def emulated_precision_message(device: Any, precision: str) -> str | None:
    """Why ``precision`` on ``device`` is a poor choice, or None: on a CPU without instructions for bf16 or
    fp16 PyTorch emulates them, many times more slowly than fp32 (a 2-core AVX2 CPU took 17 times as
    long for a training step of the 20-layer VDSR in bf16, 120 times as long to run a 64-pixel tile)."""
    if device.type != "cpu" or _cpu_computes(precision):
        return None
    return (
        f"this CPU has no {precision} instructions (AVX-512 {precision.upper()} or AMX), so PyTorch emulates "
        f"{precision}, many times more slowly than fp32; use --precision fp32 (precision='fp32' in Python)"
    )


def warn_emulated_precision(device: Any, precision: str) -> None:
    """A :class:`geosr.errors.PrecisionWarning`, once per process and precision, where ``precision`` is
    emulated on ``device`` (:func:`emulated_precision_message`)."""
    from geosr.errors import PrecisionWarning

    message = emulated_precision_message(device, precision) if precision not in _EMULATED_WARNED else None
    if message is not None:
        _EMULATED_WARNED.add(precision)
        warnings.warn(PrecisionWarning(message), stacklevel=3)


@contextlib.contextmanager
def _ieee_fp32(device: Any, enabled: bool) -> Iterator[None]:
    """Make ``fp32`` mean IEEE fp32 on CUDA while the network runs.

    PyTorch lets cuDNN run float32 convolutions in TF32 on Ampere and newer GPUs by default
    (``torch.backends.cudnn.allow_tf32``), which moved the shipped dem's output on an H200 by up to
    0.16 m (2.6e-4 of the relief) from the CPU's. ``bf16``/``fp16`` are the fast choices.
    """
    import torch

    if not enabled or device.type != "cuda":
        yield
        return
    # the flags are global: the first of concurrent runs (dask threads) turns TF32 off, the last restores it
    with _TF32.lock:
        if _TF32.users == 0:
            _TF32.saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        _TF32.users += 1
    try:
        yield
    finally:
        with _TF32.lock:
            _TF32.users -= 1
            if _TF32.users == 0:
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = _TF32.saved


class _Tf32State:
    lock = threading.Lock()
    users = 0
    saved = (True, True)


_TF32 = _Tf32State()


@dataclass
class _Pending:
    tile: Tile
    ilr: np.ndarray
    z: np.ndarray
    valid: np.ndarray
    cells: np.ndarray | None  # the input cells on the extended window, for a network that takes them


class Downscaler:
    """A loaded model on a device, ready to downscale tiles.

    Parameters
    ----------
    model
        Shipped model name, path to a model file, an already loaded model, or ``None`` for the
        default model.
    device
        ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    precision
        ``fp32`` (default; IEEE float32 on CUDA too, TF32 off), ``bf16`` or ``fp16`` (autocast for
        the network; the rest stays float64). On a CPU without instructions for bf16 or fp16 PyTorch
        emulates them, many times more slowly: a :class:`geosr.errors.PrecisionWarning`, once per process.
    tile_size
        Output pixels per tile side, halo excluded.
    batch_size
        Images run through the network together: tiles of equal shape, or the bands of a tile when
        a 1-band model runs on a multiband raster.
    conserve
        ``True``: make each coarse cell's fine pixels average exactly to the coarse value (whole
        scales only); ``False``: never; ``None`` (default): as the model's card says (``conserve``),
        at whole scales.
    ensemble
        1 (default): the network once. 4: the residual averaged over the raster flipped left-right,
        up-down and both; 8: also over the transposed raster, i.e. every 90-degree rotation (only
        meaningful for square pixels, which is how the models are trained to rotate). N times the
        work; the output becomes exactly equivariant to those flips (and rotations).
    calibrate
        ``True``: scale each band's residual by how much of it the input's own coarser copy supports
        (:mod:`geosr.calibrate`, whole scales only; see :meth:`gains`); ``False``: never; ``None``
        (default): as the model's card says (``calibrate``).
    """

    def __init__(
        self,
        model: str | Any | None = None,
        *,
        device: str | None = "auto",
        precision: str = "fp32",
        tile_size: int | tuple[int, int] = DEFAULT_TILE_SIZE,
        batch_size: int = 1,
        conserve: bool | None = None,
        ensemble: int = 1,
        calibrate: bool | None = None,
    ) -> None:
        from geosr.models.files import LoadedModel, load_model

        self.tile_size = tile_pair(tile_size)  # one clear line for text or a bad pair
        batch = check_batch_size(batch_size)
        self.device = select_device(device)
        self.autocast = _autocast_dtype(precision)
        self.precision = precision
        warn_emulated_precision(self.device, precision)
        self.batch_size = batch
        check_switch(conserve, "conserve")
        check_switch(calibrate, "calibrate")
        self.conserve = None if conserve is None else bool(conserve)
        self.ensemble = check_ensemble(ensemble)
        self.model: LoadedModel = model if isinstance(model, LoadedModel) else load_model(model, "cpu")
        if isinstance(model, LoadedModel):  # the caller's: moving it (device, layout) would move it in place
            self.network = _placed(model.network, self.device)
        else:
            self.network = _moved(self.model.network, self.device)
        self.calibrate = calibrate

    def gains(self, source: np.ndarray, scale: float, periodic: bool = False) -> np.ndarray | None:
        """Per-band residual gains for a raster, or ``None`` when not calibrating (see
        :mod:`geosr.calibrate`). ``source`` is the raster's :func:`geosr.calibrate.window`, a (band, y,
        x) float array with NaN for nodata (``periodic``: every column of a global grid)."""
        if not calibrates(self.model.card, self.calibrate, scale):
            return None
        return residual_gains(self, source, scale, periodic)

    def planned_gains(self, cal: CalibrationPlan | None, read: Callable[[list[int]], np.ndarray]) -> np.ndarray | None:
        """Every band's gains by :func:`calibration_plan`'s ``cal`` (``None``: not calibrating, no gains),
        group by group: ``read(group)`` gives the (band, y, x) window of those bands (0-based), so that
        memory follows one group's window."""
        if cal is None:
            return None
        return np.concatenate([self.gains(read(group), cal.scale, cal.periodic) for group in cal.groups])

    @property
    def halo(self) -> int:
        """Fine pixels added on each side of a tile: the network's receptive radius."""
        return self.model.receptive_radius

    def check_bands(self, n_bands: int) -> None:
        """Refuse a raster whose band count the model cannot take."""
        check_bands(self.model.card, n_bands)

    def plan(
        self,
        in_shape: tuple[int, int],
        scale: float,
        from_end: tuple[bool, bool] = (False, False),
        missing: bool = True,
        periodic: bool = False,
    ) -> TilePlan:
        """Tiles covering the fine grid of a coarse raster of shape ``in_shape`` (``from_end``: laid from
        the far end of the rows, columns; :meth:`geosr.tiling.TilePlan.build`; ``missing``: whether the
        raster may have missing cells, ``periodic``: whether its columns wrap around, :func:`plan_tiles`)."""
        return plan_tiles(in_shape, scale, self.tile_size, self.model, self.conserve, from_end, missing, periodic)

    def run(
        self,
        plan: TilePlan,
        stats: BandStats,
        sources: Iterable[tuple[Tile, np.ndarray]],
        gains: np.ndarray | None = None,
        overlap: bool = False,
    ) -> Iterator[tuple[Tile, np.ndarray]]:
        """Downscale tiles: for each ``(tile, coarse source window)`` yield ``(tile, fine core)``.

        Source windows are (band, y, x) floats with NaN for nodata, cut at ``tile.rows.source`` and
        ``tile.cols.source``. Cores are float64 with NaN for nodata. Tiles come out in input order.
        ``gains`` (one per band, :meth:`gains`) multiply the network's residual; all zero, the
        network is not run (the output is the interpolation, conserved where the plan conserves).
        With ``overlap``, a worker thread reads and interpolates the next tiles, and another conserves
        and un-normalises the last batch, while the network runs (:func:`geosr.background.ahead`; the
        same output), unless a batch takes more than :data:`OVERLAP_MAX_BYTES` (:meth:`tile_bytes` x
        ``batch_size``).
        """
        self.check_bands(len(stats.count))
        check_magnitudes(stats)
        # a band without data (mean 0, std 0) comes out all NaN: every fine pixel's footprint is missing
        mean, std = stats.mean[:, None, None], stats.std[:, None, None]
        active = (std > 0).astype(np.float64)
        if gains is not None:
            active = active * np.asarray(gains, dtype=np.float64).reshape(-1, 1, 1)
        scale_by = np.where(std > 0, std, 1.0)
        prepared: Iterable[_Pending] = (self._prepare(plan, t, source, mean, scale_by) for t, source in sources)
        overlap = overlap and self.batch_size * self.tile_bytes(plan, len(stats.count)) <= OVERLAP_MAX_BYTES
        if overlap:
            prepared = ahead(prepared, depth=2)
        finish = functools.partial(self._complete, plan, mean=mean, scale_by=scale_by, active=active)
        with contextlib.closing(iter(prepared)) as items:  # closed, the worker stops before the caller goes on
            if not overlap:
                for batch in self._batches(items):
                    yield from finish(batch, self._batch_residuals(batch, active))
                return
            # the network's next batch runs while a worker thread conserves and un-normalises the last one
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geosr-finish") as pool:
                previous = None
                for batch in self._batches(items):
                    current = pool.submit(finish, batch, self._batch_residuals(batch, active))
                    if previous is not None:
                        yield from previous.result()
                    previous = current
                if previous is not None:
                    yield from previous.result()

    def tile_bytes(self, plan: TilePlan, bands: int) -> int:
        """About the memory one tile of ``plan`` takes while it runs: its bands' float64 interpolation,
        residual and output on the largest extended window."""
        rows = max(t.extended.size for t in plan.row_tiles)
        cols = max(t.extended.size for t in plan.col_tiles)
        return 3 * 8 * bands * rows * cols

    def _batches(self, items: Iterable[_Pending]) -> Iterator[list[_Pending]]:
        """Prepared tiles in batches of at most ``batch_size`` tiles of one shape."""
        pending: list[_Pending] = []
        for item in items:
            if pending and pending[0].ilr.shape != item.ilr.shape:
                yield pending
                pending = []
            pending.append(item)
            if len(pending) == self.batch_size:  # at once: the network starts without waiting for the next tile
                yield pending
                pending = []
        if pending:
            yield pending

    def _prepare(
        self, plan: TilePlan, tile: Tile, source: np.ndarray, mean: np.ndarray, scale_by: np.ndarray
    ) -> _Pending:
        """Normalise a tile's source window and interpolate it to the tile's extended window."""
        valid = np.isfinite(source)
        z = np.where(valid, (source - mean) / scale_by, 0.0)
        if plan.fill and not valid.all():
            z = extend_into_missing(z, valid, plan.fill, plan.fill_trend)
        rows, cols = plan.matrices(tile)
        ilr = np.matmul(np.matmul(rows, z), cols.T)
        cells = None
        if self.model.card.cell_input:
            (h_in, w_in), (h_out, w_out) = plan.in_shape, plan.out_shape
            # a fine pixel centred on a cell edge (fractional scales) takes the mean of the cells on either side
            rows_pair = _footprints(h_in, h_out, tile.rows.extended, tile.rows.source.start)
            cols_pair = _footprints(w_in, w_out, tile.cols.extended, tile.cols.source.start, plan.periodic)
            cells = sum(z[:, fr[:, None], fc[None, :]] for fr in rows_pair for fc in cols_pair)
            cells = cells / (len(rows_pair) * len(cols_pair))
        return _Pending(tile, ilr, z, valid, cells)

    def _batch_residuals(self, batch: list[_Pending], active: np.ndarray) -> np.ndarray:
        """The network's residuals for a batch of prepared tiles (zeros where no band is active, and for a
        tile whose input window holds no data: all its output is nodata, the sea of a coastal DEM)."""
        residuals = np.zeros((len(batch), *batch[0].ilr.shape))
        run = [i for i, p in enumerate(batch) if p.valid.any()]
        if not active.any() or not run:
            return residuals
        cells = np.stack([batch[i].cells for i in run]) if batch[0].cells is not None else None
        residuals[run] = self._residuals(np.stack([batch[i].ilr for i in run]), cells)
        return residuals

    def _complete(
        self,
        plan: TilePlan,
        batch: list[_Pending],
        residuals: np.ndarray,
        *,
        mean: np.ndarray,
        scale_by: np.ndarray,
        active: np.ndarray,
    ) -> list[tuple[Tile, np.ndarray]]:
        """Add the residuals, conserve, undo the normalisation and keep each tile's core."""
        (h_in, w_in), (h_out, w_out) = plan.in_shape, plan.out_shape
        done = []
        for item, residual in zip(batch, residuals, strict=True):
            tile = item.tile
            fine_z = item.ilr + residual * active
            if plan.conserve:
                _conserve_cells(fine_z, item.z, tile, h_out // h_in)
            rows, cols = tile.core_in_extended
            # within float32's finite range: detail overshooting it (inputs near 3.4e38) would be +-inf in float32
            fine = np.clip(fine_z[:, rows, cols] * scale_by + mean, -OUTPUT_MAX, OUTPUT_MAX)
            rows_pair = _footprints(h_in, h_out, tile.rows.core, tile.rows.source.start)
            cols_pair = _footprints(w_in, w_out, tile.cols.core, tile.cols.source.start, plan.periodic)
            core = fine  # float64: the writer casts to the output's type, checking its range
            # nodata where the pixel's cell is missing; a pixel centred on a cell edge, where either cell is
            for fr in rows_pair:
                for fc in cols_pair:
                    core[~item.valid[:, fr[:, None], fc[None, :]]] = np.nan
            done.append((tile, core))
        return done

    def _residuals(self, ilr: np.ndarray, cells: np.ndarray | None = None) -> np.ndarray:
        """Network residuals for a (tiles, bands, y, x) stack of normalised ILRs (and input cells,
        for a network that takes them)."""
        import torch

        n_tiles, n_bands = ilr.shape[:2]
        channels = self.model.card.in_channels

        def as_images(stack: np.ndarray) -> Any:
            batch = stack.reshape(n_tiles * n_bands // channels, channels, *stack.shape[2:])
            return torch.from_numpy(batch.astype(np.float32))

        x = self.network.inputs(as_images(ilr), None if cells is None else as_images(cells)).to(self.device)
        if self.device.type in ("cpu", "cuda"):
            x = x.contiguous(memory_format=_channels_last())
        # At most batch_size images per call: a 1-band model on a tile of many bands (a time series)
        # runs band by band, so the activations follow the tile size, not the number of bands.
        parts = []
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None),
            _ieee_fp32(self.device, self.autocast is None),
        ):
            for start in range(0, len(x), self.batch_size):
                images = x[start : start + self.batch_size]
                residual = sum(
                    _turn(self.network.residual(_turn(images, *copy)).float(), *copy, back=True)
                    for copy in _symmetries(self.ensemble)
                )
                parts.append((residual / self.ensemble).cpu().contiguous().numpy())
        return np.concatenate(parts).astype(np.float64).reshape(ilr.shape)


#: Largest :meth:`Downscaler.tile_bytes` x ``batch_size`` at which a run overlaps its steps in worker threads
#: (``overlap``): overlapped, about four batches and three tiles are in memory at once instead of two
#: batches, which a batch of many bands (a long time series with a 1-band model) cannot afford; those run
#: one step after another, as before.
OVERLAP_MAX_BYTES = 128 * 2**20

#: A dask tile waits for the tiles this many rows up: dask then reads the input about as far ahead
TILE_ROWS_AHEAD = 2
#: Whether the whole-raster statistics of a dask input are computed when the graph is made (:func:`eager_statistics`)
_EAGER_STATISTICS = contextvars.ContextVar("geosr_eager_statistics", default=False)


@contextlib.contextmanager
def eager_statistics() -> Iterator[None]:
    """Within the block, a dask input's whole-raster statistics (and calibration gains) are computed when
    :func:`downscale` makes its graph, by the active scheduler, instead of within the graph.

    Inside the graph they are a reduction over every chunk, which each tile waits for: dask then holds the
    chunks it has read until the last one is read, the whole input. Computed first, the input is read
    twice and the tiles' memory follows the chunk size: for a run that writes its result at once
    (``geosr downscale --variable``), not for a lazy result, which must not compute anything yet.
    """
    token = _EAGER_STATISTICS.set(True)
    try:
        yield
    finally:
        _EAGER_STATISTICS.reset(token)


def _footprints(n_in: int, n_out: int, span: Span, start: int, periodic: bool = False) -> list[np.ndarray]:
    """The coarse cells under the fine centres of ``span``, as indices into a source window from ``start``:
    one array, or two where some centres lie on a cell edge (:func:`geosr.tiling.footprint_pair`; unwrapped on a
    ``periodic`` axis, whose spans reach beyond the raster's edges)."""
    later, earlier = footprint_pair(n_in, n_out, span, periodic)
    return [later - start] if np.array_equal(later, earlier) else [later - start, earlier - start]


#: Whether :func:`downscale` warns of a scale outside the model's trained ones (:func:`quiet_scale_warning`)
_SCALE_WARNING = contextvars.ContextVar("geosr_scale_warning", default=True)


@contextlib.contextmanager
def quiet_scale_warning() -> Iterator[None]:
    """Within the block, :func:`downscale` does not warn of an untrained scale: for callers that warn once
    themselves (the xarray accessor, which runs it slice by slice) or report it their own way (evaluate)."""
    token = _SCALE_WARNING.set(False)
    try:
        yield
    finally:
        _SCALE_WARNING.reset(token)


def untrained_scale_message(card: ModelCard, scale: float) -> str | None:
    """One line saying that ``scale`` lies outside the range of the scales ``card``'s model was trained
    at, naming the model, its scales, the scale and what to do; ``None`` when it lies within (between
    trained scales, such as 2.5 for 2, 3, 4, one multi-scale VDSR serves it) or when the model learns
    nothing (``backprojection``, whose output is the interpolation at every scale)."""
    trained = sorted(float(s) for s in card.scales)
    if not trained or str(card.training.get("data", "")).startswith("none"):
        return None
    low, high = trained[0], trained[-1]
    if low * (1 - 1e-9) <= scale <= high * (1 + 1e-9):  # a --resolution's scale may miss 4 by a rounding
        return None
    listed = ", ".join(f"{s:g}" for s in trained)
    above = scale > high
    start = (
        f"model {card.name!r} was trained at scales {listed}, and x{scale:g} lies {'above' if above else 'below'} "
        "them, so the detail it adds may be worse than plain interpolation"
    )
    needed = math.ceil(scale) if above else math.floor(scale)
    if needed < 2:  # geosr train takes whole scales of 2 or more
        return f"{start}; set --model to backprojection for classical back-projection"
    scales = sorted({round(s) for s in trained if s == round(s)} | {needed})
    return f"{start}; train a model that covers it with `geosr train --scales {','.join(map(str, scales))}`"


def warn_untrained_scale(card: ModelCard, scale: float) -> None:
    """A :class:`geosr.errors.ScaleWarning` for the caller of :func:`downscale` when ``scale`` lies outside
    the model's trained scales (:func:`untrained_scale_message`), unless quietened
    (:func:`quiet_scale_warning`); ``stacklevel`` 3: the caller of the function that calls this."""
    from geosr.errors import ScaleWarning

    message = untrained_scale_message(card, scale) if _SCALE_WARNING.get() else None
    if message is not None:
        warnings.warn(ScaleWarning(message), stacklevel=3)


#: Largest magnitude the network can take: it computes in float32
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Largest magnitude of an output value: float32's largest less 16 units in the last place (2**108), so that
#: detail overshooting float32's range saturates to a finite value (never inf) that is not float32's limit
#: itself, the usual nodata marker (:func:`check_magnitudes`; :func:`geosr.io.off_nodata` moves a valid
#: pixel on a float nodata as far). Inputs are below float32's limit, so ordinary data is never clipped.
OUTPUT_MAX = FLOAT32_MAX - 16 * 2.0**104


def check_magnitudes(stats: BandStats, source: str | None = None, bands: Sequence[int] | None = None) -> None:
    """Refuse a band holding values beyond float32's range, or exactly at its limit (the usual nodata marker
    of float rasters): the network computes in float32, and one such value, scaling the whole band's
    statistics, would swamp every output pixel. They are almost always undeclared nodata."""
    for band, value in enumerate(stats.absmax):
        if value >= FLOAT32_MAX:
            raise InputError(
                f"band {band + 1 if bands is None else bands[band]}"  # the raster's number under --bands
                + (f" of '{source}'" if source else "")
                + f" holds a value of magnitude {value:.7g}, "
                + (
                    "beyond the range of float32, in which the network computes"
                    if value > FLOAT32_MAX
                    else "float32's limit, the usual marker of missing data"
                )
                + "; if such values mark missing data, declare them nodata (gdal_edit.py -a_nodata VALUE, "
                "rio edit-info --nodata VALUE, or nodata= in Python), else rescale the band"
            )


def check_ensemble(ensemble: Any, pixel_size: tuple[float, float] | None = None, precision: float = 0.0) -> int:
    """The self-ensemble size as an int, refused unless it is one of :data:`ENSEMBLES`, and 8 (which
    rotates the raster) refused for pixels that are not square (``pixel_size``: x and y sizes, square to
    1e-5 of their size or ``precision``, how far the sizes may be off by their coordinates' rounding)."""
    if isinstance(ensemble, bool) or ensemble not in ENSEMBLES:
        choices = ", ".join(str(n) for n in ENSEMBLES)
        raise InputError(f"ensemble must be one of {choices} (copies of the raster averaged), got {ensemble!r}")
    if ensemble == 8 and pixel_size is not None:
        dx, dy = (abs(float(v)) for v in pixel_size)
        # square to 1e-5, as regular coordinates are regular, or to their rounding (float32 coordinates of a
        # 1/120 degree grid near 120 E give steps of 0.00833326 and 0.00833335)
        if not np.isclose(dx, dy, rtol=1e-5, atol=precision):
            raise InputError(
                f"an ensemble of 8 rotates the raster, which needs square pixels, but they are {dx:g} x {dy:g}; "
                "use an ensemble of 4 (flips only)"
            )
    return int(ensemble)


def _symmetries(ensemble: int) -> list[tuple[tuple[int, ...], bool]]:
    """The ``(flipped dims, transposed)`` copies of a self-ensemble of ``ensemble`` copies."""
    flips: list[tuple[int, ...]] = [(), (-1,), (-2,), (-2, -1)][: 1 if ensemble == 1 else 4]
    return [(dims, transpose) for transpose in (False, True)[: 2 if ensemble == 8 else 1] for dims in flips]


def _turn(x: Any, dims: tuple[int, ...], transpose: bool, back: bool = False) -> Any:
    """A (..., y, x) tensor flipped along ``dims`` then transposed, or (``back``) the inverse of that."""
    if back and transpose:
        x = x.transpose(-2, -1)
    if dims:
        x = x.flip(dims)
    if transpose and not back:
        x = x.transpose(-2, -1)
    return x


def _conserve_cells(fine: np.ndarray, coarse: np.ndarray, tile: Tile, scale: int) -> None:
    """Conserve, in place, the cells of a tile's extended window that touch its core."""
    spans = []
    for axis in (tile.rows, tile.cols):
        first, last = axis.core.start // scale, -(-axis.core.stop // scale)
        spans.append((first, last, first * scale - axis.extended.start, first - axis.source.start))
    (r0, r1, fr, cr), (c0, c1, fc, cc) = spans
    fine_cells = (slice(None), slice(fr, fr + (r1 - r0) * scale), slice(fc, fc + (c1 - c0) * scale))
    coarse_cells = (slice(None), slice(cr, cr + r1 - r0), slice(cc, cc + c1 - c0))
    fine[fine_cells] = conserve(fine[fine_cells], coarse[coarse_cells], scale)


def _moved(network: Any, device: Any) -> Any:
    """``network`` moved, in place, to ``device`` in the layout its convolutions run fastest in there."""
    network = network.to(device)
    return network.to(memory_format=_channels_last()) if device.type in ("cpu", "cuda") else network


#: Copies of callers' networks moved to a device (:func:`_placed`): per network, per device, with the versions of
#: the network's parameters they were copied at
_PLACED: weakref.WeakKeyDictionary[Any, dict[str, tuple[tuple[int, ...], Any]]] = weakref.WeakKeyDictionary()
_PLACED_LOCK = threading.Lock()


def _placed(network: Any, device: Any) -> Any:
    """A copy of a caller's ``network`` moved to ``device`` (:func:`_moved`), which stays where and as it was.
    Made once per network and device, and again once its weights have changed (a model still training: torch
    counts a tensor's changes in place), not for every call (the accessor runs each time step with one model)."""
    versions = tuple(int(getattr(p, "_version", -1)) for p in network.parameters())
    key = str(device)
    with _PLACED_LOCK:
        copies = _PLACED.setdefault(network, {})
        cached = copies.get(key)
        if cached is None or cached[0] != versions or -1 in versions:
            cached = copies[key] = (versions, _moved(copy.deepcopy(network), device))
        return cached[1]


def _channels_last() -> Any:
    import torch

    return torch.channels_last


_CACHE: dict[tuple[Any, ...], Downscaler] = {}
_CACHE_LOCK = threading.Lock()


def cached_downscaler(model: str | Path | None, **options: Any) -> Downscaler:
    """A :class:`Downscaler` built once per process (or dask worker) for each model file and options.

    ``model`` is a shipped model name or a model file path (``None`` for the default model): what
    dask tasks carry, since a path pickles in a few bytes where the weights would not. The cache
    key is the resolved file with its size and modification time, so a file rewritten in place
    (a retrained model) is loaded afresh. Thread-safe: threads of one worker share one model.
    """
    from geosr.models.registry import resolve_model

    path = resolve_model(model)
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size, tuple(sorted(options.items())))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = Downscaler(str(path), **options)
        return _CACHE[key]


def check_numeric(dtype: Any, what: str = "array") -> None:
    """Refuse data that are not real numbers (booleans, complex, text, dates, objects)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iuf":
        hint = "a mask or category; " if dtype.kind == "b" else ""
        raise InputError(
            f"{what} holds {dtype} values ({hint}not real numbers); only integers and floats can be super-resolved: "
            f"convert it with .astype('float32') if its values are quantities, else leave it out"
        )


def _as_bands(data: Any) -> tuple[Any, bool]:
    check_numeric(data.dtype)
    data = unmasked(data)  # its masked cells are missing data (np.asarray would keep their stored numbers)
    if data.ndim == 2:
        return data[None], True
    if data.ndim != 3:
        raise InputError(f"expected a (y, x) or (band, y, x) array, got {data.ndim} dimensions {data.shape}")
    return data, False


def downscale(
    data: Any,
    scale: float,
    model: str | Any | None = None,
    *,
    nodata: float | None = None,
    device: str | None = "auto",
    precision: str = "fp32",
    tile_size: int | tuple[int, int] = DEFAULT_TILE_SIZE,
    batch_size: int = 1,
    conserve: bool | None = None,
    ensemble: int = 1,
    calibrate: bool | None = None,
    progress: ProgressCallback | None = None,
    periodic: bool = False,
) -> Any:
    """Super-resolve a (y, x) or (band, y, x) array by ``scale``.

    Parameters
    ----------
    data
        numpy or dask array. NaN, infinite and ``nodata`` cells (and the masked cells of a NumPy masked array)
        are treated as missing; an array with no valid cell gives all NaN.
    scale
        Refinement factor (> 1); the output has ``round(n * scale)`` pixels along each axis.
    model
        Shipped model name, model file path, loaded model, or ``None`` for the default model.
    nodata
        Value marking missing cells, besides NaN.
    device, precision, tile_size, batch_size, conserve, ensemble, calibrate
        See :class:`Downscaler`.
    progress
        Called as ``progress(done, total)`` after each tile (numpy input only).
    periodic
        Whether the columns wrap around, the last neighbouring the first: the longitudes of a global grid
        (:func:`geosr.io.periodic_columns`). The output then has no seam where they meet; the raster
        and the tiles' windows reach across that meridian as across any other.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        float32, same number of dimensions as ``data``, NaN where the footprint has no data. A dask
        input gives a lazy dask output chunked by tile.

    Warns
    -----
    geosr.errors.ScaleWarning
        When ``scale`` lies outside the range of the scales the model was trained at (x8 with the
        shipped models' 2, 3, 4): the detail it adds may be worse than plain interpolation.
    """
    library = type(data).__module__.split(".")[0]
    if library == "xarray":  # its coordinates would be dropped and its dimensions taken in stored order
        kind = type(data).__name__
        accessor = {"Dataset": "its accessor, ds.geosr.downscale", "DataArray": "its accessor, da.geosr.downscale"}
        use = accessor.get(kind, "a DataArray of it with its coordinates and its accessor, da.geosr.downscale")
        raise InputError(
            f"data is an xarray {kind}; use {use}(scale=...), which keeps its coordinates, dimensions and CRS (or "
            "pass the values, .values or .data, as (band, y, x))"
        )
    if library == "torch":
        raise InputError("data is a torch tensor; pass tensor.cpu().numpy()")
    if not hasattr(data, "dtype") or not hasattr(data, "ndim"):  # a list, a path, None
        raise InputError(
            f"data must be a NumPy or dask array, got {type(data).__name__}; pass np.asarray(...) of the values "
            "(for a raster file, geosr.downscale_raster or the command line)"
        )
    scale = check_scale(scale)  # before untrained_scale_message compares it ('2' failed there)
    if nodata is not None and not (
        isinstance(nodata, int | np.integer) and not isinstance(nodata, bool) and -(2**63) <= nodata < 2**64
    ):  # an integer a 64-bit type holds stays exact; anything else must be a float
        try:
            nodata = float(nodata)
        except (TypeError, ValueError):
            raise InputError(f"nodata must be a number, got {nodata!r}") from None
    if progress is not None and not callable(progress):
        raise InputError(f"progress must be a function progress(done, total), got {progress!r}")
    bands, squeeze = _as_bands(data)
    if 0 in bands.shape:
        raise InputError(f"array has zero size {tuple(data.shape)}; nothing to downscale")
    options = {  # checked now, as a lazy result's tasks would only at compute time; and hashable (its cache key)
        "device": device_name(device),
        "precision": precision,
        "tile_size": tile_pair(tile_size),
        "batch_size": check_batch_size(batch_size),
        "conserve": conserve,
        "ensemble": ensemble,
        "calibrate": calibrate,
    }
    if is_dask(bands):
        from geosr.models.files import LoadedModel, load_model

        loaded = model if isinstance(model, LoadedModel) else load_model(model, "cpu")
        out = _downscale_dask(bands, scale, loaded, nodata, options, bool(periodic))
        warn_untrained_scale(loaded.card, scale)  # the graph is made, every check passed; nothing ran yet
    else:
        filled = as_float(np.asarray(bands), nodata)
        downscaler = Downscaler(model, **options)
        plan = downscaler.plan(filled.shape[1:], scale, missing=bool(np.isnan(filled).any()), periodic=periodic)
        warn_untrained_scale(downscaler.model.card, scale)
        out = np.empty((filled.shape[0], *plan.out_shape), dtype=np.float32)
        sources = ((t, tile_window(filled, t, plan)) for t in plan)
        stats = BandStats.of_block(filled)
        check_magnitudes(stats)
        cal = calibration_plan(downscaler.model.card, calibrate, filled.shape[0], filled.shape[1:], scale, periodic)
        gains = downscaler.planned_gains(cal, lambda group: filled[group, cal.rows, cal.cols])
        for done, (tile, core) in enumerate(downscaler.run(plan, stats, sources, gains, overlap=True), 1):
            out[:, tile.rows.core.as_slice(), tile.cols.core.as_slice()] = core
            if progress is not None:
                progress(done, len(plan))
    return out[0] if squeeze else out


def tile_window(raster: np.ndarray, tile: Tile, plan: TilePlan) -> np.ndarray:
    """A tile's (band, y, x) source window of a whole ``raster``: its columns taken across the raster's edges
    on a periodic plan."""
    rows = raster[:, tile.rows.source.as_slice()]
    span = tile.cols.source
    if plan.periodic and (span.start < 0 or span.stop > raster.shape[-1]):
        return rows[:, :, wrapped_indices(span, raster.shape[-1])]
    return rows[:, :, span.as_slice()]


def has_missing(stats: BandStats, shape: tuple[int, int]) -> bool:
    """Whether a raster of ``shape`` (y, x) whose whole-raster ``stats`` these are misses a cell in any band."""
    return bool(np.any(stats.count < shape[0] * shape[1]))


def is_dask(data: Any) -> bool:
    """True for a dask array (checked without importing dask)."""
    return type(data).__module__.startswith("dask")


def _block_stats(block: np.ndarray, nodata: float | None) -> BandStats:
    return BandStats.of_block(as_float(block, nodata))


def _tile_task(
    model: tuple[str, str],
    options: dict[str, Any],
    plan: TilePlan,
    tile: Tile,
    blocks: list[list[np.ndarray]],
    window: tuple[slice, slice],
    stats: BandStats,
    gains: np.ndarray | None,
    nodata: float | None,
    after: None = None,  # the token of the row's chunks and of the tiles two rows up: run after them
) -> np.ndarray:
    """One tile's output from the input chunks its source window touches (``window`` within them)."""
    source = _assembled(blocks, window)
    downscaler = _task_downscaler(model, options)
    ((_, core),) = downscaler.run(plan, stats, [(tile, as_float(source, nodata))], gains)
    for watcher in tuple(_TILE_WATCHERS):
        watcher()
    return core.astype(np.float32)


def _nothing(_: Any) -> None:
    return None


def _key(value: Any) -> Any:
    """A dask graph's reference to ``value``: a Delayed's key, or the value itself."""
    from dask.delayed import Delayed

    return value.key if isinstance(value, Delayed) else value


def _touched(bounds: np.ndarray, span: Span) -> tuple[range, slice]:
    """The chunks (by index, from their ``bounds``) that ``span`` touches, and ``span`` within them: at least
    one, cut to nothing for an empty span (the calibration window of a side shorter than the scale), which
    otherwise touched none on a chunk boundary and left its task no array to cut."""
    first = min(int(np.searchsorted(bounds, span.start, side="right")) - 1, len(bounds) - 2)
    last = max(int(np.searchsorted(bounds, span.stop, side="left")), first + 1)  # one past the last chunk touched
    origin = int(bounds[first])
    return range(first, last), slice(span.start - origin, span.stop - origin)


def _touched_wrapped(bounds: np.ndarray, span: Span) -> tuple[list[int], slice]:
    """:func:`_touched` for an unwrapped ``span`` of a periodic axis (:func:`geosr.tiling.plan_axis`): the chunks
    of each of its pieces within the raster in turn (a chunk may come twice), and ``span`` within them all put
    side by side, which is one window since the pieces meet at the raster's edges."""
    n = int(bounds[-1])
    if span.start >= 0 and span.stop <= n:
        chunks, within = _touched(bounds, span)
        return list(chunks), within
    chunks: list[int] = []
    origin = None
    for piece in wrapped_pieces(span, n):
        touched, _ = _touched(bounds, piece)
        if origin is None:  # where the first piece's chunks begin, unwrapped
            origin = int(bounds[touched.start]) + (span.start - piece.start)
        chunks += list(touched)
    return chunks, slice(span.start - origin, span.stop - origin)


def _gains_task(
    blocks: list[list[np.ndarray]],
    window: tuple[slice, slice],
    group: list[int],
    model: tuple[str, str],
    options: dict[str, Any],
    scale: float,
    stats: BandStats,
    nodata: float | None,
    periodic: bool = False,
) -> np.ndarray | None:
    """The gains of one group of bands from the input chunks the calibration window touches (``window``
    within them), as :func:`_tile_task` cuts a tile's (``periodic``: :attr:`CalibrationPlan.periodic`)."""
    check_magnitudes(stats)  # as the tiles would, before the network sees the window
    source = _assembled(blocks, window, group)
    return _task_downscaler(model, options).gains(as_float(source, nodata), scale, periodic)


def digest_downscaler(model: tuple[str, str], options: dict[str, Any]) -> Downscaler:
    """:func:`cached_downscaler` for the model file (path, digest) a run or a lazy result was planned with:
    a file retrained or replaced in place since is refused (its weights are not those planned with)."""
    path, digest = model
    downscaler = cached_downscaler(path, **options)
    if downscaler.model.digest != digest:  # the cache's (a file replaced with its size and time kept)?
        with _CACHE_LOCK:
            for key in [key for key, cached in _CACHE.items() if cached is downscaler]:
                del _CACHE[key]
        downscaler = cached_downscaler(path, **options)
    if downscaler.model.digest != digest:  # retrained or replaced in place since: other weights
        raise ModelError(
            f"model file '{path}' changed after this result was built (retrained or replaced); build the "
            "result again to use the new model, or keep the model it was built with under another name"
        )
    return downscaler


def _task_downscaler(model: tuple[str, str], options: dict[str, Any]) -> Downscaler:
    """:func:`digest_downscaler` in a task of a lazy result; on a dask worker (of a distributed cluster) that
    cannot load it, an error that names the worker and says why its files may differ."""
    try:
        return digest_downscaler(model, options)
    except GeosrError as exc:
        worker = dask_worker_address()
        if worker is None:
            raise
        raise type(exc)(
            f"on dask worker {worker}: {exc} (the workers load the model at the path this machine uses: put it "
            "where every worker sees it, such as a shared file system)"
        ) from None


def dask_worker_address() -> str | None:
    """The address of the dask distributed worker running this code; None outside one."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


def _assembled(
    blocks: list[list[np.ndarray]], window: tuple[slice, slice], bands: list[int] | None = None
) -> np.ndarray:
    """The (band, y, x) ``window`` of the chunks ``blocks`` (rows of chunks, each holding every band), of the
    ``bands`` only when given: each chunk is cut to them first, so that a task for one band of a long stack
    assembles that band's chunks, not every band's."""
    if bands is not None:
        blocks = [[block[bands] for block in row] for row in blocks]
    blocks = [[unmasked(block) for block in row] for row in blocks]  # chunks of a masked dask array
    whole = blocks[0][0] if len(blocks) == len(blocks[0]) == 1 else np.block(blocks)
    return whole[:, window[0], window[1]]


def _downscale_dask(
    data: Any, scale: float, model: Any, nodata: float | None, options: dict[str, Any], periodic: bool = False
) -> Any:
    import dask
    import dask.array as da
    from dask.base import tokenize
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph

    from geosr.models.files import LoadedModel, load_model

    _autocast_dtype(options["precision"])  # an unknown one refused now, not by the first tile
    # Statistics are per band: every block must hold all the bands, or blocks of different bands
    # would be merged into one band's statistics.
    data = data.rechunk({0: -1})
    loaded = model if isinstance(model, LoadedModel) else load_model(model, "cpu")
    tiles = tile_pair(options["tile_size"])
    plan = plan_tiles(data.shape[1:], scale, tiles, loaded, options["conserve"], periodic=periodic)
    check_bands(loaded.card, data.shape[0])  # before the statistics, which may be computed now
    parts = [dask.delayed(_block_stats, pure=True)(block, nodata) for block in data.to_delayed().ravel()]
    stats = dask.delayed(BandStats.combine, pure=True)(parts)
    row_bounds, col_bounds = np.cumsum((0, *data.chunks[1])), np.cumsum((0, *data.chunks[2]))
    # the tasks load the model file where they run; its digest tells them (and the tasks' names) which one
    ref = (loaded.source, loaded.digest)
    gains = None
    cal = calibration_plan(loaded.card, options["calibrate"], data.shape[0], data.shape[1:], scale, periodic)
    if cal is not None:  # one task per group of bands: memory follows one group's window
        # written out like the tiles, on the input's own chunk keys: a sliced dask array passed to
        # dask.delayed is optimised into a graph of new keys, which read the chunks again (a NetCDF variable
        # of 24 time steps in one chunk was read 25 times, once per step's calibration and once by the tiles)
        gains_name = "geosr-gains-" + tokenize(data, ref, options, cal, nodata, stats)
        bi, rs = _touched(row_bounds, Span(cal.rows.start, cal.rows.stop))
        bj, cs = _touched(col_bounds, Span(cal.cols.start, cal.cols.stop))
        pieces = [[(data.name, 0, a, b) for b in bj] for a in bi]
        args = (ref, options, cal.scale, _key(stats), nodata, cal.periodic)  # stats: computed before the tasks
        gains_layer: dict[Any, Any] = {
            (gains_name, k): (_gains_task, pieces, (rs, cs), group, *args) for k, group in enumerate(cal.groups)
        }
        gains_layer[gains_name] = (np.concatenate, [(gains_name, k) for k in range(len(cal.groups))])
        graph = HighLevelGraph.from_collections(gains_name, gains_layer, dependencies=[data, stats])
        gains = Delayed(gains_name, graph)
    if _EAGER_STATISTICS.get():  # computed now: the tiles then depend on no reduction over the whole input
        stats, gains = dask.compute(stats, gains)
        # known now: without missing cells the tiles read no padding for their fill (lazy, they must)
        missing = has_missing(stats, data.shape[1:])
        plan = plan_tiles(data.shape[1:], scale, tiles, loaded, options["conserve"], missing=missing, periodic=periodic)
    # The graph is written out, one task per tile (dask.delayed with each tile's chunks as arguments merged
    # the whole input graph into every tile's: memory grew with the square of the number of tiles, 1.2 GB
    # to lay out a 12000 x 12000 grid). A tile takes the input chunks its window touches and cuts the window
    # itself; it waits for the tiles two rows up (a token per row), so dask reads the input row by row and
    # does not read ahead of the network (it held up to half the input at 12000 x 12000).
    # the plan's wrap (periodic) is not among the tasks' options: named here, or a periodic and a plain run of the
    # same array would share their keys (and one take the other's tiles in a graph or on a cluster)
    name = TILE_TASKS + tokenize(data, scale, ref, options, nodata, stats, gains, periodic)
    # Each row's tiles wait for one token, "read", that stands for the row's input chunks and the tiles two rows
    # up: every tile of the row then reaches the same input chunks through the graph as the token does. Waiting
    # for the row token directly gave each tile its own set of them (its chunks and every chunk above), and dask's
    # ordering (dask.order) kept one such set per tile: 108 MiB for 2209 tiles, growing with their square.
    # the plan is one value of the graph, which each tile task names: given to each it was pickled into each (29 KB
    # a task at 24000 x 24000, its spans growing with the raster's side), and a cluster ships tasks one by one
    layer: dict[Any, Any] = {f"{name}-plan": plan}
    for i in range(plan.grid_shape[0]):
        gate = (f"{name}-row", i - TILE_ROWS_AHEAD) if i >= TILE_ROWS_AHEAD else None
        tiles = [Tile((i, j), plan.row_tiles[i], plan.col_tiles[j]) for j in range(plan.grid_shape[1])]
        bi, rs = _touched(row_bounds, plan.row_tiles[i].source)  # every tile of the row: the same chunk rows
        touched = [_touched_wrapped(col_bounds, tile.cols.source) for tile in tiles]
        chunks = sorted({(data.name, 0, a, b) for bj, _ in touched for b in bj for a in bi})
        layer[f"{name}-read", i] = (_nothing, [chunks, gate])
        for j, (tile, (bj, cs)) in enumerate(zip(tiles, touched, strict=True)):
            pieces = [[(data.name, 0, a, b) for b in bj] for a in bi]
            args = (ref, options, f"{name}-plan", tile, pieces, (rs, cs), _key(stats), _key(gains), nodata)
            layer[name, 0, i, j] = (_tile_task, *args, (f"{name}-read", i))
            layer[f"{name}-done", i, j] = (_nothing, (name, 0, i, j))  # the row's token holds no tile
        layer[f"{name}-row", i] = (_nothing, [(f"{name}-done", i, j) for j in range(plan.grid_shape[1])])
    parents = [data, *(value for value in (stats, gains) if isinstance(value, Delayed))]
    graph = HighLevelGraph.from_collections(name, layer, dependencies=parents)
    chunks = ((data.shape[0],), tuple(t.core.size for t in plan.row_tiles), tuple(t.core.size for t in plan.col_tiles))
    return da.Array(graph, name, chunks, dtype=np.float32)

"""File to file: read a raster, downscale it tile by tile, write a GeoTIFF. Used by the CLI and QGIS.

Memory is bounded by the tile size: the input is read twice by window (once for the whole-raster
statistics, once per tile) and the output is written tile by tile.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import geosr
from geosr.background import Behind
from geosr.errors import InputError, ModelError, ScaleError
from geosr.georef import (
    check_scale,
    output_shape,
    output_transform,
    pixel_size,
    refined_image_offset,
    scale_for_resolution,
)
from geosr.io import (
    BandSubset,
    OutputSpec,
    TileWriter,
    band_signs,
    check_destination,
    check_geotiff_name,
    check_nodata_writable,
    check_space,
    check_world_file,
    files_read,
    geotiff_tile_size,
    grid_format,
    iter_windows,
    mirrored,
    mirrored_array,
    north_up_flips,
    off_nodata,
    open_raster,
    periodic_columns,
    raster_info,
    read_window,
)
from geosr.predict import (
    DEFAULT_TILE_SIZE,
    Downscaler,
    ProgressCallback,
    calibration_plan,
    check_ensemble,
    check_magnitudes,
    has_missing,
    untrained_scale_message,
    warn_untrained_scale,
)
from geosr.stats import BandStats
from geosr.tiling import Span, TilePlan, tile_pair

#: GDAL's block cache (MB). Bounded so that dirty output blocks are flushed as tiles complete instead
#: of accumulating up to GDAL's default of 5% of RAM: peak memory then follows the tile size.
GDAL_CACHE_MB = 64


def default_output(src: Path, scale: float | None, resolution: float | None, suffix: str = ".tif") -> Path:
    """``dem_x4.tif`` (or ``dem_r10.tif`` for ``--resolution 10``) beside the input."""
    label = f"x{scale:g}" if resolution is None else f"r{resolution:g}"
    name = str(src)
    remote = re.match(r"^(https?|ftp|s3|gs|az|abfs|oss|swift)://?", name, re.IGNORECASE)  # (a Path keeps one /)
    if name.startswith("/vsi") or remote:  # /vsizip/dems.zip/dem.tif, https://.../dem.tif -> dem_x4.tif here
        return Path(f"{Path(name.split('?')[0]).stem}_{label}{suffix}")
    part = None if src.exists() else _subdataset(name)
    if part is not None:  # NETCDF:"tas.nc":tas -> tas_tas_x4.tif beside tas.nc
        path, variable = part
        return path.with_name(f"{path.stem}_{variable}_{label}{suffix}")
    if not src.exists() and re.match(r"^[A-Za-z][A-Za-z0-9_]+:", name):
        raise InputError(
            f"cannot tell which file the GDAL name '{name}' reads, to name the output beside it; give one with -o"
        )
    return src.with_name(f"{src.stem}_{label}{suffix}")


def _subdataset(name: str) -> tuple[Path, str] | None:
    """The file and the part (a variable, an image) that a GDAL subdataset name reads, the part's last name
    made fit for a file name: ``NETCDF:"tas.nc":tas``, ``NETCDF:tas.nc:tas``, a grouped
    ``NETCDF:"imerg.nc":/Grid/precipitation`` or ``HDF5:"imerg.nc"://Grid/precipitation`` (``precipitation``),
    ``HDF4_EOS:EOS_GRID:"mod.hdf":Grid:"250m NDVI"`` (``250m_NDVI``), ``GTIFF_DIR:2:dem.tif`` (``dir2``)."""
    quoted = re.match(r'^[A-Za-z][A-Za-z0-9_]+:(?:[^"]*:)?"([^"]+)":(.+)$', name)
    unquoted = re.match(r'^[A-Za-z][A-Za-z0-9_]+:([^:"]+):([^:"]+)$', name)
    if quoted:
        file, rest = quoted.groups()
    elif unquoted:
        file, rest = unquoted.groups()
        if file.isdigit():  # GTIFF_DIR:2:dem.tif, the second image of dem.tif
            file, rest = rest, f"dir{file}"
    else:
        return None
    last = [p for p in re.split(r"[/:\\]", rest) if p.strip('" ')]
    variable = re.sub(r"[^A-Za-z0-9_.-]+", "_", last[-1].strip('" ')) if last else ""
    return (Path(file), variable) if variable else None


@dataclass
class Result:
    """What a run produced."""

    path: Path
    scale: tuple[float, float]
    shape: tuple[int, int]
    model: str
    device: str
    tiles: int


def downscale_raster(
    src: str | Path,
    dst: str | Path | None = None,
    *,
    scale: float | None = None,
    resolution: float | None = None,
    model: str | Path | None = None,
    device: str = "auto",
    precision: str = "fp32",
    tile_size: int = DEFAULT_TILE_SIZE,
    batch_size: int = 1,
    overwrite: bool = False,
    cog: bool = False,
    keep_dtype: bool = False,
    conserve: bool | None = None,
    ensemble: int = 1,
    calibrate: bool | None = None,
    scheduler: str | None = None,
    bands: Sequence[int] | None = None,
    progress: ProgressCallback | None = None,
) -> Result:
    """Super-resolve the raster at ``src`` into a GeoTIFF at ``dst``.

    Exactly one of ``scale`` and ``resolution`` (target pixel size in CRS units) is given. The
    output has the input's CRS and bounds, ``round(n * scale)`` pixels along each axis, float32
    values (or the input's dtype, rounded and clipped, with ``keep_dtype``), the input's nodata,
    band descriptions, units, scales/offsets, colour interpretation and tags, plus ``GEOSR_*`` tags.
    With ``conserve`` every input cell's fine pixels average exactly to the input value (``None``:
    as the model's card says, at whole scales; ``False``: never). ``ensemble`` (4, or 8 for square
    pixels) averages the model over flipped (and rotated) copies (:class:`geosr.predict.Downscaler`);
    ``calibrate`` scales each band's detail by what the input's own coarser copy supports
    (:mod:`geosr.calibrate`; ``None``: as the model's card says). With
    ``scheduler`` (a dask.distributed address) the tiles run on that cluster's workers, which read
    ``src`` and the model file from the same paths; the output is identical to a local run.
    """
    if (scale is None) == (resolution is None):
        raise ScaleError("give exactly one of --scale and --resolution")
    rows, cols = tile_pair(tile_size)  # one clear line for text or a bad pair, as geosr.downscale gives
    if rows != cols:
        raise InputError(
            f"a GeoTIFF is written in square tiles (whole blocks each), got tile size {tile_size!r}; pass one number"
        )
    tile_size = rows
    if scheduler is not None:  # before the statistics pass, not after
        from geosr.distributed import require_distributed

        require_distributed()
    name, src = str(src), Path(src)  # GDAL opens the name as given (a Path folds /vsizip//abs/... into a relative name)
    import rasterio

    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), open_raster(name, bands) as dataset:
        info = raster_info(dataset)
        if scale is None:
            if info.gcps:
                raise ScaleError(
                    f"'{src}' is georeferenced by ground control points, which give no pixel size for --resolution; "
                    "use --scale"
                )
            scale = scale_for_resolution(info.transform, resolution)
        scale = check_scale(scale)
        check_ensemble(ensemble, pixel_size(info.transform))
        out = Path(dst) if dst is not None else default_output(src, scale, resolution)
        check_geotiff_name(out)
        check_destination(src, out, overwrite, input_files=files_read(dataset))  # a VRT's sources too
        if not info.georeferenced or info.gcps:  # GDAL reads a world file before a GeoTIFF's GCPs too
            check_world_file(src, out)
        out_dtype = info.dtype if keep_dtype else "float32"
        if keep_dtype:
            check_nodata_writable(out_dtype, info.nodata, src)
        # before any work (the model, the whole-raster statistics pass): a huge raster, sparse or not,
        # would be read to the end before an output too large for GDAL or the disk was refused
        check_space(out, output_shape(info.height, info.width, scale), info.count, out_dtype)
        options = {
            "device": device,
            "precision": precision,
            "tile_size": geotiff_tile_size(tile_size),  # whole GeoTIFF blocks per tile
            "batch_size": batch_size,
            "conserve": conserve,
            "ensemble": ensemble,
            "calibrate": calibrate,
        }
        downscaler = Downscaler(model, **options)
        check_band_names(downscaler.model.card, dataset, str(src))
        downscaler.check_bands(info.count)
        stats = BandStats.combine(BandStats.of_block(block) for block in iter_windows(dataset))
        check_magnitudes(stats, str(src), bands)  # before any output is created
        if len(stats.empty_bands) == info.count:  # a band without data alone comes out as nodata
            raise InputError(
                f"every pixel of '{src}' is nodata (nodata={info.nodata}); nothing to downscale: check the "
                "input, or its nodata value (gdal_edit.py -a_nodata)"
            )
        flips = north_up_flips(info)  # a south-up raster runs north-up and is written back south-up
        # tiles laid from the far end of a mirrored axis: written back, each fills the blocks it touches
        shape = (info.height, info.width)
        # a global grid's columns wrap around: no seam where its last column meets its first
        plan = downscaler.plan(
            shape, scale, from_end=flips, missing=has_missing(stats, shape), periodic=periodic_columns(info)
        )
        cal = calibration_plan(
            downscaler.model.card, downscaler.calibrate, info.count, (info.height, info.width), scale, plan.periodic
        )

        def read_group(group: list[int]) -> np.ndarray:  # each band alone for a 1-band model
            rows, cols = Span(cal.rows.start, cal.rows.stop), Span(cal.cols.start, cal.cols.stop)
            return read_window(BandSubset(dataset, [b + 1 for b in group]), rows, cols, flips)

        gains = downscaler.planned_gains(cal, read_group)
        spec = _output_spec(info, plan, stats, downscaler, scale, keep_dtype, tile_size, gains)
        warn_untrained_scale(downscaler.model.card, scale)  # every check passed: before the long part
        if scheduler is None:
            # a worker thread reads and interpolates the next tiles, another writes the last one,
            # while the network runs (geosr.background): the GPU no longer waits for the disk
            sources = ((t, read_window(dataset, t.rows.source, t.cols.source, flips)) for t in plan)
            results = downscaler.run(plan, stats, sources, gains, overlap=True)
        else:
            from geosr.distributed import run_tiles

            model_ref = (downscaler.model.source, downscaler.model.digest)
            results = run_tiles(scheduler, name, model_ref, options, plan, stats, bands, gains, flips)
        (height, width), (flip_rows, flip_cols) = plan.out_shape, flips
        signs = band_signs(dataset)  # a band with a negative scale ran negated (read_window): its stored numbers back

        def write(tile: Any, core: np.ndarray) -> None:
            rows, cols = mirrored(tile.rows.core, height, flip_rows), mirrored(tile.cols.core, width, flip_cols)
            if (signs < 0).any():
                core = core * signs.astype(core.dtype)[:, None, None]
            writer.write(rows.as_slice(), cols.as_slice(), mirrored_array(core, flips))

        # closed (its reader stopped) and the writes settled before the files are closed
        with TileWriter(out, spec, cog=cog, overwrite=overwrite) as writer, contextlib.closing(iter(results)) as tiles:
            with Behind(depth=1) as behind:
                for done, (tile, core) in enumerate(tiles, 1):
                    behind.submit(write, tile, core)  # returns once the tile before is written
                    if progress is not None and done > 1:
                        progress(done - 1, len(plan))  # tiles written, not only computed
            if progress is not None:
                progress(len(plan), len(plan))
            writer.commit()
    factors = (plan.out_shape[0] / info.height, plan.out_shape[1] / info.width)
    return Result(out, factors, plan.out_shape, downscaler.model.card.name, str(downscaler.device), len(plan))


def check_band_names(card: Any, dataset: Any, source: str) -> None:
    """Refuse a multiband model's bands given in another order than it was trained on, or among other bands.

    A model of N channels learns one quantity per channel, so channel order matters. When every band
    name on its card is the description of exactly one band of the raster, the bands chosen (all, or
    those of ``--bands``) must be those, in the card's order; the error names the ``--bands`` that picks
    them. Rasters whose descriptions do not name the card's bands (none, or other names) are not judged.
    """
    names = list(card.bands)
    if card.in_channels == 1 or len(names) != card.in_channels:
        return
    every = list(getattr(dataset, "_dataset", dataset).descriptions)  # all the raster's bands, under --bands too
    if any(every.count(name) != 1 for name in names):
        return
    wanted = [every.index(name) + 1 for name in names]
    chosen = list(getattr(dataset, "band_numbers", range(1, dataset.count + 1)))
    if chosen != wanted:
        given = ", ".join(f"{b} ({every[b - 1] or 'no description'})" for b in chosen)
        raise ModelError(
            f"model {card.name!r} takes the bands {', '.join(names)} in that order, but it was given bands "
            f"{given} of '{source}'; pass --bands {','.join(map(str, wanted))}"
        )


def _output_spec(
    info: Any,
    plan: TilePlan,
    stats: BandStats,
    downscaler: Downscaler,
    scale: float,
    keep_dtype: bool,
    tile_size: int,
    gains: np.ndarray | None = None,
) -> OutputSpec:
    shape = plan.out_shape
    dtype = info.dtype if keep_dtype else "float32"
    has_gaps = bool((stats.count < info.height * info.width).any())
    nodata = info.nodata
    # such as float64's lowest value, which a float32 output cannot hold (-inf it can)
    if nodata is not None and np.dtype(dtype).kind == "f" and abs(nodata) > float(np.finfo(dtype).max):
        nodata = nodata if np.isinf(nodata) else float("nan")
    if nodata is None and has_gaps:
        if np.issubdtype(np.dtype(dtype), np.integer):
            raise InputError(
                f"'{info.path}' has masked pixels but no nodata value, which a {dtype} output cannot hold; "
                "drop --keep-dtype to write float32 with NaN as nodata"
            )
        nodata = float("nan")
    card = downscaler.model.card
    tags = {
        "GEOSR_VERSION": geosr.__version__,
        "GEOSR_MODEL": f"{card.name} ({Path(downscaler.model.source).name}, sha256 {downscaler.model.digest})",
        "GEOSR_SCALE": f"{scale:g}",
        "GEOSR_SCALE_XY": f"{shape[1] / info.width:.12g},{shape[0] / info.height:.12g}",
        "GEOSR_INTERPOLATION": card.interpolation,
        "GEOSR_PRECISION": downscaler.precision,
        "GEOSR_CONSERVE": "yes" if plan.conserve else "no",
        "GEOSR_ENSEMBLE": str(downscaler.ensemble),
        "GEOSR_CALIBRATE": "no" if gains is None else "residual gains " + ",".join(f"{g:.3g}" for g in gains),
        "GEOSR_PERIODIC": "yes" if plan.periodic else "no",  # the columns wrapped around: a global grid
    }
    return OutputSpec(
        height=shape[0],
        width=shape[1],
        count=info.count,
        dtype=dtype,
        crs=info.gcp_crs if info.gcps else info.crs,
        # an ungeoreferenced raster (pixel space) stays so: GDAL's default transform is not a placement
        transform=output_transform(info.transform, (info.height, info.width), shape) if info.georeferenced else None,
        nodata=nodata,
        tile_size=tile_size,
        tags=tags,
        info=info,
        gcps=[_refine_gcp(g, shape[0] / info.height, shape[1] / info.width) for g in info.gcps],
        rpcs=None if info.rpcs is None else _refine_rpcs(info.rpcs, shape[0] / info.height, shape[1] / info.width),
    )


def _refine_rpcs(rpcs: Any, fy: float, fx: float) -> Any:
    """RPCs (kept beside a transform) on the fine grid: the same ground point at the same place in the bounds."""
    from rasterio.rpc import RPC

    values = rpcs.to_dict()
    values["line_off"], values["line_scale"] = refined_image_offset(rpcs.line_off, rpcs.line_scale, fy)
    values["samp_off"], values["samp_scale"] = refined_image_offset(rpcs.samp_off, rpcs.samp_scale, fx)
    return RPC(**values)


def _refine_gcp(gcp: Any, fy: float, fx: float) -> Any:
    """A ground control point on the fine grid (GDAL's pixel and line count from the raster's corner)."""
    from rasterio.control import GroundControlPoint

    return GroundControlPoint(gcp.row * fy, gcp.col * fx, gcp.x, gcp.y, gcp.z, gcp.id, gcp.info)


def downscale_grid(
    src: str | Path,
    dst: str | Path | None = None,
    *,
    variable: str,
    scale: float | None = None,
    resolution: float | None = None,
    model: str | Path | None = None,
    device: str = "auto",
    precision: str = "fp32",
    tile_size: int = DEFAULT_TILE_SIZE,
    batch_size: int = 1,
    overwrite: bool = False,
    conserve: bool | None = None,
    ensemble: int = 1,
    calibrate: bool | None = None,
    scheduler: str | None = None,
    progress: ProgressCallback | None = None,
) -> Result:
    """Super-resolve ``variable`` of a NetCDF file or Zarr store into NetCDF or Zarr (by ``dst``'s suffix).

    The variable may have any dimensions besides its two spatial ones (such as time); it is read
    lazily, one slice and about one tile at a time, through the xarray accessor, and written chunk
    by chunk, so memory follows the tile size. ``resolution`` is a target cell size in the units
    of the spatial coordinates. The output holds the downscaled variable on the fine grid, with
    its attributes, the file's attributes and the variables without spatial dimensions (such as
    time bounds), stored as :func:`_grid_output` says (float32, compressed, the input's fill value,
    fine-cell bounds, a ``history`` line); a Zarr output keeps a Zarr input's version (2 or 3). The
    default ``dst`` is ``<name>_x<scale>`` beside ``src``, in the same format.
    With ``scheduler`` the chunks run on that dask.distributed cluster. ``progress(done, total)`` is
    called as tiles finish (of every slice together; not with ``scheduler``: the cluster's dashboard shows it).
    """
    from affine import Affine

    from geosr.accessor import regular_step, spatial_dims, without_measures
    from geosr.io import check_grid_library, netcdf_chunk_cache, open_grid, write_grid
    from geosr.predict import eager_statistics, select_device

    if (scale is None) == (resolution is None):
        raise ScaleError("give exactly one of --scale and --resolution")
    given = {"scale": scale, "resolution": resolution, "model": model, "device": device, "precision": precision}
    given.update(tile_size=tile_size, batch_size=batch_size, conserve=conserve, ensemble=ensemble, calibrate=calibrate)
    if scheduler is not None:
        from geosr.distributed import require_distributed

        require_distributed()
    src = Path(src)
    with netcdf_chunk_cache(), open_grid(src, variable) as ds:
        var = ds[variable]
        ydim, xdim = spatial_dims(var)
        if scale is None:
            steps = Affine(regular_step(var, xdim), 0.0, 0.0, 0.0, regular_step(var, ydim), 0.0)
            scale = scale_for_resolution(steps, resolution)
        scale = check_scale(scale)
        out = Path(dst) if dst is not None else default_output(src, scale, resolution, suffix=src.suffix)
        check_destination(src, out, overwrite, store=grid_format(out) == "zarr")  # a folder only for Zarr
        if grid_format(out) is not None:  # else write_grid refuses the name itself
            check_grid_library(str(grid_format(out)), "output", out)
        slices = int(np.prod([var.sizes[d] for d in var.dims if d not in (ydim, xdim)]))
        check_space(out, output_shape(var.sizes[ydim], var.sizes[xdim], scale), slices, "float32")
        rows, cols = tile_pair(tile_size)
        chunks = {str(d): 1 for d in var.dims if d not in (ydim, xdim)}
        chunks.update({ydim: max(1, round(rows / scale)), xdim: max(1, round(cols / scale))})
        keep = [str(name) for name, v in ds.data_vars.items() if name == variable or not {ydim, xdim} & set(v.dims)]
        with warnings.catch_warnings():
            # geosr's own tiling, not the user's: xarray would blame them for splitting the stored chunks
            warnings.filterwarnings("ignore", message="The specified chunks separate the stored chunks")
            chunked = ds[keep].chunk(chunks)
        # the statistics are computed here, before the tiles (by this process's threads): within the graph, dask
        # held every chunk it read until the last was read (a 12000 x 12000 NetCDF: 1.1 GiB, against 0.5 at 2000)
        with eager_statistics():
            fine = chunked.geosr.downscale(
                scale,
                model=model,
                device=device,
                precision=precision,
                tile_size=(rows, cols),  # the chunks' own tiles (the accessor's default is at least 256)
                batch_size=batch_size,
                conserve=conserve,
                ensemble=ensemble,
                calibrate=calibrate,
                y_dim=ydim,
                x_dim=xdim,
            )
        # no link to a cell measure on the grid (areacella), which is not written
        fine = without_measures(fine, {str(name) for name in ds.data_vars if str(name) not in fine.variables})
        command = _command_line() or _python_call(src, out, variable, given)
        fine, encoding = _grid_output(ds, fine, variable, (ydim, xdim), out, src, scale, command=command)
        zarr_format = _zarr_format(src) if grid_format(src) == "zarr" else None
        if scheduler is None:
            with tile_progress(progress, fine):
                write_grid(fine, out, encoding, zarr_format, overwrite)
        else:
            from geosr.distributed import computing_on
            from geosr.io import NETCDF_CHUNK_CACHE

            # the workers read the input: netCDF4's chunk cache is per process, set on each of them too. A lost
            # cluster is one line, as for a GeoTIFF; a run stopped stops its tasks before its temporary output goes
            with computing_on(scheduler, netcdf_cache=NETCDF_CHUNK_CACHE):
                write_grid(fine, out, encoding, zarr_format, overwrite)
    shape = (fine[variable].sizes[ydim], fine[variable].sizes[xdim])  # the spatial dimensions need not be last
    factors = (shape[0] / var.sizes[ydim], shape[1] / var.sizes[xdim])
    return Result(
        out,
        factors,
        shape,
        fine[variable].attrs["geosr_model"],
        str(select_device(device)),
        fine[variable].data.npartitions,
    )


@contextlib.contextmanager
def tile_progress(progress: ProgressCallback | None, collection: Any) -> Iterator[None]:
    """Call ``progress(done, total)`` as each tile of the lazy downscales in ``collection`` finishes while inside
    (computed by dask's threaded or synchronous scheduler in this process; ``total``: every slice's tiles)."""
    if progress is None:
        yield
        return
    import threading

    from geosr.predict import count_tiles, watching_tiles

    total, done, lock = count_tiles(collection), [0], threading.Lock()

    def one() -> None:
        with lock:  # tiles finish on the scheduler's worker threads
            done[0] += 1
            progress(min(done[0], total), total)

    with watching_tiles(one):
        yield


#: DEFLATE level of a NetCDF output whose input was not DEFLATE-compressed (netCDF's zlib).
NETCDF_COMPLEVEL = 4


def _command_line() -> str | None:
    """The ``geosr`` command running now, as typed (its arguments shell-quoted); None outside the command line."""
    import shlex

    import click

    context = click.get_current_context(silent=True)
    if context is None or context.command.name != "downscale":
        return None
    from geosr.cli.options import state  # the arguments geosr.cli.main was given

    argv = [str(arg) for arg in state.get("argv") or []]
    return shlex.join(["geosr", *argv]) if "downscale" in argv else None


def _python_call(src: Path, out: Path, variable: str, given: dict[str, Any]) -> str:
    """A call of :func:`downscale_grid` equivalent to this one: every option that is not its default, and the model."""
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(downscale_grid).parameters.items()}
    options = {k: v for k, v in given.items() if k == "model" or v is not defaults.get(k) and v != defaults.get(k)}
    text = ", ".join(
        [repr(str(src)), repr(str(out)), f"variable={variable!r}"]
        + [f"{name}={_plain(value)!r}" for name, value in options.items()]
    )
    return f"geosr.pipeline.downscale_grid({text})"


def _plain(value: Any) -> Any:
    """``value`` as its repr reads back: a path as text, a loaded model by its card's name."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    card = getattr(value, "card", None)
    return getattr(card, "name", type(value).__name__)


#: The largest rounding of the fine cells' centres, in fine pixels, a coordinate's stored float type may make.
CENTRE_ROUNDING = 1e-4


def _holds_centres(dtype: np.dtype, centres: Any) -> bool:
    """Whether ``dtype`` stores the fine ``centres`` to within :data:`CENTRE_ROUNDING` of a fine pixel, so
    that readers deriving the grid from them (GDAL, rioxarray, CDO) find its pixel size and bounds."""
    values = np.asarray(centres, dtype=np.float64)
    if values.size < 2:
        return True
    step = float(np.abs(np.diff(values)).min())
    with np.errstate(over="ignore", invalid="ignore"):
        rounding = np.abs(values.astype(dtype).astype(np.float64) - values)
    return bool(np.all(rounding <= CENTRE_ROUNDING * step))


def _coordinate_encoding(ds: Any, fine: Any, variable: str, dims: tuple[str, str]) -> dict[str, dict[str, Any]]:
    """The input's value encoding (:data:`geosr.io.VALUE_ENCODING`) of each coordinate of the output.

    A coordinate off the spatial grid (time) has the input's values, and its whole value encoding
    (dtype, units and calendar, fill value); a spatial one has new values (the fine cells' centres), and
    only the input's float type and fill value: packing or an integer type would round the fine centres.
    The float type is kept only where it holds the fine centres (:func:`_holds_centres`), else they are
    written as float64: float32 steps are 1 m apart at a UTM northing of 9e6, where the centres of 15 m
    cells are 7.5 m off whole metres.
    """
    from geosr.io import VALUE_ENCODING

    encoding: dict[str, dict[str, Any]] = {}
    for name in fine.coords:
        if name == variable or name not in ds.variables or ds.variables[name].dims != fine.variables[name].dims:
            continue
        value = {k: v for k, v in ds.variables[name].encoding.items() if k in VALUE_ENCODING}
        if name in dims:
            stored = value.get("dtype")
            value = {k: v for k, v in value.items() if k in ("_FillValue", "missing_value")}
            packed = {"scale_factor", "add_offset"} & set(ds.variables[name].encoding)
            floating = stored is not None and np.dtype(stored).kind == "f" and not packed
            if floating and _holds_centres(np.dtype(stored), fine.variables[name].values):
                value["dtype"] = np.dtype(stored)
        own = fine.variables[name].encoding
        encoding[str(name)] = {k: v for k, v in value.items() if k not in own}
    return encoding


def _grid_output(
    ds: Any,
    fine: Any,
    variable: str,
    dims: tuple[str, str],
    out: Path,
    src: Path,
    scale: float,
    *,
    command: str | None = None,
) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The downscaled Dataset as a CF file says it, and the encoding of its variable.

    The variable is stored as float32 (never packed into the input's small integers, which the finer
    values could overflow), compressed (NetCDF: DEFLATE at the input's level, with shuffle, in chunks
    of the output's dask chunks; Zarr: the library's default compressor), with the input's floating
    ``_FillValue`` where it had one and was not packed (a valid value on it moves off it, as in a
    GeoTIFF: :func:`geosr.io.off_nodata`), else NaN. The spatial coordinates get bounds again
    where the input's had them (the fine cells' edges); every coordinate keeps the input's encoding
    (:func:`_coordinate_encoding`). The global ``history`` gets a line before the input's (newest first,
    as NCO and CDO write it): the time (UTC) and ``command``, the command as typed or an equivalent call
    (by default the call of :func:`downscale_grid` with ``scale``).
    """
    import xarray as xr

    source, result = ds[variable], fine[variable]
    fill = source.encoding.get("_FillValue", source.encoding.get("missing_value"))
    stored = np.dtype(source.encoding.get("dtype", source.dtype))
    packed = "scale_factor" in source.encoding or "add_offset" in source.encoding
    settings: dict[str, Any] = {"dtype": "float32", "_FillValue": np.float32(np.nan)}
    if fill is not None and np.ndim(fill) == 0 and stored.kind == "f" and not packed:
        value = float(fill)
        if np.isfinite(value) and abs(value) <= float(np.finfo(np.float32).max):
            value32 = np.float32(value)
            settings["_FillValue"] = value32
            # as in a GeoTIFF: a valid value GDAL would take for the fill (within a few float steps) moves off it
            aside = off_nodata(value32, np.dtype("float32"))
            keep = result.isnull() | (abs(result - value32) > abs(aside - value32))  # missing stays missing
            result = result.where(keep, aside)
    if grid_format(out) == "netcdf":
        level = source.encoding.get("complevel") if source.encoding.get("zlib") else None
        settings.update(zlib=True, shuffle=True, complevel=int(level) if level else NETCDF_COMPLEVEL)
        if result.chunks:
            settings["chunksizes"] = tuple(max(sizes) for sizes in result.chunks)
    fine, encoding = fine.assign({variable: result}), {variable: settings}
    encoding.update(_coordinate_encoding(ds, fine, variable, dims))
    for dim in dims:
        name = ds[dim].attrs.get("bounds") if dim in ds.coords else None
        if name in ds.variables and ds[name].ndim == 2 and ds[name].dims[0] == dim and dim in fine.coords:
            centres = np.asarray(fine[dim].values, dtype=np.float64)
            half = abs(centres[-1] - centres[0]) / (len(centres) - 1) / 2 if len(centres) > 1 else 0.0
            if not half:  # one fine cell: the input's outer edges
                edges = np.asarray(ds[name].values, dtype=np.float64)
                half = (edges.max() - edges.min()) / 2
            pair = [-half, half] if (ds[name].values[0, 0] <= ds[name].values[0, 1]) else [half, -half]
            bounds = centres[:, None] + np.asarray(pair)[None, :]
            fine = fine.assign({name: xr.DataArray(bounds, dims=ds[name].dims, attrs=ds[name].attrs)})
            fine[dim].attrs["bounds"] = name
            encoding[name] = {"_FillValue": None}  # CF: bounds hold no missing values
    stamp = datetime.now(timezone.utc).strftime("%a %b %d %H:%M:%S %Y")
    line = f"{stamp}: {command or _python_call(src, out, variable, {'scale': scale})}"
    history = str(fine.attrs.get("history", "")).strip()
    fine.attrs["history"] = f"{line}\n{history}" if history else line
    return fine, encoding


def _zarr_format(store: Path) -> int | None:
    """2 or 3: the Zarr version of an input store, which the output keeps; None if unknown."""
    if (store / "zarr.json").exists():
        return 3
    if (store / ".zgroup").exists() or (store / ".zarray").exists():
        return 2
    return None


__all__ = [
    "Result",
    "check_band_names",
    "default_output",
    "downscale_grid",
    "downscale_raster",
    "untrained_scale_message",
    "warn_untrained_scale",
]

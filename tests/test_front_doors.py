"""One pipeline, three front doors: the same raster and options give the same result through the command line
(GeoTIFF, and NetCDF with --variable), the xarray accessor (numpy and dask) and ``geosr.downscale``.

The QGIS tool runs the command line (tests/qgis/test_algorithm.py compares the two). Values are compared to
float32 precision, with the nodata mask, the fine grid (rioxarray's cell centres against the GeoTIFF's
corner-based transform) and the CRS. The grid's orientation must not matter either: the network sees every
raster north-up (row 0 north, columns west to east), as GDAL reads it, a bottom-up NetCDF included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from conftest import CRS, TRANSFORM, write_geotiff

import geosr
from geosr.testing import fbm_surface, random_model

rioxarray = pytest.importorskip("rioxarray")
dsa = pytest.importorskip("dask.array")

NODATA = -9999.0


@pytest.fixture(scope="module")
def calibrating(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random model configured like the shipped ``climate``: consistent kernel, conserving, self-calibrating."""
    path = tmp_path_factory.mktemp("models") / "calibrating.safetensors"
    return str(
        random_model(
            path, depth=4, width=8, seed=3, name="cal", interpolation="consistent", conserve=True, calibrate=True
        )
    )


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random model whose network always runs (no calibration to withdraw its detail)."""
    path = tmp_path_factory.mktemp("models") / "plain.safetensors"
    return str(random_model(path, depth=4, width=8, seed=2, name="plain", interpolation="consistent"))


def _model(request: pytest.FixtureRequest, name: str) -> str:
    return name if name in ("climate", "dem") else request.getfixturevalue(name)


def field(shape=(30, 36), seed=7, relief=20.0, base=280.0) -> np.ndarray:
    return fbm_surface(shape, seed=seed, relief=relief, base=base)


def with_holes(data: np.ndarray) -> np.ndarray:
    holes = data.copy()
    holes[..., 5:10, 8:13] = NODATA
    holes[..., 20, 30] = NODATA
    return holes


def read_tif(path: Path) -> tuple[np.ndarray, Affine, object, dict[str, str]]:
    """Values (float64, NaN for nodata, band axis dropped for one band), transform, CRS and tags."""
    with rasterio.open(path) as ds:
        values = ds.read().astype(np.float64)
        if ds.nodata is not None and not np.isnan(ds.nodata):
            values[values == ds.nodata] = np.nan
        return values.squeeze(0) if ds.count == 1 else values, ds.transform, ds.crs, ds.tags()


def assert_same(actual, expected, what: str) -> None:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, what
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{what}: nodata masks differ")
    finite = expected[np.isfinite(expected)]
    tolerance = 1e-6 * max(float(np.abs(finite).max()), 1.0)  # float32 precision of the values
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance, equal_nan=True, err_msg=what)


def cli_downscale(cli, src, dst, model: str, *options) -> Path:
    result = cli("downscale", src, "-o", dst, "--model", model, "--device", "cpu", "--quiet", *options)
    assert result.code == 0, result.err
    return Path(dst)


def cli_options(scale: float, options: dict) -> list:
    flags = ["--scale", scale]
    for name in ("conserve", "calibrate"):
        if name in options:
            flags.append(f"--{name}" if options[name] else f"--no-{name}")
    if "ensemble" in options:
        flags += ["--ensemble", options["ensemble"]]
    return flags


# --- the same GeoTIFF through every door ---------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "scale", "options"),
    [
        ("calibrating", 2, {}),
        ("calibrating", 3, {"conserve": False, "ensemble": 4}),
        ("calibrating", 2.5, {}),
        ("climate", 2, {}),
        ("climate", 2, {"ensemble": 8, "calibrate": False}),
        ("dem", 2.5, {}),
    ],
)
def test_geotiff_with_holes_is_the_same_through_every_door(request, cli, tmp_path, model, scale, options):
    model = _model(request, model)
    holes = with_holes(field())
    src = write_geotiff(tmp_path / "in.tif", holes, nodata=NODATA)
    expected, transform, crs, _ = read_tif(
        cli_downscale(cli, src, tmp_path / "cli.tif", model, *cli_options(scale, options))
    )
    assert np.isnan(expected).any() and np.isfinite(expected).any()

    da = rioxarray.open_rasterio(src).squeeze(drop=True)
    common = {"model": model, "device": "cpu", **options}
    eager = da.geosr.downscale(scale, **common)
    assert_same(eager.values, expected, "accessor")
    assert eager.rio.transform() == transform  # fine cell centres within the same edges
    assert eager.rio.crs == crs
    assert_same(da.chunk({"y": 11, "x": 13}).geosr.downscale(scale, **common).values, expected, "dask accessor")
    masked = rioxarray.open_rasterio(src, masked=True).squeeze(drop=True)  # NaN instead of -9999
    assert_same(masked.geosr.downscale(scale, **common).values, expected, "masked accessor")
    assert_same(geosr.downscale(holes, scale, nodata=NODATA, **common), expected, "geosr.downscale")
    nan = np.where(holes == NODATA, np.nan, holes)
    assert_same(geosr.downscale(dsa.from_array(nan, chunks=12), scale, **common).compute(), expected, "dask NaN")

    eager.rio.to_raster(tmp_path / "accessor.tif")
    written, written_transform, written_crs, _ = read_tif(tmp_path / "accessor.tif")
    assert_same(written, expected, "accessor written with rio.to_raster")
    assert (written_transform, written_crs) == (transform, crs)


def test_three_bands_through_the_cli_and_the_band_dimension_get_the_same_per_band_gains(cli, tmp_path):
    # a 1-band model takes each band alone: its own statistics and its own calibration gain, in every door
    bands = np.stack([field(seed=7), field(seed=8, relief=2.0), field(seed=9, relief=200.0, base=-50.0)])
    bands[1] = with_holes(bands[1])
    src = write_geotiff(tmp_path / "bands.tif", bands, nodata=NODATA)
    expected, _, _, tags = read_tif(cli_downscale(cli, src, tmp_path / "cli.tif", "climate", "--scale", 2))
    gains = [float(g) for g in tags["GEOSR_CALIBRATE"].removeprefix("residual gains ").split(",")]
    assert len(set(gains)) == 3  # the bands differ, and so do their gains

    da = rioxarray.open_rasterio(src)
    assert_same(da.geosr.downscale(2, model="climate", device="cpu").values, expected, "accessor (band, y, x)")
    lazy = da.chunk({"band": 1, "y": 16, "x": 20}).geosr.downscale(2, model="climate", device="cpu")
    assert_same(lazy.values, expected, "dask accessor, a band per chunk")
    for b in range(3):
        alone = da.isel(band=b).geosr.downscale(2, model="climate", device="cpu")
        assert_same(alone.values, expected[b], f"band {b + 1} alone")
    chosen, *_ = read_tif(cli_downscale(cli, src, tmp_path / "31.tif", "climate", "--scale", 2, "--bands", "3,1"))
    assert_same(chosen, expected[[2, 0]], "--bands 3,1")


def test_netcdf_variable_is_the_same_as_the_geotiff(cli, tmp_path):
    holes = np.stack([with_holes(field(seed=7)), field(seed=8)])
    src = write_geotiff(tmp_path / "in.tif", holes, nodata=NODATA)
    expected, *_ = read_tif(cli_downscale(cli, src, tmp_path / "cli.tif", "climate", "--scale", 2))
    grid = rioxarray.open_rasterio(src, masked=True).rename(band="time").to_dataset(name="v")
    grid.to_netcdf(tmp_path / "in.nc")
    cli_downscale(cli, tmp_path / "in.nc", tmp_path / "out.nc", "climate", "--variable", "v", "--scale", 2)
    with xr.open_dataset(tmp_path / "out.nc") as out:
        assert_same(out.v.values, expected, "NetCDF through --variable")
        assert out.v.attrs["geosr_calibrate"] == "yes"


# --- orientation: the network sees every grid north-up ---------------------------------------------


def lat_lon_grid(ascending: bool, shape=(2, 30, 36)) -> xr.DataArray:
    lat = 40.0 + 0.25 * (np.arange(shape[1]) + 0.5)
    lon = 5.0 + 0.25 * (np.arange(shape[2]) + 0.5)
    fields = np.stack([field(shape[1:], seed=s) for s in range(shape[0])])  # row 0 north
    da = xr.DataArray(
        fields, dims=("time", "lat", "lon"), coords={"time": np.arange(shape[0]), "lat": lat[::-1], "lon": lon}
    )
    da.lat.attrs.update(units="degrees_north", standard_name="latitude")
    da.lon.attrs.update(units="degrees_east", standard_name="longitude")
    return da.sortby("lat") if ascending else da


@pytest.mark.parametrize("model", ["plain", "climate"])
@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_ascending_latitudes_give_the_north_up_result(request, model, kind):
    # Without a self-ensemble the network's output depends on the orientation of its input: a grid stored
    # south to north (ascending latitudes, as most NetCDF files) must give the same values on the same
    # coordinates as the grid stored north to south, as GDAL (the command line, QGIS) reads both.
    model = _model(request, model)
    north_up = lat_lon_grid(ascending=False)
    south_up = lat_lon_grid(ascending=True)
    if kind == "dask":
        south_up = south_up.chunk({"time": 1, "lat": 11, "lon": 13})
    expected = north_up.geosr.downscale(2, model=model, device="cpu").sortby("lat")
    out = south_up.geosr.downscale(2, model=model, device="cpu")
    assert np.all(np.diff(out.lat.values) > 0)
    np.testing.assert_allclose(out.lat.values, expected.lat.values)
    assert_same(out.values, expected.values, "ascending latitudes")
    # and descending x (east to west) likewise
    east_west = north_up.isel(lon=slice(None, None, -1))
    flipped = east_west.geosr.downscale(2, model=model, device="cpu").isel(lon=slice(None, None, -1))
    assert_same(flipped.values, expected.sortby("lat", ascending=False).values, "descending longitudes")


def test_a_bottom_up_netcdf_is_the_same_through_gdal_and_variable(cli, tmp_path):
    # GDAL (geosr downscale NETCDF:"f.nc":tas, and the QGIS tool on the NetCDF layer) reads a NetCDF with
    # ascending latitudes north-up; --variable reads it through the accessor. Same file, same values.
    if "netCDF" not in rasterio.drivers.raster_driver_extensions().values():
        pytest.skip("GDAL has no netCDF driver here")
    grid = lat_lon_grid(ascending=True)
    grid.rename("tas").to_dataset().to_netcdf(tmp_path / "tas.nc")
    gdal_name = f'NETCDF:"{tmp_path / "tas.nc"}":tas'
    through_gdal, transform, _, _ = read_tif(
        cli_downscale(cli, gdal_name, tmp_path / "gdal.tif", "climate", "--scale", 2)
    )
    assert transform.e < 0  # GDAL turned it north-up
    cli_downscale(cli, tmp_path / "tas.nc", tmp_path / "out.nc", "climate", "--variable", "tas", "--scale", 2)
    with xr.open_dataset(tmp_path / "out.nc") as out:
        assert_same(out.tas.values[:, ::-1], through_gdal, "--variable against GDAL's NETCDF: name")


def test_a_south_up_geotiff_gives_the_north_up_result(cli, plain, tmp_path):
    data = field()
    north = write_geotiff(tmp_path / "north.tif", data)
    south_transform = Affine(TRANSFORM.a, 0.0, TRANSFORM.c, 0.0, -TRANSFORM.e, TRANSFORM.f + 30 * TRANSFORM.e)
    south = write_geotiff(tmp_path / "south.tif", data[::-1], transform=south_transform, crs=CRS)
    expected, *_ = read_tif(cli_downscale(cli, north, tmp_path / "north_x2.tif", plain, "--scale", 2))
    accessor = rioxarray.open_rasterio(south).squeeze(drop=True).geosr.downscale(2, model=plain, device="cpu")
    assert_same(accessor.values[::-1], expected, "accessor on the south-up GeoTIFF")
    through_cli, transform, _, _ = read_tif(cli_downscale(cli, south, tmp_path / "south_x2.tif", plain, "--scale", 2))
    assert transform.e > 0
    assert_same(through_cli[::-1], expected, "command line on the south-up GeoTIFF")


def test_an_east_to_west_and_south_up_geotiff_runs_as_the_north_up_one(cli, calibrating, tmp_path):
    # columns running east to west (a negative x pixel size) and rows south to north, both mirrored
    data = with_holes(field())
    h, w = data.shape
    north = write_geotiff(tmp_path / "north.tif", data, nodata=NODATA)
    t = TRANSFORM
    flipped = Affine(-t.a, 0.0, t.c + w * t.a, 0.0, -t.e, t.f + h * t.e)
    both = write_geotiff(tmp_path / "both.tif", data[::-1, ::-1], transform=flipped, crs=CRS, nodata=NODATA)
    expected, *_ = read_tif(cli_downscale(cli, north, tmp_path / "north_x2.tif", calibrating, "--scale", 2))
    out, transform, _, _ = read_tif(cli_downscale(cli, both, tmp_path / "both_x2.tif", calibrating, "--scale", 2))
    assert transform.a < 0 and transform.e > 0
    assert_same(out[::-1, ::-1], expected, "east-to-west, south-up GeoTIFF")


def test_evaluate_measures_a_south_up_raster_as_downscale_runs_it(cli, plain, tmp_path):
    import json

    data = field((48, 40))
    north = write_geotiff(tmp_path / "north.tif", data)
    t = TRANSFORM
    south = write_geotiff(
        tmp_path / "south.tif", data[::-1], transform=Affine(t.a, 0.0, t.c, 0.0, -t.e, t.f + 48 * t.e), crs=CRS
    )
    reports = []
    for path in (north, south):
        result = cli("evaluate", path, "--scale", 2, "--model", plain, "--device", "cpu", "--json")
        assert result.code == 0, result.err
        reports.append(json.loads(result.out)["bands"]["band 1"]["methods"]["model"]["rmse"])
    assert reports[0] == pytest.approx(reports[1], rel=1e-6)

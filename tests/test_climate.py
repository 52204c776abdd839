"""Climate grids end to end: a real (time, latitude, longitude) NetCDF, downscaled lazily, written to
NetCDF and Zarr, by the accessor and by ``geosr downscale --variable``."""

from __future__ import annotations

import os

import numpy as np
import pytest
import xarray as xr
from conftest import affine_mul, assert_one_line_error, data_tolerance

pytest.importorskip("netCDF4")
pytest.importorskip("zarr")

VARIABLE = "air_temperature"


@pytest.fixture(scope="module")
def a1b(tmp_path_factory):
    """Three years of HadCM3 A1B near-surface air temperature over North America (37 x 49 cells,
    1.25 x 1.875 degrees, longitudes 225..315 east, a 360-day calendar), from iris-sample-data."""
    iris_sample_data = pytest.importorskip("iris_sample_data")
    source = os.path.join(iris_sample_data.path, "A1B_north_america.nc")
    path = tmp_path_factory.mktemp("climate") / "a1b.nc"
    with xr.open_dataset(source) as ds:
        ds.isel(time=slice(0, 3)).to_netcdf(path)
    return path


@pytest.fixture
def expected(a1b, model1):
    """The accessor on the eagerly loaded variable."""
    with xr.open_dataset(a1b) as ds:
        return ds[VARIABLE].load().geosr.downscale(2, model=str(model1), device="cpu")


def reopen(path):
    with xr.open_zarr(path) if path.suffix == ".zarr" else xr.open_dataset(path) as ds:
        return ds.load()


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
def test_real_grid_lazy_to_netcdf_and_zarr(a1b, model1, expected, tmp_path):
    with xr.open_dataset(a1b, chunks={}) as ds:
        fine = ds.chunk({"time": 1}).geosr.downscale(2, model=str(model1), device="cpu")
        assert fine[VARIABLE].chunks == ((1, 1, 1), (74,), (98,))
        fine.to_netcdf(tmp_path / "fine.nc")
        fine.to_zarr(tmp_path / "fine.zarr")
        time_bnds = ds.time_bnds.values
    for name in ("fine.nc", "fine.zarr"):
        out = reopen(tmp_path / name)
        var = out[VARIABLE]
        assert var.dims == ("time", "latitude", "longitude") and var.shape == (3, 74, 98)
        np.testing.assert_allclose(var.values, expected.values, rtol=0, atol=data_tolerance(expected.values))
        assert var.attrs["units"] == "K" and var.attrs["standard_name"] == "air_temperature"
        assert var.attrs["geosr_model"] == "tiny1"
        assert out.time.values[0].calendar == "360_day"
        np.testing.assert_array_equal(out.time_bnds.values, time_bnds)
        np.testing.assert_allclose(out.latitude.values[[0, -1]], [15.0 - 0.3125, 60.0 + 0.3125])
        np.testing.assert_allclose(out.longitude.values[[0, -1]], [225.0 - 0.46875, 315.0 + 0.46875])
        assert 230.0 < float(var.mean()) < 300.0


def test_cli_variable_to_netcdf_and_zarr(cli, a1b, model1, expected, tmp_path):
    for name in ("out.nc", "out.zarr"):
        result = cli("downscale", a1b, "--variable", VARIABLE, "--scale", 2, "--model", model1, "-o", tmp_path / name)
        assert result.code == 0, result.err
        assert f"wrote {tmp_path / name}: 98 x 74 pixels, scale 2" in result.err
        var = reopen(tmp_path / name)[VARIABLE]
        np.testing.assert_allclose(var.values, expected.values, rtol=0, atol=data_tolerance(expected.values))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nc", "out.zarr"]  # no temporary left behind


def test_cli_variable_netcdf_keeps_the_grid_mapping_right_for_gdal(cli, model1, tmp_path):
    # a NetCDF written by rioxarray: opened plainly, its grid mapping is a data variable with a GeoTransform
    pytest.importorskip("rioxarray")
    import rasterio
    from affine import Affine

    from geosr.testing import fbm_surface

    coarse = Affine(30, 0, 500_000, 0, -30, 5_000_000)
    da = xr.DataArray(
        fbm_surface((10, 12), seed=1),
        dims=("y", "x"),
        coords={"y": 5_000_000 - 30.0 * (np.arange(10) + 0.5), "x": 500_000 + 30.0 * (np.arange(12) + 0.5)},
    )
    da.rio.write_crs("EPSG:32633").rio.write_transform(coarse).to_dataset(name="dem").to_netcdf(tmp_path / "in.nc")
    result = cli(
        "downscale", tmp_path / "in.nc", "--variable", "dem", "--scale", 2, "--model", model1, "-o", tmp_path / "out.nc"
    )
    assert result.code == 0, result.err
    with (
        rasterio.open(f"netcdf:{tmp_path / 'in.nc'}:dem") as src,
        rasterio.open(f"netcdf:{tmp_path / 'out.nc'}:dem") as dst,
    ):
        assert src.transform == coarse
        assert dst.transform == affine_mul(coarse, Affine.scale(0.5)) and dst.shape == (20, 24)
        assert dst.bounds == src.bounds and dst.crs == src.crs


def test_cli_variable_default_output_and_overwrite(cli, a1b, model1):
    default = a1b.with_name("a1b_x2.nc")
    assert cli("downscale", a1b, "--variable", VARIABLE, "--scale", 2, "--model", model1, "-q").code == 0
    assert default.exists()
    again = cli("downscale", a1b, "--variable", VARIABLE, "--scale", 2, "--model", model1)
    assert "already exists; pass --overwrite" in assert_one_line_error(again.err, again.code)
    zarr = a1b.with_name("a1b.zarr")
    for scale in (2, 3):  # the second run replaces the store
        ran = cli(
            "downscale", a1b, "--variable", VARIABLE, "--scale", scale, "--model", model1, "-o", zarr, "--overwrite"
        )
        assert ran.code == 0, ran.err
    assert reopen(zarr)[VARIABLE].shape == (3, 111, 147)
    assert sorted(p.name for p in a1b.parent.iterdir()) == ["a1b.nc", "a1b.zarr", "a1b_x2.nc"]
    default.unlink()


def test_cli_variable_progress_lines_count_every_slice_tile(cli, a1b, model1, tmp_path, monkeypatch):
    # 3 time steps, each 74 x 98 px at x2 in 32 px tiles: 3 x 4 tiles a step, one line as each finishes
    args = ["downscale", a1b, "--variable", VARIABLE, "--scale", 2, "--model", model1, "--tile-size", 32]
    result = cli(*args, "--progress-lines", "--quiet", "-o", tmp_path / "lines.nc")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [f"PROGRESS {done}/36" for done in range(1, 37)]
    assert result.err == ""
    monkeypatch.setattr("geosr.cli.options.stderr_is_terminal", lambda: True)  # the bar is drawn on a terminal only
    bar = cli(*args, "-o", tmp_path / "bar.nc")  # without the flag: a bar on stderr, nothing on stdout
    assert bar.code == 0, bar.err
    assert bar.out == "" and "/36 [" in bar.err  # tqdm draws at most every 0.1 s: the first state at least
    assert reopen(tmp_path / "lines.nc")[VARIABLE].shape == (3, 74, 98)


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
def test_grid_progress_counts_each_tile_once_at_a_non_whole_scale(a1b, model1, tmp_path):
    # Zarr at x2.5: uneven chunks rechunked for the store, and dask fuses tiles with the tasks after them
    from geosr.pipeline import downscale_grid
    from geosr.predict import _TILE_WATCHERS

    calls = []
    result = downscale_grid(
        a1b, tmp_path / "out.zarr", variable=VARIABLE, scale=2.5, model=model1, device="cpu", tile_size=40,
        progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    assert result.tiles > 3  # several tiles a time step, one output chunk each
    assert calls == [(done, result.tiles) for done in range(1, result.tiles + 1)]
    assert _TILE_WATCHERS == []  # nothing left listening after the run
    assert reopen(tmp_path / "out.zarr")[VARIABLE].shape == (3, *result.shape)


def test_cli_variable_resolution(cli, a1b, model1, tmp_path):
    result = cli("downscale", a1b, "--variable", VARIABLE, "--resolution", 0.625, "--model", model1)
    assert "needs square pixels but this raster's are 1.875 x 1.25" in assert_one_line_error(result.err, result.code)
    square = tmp_path / "square.nc"  # every 2nd longitude and 3rd latitude: 3.75 x 3.75 degree cells
    with xr.open_dataset(a1b) as ds:
        ds.isel(longitude=slice(None, None, 2), latitude=slice(None, None, 3)).to_netcdf(square)
    result = cli("downscale", square, "--variable", VARIABLE, "--resolution", 1.875, "--model", model1, "-q")
    assert result.code == 0, result.err
    assert reopen(tmp_path / "square_r1.875.nc")[VARIABLE].shape == (3, 26, 50)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--variable", "tas"],
            "has no variable 'tas' (its variables: air_temperature, latitude_longitude, time_bnds)",
        ),
        (["--variable", VARIABLE, "-o", "{tmp}/out.tif"], "must be a NetCDF file (.nc) or a Zarr store (.zarr)"),
        (["--variable", VARIABLE, "--cog"], "--keep-dtype and --bands are for GeoTIFF output"),
        (
            ["--variable", VARIABLE, "--progress-lines", "--scheduler", "tcp://127.0.0.1:9"],
            "--progress-lines counts the tiles of a --variable run on this machine, not on a --scheduler cluster",
        ),
    ],
)
def test_cli_variable_errors(cli, a1b, model1, tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    result = cli("downscale", a1b, "--scale", 2, "--model", model1, *args)
    assert message in assert_one_line_error(result.err, result.code)
    assert list(tmp_path.iterdir()) == []


def test_cli_variable_on_a_geotiff_says_what_to_do(cli, dem_tif, model1):
    result = cli("downscale", dem_tif, "--variable", "elevation", "--scale", 2, "--model", model1)
    assert "NetCDF file (.nc) or a Zarr store (.zarr), and" in assert_one_line_error(result.err, result.code)


def test_cli_netcdf_without_variable_names_the_variables(cli, a1b, model1, tmp_path):
    two = tmp_path / "two.nc"
    with xr.open_dataset(a1b) as ds:
        ds[[VARIABLE]].assign(tas2=ds[VARIABLE] + 1).to_netcdf(two)
    result = cli("downscale", two, "--scale", 2, "--model", model1)
    line = assert_one_line_error(result.err, result.code)
    assert "air_temperature, tas2" in line and "pass --variable NAME" in line

"""A climate modeller's first files (an audit that followed NCL's and NCEP's sample data through every door).

Before: ``geosr downscale hgt.nc --variable HGT`` refused NCEP's monthly file outright, its time in "months since
1958-1-1", which xarray cannot decode; and GDAL's reading of the same global grid (no grid mapping, so no CRS,
its longitudes named only in the netCDF metadata) ran its columns as edges while the accessor wrapped them: the
doors disagreed by up to 4 gpm next to the 0/360 meridian.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import xarray as xr

from geosr.io import periodic_columns, raster_info
from geosr.testing import fbm_surface

netCDF4 = pytest.importorskip("netCDF4")


def monthly(path, lon_units="degrees_east", nx=36):
    """A NetCDF like NCEP's: time in months since 1958, latitudes and longitudes without a grid mapping."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", None)
        nc.createDimension("lat", 18)
        nc.createDimension("lon", nx)
        time = nc.createVariable("time", "f8", ("time",))
        time.units, time.calendar = "months since 1958-1-1 00:00:00", "standard"
        time[:] = [0.0, 1.0]
        lat = nc.createVariable("lat", "f8", ("lat",))
        lat.units = "degrees_north"
        lat[:] = 85.0 - 10.0 * np.arange(18)
        lon = nc.createVariable("lon", "f8", ("lon",))
        lon.units = lon_units
        lon[:] = 5.0 + (360.0 / nx) * np.arange(nx) if nx == 36 else np.arange(nx) * 10.0
        hgt = nc.createVariable("HGT", "f4", ("time", "lat", "lon"))
        hgt.units = "m"
        hgt[:] = np.stack([fbm_surface((18, nx), seed=s, relief=300.0, base=5500.0) for s in (1, 2)])
    return path


def variable_run(cli, src, model, out):
    """``geosr downscale SRC --variable HGT --scale 2`` with ``model`` on the CPU, quietly, into ``out``."""
    return cli(
        "downscale", src, "--variable", "HGT", "--scale", 2, "--model", model, "--device", "cpu", "-q", "-o", out
    )


def test_times_xarray_cannot_decode_are_carried_as_stored(cli, tmp_path, model1):
    src = monthly(tmp_path / "hgt.nc")
    result = variable_run(cli, src, model1, tmp_path / "out.nc")
    assert result.code == 0, result.err
    with netCDF4.Dataset(tmp_path / "out.nc") as out:
        assert list(out["time"][:]) == [0.0, 1.0]
        assert out["time"].units == "months since 1958-1-1 00:00:00" and out["time"].calendar == "standard"
        assert out["HGT"].shape == (2, 36, 72)


def test_a_global_netcdf_wraps_through_gdal_as_through_the_accessor(cli, tmp_path, model_like_shipped):
    src = monthly(tmp_path / "hgt.nc")
    with rasterio.open(src) as dataset:
        info = raster_info(dataset)
        assert info.crs is None and periodic_columns(info)  # no CRS; its longitudes say so
    via_gdal = tmp_path / "gdal_x2.tif"
    result = cli(
        "downscale",
        f"NETCDF:{src}:HGT",
        "--scale",
        2,
        "--model",
        model_like_shipped,
        "--device",
        "cpu",
        "-q",
        "-o",
        via_gdal,
    )
    assert result.code == 0, result.err
    via_variable = tmp_path / "variable_x2.nc"
    result = variable_run(cli, src, model_like_shipped, via_variable)
    assert result.code == 0, result.err
    with rasterio.open(via_gdal) as out, xr.open_dataset(via_variable, decode_times=False) as grid:
        assert out.tags()["GEOSR_PERIODIC"] == "yes" and grid.HGT.attrs["geosr_periodic"] == "yes"
        np.testing.assert_allclose(out.read(1), grid.HGT.values[0], rtol=1e-5, atol=1e-3)
    measured = cli("evaluate", f"NETCDF:{src}:HGT", "--scale", 2, "--no-model", "--json")
    assert measured.code == 0, measured.err
    assert json.loads(measured.out)["periodic"] is True


def test_a_netcdf_without_longitudes_does_not_wrap(tmp_path):
    src = monthly(tmp_path / "x.nc", lon_units="km")
    with rasterio.open(src) as dataset:
        assert not periodic_columns(raster_info(dataset))


def test_a_coordinate_given_as_the_variable_is_called_a_coordinate(cli, tmp_path, model1):
    src = monthly(tmp_path / "hgt.nc")
    result = cli("downscale", src, "--variable", "time", "--scale", 2, "--model", model1, "-o", tmp_path / "o.nc")
    assert result.code == 1 and not (tmp_path / "o.nc").exists()
    assert "'time' is a coordinate" in result.err and "HGT" in result.err and "has no variable" not in result.err


def test_a_one_dimensional_variable_is_not_a_grid_for_the_accessor(model1):
    series = xr.DataArray(np.arange(5.0), dims=("time",), name="forecast_period")
    with pytest.raises(Exception, match="'forecast_period' is not a grid: it has 1 dimension") as caught:
        series.geosr.downscale(2, model=str(model1))
    assert "rename" not in str(caught.value)

"""GDAL formats and their quirks, from an audit of a GIS analyst's inputs (2026-12-08).

A CRS that GeoTIFF keys cannot hold (a rotated pole) went with the temporary file's ``.aux.xml`` (promise 1);
categorical NetCDF and ERDAS layers were super-resolved through the GDAL door; a NetCDF ``missing_value`` beside
its ``_FillValue`` read as data there (promise 4); the input's value ranges and ACDD resolution were carried to
an output they no longer describe (promise 9); some messages sent the user round in circles.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from conftest import assert_one_line_error
from rasterio.transform import from_origin

from geosr.testing import fbm_surface

netCDF4 = pytest.importorskip("netCDF4")

ROTATED_POLE = "+proj=ob_tran +o_proj=longlat +o_lon_p=0 +o_lat_p=39.25 +lon_0=18 +a=6371229 +no_defs"


def _netcdf(path: Path, values: np.ndarray, **attrs: object) -> Path:
    """A CF NetCDF file of one variable ``tas`` on a 0.25-degree lat/lon grid, with ``attrs`` on it (``fill``:
    its _FillValue) and ACDD's resolution as a global attribute."""
    fill = attrs.pop("fill", None)
    with netCDF4.Dataset(path, "w") as nc:
        nc.geospatial_lat_resolution = "0.25 degree"
        ny, nx = values.shape
        nc.createDimension("lat", ny)
        nc.createDimension("lon", nx)
        lat = nc.createVariable("lat", "f8", ("lat",))
        lat[:], lat.units = 44.875 - 0.25 * np.arange(ny), "degrees_north"
        lon = nc.createVariable("lon", "f8", ("lon",))
        lon[:], lon.units = 5.125 + 0.25 * np.arange(nx), "degrees_east"
        var = nc.createVariable("tas", values.dtype, ("lat", "lon"), fill_value=fill)
        var.setncatts(attrs)
        var.set_auto_mask(False)
        var[:] = values
    return path


@pytest.mark.parametrize("cog", [False, True])
def test_a_crs_geotiff_cannot_hold_goes_along_in_the_outputs_side_file(cli, tmp_path, model1, cog):
    src = tmp_path / "rotated.tif"
    profile = dict(driver="GTiff", width=30, height=20, count=1, dtype="float32")
    with rasterio.open(src, "w", **profile, crs=ROTATED_POLE, transform=from_origin(-6.6, 5.5, 0.22, 0.22)) as ds:
        ds.write(fbm_surface((20, 30), seed=1).astype("float32"), 1)
    with rasterio.open(src) as ds:
        crs = ds.crs
    assert crs is not None and Path(f"{src}.aux.xml").exists()  # GDAL keeps it beside the file
    out = tmp_path / "out.tif"
    result = cli("downscale", src, "--scale", 2, "--model", model1, "-o", out, *(["--cog"] if cog else []))
    assert result.code == 0, result.err
    with rasterio.open(out) as ds:
        assert ds.crs == crs  # it was None: the temporary file's .aux.xml, which held it, was deleted
        assert ds.transform == from_origin(-6.6, 5.5, 0.11, 0.11)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.tif",
        "out.tif.aux.xml",
        "rotated.tif",
        "rotated.tif.aux.xml",
    ]


def test_a_crs_kept_beside_an_output_whose_side_file_name_would_be_too_long_is_refused_first(cli, tmp_path, model1):
    src = tmp_path / "rotated.tif"
    profile = dict(driver="GTiff", width=30, height=20, count=1, dtype="float32")
    with rasterio.open(src, "w", **profile, crs=ROTATED_POLE, transform=from_origin(-6.6, 5.5, 0.22, 0.22)) as ds:
        ds.write(fbm_surface((20, 30), seed=1).astype("float32"), 1)
    out = tmp_path / ("a" * 246 + ".tif")  # 250 bytes: OUT.aux.xml would be 258
    result = cli("downscale", src, "--scale", 2, "--model", model1, "-o", out)
    assert_one_line_error(result.err, 1, ".aux.xml", "too long", "-o")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rotated.tif", "rotated.tif.aux.xml"]  # nothing published


def test_an_ordinary_crs_leaves_no_side_file(cli, dem_tif, model1):
    out = dem_tif.parent / "out.tif"
    assert cli("downscale", dem_tif, "--scale", 2, "--model", model1, "-o", out).code == 0
    assert not Path(f"{out}.aux.xml").exists()


def test_a_categorical_netcdf_variable_is_refused_through_the_gdal_door_as_through_variable(cli, tmp_path, model1):
    classes = (np.random.default_rng(0).random((20, 30)) > 0.5).astype("int8")
    path = _netcdf(tmp_path / "lsm.nc", classes, flag_values=np.array([0, 1], "int8"), flag_meanings="sea land")
    out = tmp_path / "lsm_x2.tif"
    result = cli("downscale", f'NETCDF:"{path}":tas', "--scale", 2, "--model", model1, "-o", out)
    assert_one_line_error(result.err, 1, "band 1", "categorical (flag_values", "nearest neighbour")
    assert not out.exists()


def test_a_thematic_layer_is_refused(cli, tmp_path, model1):
    src = tmp_path / "landcover.img"
    profile = dict(driver="HFA", width=24, height=20, count=1, dtype="uint8", crs="EPSG:32633")
    with rasterio.open(src, "w", **profile, transform=from_origin(500000, 4000000, 30, 30)) as ds:
        ds.write((fbm_surface((20, 24), seed=2) > 0).astype("uint8") + 1, 1)
        ds.update_tags(1, LAYER_TYPE="thematic")
    result = cli("downscale", src, "--scale", 2, "--model", model1, "-o", tmp_path / "out.tif")
    assert_one_line_error(result.err, 1, "categorical (LAYER_TYPE thematic;", "LAYER_TYPE to athematic")
    assert not (tmp_path / "out.tif").exists()


def test_a_missing_value_beside_the_fill_value_is_missing_through_the_gdal_door_too(cli, tmp_path, model1):
    values = (280 + np.random.default_rng(0).random((20, 30))).astype("f4")
    values[3:6, 3:6], values[10:12, 10:12] = -999.0, 1e20
    path = _netcdf(tmp_path / "mv.nc", values, fill=np.float32(1e20), missing_value=np.float32(-999.0), units="K")
    gdal_door, variable_door = tmp_path / "gdal.tif", tmp_path / "variable.nc"
    assert cli("downscale", f'NETCDF:"{path}":tas', "--scale", 2, "--model", model1, "-o", gdal_door).code == 0
    assert cli("downscale", path, "--variable", "tas", "--scale", 2, "--model", model1, "-o", variable_door).code == 0
    with rasterio.open(gdal_door) as ds:
        by_gdal = ds.read(1, masked=True).filled(np.nan)
    with netCDF4.Dataset(variable_door) as nc:
        by_variable = np.ma.filled(nc["tas"][:].astype("f8"), np.nan)
    assert np.isnan(by_gdal[6:12, 6:12]).all()  # the -999 cells (x2) and their footprint: they were data
    assert np.array_equal(np.isnan(by_gdal), np.isnan(by_variable))
    assert np.nanmin(by_gdal) > 279 and np.nanmax(by_gdal) < 282  # was -1425 .. 531 K
    np.testing.assert_allclose(by_gdal, by_variable, atol=1e-3)
    with rasterio.open(gdal_door) as ds:  # its cells are the output's nodata: left, it would mask valid values
        assert "missing_value" not in ds.tags(1) and ds.nodata == pytest.approx(1e20)


def test_value_ranges_and_the_acdd_resolution_of_the_input_are_not_carried(cli, tmp_path, model1):
    values = (280 + np.random.default_rng(1).random((20, 30))).astype("f4")
    ranges = {"valid_range": np.array([280, 281], "f4"), "actual_range": [280.0, 281.0]}
    path = _netcdf(tmp_path / "r.nc", values, units="K", **ranges)
    out = tmp_path / "out.tif"
    assert cli("downscale", f'NETCDF:"{path}":tas', "--scale", 2, "--model", model1, "-o", out).code == 0
    with rasterio.open(f'NETCDF:"{path}":tas') as src, rasterio.open(out) as ds:
        assert "valid_range" in src.tags(1) and "NC_GLOBAL#geospatial_lat_resolution" in src.tags()
        tags, band, units = ds.tags(), ds.tags(1), ds.units
    stale = ("valid_range", "actual_range", "geospatial_lat_resolution")
    assert not [k for k in {**tags, **band} if k.rsplit("#", 1)[-1] in stale]
    assert units == ("K",)  # the rest is carried as before


def test_a_container_that_is_not_netcdf_is_not_sent_to_variable(cli, tmp_path, model1):
    values = (280 + np.random.default_rng(2).random((20, 30))).astype("f4")
    path = _netcdf(tmp_path / "two.nc", values)
    with netCDF4.Dataset(path, "a") as nc:
        nc.createVariable("orog", "f4", ("lat", "lon"))[:] = values - 280
    h5 = tmp_path / "two.h5"
    shutil.copy(path, h5)  # NetCDF-4 is HDF5: GDAL's HDF5 driver lists its subdatasets
    result = cli("downscale", h5, "--scale", 2, "--model", model1, "-o", tmp_path / "out.tif")
    assert_one_line_error(result.err, 1, "subdatasets", "pass one subdataset as INPUT")
    assert "--variable" not in result.err  # which refuses anything but .nc and .zarr
    nc_result = cli("downscale", path, "--scale", 2, "--model", model1, "-o", tmp_path / "out.tif")
    assert_one_line_error(nc_result.err, 1, "pass --variable NAME to write NetCDF or Zarr")


def test_a_subdataset_the_file_does_not_hold_is_named_with_those_it_holds(cli, tmp_path, model1):
    path = _netcdf(tmp_path / "t.nc", np.zeros((20, 30), "f4"))
    result = cli("downscale", f'NETCDF:"{path}":nope', "--scale", 2, "--model", model1, "-o", tmp_path / "o.tif")
    assert_one_line_error(result.err, 1, "has no subdataset 'nope'", "it holds one raster; pass the file itself")
    assert "No such file or directory" not in result.err  # GDAL's words for an existing file
    with netCDF4.Dataset(path, "a") as nc:
        nc.createVariable("orog", "f4", ("lat", "lon"))[:] = 0
    result = cli("downscale", f'NETCDF:"{path}":nope', "--scale", 2, "--model", model1, "-o", tmp_path / "o.tif")
    assert_one_line_error(result.err, 1, "has no subdataset 'nope'", "its subdatasets: tas, orog")


def test_a_vrt_whose_source_is_gone_says_so(cli, tmp_path, dem_tif, model1):
    source = tmp_path / "source.tif"
    shutil.copy(dem_tif, source)
    vrt = tmp_path / "mosaic.vrt"
    rasterio.shutil.copy(source, vrt, driver="VRT")
    os.remove(source)
    result = cli("downscale", vrt, "--scale", 2, "--model", model1, "-o", tmp_path / "out.tif")
    assert_one_line_error(result.err, 1, "a file it reads from is missing", "SourceFilename")
    assert "download it again" not in result.err


@pytest.mark.parametrize("world", ["out.tfw", "OUT.TIFW", "out.wld"])
def test_an_output_without_georeferencing_is_not_written_beside_a_world_file(cli, tmp_path, model1, world):
    src = tmp_path / "pixels.tif"
    with rasterio.open(src, "w", driver="GTiff", width=24, height=20, count=1, dtype="float32") as ds:
        ds.write(fbm_surface((20, 24), seed=4).astype("float32"), 1)
    (tmp_path / world).write_text("100\n0\n0\n-100\n1000050\n2000050\n")  # left from an earlier out.tif
    result = cli("downscale", src, "--scale", 2, "--model", model1, "-o", tmp_path / "out.tif")
    assert_one_line_error(result.err, 1, world, "world file", "no transform", "-o")
    assert not (tmp_path / "out.tif").exists() and (tmp_path / world).exists()  # GDAL placed out.tif by it
    assert cli("downscale", src, "--scale", 2, "--model", model1, "-o", tmp_path / "other.tif").code == 0


def test_an_output_placed_by_gcps_is_not_written_beside_a_world_file(cli, tmp_path, model1):
    from rasterio.control import GroundControlPoint

    src = tmp_path / "gcps.tif"
    gcps = [GroundControlPoint(r, c, 500000 + 30 * c, 4000000 - 30 * r) for r, c in ((0, 0), (0, 24), (20, 0))]
    with rasterio.open(src, "w", driver="GTiff", width=24, height=20, count=1, dtype="float32") as ds:
        ds.write(fbm_surface((20, 24), seed=4).astype("float32"), 1)
        ds.gcps = (gcps, "EPSG:32633")
    (tmp_path / "out.tfw").write_text("100\n0\n0\n-100\n1000050\n2000050\n")
    result = cli("downscale", src, "--scale", 2, "--model", model1, "-o", tmp_path / "out.tif")
    assert_one_line_error(result.err, 1, "out.tfw", "world file")  # GDAL read it and hid the output's GCPs
    (tmp_path / "out.tfw").unlink()
    assert cli("downscale", src, "--scale", 2, "--model", model1, "-o", tmp_path / "out.tif").code == 0
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert len(ds.gcps[0]) == 3


def test_a_georeferenced_output_ignores_a_world_file(cli, dem_tif, model1):
    (dem_tif.parent / "out.tfw").write_text("100\n0\n0\n-100\n1000050\n2000050\n")
    out = dem_tif.parent / "out.tif"
    assert cli("downscale", dem_tif, "--scale", 2, "--model", model1, "-o", out).code == 0
    with rasterio.open(dem_tif) as src, rasterio.open(out) as ds:
        assert ds.transform == src.transform * src.transform.scale(0.5)  # its own, not the world file's

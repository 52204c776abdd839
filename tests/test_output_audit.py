"""Output formats as a GIS user checks them: GeoTIFF block layout, COG validity, NetCDF and Zarr (CF)."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from conftest import assert_one_line_error

from geosr.pipeline import downscale_raster
from geosr.testing import fbm_surface


def run(src, dst, *, model, scale=2, **kwargs):
    return downscale_raster(src, dst, model=str(model), device="cpu", scale=scale, **kwargs)


# --- GeoTIFF: tiles that do not fill whole blocks ------------------------------------------------


@pytest.mark.parametrize(("tile_size", "block"), [(100, 112), (24, 32), (1000, 336), (1072, 1072), (3000, 64)])
def test_tiles_that_do_not_fit_blocks_leave_no_dead_space(make_geotiff, tmp_path, model1, tile_size, block):
    # GDAL writes a partly written DEFLATE block again at the end of the file: with tiles of 100
    # pixels in 256-pixel blocks the file was several times the size of the same data written whole.
    # Tiles are rounded up to a multiple of 16, so that one tile fills each block it touches (no block is
    # held back waiting for the next tile row: memory stays that of a tile).
    from geosr.io import _block_size, geotiff_tile_size

    assert _block_size(geotiff_tile_size(tile_size)) == block
    src = make_geotiff("dem.tif", fbm_surface((150, 140), seed=7))
    whole, tiled = tmp_path / "whole.tif", tmp_path / "tiled.tif"
    run(src, whole, model=model1, tile_size=512)
    run(src, tiled, model=model1, tile_size=tile_size)
    with rasterio.open(whole) as w, rasterio.open(tiled) as t:
        assert t.block_shapes[0] == (block, block)
        np.testing.assert_allclose(t.read(1), w.read(1), rtol=0, atol=1e-3)
    assert tiled.stat().st_size < 1.1 * whole.stat().st_size


def test_a_south_up_raster_written_back_mirrored_leaves_no_dead_space(make_geotiff, tmp_path, model1):
    # a south-up (and east-to-west) raster runs north-up and its tiles are written back mirrored: laid from
    # the top of the north-up grid they straddled the file's blocks (tiles of 100: 1.9 times the size)
    from rasterio.transform import Affine

    data = fbm_surface((150, 140), seed=7)
    north = make_geotiff("north.tif", data)
    with rasterio.open(north) as src:
        t = src.transform
    mirrored = Affine(-t.a, 0.0, t.c + 140 * t.a, 0.0, -t.e, t.f + 150 * t.e)
    south = make_geotiff("south.tif", data[::-1, ::-1].copy(), transform=mirrored)
    whole, tiled = tmp_path / "whole.tif", tmp_path / "tiled.tif"
    run(south, whole, model=model1, tile_size=512)
    run(south, tiled, model=model1, tile_size=100)
    with rasterio.open(whole) as w, rasterio.open(tiled) as s:
        np.testing.assert_allclose(s.read(1), w.read(1), rtol=0, atol=1e-3)
    assert tiled.stat().st_size < 1.1 * whole.stat().st_size


def test_small_tiles_keep_nodata_and_integer_rounding(make_geotiff, tmp_path, model1):
    data = np.rint(np.stack([fbm_surface((70, 66), seed=s) for s in (8, 9)])).astype(np.int16)
    data[:, 10:20, 30:40] = -32768
    src = make_geotiff("dem.tif", data, nodata=-32768)
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    run(src, a, model=model1, tile_size=256, keep_dtype=True)  # one tile
    run(src, b, model=model1, tile_size=40, keep_dtype=True)  # tiles (and blocks) of 48
    with rasterio.open(a) as one, rasterio.open(b) as many:
        assert many.dtypes == ("int16", "int16") and many.nodata == -32768
        assert many.block_shapes[0] == (48, 48)
        assert np.abs(many.read().astype(int) - one.read().astype(int)).max() <= 1  # rounding of float noise
        np.testing.assert_array_equal(many.read() == -32768, one.read() == -32768)


# --- COG -----------------------------------------------------------------------------------------

GDAL_PYTHON = "/usr/bin/python3"


def _gdal_validator_available() -> bool:
    if shutil.which(GDAL_PYTHON) is None:
        return False
    probe = [GDAL_PYTHON, "-c", "import osgeo_utils.samples.validate_cloud_optimized_geotiff"]
    return subprocess.run(probe, capture_output=True).returncode == 0


@pytest.mark.skipif(not _gdal_validator_available(), reason="needs GDAL's Python utilities")
def test_cog_passes_gdal_validator_and_overviews_skip_nodata(make_geotiff, tmp_path, model1):
    data = fbm_surface((160, 150), seed=3)
    data[20:60, 30:80] = -9999.0
    src = make_geotiff("dem.tif", data, nodata=-9999.0)
    out = tmp_path / "cog.tif"
    run(src, out, model=model1, scale=4, cog=True, tile_size=100)
    check = subprocess.run(
        [GDAL_PYTHON, "-m", "osgeo_utils.samples.validate_cloud_optimized_geotiff", "--full-check=yes", str(out)],
        capture_output=True,
        text=True,
    )
    assert "is a valid cloud optimized GeoTIFF" in check.stdout, check.stdout + check.stderr
    assert "warning" not in check.stdout.lower(), check.stdout
    with rasterio.open(out) as cog:
        structure = cog.tags(ns="IMAGE_STRUCTURE")
        assert structure["COMPRESSION"] == "DEFLATE" and structure["PREDICTOR"] == "3"
        assert cog.block_shapes[0] == (512, 512)
        full = cog.read(1).astype(np.float64)
        overview = cog.read(1, out_shape=(cog.height // 2, cog.width // 2))
    blocks = np.where(full == -9999.0, np.nan, full).reshape(cog.height // 2, 2, cog.width // 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
        expected = np.nanmean(blocks, axis=(1, 3))
    np.testing.assert_array_equal(overview == -9999.0, np.isnan(expected))  # nodata never averaged in
    valid = ~np.isnan(expected)
    np.testing.assert_allclose(overview[valid], expected[valid], rtol=1e-6)


# --- NetCDF and Zarr -----------------------------------------------------------------------------


def cf_dataset(nt: int = 3, ny: int = 24, nx: int = 32):
    import xarray as xr

    lat = 30.25 + 0.5 * np.arange(ny)
    lon = -9.75 + 0.5 * np.arange(nx)
    time = pd.date_range("2000-01-01", periods=nt, freq="D")
    field = np.stack([fbm_surface((ny, nx), seed=s, relief=20.0, base=270.0) for s in range(nt)])
    field[:, :2, :3] = np.nan
    attrs = {"units": "K", "standard_name": "air_temperature", "grid_mapping": "crs"}
    return xr.Dataset(
        {
            "tas": (("time", "lat", "lon"), field.astype(np.float32), attrs),
            "crs": ((), np.int32(0), {"grid_mapping_name": "latitude_longitude"}),
            "time_bnds": (("time", "bnds"), np.stack([time.values, time.values + np.timedelta64(1, "D")], 1)),
            "lat_bnds": (("lat", "bnds"), np.stack([lat - 0.25, lat + 0.25], 1)),
            "lon_bnds": (("lon", "bnds"), np.stack([lon - 0.25, lon + 0.25], 1)),
        },
        coords={
            "time": ("time", time, {"standard_name": "time", "axis": "T", "bounds": "time_bnds"}),
            "lat": (
                "lat",
                lat,
                {"units": "degrees_north", "standard_name": "latitude", "axis": "Y", "bounds": "lat_bnds"},
            ),
            "lon": (
                "lon",
                lon,
                {"units": "degrees_east", "standard_name": "longitude", "axis": "X", "bounds": "lon_bnds"},
            ),
        },
        attrs={"Conventions": "CF-1.8", "history": "made by the test"},
    )


TIME_ENCODING = {"units": "days since 1850-01-01", "calendar": "noleap", "dtype": "float64"}


@pytest.fixture
def tas_nc(tmp_path):
    pytest.importorskip("netCDF4")
    path = tmp_path / "tas.nc"
    encoding = {
        "tas": {"zlib": True, "complevel": 6, "_FillValue": np.float32(1e20), "chunksizes": (1, 24, 32)},
        "time": TIME_ENCODING,
    }
    cf_dataset().to_netcdf(path, encoding=encoding)
    return path


def test_netcdf_output_is_compressed_chunked_float32_with_the_inputs_fill_value(cli, tas_nc, model1, tmp_path):
    import netCDF4

    out = tmp_path / "out.nc"
    args = ["downscale", tas_nc, "--variable", "tas", "--scale", 2, "--model", model1, "--device", "cpu", "-q"]
    assert cli(*args, "-o", out).code == 0
    with netCDF4.Dataset(out) as nc:
        tas = nc["tas"]
        assert tas.dtype == np.float32
        assert tas.filters()["zlib"] and tas.filters()["complevel"] == 6 and tas.filters()["shuffle"]
        assert tas.chunking() == [1, 48, 64]
        assert tas.getncattr("_FillValue") == np.float32(1e20)
        assert nc["time"].units == "days since 1850-01-01" and nc["time"].calendar == "noleap"
        assert nc["time"].dtype == np.float64
        values = tas[:]
        assert values.mask[:, :4, :6].all() and not values.mask[:, 4:, 6:].any()
        assert nc.history.splitlines()[0].split(": ", 1)[1].startswith("geosr ")
        assert nc.history.splitlines()[-1] == "made by the test"


@pytest.mark.parametrize("fill", [1e20, -9999.0, 0.0])
def test_a_valid_value_equal_to_the_fill_value_is_moved_off_it(fill):
    # a fine value that lands on the kept _FillValue (or within GDAL's few float steps of it) would read back
    # as missing; with a fill of 0 the next float32 "towards zero" was 0 itself; NaN stays missing
    import xarray as xr

    from geosr.pipeline import _grid_output

    coarse = xr.Dataset({"tas": (("lat", "lon"), np.ones((2, 2), np.float32))}, coords={"lat": [0, 1], "lon": [0, 1]})
    coarse["tas"].encoding.update(_FillValue=np.float32(fill), dtype=np.dtype("float32"))
    near = np.nextafter(np.float32(fill), np.float32(1e30))  # one float step above the fill
    fine = xr.Dataset({"tas": (("lat", "lon"), np.array([[fill, near], [np.nan, 2.0]], np.float32))})
    out, encoding = _grid_output(coarse, fine, "tas", ("lat", "lon"), Path("out.nc"), Path("in.nc"), 2)
    values = out["tas"].values
    assert encoding["tas"]["_FillValue"] == np.float32(fill)
    for value in values[0]:
        assert value != np.float32(fill) and abs(value - fill) <= 16 * abs(np.spacing(np.float32(fill)))
        assert fill == 0 or abs(value - fill) > 4 * abs(np.spacing(np.float32(fill)))  # beyond GDAL's tolerance
    assert np.isnan(values[1, 0]) and values[1, 1] == 2.0


def test_netcdf_output_has_bounds_of_the_fine_cells(cli, tas_nc, model1, tmp_path):
    import xarray as xr

    out = tmp_path / "out.nc"
    args = ["downscale", tas_nc, "--variable", "tas", "--scale", 2, "--model", model1, "--device", "cpu", "-q"]
    assert cli(*args, "-o", out).code == 0
    with xr.open_dataset(out) as ds:
        for dim, start in (("lat", 30.0), ("lon", -10.0)):
            assert ds[dim].attrs["bounds"] == f"{dim}_bnds"
            bounds = ds[f"{dim}_bnds"].values
            assert bounds.shape == (ds.sizes[dim], 2)
            np.testing.assert_allclose(bounds[:, 0], start + 0.25 * np.arange(ds.sizes[dim]))
            np.testing.assert_allclose(bounds[:, 1] - bounds[:, 0], 0.25)
            np.testing.assert_allclose(bounds.mean(axis=1), ds[dim].values)
            assert "_FillValue" not in ds[f"{dim}_bnds"].encoding


def test_packed_input_is_written_as_float32_not_packed(cli, tmp_path, model1):
    netCDF4 = pytest.importorskip("netCDF4")
    src, out = tmp_path / "packed.nc", tmp_path / "out.nc"
    packing = {"dtype": "int16", "scale_factor": 0.01, "add_offset": 280.0, "_FillValue": np.int16(-32767)}
    cf_dataset().to_netcdf(src, encoding={"tas": packing, "time": TIME_ENCODING})
    args = ["downscale", src, "--variable", "tas", "--scale", 2, "--model", model1, "--device", "cpu", "-q"]
    assert cli(*args, "-o", out).code == 0
    with netCDF4.Dataset(out) as nc:
        tas = nc["tas"]
        assert tas.dtype == np.float32
        assert "scale_factor" not in tas.ncattrs() and "add_offset" not in tas.ncattrs()
        assert np.isnan(tas.getncattr("_FillValue"))


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_input_with_time_bounds_writes_zarr_of_its_version(cli, tmp_path, model1, zarr_format):
    # the carried time bounds kept the input's chunks (3 steps) and codecs (a Zarr v2 Blosc), which
    # clashed with the output's one-step chunks and Zarr v3: the write failed
    xr = pytest.importorskip("xarray")
    pytest.importorskip("zarr")
    src, out = tmp_path / "tas.zarr", tmp_path / "out.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # consolidated metadata is not in the Zarr 3 spec
        cf_dataset().to_zarr(src, zarr_format=zarr_format, encoding={"time": TIME_ENCODING}, consolidated=True)
    args = ["downscale", src, "--variable", "tas", "--scale", 2, "--model", model1, "--device", "cpu", "-q"]
    result = cli(*args, "-o", out)
    assert result.code == 0, result.err
    assert (out / ("zarr.json" if zarr_format == 3 else ".zgroup")).exists()
    with xr.open_zarr(out) as ds:
        assert ds.tas.shape == (3, 48, 64) and ds.tas.dtype == np.float32
        assert ds.time.encoding["calendar"] == "noleap"
        assert ds.time.encoding["units"] == "days since 1850-01-01"
        assert ds.time_bnds.shape == (3, 2)
        assert ds.tas.encoding["chunks"][0] == 1


def test_netcdf_output_named_like_a_folder_is_not_deleted(cli, tas_nc, model1, tmp_path):
    folder = tmp_path / "results.nc"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    args = ["downscale", tas_nc, "--variable", "tas", "--scale", 2, "--model", model1, "--device", "cpu", "-q"]
    result = cli(*args, "-o", folder, "--overwrite")
    assert_one_line_error(result.err, result.code, "folder")
    assert (folder / "precious.txt").read_text() == "keep me"


def test_bounds_of_descending_latitudes_keep_the_inputs_order(cli, tas_nc, model1, tmp_path):
    import xarray as xr

    src, out = tmp_path / "north_first.nc", tmp_path / "out.nc"
    with xr.open_dataset(tas_nc) as ds:
        ds.isel(lat=slice(None, None, -1)).to_netcdf(src)
    args = ["downscale", src, "--variable", "tas", "--scale", 2, "--model", model1, "--device", "cpu", "-q"]
    assert cli(*args, "-o", out).code == 0
    with xr.open_dataset(out) as ds:
        bounds = ds.lat_bnds.values
        np.testing.assert_allclose(bounds[0], [41.75, 42.0])  # each pair (south, north), as in the input
        np.testing.assert_allclose(bounds.mean(axis=1), ds.lat.values)


@pytest.mark.parametrize("nodata", [-9999.0, 0.0])
def test_a_valid_float_value_equal_to_nodata_is_moved_off_it(make_geotiff, tmp_path, nodata):
    # a valid output pixel exactly equal to a float nodata would read back as missing (nothing lost)
    from geosr.io import OutputSpec, TileWriter, raster_info

    src = make_geotiff("in.tif", np.full((4, 6), 5.0, dtype=np.float32), nodata=nodata)
    with rasterio.open(src) as dataset:
        info = raster_info(dataset)
    spec = OutputSpec(
        height=4,
        width=6,
        count=1,
        dtype="float32",
        crs=info.crs,
        transform=info.transform,
        nodata=nodata,
        tile_size=16,
        tags={},
        info=info,
    )
    values = np.full((1, 4, 6), 7.0)
    values[0, 0, 0] = nodata  # valid, on the nodata value
    values[0, 1, 1] = np.nan  # missing
    out = tmp_path / "out.tif"
    with TileWriter(out, spec) as writer:
        writer.write(slice(0, 4), slice(0, 6), values)
        writer.commit()
    with rasterio.open(out) as written:
        read = written.read(1, masked=True)
    assert read.mask.sum() == 1 and read.mask[1, 1]
    assert read[0, 0] != nodata and abs(read[0, 0] - nodata) < 1e-5 * max(1.0, abs(nodata))

"""CF conventions the accessor missed (an audit of its NetCDF reading): regressions for the defects it found.

Each test failed before its fix: cells missing only by being beyond ``valid_range`` (or ``valid_min``/
``valid_max``), which netCDF4-python and GDAL mask and xarray does not, were run as data (a -999 smeared into
its neighbours), and so were the cells of a float variable never written, holding netCDF's default fill
(9.97e36) without a ``_FillValue`` to say so; a Dataset's 2-D latitudes and longitudes stored as data variables
(WRF's XLAT, or opened with ``decode_coords=False``) were super-resolved as fields, 67 degrees off across the
antimeridian; the legacy ``transform`` and ``res`` attributes of ``xarray.open_rasterio`` kept the coarse grid's,
which rioxarray reads; a nearly regular latitude (a Gaussian grid's rows) was told to unwrap itself at 180 or
360 degrees; ``ancillary_variables`` still named a flag variable the Dataset accessor left out."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from geosr.errors import GeosrWarning, InputError
from geosr.testing import fbm_surface

netCDF4 = pytest.importorskip("netCDF4")

LAT = 30.0 - np.arange(12.0)
LON = np.arange(14.0)


def write_nc(path, name, dtype, values, attrs=None, fill=None, rows=None):
    """A (lat, lon) variable written by netCDF4 itself (no xarray encoding in the way): ``values`` stored as
    they are (no packing or masking by the library), only in ``rows`` when given (the rest never written)."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("lat", LAT.size)
        nc.createDimension("lon", LON.size)
        nc.createVariable("lat", "f8", ("lat",))[:] = LAT
        nc.createVariable("lon", "f8", ("lon",))[:] = LON
        var = nc.createVariable(name, dtype, ("lat", "lon"), fill_value=fill)
        var.setncatts(attrs or {})
        var.set_auto_maskandscale(False)
        if rows is None:
            var[:] = values
        else:
            var[rows] = values[rows]
    return path


def as_read_by_netcdf4(path, name):
    """The variable as netCDF4-python reads it (masked, unpacked), its masked cells NaN, as a DataArray."""
    with netCDF4.Dataset(path) as nc:
        values = np.ma.filled(nc[name][:].astype(np.float64), np.nan)
    return xr.DataArray(values, dims=("lat", "lon"), coords={"lat": LAT, "lon": LON}, name=name)


def footprint(missing, scale=2):
    """The fine cells over the coarse ``missing`` cells at an integer ``scale``."""
    return np.kron(missing, np.ones((scale, scale), bool))


# --- 1. valid_range, valid_min, valid_max ----------------------------------------------------------------------


SST = fbm_surface((12, 14), seed=3, relief=5.0, base=15.0)
LAND = np.zeros((12, 14), bool)
LAND[4:7, 5:8] = True


@pytest.mark.parametrize(
    "attrs",
    [
        {"valid_range": np.array([-5.0, 40.0], "f4")},
        {"valid_min": np.float32(-5.0)},
        {"valid_min": np.float32(-5.0), "valid_max": np.float32(40.0)},
    ],
    ids=["valid_range", "valid_min", "valid_min_max"],
)
@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_values_beyond_the_valid_range_are_missing(tmp_path, model1, attrs, kind):
    path = write_nc(tmp_path / "sst.nc", "sst", "f4", np.where(LAND, -999.0, SST), {"units": "degC", **attrs})
    with xr.open_dataset(path) as ds:
        da = ds.sst.chunk({"lat": 6}) if kind == "dask" else ds.sst
        out = da.geosr.downscale(2, model=str(model1), device="cpu").values
    reference = as_read_by_netcdf4(path, "sst")  # netCDF4-python masks the 9 land cells; xarray does not
    assert int(reference.isnull().sum()) == LAND.sum()
    expected = reference.geosr.downscale(2, model=str(model1), device="cpu").values
    np.testing.assert_array_equal(np.isnan(out), footprint(LAND))
    np.testing.assert_allclose(out, expected, rtol=1e-6)  # the -999 reaches no valid pixel
    assert out[~np.isnan(out)].min() > -5


def test_the_valid_range_of_packed_data_is_in_packed_units(tmp_path, model1):
    """CF 8.1: valid_range is in the stored (packed) numbers; decoded by xarray, undecoded, or read by
    netCDF4-python, the same cells are missing: those beyond it, not those on it."""
    packed = np.round((fbm_surface((12, 14), seed=5, relief=30.0, base=270.0) - 273.15) / 0.01).astype("i2")
    packed[2, 2:5] = [-20000, 20000, -20000]  # on the bounds: valid
    packed[LAND] = -25000
    packed[9, 9], packed[10, 1] = 20001, -20001  # just beyond
    attrs = {"scale_factor": np.float32(0.01), "add_offset": np.float32(273.15)}
    attrs["valid_range"] = np.array([-20000, 20000], "i2")
    path = write_nc(tmp_path / "t.nc", "t", "i2", packed, attrs, fill=-32767)
    beyond = LAND.copy()
    beyond[9, 9] = beyond[10, 1] = True
    reference = as_read_by_netcdf4(path, "t")
    np.testing.assert_array_equal(reference.isnull().values, beyond)
    expected = reference.geosr.downscale(2, model=str(model1), device="cpu").values
    with xr.open_dataset(path) as decoded:
        out = decoded.t.geosr.downscale(2, model=str(model1), device="cpu").values
    with xr.open_dataset(path, mask_and_scale=False) as raw:
        out_raw = raw.t.geosr.downscale(2, model=str(model1), device="cpu").values
    np.testing.assert_array_equal(np.isnan(out), footprint(beyond))
    np.testing.assert_array_equal(np.isnan(out_raw), footprint(beyond))
    np.testing.assert_allclose(out, expected, rtol=1e-5)


@pytest.mark.parametrize("defect", ["valid_range", "default_fill"])
def test_the_variable_door_masks_what_the_gdal_door_masks(tmp_path, model1, defect):
    """``geosr downscale file.nc --variable NAME`` (through the accessor) and ``NETCDF:file.nc:NAME`` (GDAL)."""
    rasterio = pytest.importorskip("rasterio")
    from geosr.pipeline import downscale_grid, downscale_raster

    if defect == "valid_range":
        values, missing = np.where(LAND, -999.0, SST), LAND
        path = write_nc(tmp_path / "v.nc", "v", "f4", values, {"valid_range": np.array([-5.0, 40.0], "f4")})
    else:
        missing = np.zeros((12, 14), bool)
        missing[8:] = True
        path = write_nc(tmp_path / "v.nc", "v", "f4", SST, {"units": "degC"}, rows=slice(0, 8))
    downscale_grid(path, tmp_path / "grid.nc", variable="v", scale=2, model=str(model1), device="cpu")
    downscale_raster(f"NETCDF:{path}:v", tmp_path / "gdal.tif", scale=2, model=str(model1), device="cpu")
    with xr.open_dataset(tmp_path / "grid.nc") as grid:
        through_xarray = grid.v.values
    with rasterio.open(tmp_path / "gdal.tif") as src:
        through_gdal = src.read(1, masked=True).filled(np.nan)
    np.testing.assert_array_equal(np.isnan(through_xarray), footprint(missing))
    np.testing.assert_allclose(through_xarray, through_gdal, rtol=1e-6)


def test_a_valid_range_that_is_not_two_numbers_is_refused(model1):
    da = xr.DataArray(SST, dims=("lat", "lon"), coords={"lat": LAT, "lon": LON}, name="sst")
    with pytest.raises(InputError, match=r"the attribute valid_range of 'sst' is .*not 2 numbers; .* drop it"):
        da.assign_attrs(valid_range="0 40").geosr.downscale(2, model=str(model1), device="cpu")


# --- 2. netCDF's default fill ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["f4", "f8"])
def test_float_cells_never_written_are_missing(tmp_path, model1, dtype):
    path = write_nc(tmp_path / "t.nc", "t", dtype, SST.astype(dtype), {"units": "K"}, rows=slice(0, 8))
    unwritten = np.zeros((12, 14), bool)
    unwritten[8:] = True
    reference = as_read_by_netcdf4(path, "t")  # netCDF4-python masks netCDF's default fill: the 4 unwritten rows
    np.testing.assert_array_equal(reference.isnull().values, unwritten)
    with xr.open_dataset(path) as ds:
        assert float(ds.t.max()) == pytest.approx(netCDF4.default_fillvals[dtype])  # xarray does not mask it
        out = ds.t.geosr.downscale(2, model=str(model1), device="cpu").values
    expected = reference.geosr.downscale(2, model=str(model1), device="cpu").values
    np.testing.assert_array_equal(np.isnan(out), footprint(unwritten))
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_the_default_fill_is_missing_beside_a_missing_value(tmp_path, model1):
    values = np.where(LAND, -999.0, SST)
    path = write_nc(tmp_path / "t.nc", "t", "f4", values, {"missing_value": np.float32(-999)}, rows=slice(0, 8))
    missing = LAND.copy()
    missing[8:] = True
    with xr.open_dataset(path) as ds:
        out = ds.t.geosr.downscale(2, model=str(model1), device="cpu").values
    np.testing.assert_array_equal(np.isnan(out), footprint(missing))


def test_integer_default_fills_stay_data(tmp_path, model1):
    """Not for integers: netCDF's default fill of bytes is 255, a value a byte raster holds."""
    values = np.full((12, 14), 255, "u1")
    values[::2] = 100
    path = write_nc(tmp_path / "b.nc", "b", "u1", values)
    with xr.open_dataset(path) as ds:
        out = ds.b.geosr.downscale(2, model=str(model1), device="cpu").values
    assert np.isfinite(out).all()


# --- 3. latitude and longitude data variables ------------------------------------------------------------------


def projected(nt: int = 2) -> xr.Dataset:
    """tas on a projected (y, x) grid with 2-D latitudes and longitudes, one by standard_name, one by units."""
    y, x = 2_000_000 - 25_000 * (np.arange(10) + 0.5), -300_000 + 25_000 * (np.arange(12) + 0.5)
    lat = 45 + np.add.outer(-0.2 * np.arange(10), 0.01 * np.arange(12))
    lon = (175 + np.add.outer(0.05 * np.arange(10), 0.3 * np.arange(12)) + 180) % 360 - 180  # across 180
    data = np.stack([fbm_surface((10, 12), seed=i, relief=20.0, base=270.0) for i in range(nt)])
    return xr.Dataset(
        {"tas": (("time", "y", "x"), data, {"units": "K", "coordinates": "XLAT XLONG"})},
        coords={
            "time": np.arange(nt),
            "y": y,
            "x": x,
            "XLAT": (("y", "x"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "XLONG": (("y", "x"), lon, {"units": "degree_E"}),
        },
    )


def test_latitude_and_longitude_data_variables_are_dropped_as_the_2d_coordinates_are(tmp_path, model1):
    ds = projected()
    ds.to_netcdf(tmp_path / "wrf.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeosrWarning)  # dropped as the coordinates are: without a warning
        as_coordinates = ds.geosr.downscale(2, model=str(model1), device="cpu")
        with xr.open_dataset(tmp_path / "wrf.nc", decode_coords=False) as undecoded:
            assert {"XLAT", "XLONG"} <= set(undecoded.data_vars)
            as_variables = undecoded.geosr.downscale(2, model=str(model1), device="cpu").load()
    assert set(as_coordinates.variables) == set(as_variables.variables) == {"tas", "time", "y", "x"}
    assert "coordinates" not in as_variables.tas.attrs
    np.testing.assert_allclose(as_variables.tas.values, as_coordinates.tas.values, rtol=1e-6)


def test_a_latitude_or_longitude_alone_is_refused(model1):
    ds = projected().reset_coords(["XLAT", "XLONG"])
    with pytest.raises(InputError, match="'XLAT' holds latitudes .* not a field: .* from its projection"):
        ds.XLAT.geosr.downscale(2, model=str(model1), device="cpu")
    with pytest.raises(InputError, match="'XLONG' holds longitudes"):
        ds.XLONG.geosr.downscale(2, model=str(model1), device="cpu")
    with pytest.raises(InputError, match=r"left out: 'XLAT', latitudes \(a coordinate\), 'XLONG', longitudes"):
        ds[["XLAT", "XLONG"]].geosr.downscale(2, model=str(model1), device="cpu")


# --- 4. the legacy transform and res of xarray.open_rasterio ---------------------------------------------------


def legacy(transform=(30.0, 0.0, 500_000.0, 0.0, -30.0, 4_200_000.0), res=(30.0, 30.0)) -> xr.DataArray:
    """A DataArray as xarray.open_rasterio made them: the Affine's terms in ``transform``, the cell sizes in ``res``."""
    y, x = 4_200_000 - 30.0 * (np.arange(10) + 0.5), 500_000 + 30.0 * (np.arange(12) + 0.5)
    attrs = {"transform": transform, "res": res, "crs": "+init=epsg:32633"}
    return xr.DataArray(fbm_surface((10, 12), seed=1), dims=("y", "x"), coords={"y": y, "x": x}, attrs=attrs)


@pytest.mark.parametrize("scale", [2, 2.5])
@pytest.mark.parametrize("container", [tuple, list, np.array, "Affine"])  # np.array: read back from a NetCDF
def test_a_legacy_transform_describes_the_fine_grid(model1, scale, container):
    pytest.importorskip("rioxarray")
    from affine import Affine

    terms = (30.0, 0.0, 500_000.0, 0.0, -30.0, 4_200_000.0)
    if container == "Affine":
        da = legacy(Affine(*terms), (30.0, 30.0))
    else:
        da = legacy(container(terms), container((30.0, 30.0)))
    out = da.geosr.downscale(scale, model=str(model1), device="cpu")
    size = 30.0 / scale
    reprojected = da.rio.write_crs("EPSG:32633").rio.reproject("EPSG:32633", resolution=size)
    assert out.rio.transform() == reprojected.rio.transform()
    assert out.rio.resolution() == (size, -size) and out.rio.bounds() == da.rio.bounds()
    assert type(out.attrs["transform"]) is type(da.attrs["transform"])
    assert list(out.attrs["transform"])[:6] == [size, 0.0, 500_000.0, 0.0, -size, 4_200_000.0]
    assert type(out.attrs["res"]) is type(da.attrs["res"]) and list(out.attrs["res"]) == [size, size]


def test_a_legacy_transform_of_another_grid_is_dropped(model1):
    pytest.importorskip("rioxarray")
    da = legacy(transform=(30.0, 0.0, 0.0, 0.0, -30.0, 0.0), res=(20.0, 20.0))
    out = da.geosr.downscale(2, model=str(model1), device="cpu")
    assert "transform" not in out.attrs and "res" not in out.attrs
    assert out.rio.transform() == legacy().geosr.downscale(2, model=str(model1), device="cpu").rio.transform()


def test_a_datasets_legacy_transform_describes_the_fine_grid(model1):
    da = legacy()
    ds = xr.Dataset({"dem": da}, attrs={"transform": da.attrs["transform"], "res": da.attrs["res"]})
    out = ds.geosr.downscale(2, model=str(model1), device="cpu")
    assert out.attrs["transform"] == out.dem.attrs["transform"] == (15.0, 0.0, 500_000.0, 0.0, -15.0, 4_200_000.0)
    assert out.attrs["res"] == out.dem.attrs["res"] == (15.0, 15.0)


# --- 5. the message for an irregular latitude ------------------------------------------------------------------


def test_a_nearly_regular_latitude_is_not_told_to_unwrap(model1):
    """Rows 20 to 79 of a T62 Gaussian grid: steps 1.86520 to 1.86526 degrees, up to 2.7e-5 of their mean apart."""
    lat = np.degrees(np.arcsin(np.polynomial.legendre.leggauss(96)[0]))[20:80]
    da = xr.DataArray(fbm_surface((60, 16), seed=2), dims=("lat", "lon"), coords={"lat": lat, "lon": np.arange(16.0)})
    with pytest.raises(InputError) as caught:
        da.geosr.downscale(2, model=str(model1), device="cpu")
    message = str(caught.value)
    assert "wraps" not in message and "unwrap" not in message and "\n" not in message
    assert "coordinate 'lat' is not regularly spaced; regrid it" in message
    assert "steps run from 1.8652 to 1.86526, up to 2.7e-05 of their mean 1.86525 off it; regular is 1e-5" in message
    advised = "da.interp(lat=np.linspace(da.lat.values[0], da.lat.values[-1], da.lat.size))"
    assert advised in message
    fixed = eval(advised, {"da": da, "np": np})  # the advice, as given, works
    assert fixed.geosr.downscale(2, model=str(model1), device="cpu").shape == (120, 32)


def test_only_a_wrapping_longitude_is_told_to_unwrap():
    lon = np.r_[np.arange(170.5, 180), np.arange(-179.5, -170)]
    da = xr.DataArray(np.ones((10, 20), "f4"), dims=("lat", "lon"), coords={"lat": np.arange(10.0), "lon": lon})
    with pytest.raises(InputError, match="wraps around at 180 or 360 degrees"):
        da.geosr.downscale(2, model="backprojection")
    jumpy = da.assign_coords(lon=np.r_[lon[:10], lon[10:] + 0.3])  # wraps, but irregular once unwrapped
    with pytest.raises(InputError, match="is not regularly spaced; regrid it") as caught:
        jumpy.geosr.downscale(2, model="backprojection")
    assert "unwrap" not in str(caught.value)


# --- 6. ancillary_variables ------------------------------------------------------------------------------------


def test_ancillary_links_to_left_out_variables_go_with_them(model1):
    coords = {"lat": LAT, "lon": LON}
    tas = xr.DataArray(SST, dims=("lat", "lon"), coords=coords, attrs={"ancillary_variables": "tas_qc tas_sd"})
    flags = {"flag_values": np.array([0, 1], "i1"), "flag_meanings": "good bad"}
    qc = xr.DataArray(np.zeros((12, 14), "i1"), dims=("lat", "lon"), coords=coords, attrs=flags)
    ds = xr.Dataset({"tas": tas, "tas_qc": qc, "tas_sd": tas.assign_attrs(ancillary_variables="tas")})
    with pytest.warns(GeosrWarning, match="left out 'tas_qc'"):
        out = ds.geosr.downscale(2, model=str(model1), device="cpu")
    assert out.tas.attrs["ancillary_variables"] == "tas_sd" and out.tas_sd.attrs["ancillary_variables"] == "tas"
    ds["tas"].attrs["ancillary_variables"] = "tas_qc"
    with pytest.warns(GeosrWarning, match="left out 'tas_qc'"):
        alone = ds.drop_vars("tas_sd").geosr.downscale(2, model=str(model1), device="cpu")
    assert "ancillary_variables" not in alone.tas.attrs and list(alone.data_vars) == ["tas"]


# --- 7. ACDD's geospatial_*_resolution ---------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 2.5])
def test_the_acdd_resolution_attributes_describe_the_fine_grid(model1, scale):
    """ACDD's resolution attributes (global attributes of a Dataset) kept the coarse grid's step."""
    coords = {"lat": LAT, "lon": LON}
    attrs = {"geospatial_lat_resolution": "1 degree", "geospatial_lon_resolution": 1.0, "title": "kept"}
    ds = xr.Dataset({"tas": xr.DataArray(SST, dims=("lat", "lon"), coords=coords)}, attrs=attrs)
    out = ds.geosr.downscale(scale, model=str(model1), device="cpu")
    step = float(out.lat[0] - out.lat[1])
    assert step == pytest.approx(1 / scale)
    assert out.attrs["geospatial_lat_resolution"] == f"{step:.6g} degree"
    assert out.attrs["geospatial_lon_resolution"] == pytest.approx(float(out.lon[1] - out.lon[0]))
    assert out.attrs["title"] == "kept"


def test_an_acdd_resolution_geosr_cannot_read_is_dropped_not_left_stale(tmp_path, model1):
    coords = {"lat": LAT, "lon": LON}
    attrs = {"geospatial_lat_resolution": "0.25x0.5 degree", "geospatial_lon_resolution": "5e-1 degrees_east"}
    ds = xr.Dataset({"tas": xr.DataArray(SST, dims=("lat", "lon"), coords=coords)}, attrs=attrs)
    src = tmp_path / "in.nc"
    ds.to_netcdf(src)
    from geosr.pipeline import downscale_grid

    dst = downscale_grid(src, tmp_path / "out.nc", variable="tas", scale=2, model=str(model1), device="cpu").path
    with xr.open_dataset(dst) as out:  # the command line's NetCDF output: the same attributes
        assert "geospatial_lat_resolution" not in out.attrs
        assert out.attrs["geospatial_lon_resolution"] == "0.25 degrees_east"

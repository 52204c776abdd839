"""The xarray accessor: grids, coordinates, CRS, nodata, laziness and chunks, on eager and dask data."""

from __future__ import annotations

import re

import dask
import numpy as np
import pytest
import xarray as xr
from conftest import data_tolerance

import geosr
from geosr import predict
from geosr.accessor import fine_chunks
from geosr.errors import InputError, ScaleError
from geosr.testing import fbm_surface

BACKENDS = ["numpy", "dask"]


def grid(
    shape=(3, 12, 15),
    dims=("time", "lat", "lon"),
    *,
    y0=50.0,
    dy=-0.25,
    x0=350.0,
    dx=0.25,
    seed=0,
):
    """A DataArray of smooth fields on a regular grid, with a time coordinate when 3-D."""
    fields = np.stack(
        [fbm_surface(shape[-2:], seed=seed + i, relief=20.0, base=270.0) for i in range(np.prod(shape[:-2], dtype=int))]
    )
    data = fields.reshape(shape)
    coords = {dims[-2]: y0 + dy * np.arange(shape[-2]), dims[-1]: x0 + dx * np.arange(shape[-1])}
    if len(shape) == 3:
        coords[dims[0]] = np.arange(shape[0])
    return xr.DataArray(
        data, dims=dims, coords=coords, name="tas", attrs={"units": "K", "long_name": "air temperature"}
    )


def backend(da, kind, chunks=None):
    return da.chunk(chunks or {d: max(1, n // 2) for d, n in da.sizes.items()}) if kind == "dask" else da


def per_slice(da, scale, model, **kwargs):
    """What the accessor should give: the core downscale of each (y, x) slice (time first)."""
    data = np.asarray(da.values).reshape(-1, *da.shape[-2:])
    return np.stack([geosr.downscale(s, scale, str(model), device="cpu", **kwargs) for s in data])


def assert_close(actual, expected, tol):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol, equal_nan=True)


# --- values, shapes, coordinates -----------------------------------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("scale", [2, 3, 2.5])
def test_values_are_the_core_downscale_of_each_slice(model1, kind, scale):
    da = grid()
    out = backend(da, kind).geosr.downscale(scale, model=str(model1), device="cpu")
    assert out.dtype == np.float32
    assert out.shape == (3, round(12 * scale), round(15 * scale))
    assert_close(out.values, per_slice(da, scale, model1), data_tolerance(da.values))


@pytest.mark.parametrize("kind", BACKENDS)
def test_ensemble_is_the_core_ensemble_of_each_slice(model1, kind):
    da = grid()
    out = backend(da, kind).geosr.downscale(2, model=str(model1), device="cpu", ensemble=8)
    assert out.attrs["geosr_ensemble"] == "8"
    assert_close(out.values, per_slice(da, 2, model1, ensemble=8), data_tolerance(da.values))
    with pytest.raises(InputError, match="square pixels.*0.25 x 0.5"):
        grid(dy=-0.5).geosr.downscale(2, model=str(model1), ensemble=8)
    assert grid(dy=-0.5).geosr.downscale(2, model=str(model1), ensemble=4).attrs["geosr_ensemble"] == "4"


@pytest.mark.parametrize("kind", BACKENDS)
def test_fine_coordinates_are_cell_centres_within_the_same_edges(model1, kind):
    da = grid()
    out = backend(da, kind).geosr.downscale(4, model=str(model1), device="cpu")
    # coarse edges: lat 50.125 .. 47.125 (descending), lon 349.875 .. 353.625
    np.testing.assert_allclose(out.lat.values, 50.125 - 0.0625 * (np.arange(48) + 0.5))
    np.testing.assert_allclose(out.lon.values, 349.875 + 0.0625 * (np.arange(60) + 0.5))
    np.testing.assert_array_equal(out.time.values, da.time.values)
    np.testing.assert_allclose(out.lon.values.reshape(15, 4).mean(axis=1), da.lon.values)


@pytest.mark.parametrize("kind", BACKENDS)
def test_attrs_name_and_dimension_order_kept(model1, kind):
    da = grid().transpose("lat", "time", "lon")
    da.lat.attrs["units"] = "degrees_north"
    out = backend(da, kind).geosr.downscale(2, model=str(model1), device="cpu")
    assert out.dims == ("lat", "time", "lon")
    assert out.name == "tas"
    assert out.lat.attrs == {"units": "degrees_north"}
    assert out.attrs["units"] == "K" and out.attrs["long_name"] == "air temperature"
    assert out.attrs["geosr_model"] == "tiny1" and out.attrs["geosr_scale"] == "2"
    assert_close(out.transpose("time", "lat", "lon").values, per_slice(grid(), 2, model1), data_tolerance(da.values))


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize(
    "dims",
    [("y", "x"), ("band", "y", "x"), ("time", "latitude", "longitude"), ("t", "rlat", "rlon"), ("t", "Lat", "Lon")],
)
def test_spatial_dimension_names_recognised(model1, kind, dims):
    shape = (2, 8, 9)[-len(dims) :]
    da = grid(shape, dims)
    out = backend(da, kind).geosr.downscale(2, model=str(model1), device="cpu")
    assert out.sizes[dims[-2]] == 16 and out.sizes[dims[-1]] == 18


@pytest.mark.parametrize("kind", BACKENDS)
def test_other_dimension_names_with_y_dim_x_dim(model1, kind):
    da = grid((2, 8, 9), ("time", "row", "col"))
    with pytest.raises(InputError, match="no y dimension found among"):
        da.geosr.downscale(2, model=str(model1))
    out = backend(da, kind).geosr.downscale(2, model=str(model1), device="cpu", y_dim="row", x_dim="col")
    assert out.sizes == {"time": 2, "row": 16, "col": 18}


@pytest.mark.parametrize("kind", BACKENDS)
def test_ascending_latitude_and_0_360_longitudes_across_the_meridian(model1, kind):
    da = grid(y0=-10.0, dy=0.5, x0=355.0, dx=0.5)  # lon 355 .. 362
    out = backend(da, kind).geosr.downscale(2, model=str(model1), device="cpu")
    assert np.all(np.diff(out.lat.values) > 0) and np.all(np.diff(out.lon.values) > 0)
    np.testing.assert_allclose(out.lat.values[[0, -1]], [-10.125, -10.25 + 0.25 * 24 - 0.125])
    np.testing.assert_allclose(out.lon.values[[0, -1]], [354.875, 354.75 + 0.25 * 30 - 0.125])
    # the network sees the grid north-up, as GDAL reads a raster: the slices flipped in, the output back
    north_up = per_slice(da.isel(lat=slice(None, None, -1)), 2, model1)[:, ::-1]
    assert_close(out.values, north_up, data_tolerance(da.values))


@pytest.mark.parametrize("kind", BACKENDS)
def test_multichannel_model_mixes_the_band_dimension(model3, kind, bands3):
    da = xr.DataArray(bands3, dims=("band", "y", "x"), coords={"y": -np.arange(12.0), "x": np.arange(15.0)})
    out = backend(da, kind, {"band": 1, "y": 6, "x": 8}).geosr.downscale(2, model=str(model3), device="cpu")
    expected = geosr.downscale(bands3, 2, str(model3), device="cpu")
    for b in range(3):
        assert_close(out.values[b], expected[b], data_tolerance(bands3[b]))


@pytest.mark.parametrize("kind", BACKENDS)
def test_conserve_keeps_every_cell_mean(model1, kind):
    da = grid()
    out = backend(da, kind).geosr.downscale(2, model=str(model1), device="cpu", conserve=True)
    means = out.values.reshape(3, 12, 2, 15, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(means, da.values, atol=1e-3)
    assert out.attrs["geosr_conserve"] == "yes"


# --- nodata --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("how", ["nan", "_FillValue", "missing_value", "argument"])
def test_missing_cells_mask_their_footprint(model1, kind, how):
    da = grid()
    data = da.values.copy()
    data[:, 3:5, 4:7] = np.nan if how == "nan" else -9999.0
    da = da.copy(data=data)
    kwargs = {"nodata": -9999.0} if how == "argument" else {}
    if how in ("_FillValue", "missing_value"):
        da.attrs[how] = -9999.0
    out = backend(da, kind).geosr.downscale(2, model=str(model1), device="cpu", **kwargs)
    expected = per_slice(da, 2, model1, nodata=-9999.0)
    assert np.isnan(out.values[:, 6:10, 8:14]).all()
    assert_close(out.values, expected, data_tolerance(grid().values))
    assert "_FillValue" not in out.attrs and "missing_value" not in out.attrs
    assert np.isnan(out.encoding["_FillValue"])


def test_rioxarray_nodata_and_crs_kept(model1):
    pytest.importorskip("rioxarray")
    from affine import Affine

    dem = fbm_surface((10, 12), seed=3)
    dem[2:4, 2:4] = -32768
    da = xr.DataArray(
        dem.astype(np.int16),
        dims=("y", "x"),
        coords={"y": 4_200_000 - 30.0 * (np.arange(10) + 0.5), "x": 500_000 + 30.0 * (np.arange(12) + 0.5)},
    )
    da = (
        da.rio.write_crs("EPSG:32633")
        .rio.write_nodata(-32768)
        .rio.write_transform(Affine(30, 0, 500_000, 0, -30, 4_200_000))
    )
    out = da.geosr.downscale(3, model=str(model1), device="cpu")
    assert out.rio.crs == da.rio.crs
    assert out.rio.transform() == Affine(10, 0, 500_000, 0, -10, 4_200_000)
    assert out.rio.bounds() == da.rio.bounds()
    assert np.isnan(out.rio.nodata)
    assert np.isnan(out.values[6:12, 6:12]).all() and np.isfinite(out.values[12:]).all()


def test_spatial_ref_geotransform_updated_without_rioxarray(model1):
    da = grid((8, 10), ("y", "x"), y0=95.0, dy=-10.0, x0=5.0, dx=10.0)
    da = da.assign_coords(
        spatial_ref=xr.DataArray(0, attrs={"crs_wkt": "EPSG:32633 stand-in", "GeoTransform": "0 10 0 100 0 -10"})
    )
    out = da.geosr.downscale(2, model=str(model1), device="cpu")
    assert out.spatial_ref.attrs["crs_wkt"] == "EPSG:32633 stand-in"
    assert [float(v) for v in out.spatial_ref.attrs["GeoTransform"].split()] == [0, 5, 0, 100, 0, -5]
    assert da.spatial_ref.attrs["GeoTransform"] == "0 10 0 100 0 -10"  # the input is untouched
    assert out.encoding["grid_mapping"] == "spatial_ref"


@pytest.mark.parametrize("where", ["coordinate", "data variable"])
def test_dataset_grid_mapping_gets_the_fine_geotransform(model1, where):
    # NetCDF written by GDAL or rioxarray: the grid mapping is a coordinate (decode_coords="all") or, opened
    # plainly, a data variable named by the variables' grid_mapping attribute
    da = grid((8, 10), ("y", "x"), y0=95.0, dy=-10.0, x0=5.0, dx=10.0)
    mapping = xr.DataArray(0, attrs={"crs_wkt": "stand-in", "GeoTransform": "0 10 0 100 0 -10"})
    ds = xr.Dataset({"tas": da.assign_attrs(grid_mapping="spatial_ref")})
    ds = ds.assign_coords(spatial_ref=mapping) if where == "coordinate" else ds.assign(spatial_ref=mapping)
    out = ds.geosr.downscale(2, model=str(model1), device="cpu")
    assert [float(v) for v in out.spatial_ref.attrs["GeoTransform"].split()] == [0, 5, 0, 100, 0, -5]
    assert out.spatial_ref.attrs["crs_wkt"] == "stand-in"
    assert ("spatial_ref" in out.coords) == (where == "coordinate")
    assert ds.spatial_ref.attrs["GeoTransform"] == "0 10 0 100 0 -10"  # the input is untouched


def test_dataset_geotransform_read_back_by_rioxarray_and_gdal(model1, tmp_path):
    pytest.importorskip("rioxarray")
    rasterio = pytest.importorskip("rasterio")
    from affine import Affine

    da = grid((10, 12), ("y", "x"), y0=5_000_000 - 15.0, dy=-30.0, x0=500_015.0, dx=30.0)
    da = da.rio.write_crs("EPSG:32633").rio.write_transform(Affine(30, 0, 500_000, 0, -30, 5_000_000))
    path = tmp_path / "in.nc"
    da.to_dataset(name="dem").to_netcdf(path)
    out = xr.open_dataset(path).geosr.downscale(2, model=str(model1), device="cpu")
    assert out.dem.rio.transform() == Affine(15, 0, 500_000, 0, -15, 5_000_000)
    assert out.dem.rio.bounds() == da.rio.bounds()
    out.to_netcdf(tmp_path / "out.nc")
    with rasterio.open(f"netcdf:{tmp_path / 'out.nc'}:dem") as written:
        assert written.transform == Affine(15, 0, 500_000, 0, -15, 5_000_000)
        assert written.bounds == da.rio.bounds()


def test_rotated_grids_are_refused_not_flattened(model1):
    da = grid((8, 10), ("y", "x"), y0=95.0, dy=-10.0, x0=5.0, dx=10.0)
    rotated = xr.DataArray(0, attrs={"GeoTransform": "500000 8.66 5 5000000 5 -8.66"})
    with pytest.raises(InputError, match="rotates the grid"):
        da.assign_coords(spatial_ref=rotated).geosr.downscale(2, model=str(model1))
    with pytest.raises(InputError, match="rotates the grid"):
        xr.Dataset({"tas": da, "crs": rotated}).geosr.downscale(2, model=str(model1))
    curvilinear = da.drop_vars(["x", "y"]).assign_coords(xc=(("y", "x"), np.zeros((8, 10))))
    with pytest.raises(InputError, match="only the 2-D coordinates xc: a rotated or curvilinear grid") as refused:
        curvilinear.geosr.downscale(2, model=str(model1))
    # not "downscale a GeoTIFF of it": through GDAL a curvilinear grid is placed by geolocation arrays only,
    # which geosr downscale refuses too
    assert "GeoTIFF" not in str(refused.value) and "gdalwarp -geoloc" in str(refused.value)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("start", "step"), [(120.0, 0.05), (50.0, 0.1), (45.0, 1 / 120), (500_015.0, 30.0)])
def test_regular_coordinates_stored_as_float32_are_regular(model1, dtype, start, step):
    da = grid((12, 14), ("y", "x"))
    da = da.assign_coords(
        y=(start - step * np.arange(12)).astype(dtype), x=(start + step * np.arange(14)).astype(dtype)
    )
    out = da.geosr.downscale(2, model=str(model1), device="cpu")
    expected = np.float64(da.x.values[0]) - step / 4
    assert out.sizes == {"y": 24, "x": 28}
    assert abs(out.x.values[0] - expected) < 1e-4 * step
    with pytest.raises(InputError, match="not regularly spaced"):  # a real irregularity is still one
        da.assign_coords(x=da.x.values + np.r_[0, 0, step / 100, np.zeros(11)].astype(dtype)).geosr.downscale(2)


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_time_step_without_data_comes_out_without_data(model1, kind):
    da = grid((3, 12, 15))
    data = da.values.copy()
    data[1] = np.nan
    da = da.copy(data=data)
    out = backend(da, kind, {"time": 1}).geosr.downscale(2, model=str(model1), device="cpu").values
    assert np.isnan(out[1]).all()
    assert_close(out[[0, 2]], per_slice(da.isel(time=[0, 2]), 2, model1), data_tolerance(da.values[[0, 2]]))


@pytest.mark.parametrize("kind", BACKENDS)
def test_every_missing_value_of_undecoded_cf_data_is_masked(model1, kind):
    raw = np.round(grid((12, 15), ("y", "x")).values).astype(np.int16)
    raw[0:2, 0:2], raw[6:8, 6:8] = -32768, -999
    da = grid((12, 15), ("y", "x")).copy(data=raw)
    da.attrs.update(_FillValue=np.int16(-32768), missing_value=np.int16(-999))
    out = backend(da, kind).geosr.downscale(2, model=str(model1), device="cpu").values
    decoded = xr.decode_cf(da.to_dataset(name="v")).v
    assert int(decoded.isnull().sum()) == 8
    assert_close(out, per_slice(decoded, 2, model1)[0], data_tolerance(decoded.values))
    assert np.isnan(out[12:16, 12:16]).all() and np.nanmin(out) > 200


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize(
    "values", [np.zeros((8, 8), bool), np.full((8, 8), "1.5"), np.zeros((8, 8), complex), np.zeros((8, 8), "M8[ns]")]
)
def test_values_that_are_not_real_numbers_are_refused(model1, kind, values):
    da = grid((8, 8), ("y", "x")).copy(data=values)
    with pytest.raises(InputError, match=re.escape(f"variable 'tas' holds {values.dtype} values")):
        backend(da, kind).geosr.downscale(2, model=str(model1))
    with pytest.raises(InputError, match=re.escape(f"array holds {values.dtype} values")):
        geosr.downscale(values, 2, str(model1))


def test_auxiliary_coordinates_of_the_coarse_grid_are_dropped_with_their_mention(model1):
    da = grid((8, 10), ("y", "x"))
    da = da.assign_coords(lat=(("y", "x"), np.zeros((8, 10))), height=2.0)
    da.attrs["coordinates"] = "lat height"
    out = da.geosr.downscale(2, model=str(model1), device="cpu")
    assert "lat" not in out.coords and float(out.height) == 2.0
    assert out.attrs["coordinates"] == "height"


# --- laziness and chunks -------------------------------------------------------------------------


def refuse_to_compute(dsk, keys, **kwargs):
    raise AssertionError("something was computed while the graph was being built")


def test_nothing_is_computed_until_asked(model1):
    da = grid().chunk({"time": 1, "lat": 6, "lon": 8})
    with dask.config.set(scheduler=refuse_to_compute):
        out = da.geosr.downscale(2, model=str(model1), device="cpu")
        ds_out = da.to_dataset().geosr.downscale(2, model=str(model1), device="cpu")
    assert dask.is_dask_collection(out.data) and dask.is_dask_collection(ds_out.tas.data)
    assert_close(out.compute().values, per_slice(grid(), 2, model1), data_tolerance(da.values))


@pytest.mark.parametrize(
    ("chunks", "scale"),
    [
        ({"time": 1, "lat": 6, "lon": 5}, 2),
        ({"time": 2, "lat": 5, "lon": 15}, 3),
        ({"time": 3, "lat": 12, "lon": 4}, 2.5),
    ],
)
def test_output_chunks_line_up_with_input_chunks(model1, chunks, scale):
    da = grid().chunk(chunks)
    out = da.geosr.downscale(scale, model=str(model1), device="cpu")
    assert out.chunks[0] == da.chunks[0]
    assert out.chunks[1] == fine_chunks(da.chunks[1], 12, round(12 * scale))
    assert out.chunks[2] == fine_chunks(da.chunks[2], 15, round(15 * scale))
    if scale == 2:
        assert out.chunks[1:] == tuple(tuple(2 * c for c in axis) for axis in da.chunks[1:])
    assert_close(out.values, per_slice(grid(), scale, model1), data_tolerance(da.values))


def test_model_loaded_once_per_process(model1, monkeypatch):
    monkeypatch.setattr(predict, "_CACHE", {})
    loads = []
    original = predict.Downscaler.__init__

    def counting(self, *args, **kwargs):
        loads.append(args)
        original(self, *args, **kwargs)

    monkeypatch.setattr(predict.Downscaler, "__init__", counting)
    out = grid((6, 12, 15)).chunk({"time": 1, "lat": 4, "lon": 5}).geosr.downscale(2, model=str(model1), device="cpu")
    assert out.data.npartitions == 54
    with dask.config.set(scheduler="threads", num_workers=2):
        out.compute()
    assert len(loads) == 1


# --- Datasets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
def test_dataset_downscales_every_gridded_variable(model1, model_dir, kind):
    from geosr.testing import random_model

    other = random_model(model_dir / "other.safetensors", depth=2, width=4, seed=7, name="other")
    tas = grid()
    ds = xr.Dataset(
        {
            "tas": tas,
            "pr": grid(seed=10).rename(None),
            "time_bnds": (("time", "nv"), np.zeros((3, 2))),
            "lat_bnds": (("lat", "nv"), np.zeros((12, 2))),
            "crs": ((), 0),
        },
        coords={"member": "r1i1p1", "nv": [0, 1]},
        attrs={"title": "test grid"},
    )
    out = backend(ds, kind).geosr.downscale(2, model={"tas": str(model1), "pr": str(other)}, device="cpu")
    assert set(out.data_vars) == {"tas", "pr", "time_bnds", "crs"}
    assert out.attrs == {"title": "test grid"}
    assert str(out.member.values) == "r1i1p1" and list(out.nv.values) == [0, 1]
    assert out.tas.attrs["geosr_model"] == "tiny1" and out.pr.attrs["geosr_model"] == "other"
    assert out.tas.sizes == {"time": 3, "lat": 24, "lon": 30}
    np.testing.assert_array_equal(out.time_bnds.values, ds.time_bnds.values)
    assert_close(out.tas.values, per_slice(tas, 2, model1), data_tolerance(tas.values))
    assert_close(out.pr.values, per_slice(ds.pr, 2, other), data_tolerance(ds.pr.values))


def test_dataset_errors(model1):
    ds = xr.Dataset({"v": ("time", np.arange(3.0))}, coords={"lat": [1.0, 2.0], "lon": [1.0, 2.0]})
    with pytest.raises(InputError, match="no data variable of the dataset has both dimensions 'lat' and 'lon'"):
        ds.geosr.downscale(2, model=str(model1))


# --- errors --------------------------------------------------------------------------------------


def test_clear_errors(model1):
    da = grid()
    irregular = da.assign_coords(lon=np.r_[0.0, 1.0, 3.0, np.arange(4.0, 16.0)])
    with pytest.raises(InputError, match="coordinate 'lon' is not regularly spaced; regrid it"):
        irregular.geosr.downscale(2, model=str(model1))
    with pytest.raises(InputError, match="dimension 'lat' has no coordinate"):
        da.drop_vars("lat").geosr.downscale(2, model=str(model1))
    with pytest.raises(InputError, match="no x dimension found among"):
        da.isel(lon=0).geosr.downscale(2, model=str(model1))
    with pytest.raises(InputError, match="at least 2 are needed"):
        da.isel(lon=[0]).geosr.downscale(2, model=str(model1))
    with pytest.raises(InputError, match="y_dim='row' is not a dimension"):
        da.geosr.downscale(2, model=str(model1), y_dim="row")
    with pytest.raises(ScaleError, match="greater than 1"):
        da.geosr.downscale(0.5, model=str(model1))
    with pytest.raises(TypeError):
        da.geosr.downscale(2, modle=str(model1))


def test_packed_valid_range_and_coarse_bounds_do_not_reach_the_output(tmp_path):
    """Decoded packed data: valid_range is in packed units (CF 8.1), so on the float output it would mask
    every value; lat/lon 'bounds' would name coarse bounds variables that are not in the output."""
    z = 50000 + 1000 * np.random.default_rng(0).random((16, 16))
    lat, lon = np.arange(16) + 0.5, np.arange(16) + 0.5
    ds = xr.Dataset(
        {
            "zg": (("lat", "lon"), z, {"units": "m2 s-2", "valid_range": np.array([0, 10000], "int16")}),
            "lat_bnds": (("lat", "bnds"), np.stack([lat - 0.5, lat + 0.5], 1)),
        },
        coords={"lat": ("lat", lat, {"bounds": "lat_bnds"}), "lon": lon},
    )
    ds.zg.encoding.update(dtype="int16", scale_factor=10.0, add_offset=0.0, _FillValue=np.int16(-32767))
    ds.to_netcdf(tmp_path / "zg.nc")
    with xr.open_dataset(tmp_path / "zg.nc") as packed:
        out = packed.geosr.downscale(2, model="backprojection")
        assert "valid_range" not in out.zg.attrs and out.zg.attrs["units"] == "m2 s-2"
        assert "bounds" not in out.lat.attrs and "lat_bnds" not in out
        out.to_netcdf(tmp_path / "zg_x2.nc")
    with xr.open_dataset(tmp_path / "zg_x2.nc") as back:
        assert np.isfinite(back.zg.values).all() and back.zg.shape == (32, 32)


def test_a_longitude_that_wraps_is_refused_with_the_fix():
    lon = np.r_[np.arange(170.5, 180), np.arange(-179.5, -170)]
    da = xr.DataArray(np.ones((10, 20), "f4"), dims=("lat", "lon"), coords={"lat": np.arange(10) + 0.5, "lon": lon})
    with pytest.raises(InputError, match="wraps around at 180 or 360 degrees.*np.unwrap"):
        da.geosr.downscale(2, model="backprojection")
    fixed = da.assign_coords(lon=np.unwrap(da.lon, period=360))
    assert fixed.geosr.downscale(2, model="backprojection").shape == (20, 40)


def test_tiny_spatial_chunks_do_not_make_tiny_tiles(model1):
    """Tiles cut to 1 x 1 chunks would each read most of the raster through their halo: the graph grew
    with the square of the raster (971,281 tasks for 24 x 24); tiles keep a floor and span chunks."""
    da = xr.DataArray(
        fbm_surface((24, 24), seed=2), dims=("y", "x"), coords={"y": np.arange(24.0), "x": np.arange(24.0)}
    )
    lazy = da.chunk({"y": 1, "x": 1}).geosr.downscale(2, model=model1, device="cpu")
    assert len(lazy.data.__dask_graph__()) < 20_000
    np.testing.assert_array_equal(lazy.values, da.geosr.downscale(2, model=model1, device="cpu").values)

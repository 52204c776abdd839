"""Nothing lost, second audit: a closed terminal (SIGHUP) or Ctrl+\\ (SIGQUIT) stops a run as Ctrl+C does; an
interrupt landing just after a temporary file is made, or just after the output is moved into place, leaves
nothing behind and is reported truly; GDAL's side files of a replaced output (``out.tif.OVR``, an ERDAS RRD
``out.aux``) go with it; an output name of up to 255 bytes can be written; named metadata domains are kept."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import assert_one_line_error, write_geotiff

import geosr.io
from geosr.pipeline import downscale_grid, downscale_raster
from geosr.testing import fbm_surface

needs_posix_signals = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP/SIGQUIT on this system")


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _grid_nc(path: Path, shape: tuple[int, int] = (12, 16)) -> Path:
    xr = pytest.importorskip("xarray")
    data = np.stack([fbm_surface(shape, seed=i, relief=5.0, base=280.0) for i in range(2)])
    coords = {"time": [0, 1], "lat": 50.0 - 0.5 * np.arange(shape[0]), "lon": 5.0 + 0.5 * np.arange(shape[1])}
    xr.Dataset({"tas": (("time", "lat", "lon"), data)}, coords=coords).to_netcdf(path)
    return path


# --- D1: SIGHUP and SIGQUIT stop a run cleanly ------------------------------------------------------------------


def _geosr_process(args: list[object], hup: object) -> subprocess.Popen[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def child() -> None:  # as a terminal (SIG_DFL) or nohup (SIG_IGN) leaves them, whatever pytest runs under
        signal.signal(signal.SIGHUP, hup)
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)

    command = [sys.executable, "-m", "geosr", "downscale", *[str(a) for a in args], "--progress-lines"]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=child
    )


@needs_posix_signals
@pytest.mark.parametrize(("signame", "cog"), [("SIGHUP", []), ("SIGQUIT", ["--cog"])])
def test_a_closed_terminal_or_ctrl_backslash_stops_a_run_and_leaves_nothing(tmp_path, model1, signame, cog):
    # SIGHUP (the terminal closed, ssh dropped) and SIGQUIT killed geosr outright: its .geosr-part file stayed
    src = write_geotiff(tmp_path / "big.tif", fbm_surface((120, 150), seed=3))
    out = tmp_path / "out" / "big_x4.tif"
    out.parent.mkdir()
    args = [src, "--scale", 4, "--model", model1, "--tile-size", 16, "--device", "cpu", "-o", out, *cog]
    process = _geosr_process(args, signal.SIG_DFL)
    assert process.stdout.readline().startswith("PROGRESS 1/")
    process.send_signal(getattr(signal, signame))
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert assert_one_line_error(err, process.returncode) == "Error: interrupted; no output was written"
    assert listing(out.parent) == []


@needs_posix_signals
def test_nohup_keeps_a_run_going_through_sighup(tmp_path, model1):
    # SIGHUP is taken over only where it would kill geosr: under nohup (ignored) the run goes on to the end
    src = write_geotiff(tmp_path / "dem.tif", fbm_surface((40, 48), seed=3))
    out = tmp_path / "out.tif"
    process = _geosr_process([src, "--scale", 2, "--model", model1, "--tile-size", 16, "-o", out], signal.SIG_IGN)
    assert process.stdout.readline().startswith("PROGRESS 1/")
    process.send_signal(signal.SIGHUP)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert listing(tmp_path) == ["dem.tif", "out.tif"]


class _HungUp(io.StringIO):
    """A terminal that is gone (closed, or its ssh connection dropped): every write fails."""

    def write(self, text: str) -> int:
        raise OSError(errno.EIO, "Input/output error")


def test_an_interrupt_is_reported_as_one_even_when_stderr_is_gone(dem_tif, tmp_path, model1, monkeypatch):
    # after SIGHUP the terminal is gone: click's blank line after an interrupt failed (EIO), then the report
    # of that OSError did, and the run ended in a traceback and exit code 1 instead of 130
    from geosr.cli import main

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(geosr.io.TileWriter, "write", interrupted)
    monkeypatch.setattr(sys, "stderr", _HungUp())
    args = ["downscale", dem_tif, "--scale", 2, "--model", model1, "-o", tmp_path / "out.tif", "--device", "cpu"]
    assert main([str(a) for a in args]) == 130
    assert listing(tmp_path) == ["dem.tif"]


# --- D2: an interrupt just after a temporary file is made leaves nothing -------------------------------------------


def _interrupt_once_made(monkeypatch: pytest.MonkeyPatch, suffix: str) -> list[str]:
    """Raise KeyboardInterrupt (as the signal handler does) the moment a file or folder ending in ``suffix`` has
    been made: mkstemp, mkdtemp and geosr's own temporary names all make them by os.open or os.mkdir."""
    made: list[str] = []
    real_open, real_mkdir = os.open, os.mkdir

    def check(path: object) -> None:
        if str(path).endswith(suffix) and not made:
            made.append(str(path))
            raise KeyboardInterrupt

    def opening(path: object, *args: object, **kwargs: object) -> int:
        fd = real_open(path, *args, **kwargs)
        check(path)
        return fd

    def making(path: object, *args: object, **kwargs: object) -> None:
        real_mkdir(path, *args, **kwargs)
        check(path)

    monkeypatch.setattr(os, "open", opening)
    monkeypatch.setattr(os, "mkdir", making)
    return made


@pytest.mark.parametrize(("suffix", "cog"), [(".geosr-part", False), (".geosr-cog", True)])
def test_an_interrupt_just_after_a_temporary_geotiff_is_made_leaves_nothing(
    dem_tif, tmp_path, suffix, cog, monkeypatch
):
    before = listing(tmp_path)
    made = _interrupt_once_made(monkeypatch, suffix)
    with pytest.raises(KeyboardInterrupt):
        downscale_raster(dem_tif, tmp_path / "out.tif", scale=2, model="backprojection", cog=cog, device="cpu")
    assert made, f"no {suffix} file was made"
    assert listing(tmp_path) == before


@pytest.mark.parametrize("name", ["out.nc", "out.zarr"])
def test_an_interrupt_just_after_a_temporary_grid_is_made_leaves_nothing(tmp_path, name, monkeypatch):
    pytest.importorskip("netCDF4")
    if name.endswith(".zarr"):
        pytest.importorskip("zarr")
    src = _grid_nc(tmp_path / "tas.nc")
    made = _interrupt_once_made(monkeypatch, ".geosr-part")
    with pytest.raises(KeyboardInterrupt):
        downscale_grid(src, tmp_path / name, variable="tas", scale=2, model="backprojection", device="cpu")
    assert made
    assert listing(tmp_path) == ["tas.nc"]


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
def test_an_interrupt_while_an_old_store_is_set_aside_never_loses_it(tmp_path, monkeypatch):
    # the old Zarr store goes aside into a '.geosr-old' folder before the new one takes its name: an interrupt
    # just after that folder was made left it behind, and one just after the old store went into it deleted the
    # old store with the folder, the new one not in its place
    pytest.importorskip("zarr")
    xr = pytest.importorskip("xarray")
    src = _grid_nc(tmp_path / "tas.nc")
    out = tmp_path / "out.zarr"
    downscale_grid(src, out, variable="tas", scale=2, model="backprojection", device="cpu")
    made = _interrupt_once_made(monkeypatch, ".geosr-old")
    with pytest.raises(KeyboardInterrupt):
        downscale_grid(src, out, variable="tas", scale=3, model="backprojection", device="cpu", overwrite=True)
    assert made
    assert listing(tmp_path) == ["out.zarr", "tas.nc"]
    monkeypatch.undo()

    real_replace = os.replace

    def replace(a: object, b: object) -> None:
        real_replace(a, b)
        if Path(str(a)) == out and ".geosr-old" in str(b):
            raise KeyboardInterrupt  # the signal handler's exception, one bytecode after the old store went aside

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        downscale_grid(src, out, variable="tas", scale=3, model="backprojection", device="cpu", overwrite=True)
    monkeypatch.undo()
    assert listing(tmp_path) == ["out.zarr", "tas.nc"]
    with xr.open_zarr(out) as old:
        assert old.tas.shape == (2, 24, 32)  # the old store (scale 2), whole


def test_an_interrupt_just_after_a_replaced_file_is_begun_leaves_nothing(tmp_path, monkeypatch):
    # replaced_atomically writes model files and checkpoints
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")
    made = _interrupt_once_made(monkeypatch, ".part")
    with pytest.raises(KeyboardInterrupt), geosr.io.replaced_atomically(target) as tmp:
        tmp.write_bytes(b"new")
    assert made
    assert listing(tmp_path) == ["model.safetensors"]
    assert target.read_bytes() == b"old"


# --- D3: GDAL's side files of the output replaced, in every spelling GDAL reads, go --------------------------------


def _with_overviews(path: Path, rrd: bool = False) -> None:
    with rasterio.Env(USE_RRD=rrd, TIFF_USE_OVR=True), rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 4])


def _with_mask(path: Path) -> None:
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=False), rasterio.open(path, "r+") as ds:
        ds.write_mask(np.full((ds.height, ds.width), 255, dtype=np.uint8))


@pytest.mark.parametrize("side", ["out.aux", "out.tif.aux", "out.tif.OVR", "Out.Tif.Ovr", "out.tif.MSK"])
def test_side_files_gdal_attaches_to_the_replaced_output_are_removed(cli, dem_tif, tmp_path, side):
    out = tmp_path / "out.tif"
    command = ("downscale", dem_tif, "--scale", 2, "-o", out, "--model", "backprojection", "--quiet")
    assert cli(*command).code == 0
    if side.lower().endswith(".msk"):
        _with_mask(out)
        (tmp_path / "out.tif.msk").rename(tmp_path / side)
    else:
        _with_overviews(out, rrd=side.endswith(".aux"))
        if not side.endswith(".aux"):
            (tmp_path / "out.tif.ovr").rename(tmp_path / side)
        elif side == "out.tif.aux":
            (tmp_path / "out.aux").rename(tmp_path / side)
    with rasterio.open(out) as old:  # GDAL reads the old output's overviews or mask from the side file
        assert old.overviews(1) or old.mask_flag_enums != ([rasterio.enums.MaskFlags.all_valid],)
    r = cli(*command, "--overwrite")
    assert r.code == 0, r.err
    assert listing(tmp_path) == ["dem.tif", "out.tif"]
    with rasterio.open(out) as new:
        assert new.overviews(1) == []
        assert new.mask_flag_enums == ([rasterio.enums.MaskFlags.all_valid],)
        assert new.files == [str(out)]


def test_a_side_file_left_without_its_raster_is_removed_when_a_new_output_takes_the_name(cli, dem_tif, tmp_path):
    # GDAL would attach it to the new output just as well
    out = tmp_path / "out.tif"
    command = ("downscale", dem_tif, "--scale", 2, "-o", out, "--model", "backprojection", "--quiet")
    assert cli(*command).code == 0
    _with_overviews(out)
    (tmp_path / "out.tif.ovr").rename(tmp_path / "out.tif.OVR")
    out.unlink()
    assert cli(*command).code == 0
    assert listing(tmp_path) == ["dem.tif", "out.tif"]
    with rasterio.open(out) as new:
        assert new.overviews(1) == []


def test_files_of_other_rasters_and_the_input_are_never_removed(cli, tmp_path):
    # 'OUT.TIF.ovr' is the overviews of OUT.TIF (another file on a case-sensitive system), 'out.aux' the RRD of
    # out.tiff, 'out.tif.aux' no RRD at all; and the input may itself be named like a side file of the output
    other = write_geotiff(tmp_path / "OUT.TIF", fbm_surface((12, 16), seed=3))
    case_sensitive = not (tmp_path / "out.tif").exists()
    _with_overviews(other)  # first: GDAL would take the input below for OUT.TIF's overviews, and write them in it
    src = write_geotiff(tmp_path / "out.tif.ovr", fbm_surface((12, 16), seed=2))
    _with_overviews(write_geotiff(tmp_path / "out.tiff", fbm_surface((12, 16), seed=4)), rrd=True)  # out.aux
    (tmp_path / "out.tif.aux").write_text("notes of another program")
    before = listing(tmp_path)
    assert "out.aux" in before and ("OUT.TIF.ovr" in before or not case_sensitive)
    out = tmp_path / "out.tif"
    r = cli("downscale", src, "--scale", 2, "-o", out, "--model", "backprojection", "--quiet", "--overwrite")
    assert r.code == 0, r.err
    assert listing(tmp_path) == (sorted([*before, "out.tif"]) if case_sensitive else before)


# --- D4: an interrupt just after the output is in place says so ----------------------------------------------------


@pytest.mark.parametrize("name", ["out.tif", "out.nc"])
def test_an_interrupt_just_after_the_output_is_in_place_says_it_was_written(cli, dem_tif, tmp_path, monkeypatch, name):
    src = dem_tif if name.endswith(".tif") else _grid_nc(tmp_path / "tas.nc")
    if name.endswith(".nc"):
        pytest.importorskip("netCDF4")
    out = tmp_path / name
    out.write_bytes(b"an older output")
    (tmp_path / f"{name}.OVR").write_bytes(b"its overviews")
    inode = out.stat().st_ino
    real = geosr.io._publish

    def publish(*args: object, **kwargs: object) -> None:
        real(*args, **kwargs)
        raise KeyboardInterrupt  # the signal handler's exception, one bytecode after the rename

    monkeypatch.setattr(geosr.io, "_publish", publish)
    variable = ["--variable", "tas"] if name.endswith(".nc") else []
    r = cli("downscale", src, *variable, "--scale", 2, "-o", out, "--overwrite", "--model", "backprojection", "-q")
    assert r.code == 130
    line = assert_one_line_error(r.err, r.code)
    assert "no output was written" not in line
    assert line == f"Error: interrupted; the output '{out}' had already been written in full and is complete"
    assert out.stat().st_ino != inode
    assert listing(tmp_path) == sorted({"dem.tif", src.name, name})


# --- D5: output names of up to 255 bytes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stem", "suffix", "options"),
    [
        ("a" * 246, ".tif", []),
        ("a" * 246, ".tif", ["--cog"]),
        ("é" * 123, ".tif", []),  # 250 bytes of two-byte characters: cut short by whole characters
        ("a" * 247, ".nc", ["--variable", "tas"]),
        ("a" * 245, ".zarr", ["--variable", "tas"]),
    ],
)
def test_an_output_name_of_250_bytes_can_be_written(cli, dem_tif, tmp_path, stem, suffix, options):
    # the temporary name is 21 bytes longer than the output's: over 255 bytes for names of 235 and more
    assert len(os.fsencode(stem + suffix)) == 250
    if suffix != ".tif":
        pytest.importorskip("zarr" if suffix == ".zarr" else "netCDF4")
        src = _grid_nc(tmp_path / "tas.nc")
    else:
        src = dem_tif
    out = tmp_path / (stem + suffix)
    r = cli("downscale", src, *options, "--scale", 2, "-o", out, "--model", "backprojection", "-q")
    assert r.code == 0, r.err
    assert listing(tmp_path) == sorted({"dem.tif", src.name, out.name})


def test_an_output_name_too_long_for_the_file_system_is_one_clear_line(cli, dem_tif, tmp_path):
    out = tmp_path / ("a" * 252 + ".tif")
    r = cli("downscale", dem_tif, "--scale", 2, "-o", out, "--model", "backprojection", "-q")
    assert_one_line_error(r.err, r.code, "is 256 bytes long, more than the 255", "choose a shorter name with -o")
    assert listing(tmp_path) == ["dem.tif"]


# --- D6: named metadata domains ---------------------------------------------------------------------------------------


def test_tags_of_named_metadata_domains_are_carried_to_a_geotiff(cli, tmp_path):
    src = write_geotiff(tmp_path / "in.tif", np.stack([fbm_surface((12, 16), seed=s) for s in (1, 2)]))
    with rasterio.open(src, "r+") as ds:
        ds.update_tags(ns="MYDOMAIN", custom="value")
        ds.update_tags(2, ns="BANDDOM", wavelength="865")
    out = tmp_path / "out.tif"
    r = cli("downscale", src, "--scale", 2, "-o", out, "--model", "backprojection", "-q")
    assert r.code == 0, r.err
    with rasterio.open(out) as dst:
        assert dst.tags(ns="MYDOMAIN") == {"custom": "value"}
        assert dst.tags(2, ns="BANDDOM") == {"wavelength": "865"} and dst.tags(1, ns="BANDDOM") == {}
    r = cli("downscale", src, "--bands", 2, "--scale", 2, "-o", tmp_path / "b2.tif", "--model", "backprojection", "-q")
    assert r.code == 0, r.err
    with rasterio.open(tmp_path / "b2.tif") as dst:  # band 2 of the input is band 1 of the output
        assert dst.tags(1, ns="BANDDOM") == {"wavelength": "865"}

"""The command line: one clear line per error (promise 8), fast help (no torch), models, quiet runs."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from conftest import REPO, assert_one_line_error, write_geotiff

from geosr.errors import InputError
from geosr.io import raster_info
from geosr.models.registry import DEFAULT_MODEL, WEIGHTS_DIR
from geosr.testing import fbm_surface


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def files(tmp_path, dem_tif, model1, model3):
    """Paths every error case can draw on."""
    text = tmp_path / "notes.tif"
    text.write_text("this is not a raster\n")
    zero = tmp_path / "zero.vrt"
    zero.write_text(
        '<VRTDataset rasterXSize="0" rasterYSize="0"><VRTRasterBand dataType="Float32" band="1"/></VRTDataset>'
    )
    empty = write_geotiff(tmp_path / "empty.tif", np.full((6, 7), -9999.0, np.float32), nodata=-9999.0)
    nan = write_geotiff(tmp_path / "nan.tif", np.full((6, 7), np.nan, np.float32))
    rect = write_geotiff(tmp_path / "rect.tif", fbm_surface((6, 7)), transform=rasterio.Affine(30, 0, 0, 0, -20, 0))
    exists = tmp_path / "exists.tif"
    exists.write_bytes(b"keep me")
    return SimpleNamespace(
        dem=dem_tif,
        text=text,
        zero=zero,
        empty=empty,
        nan=nan,
        rect=rect,
        exists=exists,
        m1=model1,
        m3=model3,
        tmp=tmp_path,
    )


# (name, argv builder, expected exit code, words the message must contain)
ERROR_CASES = [
    ("missing file", lambda f: ["downscale", f.tmp / "nope.tif", "--scale", 2], 1, ["nope.tif", "does not exist"]),
    ("not a raster", lambda f: ["downscale", f.text, "--scale", 2, "--model", f.m1], 1, ["notes.tif", "not a raster"]),
    ("folder", lambda f: ["downscale", f.tmp, "--scale", 2, "--model", f.m1], 1, ["folder"]),
    ("scale 0.5", lambda f: ["downscale", f.dem, "--scale", 0.5, "--model", f.m1], 2, ["scale", "greater than 1"]),
    ("scale 1", lambda f: ["downscale", f.dem, "--scale", 1, "--model", f.m1], 2, ["scale", "greater than 1"]),
    ("scale -3", lambda f: ["downscale", f.dem, "--scale", -3, "--model", f.m1], 2, ["greater than 1"]),
    ("scale nan", lambda f: ["downscale", f.dem, "--scale", "nan", "--model", f.m1], 2, ["greater than 1"]),
    ("scale word", lambda f: ["downscale", f.dem, "--scale", "four", "--model", f.m1], 2, ["--scale", "four"]),
    ("both", lambda f: ["downscale", f.dem, "--scale", 2, "--resolution", 10, "--model", f.m1], 2, ["not both"]),
    ("neither", lambda f: ["downscale", f.dem, "--model", f.m1], 2, ["--scale", "--resolution"]),
    ("coarser resolution", lambda f: ["downscale", f.dem, "--resolution", 60, "--model", f.m1], 1, ["not finer"]),
    (
        "non-square pixels",
        lambda f: ["downscale", f.rect, "--resolution", 5, "--model", f.m1],
        1,
        ["square pixels", "--scale"],
    ),
    (
        "ensemble 8, non-square pixels",
        lambda f: ["downscale", f.rect, "--scale", 2, "--model", f.m1, "--ensemble", 8],
        1,
        ["square pixels", "ensemble of 4"],
    ),
    ("ensemble 3", lambda f: ["downscale", f.dem, "--scale", 2, "--model", f.m1, "--ensemble", 3], 2, ["--ensemble"]),
    (
        "NetCDF output without --variable",
        lambda f: ["downscale", f.dem, "--scale", 2, "--model", f.m1, "-o", f.dem.with_name("out.nc")],
        2,
        ["netcdf output, which needs --variable NAME", "-o NAME.tif"],
    ),
    ("zero size", lambda f: ["downscale", f.zero, "--scale", 2, "--model", f.m1], 1, ["zero.vrt"]),
    ("all nodata", lambda f: ["downscale", f.empty, "--scale", 2, "--model", f.m1], 1, ["is nodata", "-a_nodata"]),
    (
        "all NaN",
        lambda f: ["downscale", f.nan, "--scale", 2, "--model", f.m1],
        1,
        ["is nodata", "nothing to downscale"],
    ),
    (
        "unknown model",
        lambda f: ["downscale", f.dem, "--scale", 2, "--model", "no-such-model"],
        1,
        ["unknown model", "the path of a .safetensors model file"],
    ),
    ("not a model", lambda f: ["downscale", f.dem, "--scale", 2, "--model", f.text], 1, ["not a geosr model"]),
    ("band mismatch", lambda f: ["downscale", f.dem, "--scale", 2, "--model", f.m3], 1, ["takes 3 bands", "has 1"]),
    (
        "output exists",
        lambda f: ["downscale", f.dem, "--scale", 2, "--model", f.m1, "-o", f.exists],
        1,
        ["exists", "--overwrite"],
    ),
    (
        "output is input",
        lambda f: ["downscale", f.dem, "--scale", 2, "--model", f.m1, "-o", f.dem, "--overwrite"],
        1,
        ["input"],
    ),
    (
        "no output folder",
        lambda f: ["downscale", f.dem, "--scale", 2, "--model", f.m1, "-o", f.tmp / "a" / "b.tif"],
        1,
        ["does not exist"],
    ),
    (
        "tile too small",
        lambda f: ["downscale", f.dem, "--scale", 2, "--model", f.m1, "--tile-size", 4],
        2,
        ["--tile-size"],
    ),
    ("bad device", lambda f: ["downscale", f.dem, "--scale", 2, "--model", f.m1, "--device", "tpu"], 2, ["--device"]),
    ("unknown command", lambda f: ["upscale", f.dem], 2, ["upscale"]),
    ("models unknown", lambda f: ["models", "no-such-model"], 1, ["unknown model"]),
]


@pytest.mark.parametrize(("argv", "code", "words"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_bad_input_gets_one_line(files, cli, argv, code, words):
    before = listing(files.tmp)
    exists_before = files.exists.read_bytes()
    result = cli(*argv(files))
    line = assert_one_line_error(result.err, result.code)
    assert result.code == code
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    assert result.out == ""
    assert listing(files.tmp) == before  # no output and no temporary file
    assert files.exists.read_bytes() == exists_before


def test_zero_size_refusal_is_one_clean_line(files, cli):
    # GDAL refuses to open a zero-size raster itself; geosr turns that into one line naming the file
    result = cli("downscale", files.zero, "--scale", 2, "--model", files.m1)
    line = assert_one_line_error(result.err, result.code)
    assert "not a raster GDAL can read" in line and "0 x 0" in line


@pytest.mark.parametrize(("width", "height", "count"), [(0, 5, 1), (5, 0, 1), (0, 0, 1), (5, 5, 0)])
def test_raster_info_refuses_zero_size(width, height, count):
    dataset = SimpleNamespace(width=width, height=height, count=count, name="tiny.tif", subdatasets=[])
    with pytest.raises(InputError, match="zero size"):
        raster_info(dataset)


def test_container_without_bands_names_its_subdatasets(tmp_path, cli, model1):
    if "netCDF" not in rasterio.drivers.raster_driver_extensions().values():
        pytest.skip("GDAL built without netCDF")
    from scipy.io import netcdf_file

    path = tmp_path / "multi.nc"
    with netcdf_file(path, "w") as nc:
        nc.createDimension("y", 5)
        nc.createDimension("x", 6)
        for name in ("tas", "pr"):
            nc.createVariable(name, "f4", ("y", "x"))[:] = np.ones((5, 6))
    result = cli("downscale", path, "--scale", 2, "--model", model1)
    line = assert_one_line_error(result.err, result.code)
    assert f"netcdf:{path}:tas" in line


def test_errors_in_a_real_process(files, cli_subprocess):
    missing = cli_subprocess("downscale", files.tmp / "nope.tif", "--scale", "2")
    assert missing.returncode == 1
    assert "does not exist" in assert_one_line_error(missing.stderr, missing.returncode)
    usage = cli_subprocess("downscale", files.dem, "--scale", "x")
    assert usage.returncode == 2
    assert_one_line_error(usage.stderr, usage.returncode)
    assert missing.stdout == usage.stdout == ""


def test_verbose_shows_the_traceback(files, cli):
    result = cli("downscale", files.tmp / "nope.tif", "--scale", 2, "--verbose")
    assert result.code == 1
    assert "Traceback" in result.err and "InputError" in result.err and "does not exist" in result.err
    # the next run without --verbose is back to one line
    again = cli("downscale", files.tmp / "nope.tif", "--scale", 2)
    assert_one_line_error(again.err, again.code)


def test_unexpected_error_is_one_line_and_verbose_shows_it(files, cli, monkeypatch):
    import geosr.pipeline

    def crash(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(geosr.pipeline, "downscale_raster", crash)
    result = cli("downscale", files.dem, "--scale", 2)
    line = assert_one_line_error(result.err, result.code)
    assert "boom" in line and "--verbose" in line
    verbose = cli("downscale", files.dem, "--scale", 2, "-v")
    assert verbose.code == 1 and "Traceback" in verbose.err and "ZeroDivisionError" in verbose.err


def test_geosr_without_a_subcommand_prints_the_help_not_an_error(cli):
    # click 8.2 raises its help as a usage error: it was printed as "Error: Usage: ..." with code 2
    bare, helped = cli(), cli("--help")
    assert (bare.code, bare.err) == (0, "")
    assert bare.out == helped.out and bare.out.startswith("Usage: geosr [OPTIONS] COMMAND")


NO_TORCH = """
import sys
from geosr.cli import main
codes = [main(["--help"]), main(["downscale", "--help"]), main(["models", "--help"]), main(["--version"])]
assert codes == [0, 0, 0, 0], codes
heavy = [name for name in ("torch", "rasterio", "dask", "safetensors") if name in sys.modules]
assert "torch" not in heavy, heavy
print("HEAVY", heavy)
"""


def test_help_does_not_import_torch():
    done = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Usage: geosr [OPTIONS] COMMAND" in done.stdout
    assert "Usage: geosr downscale [OPTIONS] INPUT" in done.stdout
    assert "--scale" in done.stdout and "--resolution" in done.stdout and "--overwrite" in done.stdout
    loaded = next(line for line in done.stdout.splitlines() if line.startswith("HEAVY"))
    assert "torch" not in loaded


def test_import_geosr_is_light():
    code = "import sys, geosr; print([m for m in ('torch', 'rasterio', 'dask') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_help_in_a_real_process(cli_subprocess):
    done = cli_subprocess("--help")
    assert done.returncode == 0
    assert "downscale" in done.stdout and "models" in done.stdout
    assert done.stderr == ""


def test_models_lists_the_shipped_models(cli):
    shipped = sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))
    assert DEFAULT_MODEL in shipped
    result = cli("models")
    assert result.code == 0 and result.err == ""
    for name in shipped:
        assert f"{name}:" in result.out
    listed = json.loads(cli("models", "--json").out)
    assert sorted(listed) == shipped
    # each card says what the model does by default about conservation
    for name, card in listed.items():
        expected = "yes, by default at whole scales" if card["conserve"] else "only with --conserve"
        assert f"conserve: {expected}" in cli("models", name).out


def test_models_opens_up_the_chain_of_training_stages(cli, tmp_path):
    from geosr.models.card import read_card
    from geosr.models.files import load_model, save_model

    loaded = load_model(DEFAULT_MODEL)
    card = read_card(loaded.source)
    card.training = {
        "command": "stage 3",
        "config": {"lr": 1e-4},
        "started_from": {"command": "stage 2", "started_from": {"command": "stage 1", "cpu_seconds": 7}},
    }
    save_model(loaded.network, card, tmp_path / "chain.safetensors")
    lines = cli("models", str(tmp_path / "chain.safetensors")).out.splitlines()
    assert "  training.command: stage 3" in lines
    assert '  training.config: {"lr": 0.0001}' in lines  # a stage's config stays one line
    assert "  training.started_from.command: stage 2" in lines
    assert "  training.started_from.started_from.command: stage 1" in lines
    assert "  training.started_from.started_from.cpu_seconds: 7" in lines


@pytest.fixture
def no_shipped_models(tmp_path, monkeypatch):
    """A geosr installed without trained models."""
    import geosr.models.registry

    empty = tmp_path / "weights"
    empty.mkdir()
    monkeypatch.setattr(geosr.models.registry, "WEIGHTS_DIR", empty)


def test_models_says_when_none_ships(cli, no_shipped_models):
    result = cli("models")
    assert result.code == 0
    assert "No trained model ships" in result.out and "--model PATH" in result.out


def test_default_model(files, cli):
    result = cli("downscale", files.dem, "--scale", 2, "-o", files.tmp / "default.tif", "--device", "cpu", "-q")
    assert result.code == 0, result.err
    with rasterio.open(files.tmp / "default.tif") as dst:
        assert dst.tags()["GEOSR_MODEL"].startswith(f"{DEFAULT_MODEL} ({DEFAULT_MODEL}.safetensors")


def test_missing_default_model_is_one_clear_line(files, cli, no_shipped_models):
    result = cli("downscale", files.dem, "--scale", 2, "-o", files.tmp / "default.tif", "--device", "cpu", "-q")
    line = assert_one_line_error(result.err, result.code)
    assert (
        f"default model {DEFAULT_MODEL!r} is not installed" in line and "the path of a .safetensors model file" in line
    )
    assert not (files.tmp / "default.tif").exists()


def test_models_shows_one_card(cli, model3):
    result = cli("models", model3)
    assert result.code == 0
    assert result.out.startswith(f"{model3}: Randomly initialised")
    assert "depth 4 width 8" in result.out and "3 channel(s)" in result.out
    card = json.loads(cli("models", model3, "--json").out)[str(model3)]
    assert card["in_channels"] == 3 and card["name"] == "tiny3"


def test_quiet_run_prints_nothing(files, cli):
    out = files.tmp / "quiet.tif"
    result = cli("downscale", files.dem, "--scale", 3, "--model", files.m1, "--device", "cpu", "-o", out, "--quiet")
    assert result.code == 0, result.err
    assert result.out == "" and result.err == ""
    with rasterio.open(out) as dst:
        assert (dst.height, dst.width) == (60, 72)


def test_normal_run_reports_on_stderr_only(files, cli):
    out = files.tmp / "loud.tif"
    args = ["downscale", files.dem, "--scale", 2, "--model", files.m1, "--device", "cpu", "-o", out, "--tile-size", 16]
    result = cli(*args)
    assert result.code == 0, result.err
    assert result.out == ""
    assert f"wrote {out}" in result.err and "48 x 40 pixels" in result.err and "tiny1" in result.err
    again = cli(*args, "--overwrite", "--cog", "--batch-size", 2)
    assert again.code == 0, again.err


def test_progress_lines_go_to_stdout(files, cli):
    # what the QGIS tool reads from the pipe: one flushed line per tile, and no bar on stderr
    out = files.tmp / "lines.tif"
    args = ["downscale", files.dem, "--scale", 2, "--model", files.m1, "--device", "cpu", "-o", out, "--tile-size", 16]
    result = cli(*args, "--progress-lines", "--quiet")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [f"PROGRESS {done}/9" for done in range(1, 10)]  # 40 x 48 px in 16 px tiles
    assert result.err == ""


def test_sigterm_stops_a_run_and_leaves_nothing(tmp_path, model1):
    """``kill`` stops geosr like Ctrl+C, even where SIGINT is ignored (a background job of a script)."""
    import signal
    import time

    src = write_geotiff(tmp_path / "big.tif", fbm_surface((120, 150), seed=3))
    out = tmp_path / "out" / "big_x4.tif"
    out.parent.mkdir()
    command = [sys.executable, "-m", "geosr", "downscale", src, "--scale", 4, "--model", model1, "--tile-size", 16]
    command += ["--device", "cpu", "--progress-lines", "-o", out]
    process = subprocess.Popen(
        [str(c) for c in command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert process.stdout.readline().startswith("PROGRESS 1/")
    sent = time.monotonic()
    process.terminate()
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    assert process.returncode == 130
    assert assert_one_line_error(err, process.returncode) == "Error: interrupted; no output was written"
    assert list(out.parent.iterdir()) == []


def test_quiet_run_in_a_real_process(files, cli_subprocess):
    out = files.tmp / "sub.tif"
    done = cli_subprocess(
        "downscale", files.dem, "--resolution", 15, "--model", files.m1, "--device", "cpu", "-o", out, "-q"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    with rasterio.open(out) as dst:
        assert dst.res == pytest.approx((15.0, 15.0))


def test_cli_refuses_a_scale_that_refines_nothing(tmp_path, cli):
    src = write_geotiff(tmp_path / "small.tif", fbm_surface((10, 10), seed=1))
    result = cli("downscale", src, "--scale", "1.01", "--model", "backprojection", "-o", tmp_path / "out.tif")
    assert result.code == 1
    assert_one_line_error(result.err, "leaves the 10 x 10 raster 10 x 10 pixels")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.tif"]


def test_cli_reads_a_raster_inside_a_zip_by_its_absolute_gdal_name(tmp_path, cli, monkeypatch):
    """'/vsizip//abs/dems.zip/dem.tif' is passed to GDAL as given (a Path would fold the '//' and make
    GDAL look for 'abs/dems.zip' under the current folder)."""
    import zipfile

    src = write_geotiff(tmp_path / "dem.tif", fbm_surface((16, 18), seed=2))
    with zipfile.ZipFile(tmp_path / "dems.zip", "w") as archive:
        archive.write(src, "dem.tif")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    name = f"/vsizip/{tmp_path / 'dems.zip'}/dem.tif"
    assert name.startswith("/vsizip//")
    out = tmp_path / "out.tif"
    result = cli("downscale", name, "--scale", 2, "--model", "backprojection", "-o", out, "-q")
    assert result.code == 0, result.err
    with rasterio.open(out) as dst, rasterio.open(src) as ref:
        assert dst.shape == (32, 36) and dst.bounds == ref.bounds
    result = cli("evaluate", name, "--scale", 2, "--no-model", "--json")
    assert result.code == 0, result.err


@pytest.mark.parametrize("cog", [False, True])
def test_cli_an_ungeoreferenced_raster_gives_an_ungeoreferenced_output(tmp_path, cli, cog):
    """No transform, CRS or GCPs in: no geotransform out (pixel space, as gdal_translate -outsize
    writes), not GDAL's default transform scaled, which would place the output at other coordinates."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    src = tmp_path / "plain.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(src, "w", driver="GTiff", height=10, width=20, count=1, dtype="float32") as dst:
            dst.write(fbm_surface((10, 20), seed=3).astype(np.float32), 1)
    out = tmp_path / "out.tif"
    result = cli("downscale", src, "--scale", 2, "--model", "backprojection", "-o", out, *(["--cog"] if cog else []))
    assert result.code == 0, result.err
    assert "Warning" not in result.err
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)  # rasterio warns when no geotransform is written
        with pytest.raises(NotGeoreferencedWarning):
            rasterio.open(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(out) as dst:
            assert dst.transform.is_identity and dst.crs is None and not dst.gcps[0]
            assert dst.shape == (20, 40)


def test_cli_bands_chooses_and_orders_the_bands_with_their_metadata(tmp_path, cli, model1):
    from rasterio.enums import ColorInterp

    data = np.stack([fbm_surface((14, 16), seed=s, relief=10.0 * s) for s in (1, 2, 3)])
    src = write_geotiff(
        tmp_path / "three.tif",
        data,
        descriptions=["elevation", "slope", "aspect"],
        units=["m", "degrees", "degrees"],
        scales=[1.0, 0.5, 2.0],
        offsets=[0.0, 1.0, 3.0],
        band_tags=[{"K": "one"}, {"K": "two"}, {"K": "three"}],
        colorinterp=[ColorInterp.gray, ColorInterp.undefined, ColorInterp.undefined],
    )
    every, some = tmp_path / "every.tif", tmp_path / "some.tif"
    common = ("--scale", 2, "--model", model1, "--device", "cpu", "-q")
    assert cli("downscale", src, "-o", every, *common).code == 0
    result = cli("downscale", src, "-o", some, "--bands", "3,1", *common)
    assert result.code == 0, result.err
    with rasterio.open(every) as a, rasterio.open(some) as b:
        assert b.count == 2 and b.descriptions == ("aspect", "elevation") and b.units == ("degrees", "m")
        assert b.scales == (2.0, 1.0) and b.offsets == (3.0, 0.0)
        assert b.tags(1)["K"] == "three" and b.tags(2)["K"] == "one"
        assert (b.transform, b.crs, b.shape) == (a.transform, a.crs, a.shape)
        np.testing.assert_array_equal(b.read(), a.read([3, 1]))  # a 1-channel model runs band by band
    for bands, words in (("4", "has 3 band(s); there is no band 4"), ("1,1", "name a band twice"), ("x", "--bands")):
        result = cli("downscale", src, "-o", tmp_path / "bad.tif", "--bands", bands, *common)
        assert result.code != 0
        assert_one_line_error(result.err, words)
    assert not (tmp_path / "bad.tif").exists()


def test_cli_names_the_rasters_band_numbers_under_bands(tmp_path, cli):
    data = np.stack([fbm_surface((14, 16), seed=s) for s in (1, 2, 3)]).astype(np.float32)
    data[2, 4, 4] = np.finfo(np.float32).max
    src = write_geotiff(tmp_path / "three.tif", data)
    result = cli(
        "downscale", src, "--bands", "3,1", "--scale", 2, "--model", "backprojection", "-o", tmp_path / "o.tif"
    )
    assert result.code == 1
    assert_one_line_error(result.err, "band 3 of")


def test_the_summary_gives_both_axes_factors_when_a_resolution_makes_them_differ(cli, dem_tif, model1, tmp_path):
    # --resolution fits whole pixels to the same bounds: the summary said only the factor across
    with rasterio.open(dem_tif) as src:
        step = src.res[0]
    result = cli("downscale", dem_tif, "--resolution", step / 2.3, "--model", model1, "-o", tmp_path / "r.tif")
    assert result.code == 0, result.err
    with rasterio.open(tmp_path / "r.tif") as out:
        across, down = out.width / 24, out.height / 20
    assert across != down
    assert f"scale {across:g} across, {down:g} down," in result.err
    plain = cli("downscale", dem_tif, "--scale", 2, "--model", model1, "-o", tmp_path / "s.tif")
    assert "pixels, scale 2, model" in plain.err


def test_downscale_draws_no_progress_bar_into_a_log(cli, make_geotiff, model1, tmp_path):
    # to a file or a pipe the tile bar was redrawn with carriage returns, and 'wrote ...' was glued onto it
    src = make_geotiff("dem.tif", fbm_surface((40, 40), seed=2))
    result = cli("downscale", src, "--scale", 2, "--model", model1, "--tile-size", 16, "-o", tmp_path / "o.tif")
    assert result.code == 0, result.err
    assert "\r" not in result.err and result.err.startswith("wrote "), result.err

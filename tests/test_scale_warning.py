"""A scale outside the range of the model's trained scales gets one clear warning line, and the run goes on.

The tiny test models' cards say scales 2, 3, 4 (the shipped models' too): x8 lies above them and x1.5
below; 2, 2.5 (served by the multi-scale model, between trained scales) and 4 lie within.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rasterio
import xarray as xr

from geosr.errors import GeosrWarning, ScaleWarning
from geosr.models.card import ModelCard
from geosr.pipeline import downscale_raster, untrained_scale_message
from geosr.testing import fbm_surface

OUTSIDE = [8, 1.5]
INSIDE = [2, 2.5, 4]


def warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("Warning:")]


def assert_scale_warning(err: str, scale: float) -> None:
    """Exactly one warning line naming the model, its trained scales, the scale asked for and what to do."""
    lines = warning_lines(err)
    assert len(lines) == 1, err
    line = lines[0]
    assert "model 'tiny1' was trained at scales 2, 3, 4" in line
    assert f"x{scale:g} lies {'above' if scale > 4 else 'below'} them" in line
    assert "worse than plain interpolation" in line
    assert ("`geosr train --scales 2,3,4,8`" if scale > 4 else "set --model to backprojection") in line
    assert "Traceback" not in err and "ScaleWarning" not in err and ".py:" not in err  # no Python warning display


@pytest.mark.parametrize("scale", OUTSIDE)
def test_downscale_outside_the_trained_scales_warns_once_and_writes(cli, dem_tif, model1, tmp_path, scale):
    out = tmp_path / "out.tif"
    result = cli("downscale", dem_tif, "--scale", scale, "--model", model1, "-o", out)
    assert result.code == 0, result.err
    assert_scale_warning(result.err, scale)
    assert result.err_lines[-1].startswith(f"wrote {out}")  # the warning comes before the run's summary
    with rasterio.open(out) as ds:
        assert ds.shape == (round(20 * scale), round(24 * scale))
        assert np.isfinite(ds.read()).all()


def test_a_real_process_prints_the_one_line(cli_subprocess, dem_tif, model1, tmp_path):
    """As a user runs it (outside pytest's capture of warnings): the line, exit code 0, the output."""
    out = tmp_path / "out.tif"
    done = cli_subprocess("downscale", dem_tif, "--scale", 8, "--model", model1, "-o", out, "--quiet")
    assert done.returncode == 0, done.stderr
    assert_scale_warning(done.stderr, 8)
    assert [line for line in done.stderr.splitlines() if line.strip()] == warning_lines(done.stderr)
    assert out.is_file()


@pytest.mark.parametrize("scale", INSIDE)
def test_downscale_within_the_trained_scales_does_not_warn(cli, dem_tif, model1, tmp_path, scale):
    out = tmp_path / "out.tif"
    result = cli("downscale", dem_tif, "--scale", scale, "--model", model1, "-o", out)
    assert result.code == 0, result.err
    assert "Warning" not in result.err
    assert out.is_file()


def test_quiet_keeps_the_warning_and_nothing_else(cli, dem_tif, model1, tmp_path):
    out = tmp_path / "out.tif"
    result = cli("downscale", dem_tif, "--scale", 8, "--model", model1, "-o", out, "--quiet")
    assert result.code == 0 and out.is_file()
    assert_scale_warning(result.err, 8)
    assert len(result.err_lines) == 1 and result.out == ""
    inside = cli("downscale", dem_tif, "--scale", 4, "--model", model1, "-o", tmp_path / "in.tif", "--quiet")
    assert inside.code == 0 and inside.err == "" and inside.out == ""


def test_resolution_outside_the_trained_scales_warns(cli, dem_tif, model1, tmp_path):
    # 30 m pixels to 3.75 m: x8
    result = cli("downscale", dem_tif, "--resolution", 3.75, "--model", model1, "-o", tmp_path / "r.tif")
    assert result.code == 0, result.err
    assert_scale_warning(result.err, 8)
    # 30 m to 7.5 m: x4, within (a scale computed from a resolution is not warned about for a rounding)
    result = cli("downscale", dem_tif, "--resolution", 7.5, "--model", model1, "-o", tmp_path / "r4.tif")
    assert result.code == 0 and "Warning" not in result.err


def test_an_error_stays_one_line_without_the_warning(cli, dem_tif, model1, tmp_path):
    exists = tmp_path / "exists.tif"
    exists.write_bytes(b"keep me")
    result = cli("downscale", dem_tif, "--scale", 8, "--model", model1, "-o", exists)
    assert result.code == 1
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("Error:")
    assert exists.read_bytes() == b"keep me"


@pytest.mark.parametrize(("scale", "warned"), [(8, True), (1.5, True), (2.5, False), (3, False)])
def test_netcdf_variable_warns_outside_the_trained_scales(cli, model1, tmp_path, scale, warned):
    rows, cols = 12, 16
    grid = xr.DataArray(
        fbm_surface((rows, cols), seed=3)[None],
        dims=("time", "lat", "lon"),
        coords={"time": [0], "lat": 60.0 - 0.5 * np.arange(rows), "lon": 0.5 * np.arange(cols)},
        name="tas",
    )
    src, out = tmp_path / "tas.nc", tmp_path / "tas_out.nc"
    grid.to_dataset().to_netcdf(src)
    result = cli("downscale", src, "--variable", "tas", "--scale", scale, "--model", model1, "-o", out)
    assert result.code == 0, result.err
    if warned:
        assert_scale_warning(result.err, scale)
    else:
        assert "Warning" not in result.err
    with xr.open_dataset(out) as fine:
        assert fine.tas.shape == (1, round(rows * scale), round(cols * scale))


@pytest.fixture
def hr_tif(make_geotiff):
    """A 64 x 64 fine raster: large enough for geosr evaluate at x8 (8 pixels per side and scale)."""
    return make_geotiff("hr.tif", fbm_surface((64, 64), seed=6))


def test_evaluate_outside_the_trained_scales_warns_and_still_measures(cli, hr_tif, model1):
    result = cli("evaluate", hr_tif, "--scale", 8, "--model", model1)
    assert result.code == 0, result.err
    assert_scale_warning(result.err, 8)
    assert "model" in result.out and "RMSE" in result.out
    as_json = cli("evaluate", hr_tif, "--scale", 8, "--model", model1, "--json")
    assert as_json.code == 0
    assert_scale_warning(as_json.err, 8)
    assert json.loads(as_json.out)["scale"] == 8  # stdout stays strict JSON: the warning is on stderr


@pytest.mark.parametrize("scale", [2, 4])
def test_evaluate_within_the_trained_scales_does_not_warn(cli, hr_tif, model1, scale):
    result = cli("evaluate", hr_tif, "--scale", scale, "--model", model1)
    assert result.code == 0, result.err
    assert "Warning" not in result.err and "RMSE" in result.out


def test_evaluate_without_a_model_does_not_warn(cli, hr_tif):
    result = cli("evaluate", hr_tif, "--scale", 8, "--no-model")
    assert result.code == 0, result.err
    assert "Warning" not in result.err


def test_python_api_warns_with_a_scale_warning(dem_tif, model1, tmp_path):
    with pytest.warns(ScaleWarning, match=r"model 'tiny1' was trained at scales 2, 3, 4, and x8 lies above"):
        result = downscale_raster(dem_tif, tmp_path / "x8.tif", scale=8, model=model1, device="cpu")
    assert result.path.is_file()
    assert issubclass(ScaleWarning, GeosrWarning) and issubclass(ScaleWarning, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScaleWarning)
        downscale_raster(dem_tif, tmp_path / "x2.5.tif", scale=2.5, model=model1, device="cpu")


def test_message_names_what_to_train_and_spares_backprojection():
    card = ModelCard(name="mine", in_channels=1, scales=[3.0, 4.0])
    message = untrained_scale_message(card, 2)
    assert message is not None and "x2 lies below them" in message and "--scales 2,3,4`" in message
    assert "--scales 3,4,6`" in untrained_scale_message(card, 5.5)
    assert untrained_scale_message(card, 3.5) is None
    assert untrained_scale_message(card, 4 * (1 + 1e-12)) is None  # a resolution's rounding
    assert untrained_scale_message(ModelCard(name="any", in_channels=1, scales=[]), 8) is None
    from geosr.models.registry import list_models

    shipped = list_models()
    assert "x8 lies above" in untrained_scale_message(shipped["dem"], 8)
    assert untrained_scale_message(shipped["backprojection"], 8) is None  # it learns nothing: nothing to warn of


def _scale_warnings(call) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [w for w in caught if issubclass(w.category, ScaleWarning)]


def _grid(slices: int = 3) -> xr.DataArray:
    rows, cols = 12, 16
    return xr.DataArray(
        np.stack([fbm_surface((rows, cols), seed=s) for s in range(slices)]).astype(np.float32),
        dims=("time", "y", "x"),
        coords={"time": np.arange(slices), "y": 60.0 - np.arange(rows), "x": np.arange(cols, dtype=float)},
        name="tas",
    )


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize(("scale", "warned"), [(8, True), (1.5, True), (2, False), (2.5, False), (4, False)])
def test_python_downscale_warns_the_caller_once_outside_the_trained_scales(model1, lazy, scale, warned):
    import dask.array as dsa

    import geosr

    data = fbm_surface((12, 16), seed=1).astype(np.float32)
    data = dsa.from_array(data, chunks=8) if lazy else data
    caught = _scale_warnings(lambda: geosr.downscale(data, scale, model=model1, device="cpu"))
    assert len(caught) == (1 if warned else 0)
    if warned:
        assert "model 'tiny1' was trained at scales 2, 3, 4" in str(caught[0].message)
        assert caught[0].filename == __file__  # the user's line, not geosr's


@pytest.mark.parametrize("lazy", [False, True])
def test_accessor_warns_once_for_all_its_slices_and_names_the_caller(model1, lazy):
    grid = _grid().chunk({"time": 1}) if lazy else _grid()
    caught = _scale_warnings(lambda: grid.geosr.downscale(8, model=model1, device="cpu"))
    assert len(caught) == 1 and caught[0].filename == __file__
    assert "x8 lies above them" in str(caught[0].message)
    assert not _scale_warnings(lambda: grid.geosr.downscale(3, model=model1, device="cpu"))


def test_dataset_accessor_warns_once_per_model(model1, model_consistent):
    ds = _grid().to_dataset()
    ds["pr"] = ds.tas * 2
    ds["orog"] = ds.tas + 1
    one = _scale_warnings(lambda: ds.geosr.downscale(8, model=model1, device="cpu"))
    assert len(one) == 1 and one[0].filename == __file__
    two = _scale_warnings(
        lambda: ds.geosr.downscale(8, model={"tas": model1, "pr": model1, "orog": model_consistent}, device="cpu")
    )
    names = sorted(str(w.message).split("'")[1] for w in two)
    assert len(two) == 2 and names == ["tiny1", "tinyc"], names


def test_dataset_accessor_tells_apart_models_of_one_name_with_other_scales(model1, tmp_path):
    import dataclasses

    from geosr.models.files import load_model, save_model

    loaded = load_model(model1)
    other = tmp_path / "other.safetensors"
    save_model(loaded.network, dataclasses.replace(loaded.card, scales=[3.0, 4.0]), other)  # also named tiny1
    ds = _grid().to_dataset()
    ds["pr"] = ds.tas * 2
    caught = _scale_warnings(lambda: ds.geosr.downscale(8, model={"tas": model1, "pr": other}, device="cpu"))
    said = sorted(str(w.message).split(", and x8")[0] for w in caught)
    assert said == ["model 'tiny1' was trained at scales 2, 3, 4", "model 'tiny1' was trained at scales 3, 4"]


def test_evaluate_array_leaves_the_warning_to_the_command_line(model1):
    from geosr.evaluate import evaluate_array

    fine = fbm_surface((64, 64), seed=6)
    assert not _scale_warnings(lambda: evaluate_array(fine, 8, model1, methods=(), device="cpu"))

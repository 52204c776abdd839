"""bf16 or fp16 on a CPU without instructions for them: PyTorch emulates them, many times more slowly than
fp32 (on a 2-core AVX2 CPU, 17 times per training step and 120 times per tile of the 20-layer VDSR). geosr
says so once per process, in one line on the command line, and the run goes on.

What the CPU has is patched (``geosr.predict._cpu_computes``), so the tests hold on any CPU.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
from conftest import TINY_TRAIN, write_geotiff

import geosr
from geosr import predict
from geosr.errors import GeosrWarning, PrecisionWarning
from geosr.testing import fbm_surface

TINY = [*TINY_TRAIN, "--scales", "2", "--epochs", "1"]


@pytest.fixture
def emulated(monkeypatch):
    """A CPU with no bf16 or fp16 instructions (as an AVX2 one), and nothing warned about yet in this process."""
    monkeypatch.setattr(predict, "_cpu_computes", lambda precision: precision == "fp32")
    monkeypatch.setattr(predict, "_EMULATED_WARNED", set())


def precision_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("Warning:") and "emulates" in line]


def recorded(calls) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calls()
    return [w for w in caught if issubclass(w.category, PrecisionWarning)]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_the_message_names_the_precision_the_reason_and_the_fix(emulated, precision):
    message = predict.emulated_precision_message(torch.device("cpu"), precision)
    assert message is not None
    assert f"no {precision} instructions" in message and f"emulates {precision}" in message
    assert "slowly than fp32" in message and "--precision fp32" in message
    assert issubclass(PrecisionWarning, GeosrWarning)


def test_fp32_and_other_devices_are_not_warned_about(emulated):
    assert predict.emulated_precision_message(torch.device("cpu"), "fp32") is None
    assert predict.emulated_precision_message(torch.device("cuda"), "bf16") is None
    assert predict.emulated_precision_message(torch.device("mps"), "fp16") is None


def test_a_cpu_with_the_instructions_is_not_warned_about(monkeypatch):
    monkeypatch.setattr(predict, "_cpu_computes", lambda precision: True)
    assert predict.emulated_precision_message(torch.device("cpu"), "bf16") is None


def test_downscale_on_the_command_line_warns_once_and_writes(cli, emulated, dem_tif, model1, tmp_path):
    out = tmp_path / "out.tif"
    # tiles of 16 output pixels: several tiles, one warning
    args = ["downscale", dem_tif, "--scale", 2, "--model", model1, "--precision", "bf16", "--tile-size", 16]
    result = cli(*args, "-o", out)
    assert result.code == 0, result.err
    assert len(precision_lines(result.err)) == 1, result.err
    assert "Traceback" not in result.err and "PrecisionWarning" not in result.err and ".py:" not in result.err
    with rasterio.open(out) as ds:
        assert ds.shape == (40, 48) and np.isfinite(ds.read()).all()
    fp32 = cli("downscale", dem_tif, "--scale", 2, "--model", model1, "-o", tmp_path / "fp32.tif")
    assert fp32.code == 0 and "Warning" not in fp32.err


def test_downscale_with_fp32_does_not_warn(cli, emulated, dem_tif, model1, tmp_path):
    result = cli("downscale", dem_tif, "--scale", 2, "--model", model1, "-o", tmp_path / "o.tif", "--quiet")
    assert result.code == 0 and result.err == ""


def test_python_warns_once_per_process(emulated, dem, model1):
    first = recorded(lambda: geosr.downscale(dem, 2, model=model1, precision="bf16", tile_size=16))
    assert len(first) == 1 and "--precision fp32" in str(first[0].message)
    again = recorded(lambda: geosr.downscale(dem, 2, model=model1, precision="bf16"))
    assert again == []
    # the other emulated precision is another warning, once too
    assert len(recorded(lambda: geosr.downscale(dem, 2, model=model1, precision="fp16"))) == 1


def test_a_lazy_grid_warns_once_when_its_tiles_run(emulated, model1):
    rows, cols = 12, 16
    grid = xr.DataArray(
        np.stack([fbm_surface((rows, cols), seed=s) for s in range(3)]),
        dims=("time", "lat", "lon"),
        coords={"time": [0, 1, 2], "lat": 60.0 - 0.5 * np.arange(rows), "lon": 0.5 * np.arange(cols)},
    ).chunk({"time": 1, "lat": 6, "lon": 8})
    caught = recorded(lambda: grid.geosr.downscale(2, model=model1, precision="bf16").compute(scheduler="threads"))
    assert len(caught) == 1


def test_train_on_the_command_line_warns_once_and_trains(cli, emulated, tmp_path):
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 48), seed=3, relief=50.0), units=["m"])
    model = tmp_path / "m.safetensors"
    result = cli("train", hr, "-o", model, "--precision", "bf16", *TINY)
    assert result.code == 0, result.err
    assert len(precision_lines(result.err)) == 1, result.err
    assert model.is_file()
    plain = cli("train", hr, "-o", tmp_path / "p.safetensors", *TINY)
    assert plain.code == 0 and plain.err == ""

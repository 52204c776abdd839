"""Multiband workflows: a multiband model on rasters and DataArrays with a band dimension (and others
such as time), its bands in the order it was trained on, and --bands for evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import DEPTH, WIDTH, assert_one_line_error, data_tolerance, write_geotiff
from geosr_processing.runner import for_qgis

import geosr
from geosr.errors import InputError, ModelError
from geosr.testing import fbm_surface

NAMES = ["elevation", "temperature", "ndvi"]


@pytest.fixture(scope="module")
def named3(tmp_path_factory):
    """A random 3-channel model whose card names its bands (as `geosr train` records the descriptions)."""
    import torch

    from geosr.models.card import ModelCard
    from geosr.models.files import save_model
    from geosr.models.vdsr import VDSR

    torch.manual_seed(3)
    network = VDSR(3, depth=DEPTH, width=WIDTH)
    with torch.no_grad():
        network.body[-1].weight.mul_(10.0)
    card = ModelCard(name="named3", in_channels=3, depth=DEPTH, width=WIDTH, bands=NAMES, units=["m", "degC", ""])
    return save_model(network, card, tmp_path_factory.mktemp("named") / "named3.safetensors")


def three_bands(shape=(12, 15)):
    return np.stack(
        [
            fbm_surface(shape, seed=2),
            fbm_surface(shape, seed=3, relief=5.0, base=-2.0),
            fbm_surface(shape, seed=4, relief=1.0, base=0.0),
        ]
    )


def grid(data, dims):
    coords = {"y": np.arange(data.shape[-2]) * -30.0, "x": np.arange(data.shape[-1]) * 30.0}
    return xr.DataArray(data, dims=dims, coords=coords)


# --- the accessor: a multiband model with other dimensions ---------------------------------------


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize("dims", [("time", "band", "y", "x"), ("band", "time", "y", "x")])
def test_accessor_multiband_model_takes_the_band_dimension_per_time_step(model3, kind, dims):
    bands = three_bands()
    steps = np.stack([bands, 2 * bands + 100.0])  # (time, band, y, x)
    da = grid(steps, ("time", "band", "y", "x")).transpose(*dims)
    if kind == "dask":
        da = da.chunk({"time": 1, "band": 1, "y": 6, "x": 8})
    out = da.geosr.downscale(2, model=str(model3), device="cpu")
    assert out.dims == dims and out.sizes["time"] == 2 and out.sizes["band"] == 3
    for t in range(2):
        expected = geosr.downscale(steps[t], 2, str(model3), device="cpu")
        got = out.isel(time=t).transpose("band", "y", "x").values
        np.testing.assert_allclose(got, expected, rtol=0, atol=data_tolerance(steps[t]))


def test_accessor_multiband_model_does_not_take_time_steps_for_bands(model3):
    steps = grid(np.stack([fbm_surface((12, 15), seed=s) for s in range(3)]), ("time", "y", "x"))
    with pytest.raises(InputError, match="no 'band' dimension.*band_dim="):
        steps.geosr.downscale(2, model=str(model3), device="cpu")
    members = steps.rename(time="member")
    out = members.geosr.downscale(2, model=str(model3), device="cpu", band_dim="member")
    expected = geosr.downscale(members.values, 2, str(model3), device="cpu")
    np.testing.assert_allclose(out.values, expected, rtol=0, atol=data_tolerance(members.values))
    with pytest.raises(InputError, match="band_dim='band' is not a dimension"):
        steps.geosr.downscale(2, model=str(model3), device="cpu", band_dim="band")


def test_accessor_band_dimension_of_another_size_is_refused(model3, model1):
    da = grid(np.stack([three_bands()] * 2)[:, :2], ("time", "band", "y", "x"))
    with pytest.raises(ModelError, match="takes 3 bands but dimension 'band' has 2"):
        da.geosr.downscale(2, model=str(model3), device="cpu")
    # a 1-band model takes each slice on its own: band_dim is not needed
    assert da.geosr.downscale(2, model=str(model1), device="cpu", band_dim="nothing").shape == (2, 2, 24, 30)


def test_accessor_zero_size_dimension_is_refused(model1):
    da = grid(np.zeros((0, 8, 8), np.float32), ("time", "y", "x"))
    with pytest.raises(InputError, match="zero size"):
        da.geosr.downscale(2, model=str(model1), device="cpu")


# --- the command line: the bands in the order the model takes them -------------------------------


@pytest.fixture
def described(tmp_path):
    """A 4-band GeoTIFF: an extra band, then the model's three bands by description."""
    bands = three_bands((20, 24))
    data = np.concatenate([bands[2:3] * 3, bands])
    return write_geotiff(tmp_path / "four.tif", data, descriptions=["extra", *NAMES], units=["", "m", "degC", ""])


@pytest.mark.parametrize("order", [None, "4,3,2", "3,2,4", "2,3"])
def test_downscale_refuses_bands_in_another_order_than_the_model_takes(cli, tmp_path, described, named3, order):
    out = tmp_path / "out.tif"
    args = ["downscale", described, "--scale", 2, "--model", named3, "--device", "cpu", "-q", "-o", out]
    result = cli(*args, *([] if order is None else ["--bands", order]))
    line = assert_one_line_error(result.err, result.code, "elevation, temperature, ndvi", "--bands 2,3,4")
    assert "Traceback" not in line and not out.exists()
    assert cli(*args, "--bands", "2,3,4").code == 0
    with rasterio.open(out) as dst:
        assert dst.descriptions == tuple(NAMES)


def test_downscale_does_not_judge_bands_without_the_models_names(cli, tmp_path, named3):
    plain = write_geotiff(tmp_path / "plain.tif", three_bands((20, 24)), descriptions=["b", "a", "c"])
    result = cli("downscale", plain, "--scale", 2, "--model", named3, "--device", "cpu", "-q", "--bands", "3,2,1")
    assert result.code == 0, result.err


def test_qgis_message_names_the_bands_parameter():
    message = "model 'm' takes the bands a, b in that order, but it was given bands 2 (b), 1 (a) of 'x.tif'; "
    message += "pass --bands 1,2"
    assert for_qgis(message).endswith("of 'x.tif'; set the Bands (BANDS) to 1;2")


# --- evaluate --bands ----------------------------------------------------------------------------


def test_evaluate_bands_picks_the_models_bands_and_reports_raster_numbers(cli, tmp_path, named3):
    bands = three_bands((32, 32))
    four = write_geotiff(tmp_path / "four.tif", np.concatenate([bands[2:3] * 3, bands]), descriptions=["extra", *NAMES])
    args = ["evaluate", four, "--scale", 2, "--model", named3, "--device", "cpu"]
    result = cli(*args, "--bands", "2,3,4", "--json")
    assert result.code == 0, result.err
    assert list(json.loads(result.out)["bands"]) == ["band 2", "band 3", "band 4"]
    wrong = cli(*args, "--bands", "4,3,2")
    assert_one_line_error(wrong.err, wrong.code, "--bands 2,3,4")
    every = cli(*args)
    assert_one_line_error(every.err, every.code, "--bands 2,3,4")
    classical = cli("evaluate", four, "--scale", 2, "--no-model", "--bands", "4,1", "--json")
    assert list(json.loads(classical.out)["bands"]) == ["band 4", "band 1"]
    bad = cli("evaluate", four, "--scale", 2, "--no-model", "--bands", "5")
    assert_one_line_error(bad.err, bad.code, "no band 5")


# --- train: one quantity per channel across rasters ----------------------------------------------


def test_train_refuses_rasters_with_their_bands_in_another_order(cli, tmp_path):
    bands = np.stack([fbm_surface((64, 64), seed=s, relief=100.0 * (s + 1)) for s in range(2)])
    first = write_geotiff(tmp_path / "a.tif", bands, descriptions=["elevation", "temperature"])
    swapped = write_geotiff(tmp_path / "b.tif", bands[::-1], descriptions=["temperature", "elevation"])
    model = tmp_path / "m.safetensors"
    args = ["train", first, swapped, "-o", model, "--scales", "2", "--epochs", "1", "--steps-per-epoch", "1"]
    args += ["--batch-size", "2", "--patch-size", "16", "--depth", "3", "--width", "4", "--device", "cpu", "-q"]
    result = cli(*args)
    assert_one_line_error(result.err, result.code, "'elevation'", "'temperature'", "b.tif")
    assert not model.exists()


def test_train_refuses_fine_tuning_a_model_on_its_bands_in_another_order(cli, tmp_path, named3):
    # --init named3 (elevation, temperature, ndvi) from a raster that gives them as ndvi, temperature, elevation
    data = np.stack([fbm_surface((64, 64), seed=s, relief=100.0 * (s + 1)) for s in range(3)])
    swapped = write_geotiff(tmp_path / "swapped.tif", data, descriptions=NAMES[::-1])
    common = ["--scales", "2", "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--patch-size", "16"]
    common += ["--depth", str(DEPTH), "--width", str(WIDTH), "--device", "cpu", "-q", "--init", named3]
    model = tmp_path / "m.safetensors"
    result = cli("train", swapped, "-o", model, *common)
    assert_one_line_error(result.err, result.code, "named3", "elevation, temperature, ndvi", "--bands")
    assert not model.exists()
    # picked in the model's order, it fine-tunes
    assert cli("train", swapped, "-o", model, "--bands", "3,2,1", *common).code == 0

"""The Python API where the command line never goes: found by an audit of a data scientist's use (2026-12-08)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import xarray as xr

import geosr
from geosr.errors import DeviceError, InputError, ModelError, ScaleError
from geosr.evaluate import evaluate_array
from geosr.models.files import load_model
from geosr.testing import fbm_surface


def _grid(times: int = 2) -> xr.DataArray:
    values = np.stack([fbm_surface((20, 24), seed=s) * 100 for s in range(times)])
    return xr.DataArray(
        values, dims=("time", "y", "x"), coords={"y": np.arange(20.0)[::-1], "x": np.arange(24.0)}, name="v"
    )


@pytest.mark.parametrize("kind", ["dataarray", "dask dataarray", "dataset"])
def test_an_xarray_object_given_to_geosr_downscale_is_sent_to_the_accessor(kind):
    # it went through as an array: dims in stored order (y, x, time: y taken as the bands), coordinates dropped
    da = _grid().transpose("y", "x", "time")
    data = {"dataarray": da, "dask dataarray": da.chunk({"time": 1}), "dataset": da.to_dataset()}[kind]
    accessor = "ds.geosr.downscale" if kind == "dataset" else "da.geosr.downscale"
    with pytest.raises(InputError, match=f"xarray .*; use its accessor, {accessor}"):
        geosr.downscale(data, 2, "backprojection")


def test_a_torch_tensor_is_refused_in_one_line():
    with pytest.raises(InputError, match=r"torch tensor; pass tensor.cpu\(\).numpy\(\)"):
        geosr.downscale(torch.zeros(8, 8), 2, "backprojection")


def test_every_nodata_value_given_to_the_accessor_is_missing():
    values = fbm_surface((12, 12), seed=3) * 10 + 100
    values[2, 2], values[7, 7] = -9999, -8888
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": -np.arange(12.0), "x": np.arange(12.0)})
    out = da.geosr.downscale(2, model="backprojection", nodata=[-9999, -8888]).values
    assert np.isnan(out[4:6, 4:6]).all() and np.isnan(out[14:16, 14:16]).all()
    assert np.nanmin(out) > 50  # no -8888 smeared into its neighbours


@pytest.mark.parametrize("dtype", ["float64", "float32", "int16"])
def test_a_lazy_result_pickles_and_computes_the_same(dtype):
    lazy = _grid().astype(dtype).chunk({"time": 1}).geosr.downscale(2, model="backprojection")
    again = pickle.loads(pickle.dumps(lazy))
    np.testing.assert_array_equal(again.values, lazy.values)


def test_a_tile_size_given_as_a_list_runs_lazily_as_eagerly():
    da = _grid()
    eager = da.geosr.downscale(2, model="backprojection", tile_size=[8, 12])
    lazy = da.chunk({"time": 1}).geosr.downscale(2, model="backprojection", tile_size=[8, 12])
    np.testing.assert_allclose(lazy.values, eager.values, atol=1e-5)


@pytest.mark.parametrize(
    ("option", "error", "message"),
    [
        ({"device": "tpu"}, DeviceError, "unknown device 'tpu'"),
        ({"batch_size": 0}, InputError, "batch size must be a whole number of at least 1, got 0"),
        ({"batch_size": 1.5}, InputError, "batch size must be a whole number of at least 1, got 1.5"),
    ],
)
def test_a_lazy_run_refuses_bad_options_when_called_not_at_compute_time(option, error, message):
    lazy = _grid().chunk({"time": 1})
    with pytest.raises(error, match=message):
        lazy.geosr.downscale(2, model="backprojection", **option)
    with pytest.raises(error, match=message):
        geosr.downscale(lazy.data, 2, "backprojection", **option)


def test_a_callers_loaded_model_is_left_as_it_was():
    loaded = load_model("dem", "cpu")

    def weight() -> torch.Tensor:  # a layer of 64 inputs: its channels_last layout differs from the default
        return [p for p in loaded.network.parameters() if p.ndim == 4 and p.shape[1] > 1][0]

    before = weight().detach().clone()
    assert weight().is_contiguous()
    geosr.downscale(fbm_surface((16, 16), seed=0) * 100, 2, loaded)
    assert weight().is_contiguous()  # not converted to channels_last (nor moved to another device) in place
    assert torch.equal(weight(), before)


def test_a_callers_model_is_copied_once_per_device_and_again_once_its_weights_change():
    from geosr.predict import Downscaler

    loaded = load_model("dem", "cpu")
    first, second = Downscaler(loaded, device="cpu"), Downscaler(loaded, device="cpu")
    assert first.network is second.network and first.network is not loaded.network  # not one copy per call
    values = fbm_surface((16, 16), seed=1) * 100
    before = geosr.downscale(values, 2, loaded, calibrate=False, conserve=False)
    with torch.no_grad():  # a model still training: its weights change in place
        list(loaded.network.parameters())[-1].add_(0.5)
    assert Downscaler(loaded, device="cpu").network is not first.network
    assert not np.allclose(geosr.downscale(values, 2, loaded, calibrate=False, conserve=False), before)


def test_a_network_is_not_taken_for_a_model_name():
    with pytest.raises(ModelError, match="model must be a shipped model's name, a model file's path or a loaded"):
        geosr.downscale(np.zeros((8, 8)), 2, torch.nn.Conv2d(1, 1, 3))


def test_a_torch_device_is_a_device():
    values = fbm_surface((12, 12), seed=1) * 100
    out = geosr.downscale(values, 2, "backprojection", device=torch.device("cpu"))
    np.testing.assert_array_equal(out, geosr.downscale(values, 2, "backprojection", device="cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_without_it_is_one_line_naming_the_device_asked_for():
    with pytest.raises(DeviceError, match="device 'cuda' was asked for but no CUDA GPU is available"):
        load_model("dem", "cuda")
    assert load_model("dem", "CPU").network is not None and load_model("dem", "auto").network is not None
    with pytest.raises(DeviceError, match=r"device 'cuda:1' was asked for .* \(device='cpu' in Python\)"):
        geosr.downscale(np.zeros((8, 8)), 2, "backprojection", device="cuda:1")


def test_whole_scale_messages_name_the_python_keyword():
    values = fbm_surface((12, 12), seed=2)
    with pytest.raises(InputError, match=r"drop --calibrate \(calibrate=True in Python\)"):
        geosr.downscale(values, 2.5, "dem", calibrate=True)
    with pytest.raises(ScaleError, match=r"drop --conserve \(conserve=True in Python\)"):
        geosr.downscale(values, 2.5, "dem", conserve=True)


def test_the_lazily_loaded_functions_are_listed():
    assert {"downscale", "downscale_raster"} <= set(dir(geosr))


def test_evaluate_array_refuses_a_band_axis_and_a_fractional_scale_in_one_line():
    fine = fbm_surface((64, 64), seed=0) * 100
    with pytest.raises(InputError, match=r"evaluate_array takes a \(y, x\) raster, got 3 dimensions .*evaluate_bands"):
        evaluate_array(fine[None], 4)
    with pytest.raises(InputError, match="evaluation needs a whole scale of at least 2 .* got 2.5"):
        evaluate_array(fine, 2.5)
    assert evaluate_array(fine, 2.0)["bicubic"].rmse == evaluate_array(fine, 2)["bicubic"].rmse

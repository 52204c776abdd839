"""``geosr evaluate`` on rasters with nodata: a coarse cell with any missing pixel is missing, every
method is measured on the same pixels (the interior pixels of the cells without nodata), the classical
methods renormalise their weights over the valid cells (as GDAL's resamplers do), back-projection
matches the valid cells' averages, and the model runs with its own nodata handling. It refused such
rasters ("crop it first")."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from conftest import REPO, write_geotiff

import geosr
from geosr.degrade import area_average
from geosr.evaluate import classical, evaluate_array, interpolate, measure, ssim, valid_interior
from geosr.testing import fbm_surface
from geosr.tiling import cubic_kernel
from geosr.training.sources import JACKSBORO_TEST


def holed(shape: tuple[int, int], seed: int = 7, relief: float = 300.0) -> np.ndarray:
    """A surface with a disc void and a missing corner."""
    data = fbm_surface(shape, seed=seed, relief=relief).astype(np.float64)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    data[(yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2 < (min(shape) / 5) ** 2] = np.nan
    data[:5, -7:] = np.nan
    return data


def bicubic_by_taps(coarse: np.ndarray, scale: int, i: int, j: int) -> float:
    """One fine pixel of a bicubic interpolation renormalised over the valid cells, from the kernel's taps."""
    h, w = coarse.shape
    u, v = (i + 0.5) / scale - 0.5, (j + 0.5) / scale - 0.5
    total = weight = 0.0
    for k in range(int(np.floor(u)) - 1, int(np.floor(u)) + 3):
        for m in range(int(np.floor(v)) - 1, int(np.floor(v)) + 3):
            value = coarse[min(max(k, 0), h - 1), min(max(m, 0), w - 1)]  # edges replicated
            if np.isfinite(value):
                wk = float(cubic_kernel(np.array(u - k))) * float(cubic_kernel(np.array(v - m)))
                total, weight = total + wk * value, weight + wk
    return total / weight


def test_classical_methods_renormalise_over_the_valid_cells_and_blank_the_missing_ones():
    data = holed((48, 60))
    coarse = area_average(data, 3)
    missing = np.repeat(np.repeat(np.isnan(coarse), 3, axis=0), 3, axis=1)
    assert missing.any() and not missing.all()
    for method in ("nearest", "bilinear", "bicubic", "cubic_spline", "lanczos", "backprojection"):
        out = classical(coarse, 3, method)
        assert np.array_equal(np.isnan(out), missing), method
    out = classical(coarse, 3, "bicubic")
    rng = np.random.default_rng(0)
    for i, j in zip(*np.nonzero(~missing), strict=True):
        if rng.random() < 0.05:
            assert out[i, j] == pytest.approx(bicubic_by_taps(coarse, 3, i, j), rel=1e-9, abs=1e-9)


def test_back_projection_matches_the_averages_of_the_valid_cells():
    data = holed((48, 60))
    coarse = area_average(data, 4)
    fine = classical(coarse, 4, "backprojection")
    back = area_average(fine, 4)
    valid = np.isfinite(coarse)
    assert np.array_equal(np.isfinite(back), valid)
    assert np.abs(back - coarse)[valid].max() < 1e-4 * np.nanmax(np.abs(coarse))


def test_a_complete_raster_is_measured_as_before():
    coarse = np.random.default_rng(1).normal(size=(10, 12))
    for method in ("bilinear", "bicubic", "lanczos"):
        assert np.array_equal(classical(coarse, 2, method), interpolate(coarse, (20, 24), method))


def test_metrics_use_the_same_valid_pixels_for_every_method():
    data = holed((48, 60))
    results = evaluate_array(data, 2, methods=("bicubic", "lanczos", "backprojection"))
    mask = valid_interior(data, 2)
    coarse = area_average(data, 2)
    for method, metrics in results.items():
        err = (classical(coarse, 2, method) - data)[mask]
        assert metrics.rmse == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-12)
        assert metrics.mae == pytest.approx(np.mean(np.abs(err)), rel=1e-12)
        assert metrics.max_error == pytest.approx(np.abs(err).max(), rel=1e-12)
        data_range = np.ptp(data[mask])  # over the measured pixels, as the errors
        assert metrics.psnr == pytest.approx(20 * np.log10(data_range / metrics.rmse))
    # the errors never read the pixels of the missing cells, whatever they hold
    again = measure(classical(coarse, 2, "bicubic"), np.where(np.isnan(data), -5.0, data), coarse, 2)
    assert (again.rmse, again.mae, again.max_error) == tuple(
        getattr(results["bicubic"], k) for k in ("rmse", "mae", "max_error")
    )


def test_ssim_over_a_mask_ignores_what_the_masked_pixels_hold():
    rng = np.random.default_rng(2)
    a = fbm_surface((40, 40), seed=3)
    b = a + rng.normal(scale=0.05, size=a.shape)
    valid = np.ones(a.shape, dtype=bool)
    valid[10:25, 5:20] = False
    first = ssim(np.where(valid, a, 0.0), np.where(valid, b, 7.0), 1.0, valid)
    second = ssim(np.where(valid, a, -3.0), np.where(valid, b, 99.0), 1.0, valid)
    assert first == pytest.approx(second, rel=1e-12)
    assert ssim(np.where(valid, a, 5.0), np.where(valid, a, -5.0), 1.0, valid) == pytest.approx(1.0, abs=1e-9)
    assert ssim(a, b, 1.0, np.zeros(a.shape, dtype=bool)) is None


def test_the_model_beats_renormalised_back_projection_on_the_held_out_dem_with_a_void():
    with rasterio.open(REPO / "examples" / "jacksboro_fault_dem.tif") as src:
        truth = src.read(1).astype(np.float64)[:, JACKSBORO_TEST]
    yy, xx = np.mgrid[: truth.shape[0], : truth.shape[1]]
    data = np.where((yy - 150) ** 2 + (xx - 70) ** 2 < 40**2, np.nan, truth)
    results = evaluate_array(data, 2, "dem", methods=("bicubic", "lanczos", "backprojection"), device="cpu")
    # 3.76 m against 3.93 (Lanczos 4.43, bicubic 5.16); measured on the same pixels
    assert results["model_conserved"].rmse < 0.98 * results["backprojection"].rmse
    assert results["backprojection"].consistency_rmse < 1e-4  # on the valid cells
    assert results["model_conserved"].consistency_rmse < 1e-3


def test_cli_evaluates_a_raster_with_nodata_and_says_on_how_many_pixels(tmp_path, model1, cli):
    data = holed((40, 44)).astype(np.float32)
    path = write_geotiff(tmp_path / "hr.tif", np.where(np.isnan(data), np.float32(-9999), data), nodata=-9999)
    result = cli("evaluate", path, "--scale", 2, "--model", model1, "--json", "--device", "cpu")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    band = report["bands"]["band 1"]
    mask = valid_interior(data.astype(np.float64), 2)
    assert band["measured_pixels"] == int(mask.sum()) < report["interior_pixels"] == 32 * 36
    coarse = area_average(data.astype(np.float64), 2)
    estimate = geosr.downscale(coarse, 2, str(model1), device="cpu", conserve=False)
    expected = np.sqrt(np.mean((estimate.astype(np.float64) - data)[mask] ** 2))
    assert band["methods"]["model"]["rmse"] == pytest.approx(expected, rel=1e-5)
    text = cli("evaluate", path, "--scale", 2, "--model", model1, "--device", "cpu")
    assert text.code == 0 and f"measured on the {int(mask.sum())} of {32 * 36} interior pixels" in text.out


def test_cli_refuses_a_raster_with_no_complete_cell_inside_the_border(tmp_path, cli):
    data = fbm_surface((40, 40), seed=7)
    data[::2, ::2] = -9999  # every 2 x 2 cell misses a pixel
    path = write_geotiff(tmp_path / "hr.tif", data, nodata=-9999)
    result = cli("evaluate", path, "--scale", 2, "--no-model")
    assert result.code == 1 and result.out == ""
    assert len(result.err.strip().splitlines()) == 1
    assert "band 1" in result.err and "no 2 x 2 cell without nodata" in result.err and "--scale" in result.err


def test_nodata_only_in_the_cropped_border_leaves_psnr_and_ssim_defined(tmp_path, cli):
    # the interior was complete, so the data range was taken over the whole truth, NaN included: PSNR and
    # SSIM came out undefined and the band was called constant
    data = fbm_surface((40, 40), seed=7, relief=100.0)
    data[0, 0] = -9999
    path = write_geotiff(tmp_path / "hr.tif", data, nodata=-9999)
    result = cli("evaluate", path, "--scale", 2, "--no-model", "--json")
    assert result.code == 0, result.err
    band = json.loads(result.out)["bands"]["band 1"]
    assert band["constant"] is False and band["measured_pixels"] == 32 * 32
    truth = np.where(data == -9999, np.nan, data).astype(np.float64)
    coarse = area_average(truth, 2)
    nearest = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)
    rmse = np.sqrt(np.mean((nearest - truth)[4:-4, 4:-4] ** 2))
    data_range = np.ptp(truth[4:-4, 4:-4])  # over the measured pixels, as the errors
    assert band["methods"]["nearest"]["psnr"] == pytest.approx(20 * np.log10(data_range / rmse), rel=1e-5)
    assert 0 < band["methods"]["nearest"]["ssim"] < 1


def test_a_band_without_any_data_is_named_with_the_bands_that_have_some(tmp_path, cli):
    data = np.stack([fbm_surface((40, 40), seed=7), np.full((40, 40), -9999.0)])
    path = write_geotiff(tmp_path / "hr.tif", data, nodata=-9999)
    result = cli("evaluate", path, "--scale", 2, "--no-model")
    assert result.code == 1 and len(result.err.strip().splitlines()) == 1
    assert "band 2" in result.err and "no data at all" in result.err and "--bands 1" in result.err
    assert cli("evaluate", path, "--scale", 2, "--no-model", "--bands", 1).code == 0

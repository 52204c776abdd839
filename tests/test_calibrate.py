"""Self-calibration (geosr.calibrate): one residual gain per band, estimated from the input's own
coarser copy, applied the same way by every front door and to every tile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from geosr.calibrate import MIN_CELLS, estimation_scale, residual_gains, window
from geosr.degrade import area_average
from geosr.errors import ModelError
from geosr.models.files import load_model, save_model
from geosr.predict import Downscaler, downscale
from geosr.testing import fbm_surface


@pytest.fixture
def calibrating(model_calibrating: Path) -> Path:
    return model_calibrating


def _smooth(shape: tuple[int, int], wavelength: float = 40.0) -> np.ndarray:
    """A band-limited field: nothing finer than the grid resolves, so any added detail is wrong."""
    y, x = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    return 100.0 + 10.0 * np.sin(2 * np.pi * x / wavelength) * np.cos(2 * np.pi * y / (1.3 * wavelength))


def _rmse(a: np.ndarray, b: np.ndarray, border: int) -> float:
    return float(np.sqrt(np.mean((a - b)[border:-border, border:-border] ** 2)))


def _without_residual(path: Path, out: Path) -> Path:
    """The same model with its last layer zeroed: its output is its interpolation (conserved)."""
    loaded = load_model(path)
    with torch.no_grad():
        loaded.network.body[-1].weight.zero_()
        loaded.network.body[-1].bias.zero_()
    return save_model(loaded.network, loaded.card, out)


def test_gain_is_the_least_squares_scale_of_the_detail_on_the_coarser_copy(calibrating, tmp_path):
    coarse = fbm_surface((40, 44), seed=3).astype(np.float64)
    scale = 2
    # independent computation: average once more, restore with and without the residual, fit the scale
    coarser = area_average(coarse, scale)
    full = downscale(coarser, scale, calibrating, device="cpu", calibrate=False).astype(np.float64)
    base = downscale(coarser, scale, _without_residual(calibrating, tmp_path / "zero.safetensors"), device="cpu")
    inner = (slice(2 * scale, -2 * scale),) * 2
    error, detail = (coarse - base)[inner], (full - base)[inner]
    expected = float(np.clip((error * detail).sum() / (detail * detail).sum(), 0, 1))
    gains = residual_gains(Downscaler(calibrating, device="cpu"), coarse[None], scale)
    assert gains.shape == (1,)
    np.testing.assert_allclose(gains[0], expected, atol=1e-4)


def test_invented_detail_is_withdrawn_on_a_band_limited_field(calibrating):
    truth = _smooth((96, 96))
    coarse = area_average(truth, 2)
    plain = downscale(coarse, 2, calibrating, device="cpu", calibrate=False)
    calibrated = downscale(coarse, 2, calibrating, device="cpu")  # the card calibrates
    gain = residual_gains(Downscaler(calibrating, device="cpu"), coarse[None], 2)[0]
    assert 0.0 <= gain < 0.5
    assert _rmse(calibrated, truth, 4) < 0.7 * _rmse(plain, truth, 4)


def test_gain_zero_gives_the_interpolation_and_one_the_model(calibrating, tmp_path):
    coarse = fbm_surface((20, 22), seed=5).astype(np.float64)[None]
    downscaler = Downscaler(calibrating, device="cpu")
    plan = downscaler.plan(coarse.shape[1:], 3)
    from geosr.stats import BandStats

    def run(gains: np.ndarray | None, d: Downscaler = downscaler) -> np.ndarray:
        out = np.empty((1, *plan.out_shape))
        tiles = ((t, coarse[:, t.rows.source.as_slice(), t.cols.source.as_slice()]) for t in plan)
        for tile, core in d.run(plan, BandStats.of_block(coarse), tiles, gains):
            out[:, tile.rows.core.as_slice(), tile.cols.core.as_slice()] = core
        return out

    zero = Downscaler(_without_residual(calibrating, tmp_path / "zero.safetensors"), device="cpu")
    np.testing.assert_allclose(run(np.zeros(1)), run(None, zero), atol=1e-9)
    np.testing.assert_array_equal(run(np.ones(1)), run(None))
    half = run(np.full(1, 0.5))
    np.testing.assert_allclose(half, (run(np.zeros(1)) + run(None)) / 2, atol=1e-6)


def test_calibrated_tiles_stitch_without_seams_and_dask_matches(calibrating):
    import dask.array as dsa

    coarse = fbm_surface((37, 41), seed=6)
    whole = downscale(coarse, 2, calibrating, device="cpu", tile_size=512)
    tiled = downscale(coarse, 2, calibrating, device="cpu", tile_size=24)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    lazy = downscale(dsa.from_array(coarse, chunks=(15, 17)), 2, calibrating, device="cpu", tile_size=24)
    np.testing.assert_allclose(lazy.compute(), tiled, atol=1e-5)
    assert np.abs(whole - downscale(coarse, 2, calibrating, device="cpu", calibrate=False)).max() > 1e-3


def test_calibration_keeps_the_pipeline_equivariant(calibrating):
    coarse = fbm_surface((30, 30), seed=7).astype(np.float64)
    out = downscale(coarse, 2, calibrating, device="cpu").astype(np.float64)
    moved = downscale(3.0 * coarse - 250.0, 2, calibrating, device="cpu").astype(np.float64)
    np.testing.assert_allclose(moved, 3.0 * out - 250.0, atol=2e-3)


def test_each_band_gets_its_own_gain_and_small_rasters_none(calibrating):
    coarse = np.stack([area_average(_smooth((80, 80)), 2), fbm_surface((40, 40), seed=8).astype(np.float64)])
    gains = residual_gains(Downscaler(calibrating, device="cpu"), coarse, 2)
    assert gains[0] < 0.5 and gains[0] != gains[1]
    tiny = fbm_surface((2 * MIN_CELLS - 1, 30), seed=9).astype(np.float64)[None]
    np.testing.assert_array_equal(residual_gains(Downscaler(calibrating, device="cpu"), tiny, 2), [1.0])
    # fractional scales have no cells to average: no calibration
    np.testing.assert_array_equal(
        downscale(coarse, 2.5, calibrating, device="cpu"),
        downscale(coarse, 2.5, calibrating, device="cpu", calibrate=False),
    )


def test_a_grid_too_small_at_its_scale_is_estimated_at_a_smaller_one(calibrating):
    # 20 x 40 at x4 averages to 5 x 10 cells, too few: the largest smaller scale with 6 a side is 3
    band = area_average(_smooth((80, 160), wavelength=30.0), 4)
    assert band.shape == (20, 40) and estimation_scale(band.shape, 4) == 3
    downscaler = Downscaler(calibrating, device="cpu")
    at_4, at_3 = residual_gains(downscaler, band[None], 4), residual_gains(downscaler, band[None], 3)
    assert at_4[0] == at_3[0] < 0.5  # the invented detail is withdrawn, as it is at x3
    calibrated = downscale(band, 4, calibrating, device="cpu")
    plain = downscale(band, 4, calibrating, device="cpu", calibrate=False)
    assert not np.array_equal(calibrated, plain)
    assert estimation_scale((12, 40), 4) == 2 and estimation_scale((12, 40), 2) == 2
    assert estimation_scale((11, 40), 4) is None  # no scale has 6 cells a side: no estimate, gain 1
    np.testing.assert_array_equal(residual_gains(downscaler, band[None, :11], 4), [1.0])
    assert estimation_scale((24, 40), 4) == 4  # enough at the run's scale: nothing changes


def test_window_is_central_whole_cells_and_bounded():
    rows, cols = window((5000, 300), 3)
    # 341 cells, and one pixel more so that it is exactly central (1988 pixels left out on each side)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (1024, 300)
    assert rows.start == 5000 - rows.stop == (5000 - 1023) // 2 and cols.start == 0
    assert window((41, 44), 2) == (slice(0, 41), slice(0, 44))


def test_nodata_cells_are_left_out_of_the_estimate(calibrating):
    coarse = fbm_surface((40, 40), seed=10).astype(np.float64)[None]
    holed = coarse.copy()
    holed[0, 10:14, 20:26] = np.nan
    gain = residual_gains(Downscaler(calibrating, device="cpu"), holed, 2)[0]
    assert 0.0 <= gain <= 1.0 and np.isfinite(gain)
    out = downscale(holed[0], 2, calibrating, device="cpu")
    assert np.isnan(out[20:28, 40:52]).all() and np.isfinite(out[:16]).all()


def test_geotiff_records_the_gains_and_cli_switches(cli, make_geotiff, calibrating, tmp_path):
    src = make_geotiff("smooth.tif", area_average(_smooth((96, 100)), 2).astype(np.float32))
    common = ("downscale", src, "--scale", 2, "--model", calibrating, "--device", "cpu", "-q")
    assert cli(*common, "-o", tmp_path / "cal.tif").code == 0
    assert cli(*common, "--no-calibrate", "-o", tmp_path / "plain.tif").code == 0
    with rasterio.open(src) as s:
        coarse = s.read(1).astype(np.float64)
    with rasterio.open(tmp_path / "cal.tif") as cal, rasterio.open(tmp_path / "plain.tif") as plain:
        gain = residual_gains(Downscaler(calibrating, device="cpu"), coarse[None], 2)[0]
        assert cal.tags()["GEOSR_CALIBRATE"] == f"residual gains {gain:.3g}"
        assert plain.tags()["GEOSR_CALIBRATE"] == "no"
        np.testing.assert_allclose(cal.read(1), downscale(coarse, 2, calibrating, device="cpu"), atol=1e-4)
        assert np.abs(cal.read(1) - plain.read(1)).max() > 1e-3


def test_accessor_records_calibration(calibrating):
    xr = pytest.importorskip("xarray")
    da = xr.DataArray(
        fbm_surface((30, 32), seed=11), dims=("y", "x"), coords={"y": np.arange(30.0), "x": np.arange(32.0)}
    )
    assert da.geosr.downscale(2, model=calibrating, device="cpu").attrs["geosr_calibrate"] == "yes"
    assert da.geosr.downscale(2, model=calibrating, device="cpu", calibrate=False).attrs["geosr_calibrate"] == "no"


def test_card_calibrate_must_be_true_or_false(calibrating, tmp_path):
    loaded = load_model(calibrating)
    loaded.card.calibrate = "yes"  # type: ignore[assignment]
    path = save_model(loaded.network, loaded.card, tmp_path / "bad.safetensors")
    with pytest.raises(ModelError, match="calibrate"):
        load_model(path)


def test_both_shipped_models_calibrate():
    # dem since 2026-12-07 (benchmarks/results/training_dem_self_calibration.md)
    assert load_model("climate").card.calibrate is True
    assert load_model("dem").card.calibrate is True


def test_evaluate_reports_and_switches_calibration(cli, make_geotiff, calibrating):
    import json

    src = make_geotiff("smooth_hr.tif", _smooth((64, 64)).astype(np.float32))
    common = ("evaluate", src, "--scale", 2, "--model", calibrating, "--device", "cpu", "--json")
    on, off = cli(*common), cli(*common, "--no-calibrate")
    assert on.code == off.code == 0, on.err + off.err
    on_report, off_report = json.loads(on.out), json.loads(off.out)
    assert (on_report["calibrate"], off_report["calibrate"]) == (True, False)
    rmse_on = on_report["bands"]["band 1"]["methods"]["model_conserved"]["rmse"]
    rmse_off = off_report["bands"]["band 1"]["methods"]["model_conserved"]["rmse"]
    assert rmse_on < rmse_off  # the random network's detail is invented on this band-limited field
    text = cli("evaluate", src, "--scale", 2, "--model", calibrating, "--device", "cpu")
    assert "self-calibrated" in text.out


def test_models_shows_calibration(cli):
    out = cli("models", "climate").out
    assert "calibrate: yes" in out
    assert "calibrate" not in cli("models", "dem").out.split("training.")[0]


def test_a_scale_that_makes_the_fine_grid_of_a_whole_one_calibrates_as_it(cli, make_geotiff, calibrating, tmp_path):
    # --resolution 14.9999999 on 30 m pixels is a scale of 2.0000000667: the same fine grid as x2, conserved
    # as x2, so it must calibrate as x2 too rather than silently run uncalibrated
    import dask.array as dsa
    import xarray as xr

    coarse = area_average(_smooth((96, 100)), 2)
    near = 30.0 / 14.9999999
    whole = downscale(coarse, 2, calibrating, device="cpu")
    assert np.abs(whole - downscale(coarse, 2, calibrating, device="cpu", calibrate=False)).max() > 1e-3
    np.testing.assert_array_equal(downscale(coarse, near, calibrating, device="cpu"), whole)
    lazy = downscale(dsa.from_array(coarse, chunks=(20, 30)), near, calibrating, device="cpu", tile_size=40)
    np.testing.assert_allclose(lazy.compute(), whole, atol=1e-4)
    da = xr.DataArray(coarse, dims=("y", "x"), coords={"y": np.arange(48.0), "x": np.arange(50.0)})
    assert da.geosr.downscale(near, model=calibrating, device="cpu").attrs["geosr_calibrate"] == "yes"
    src = make_geotiff("smooth.tif", coarse.astype(np.float32))
    common = (src, "--model", calibrating, "--device", "cpu", "-q")
    assert cli("downscale", *common, "--scale", 2, "-o", tmp_path / "x2.tif").code == 0
    assert cli("downscale", *common, "--resolution", 14.9999999, "-o", tmp_path / "r15.tif").code == 0
    with rasterio.open(tmp_path / "x2.tif") as x2, rasterio.open(tmp_path / "r15.tif") as r15:
        assert r15.tags()["GEOSR_CALIBRATE"] == x2.tags()["GEOSR_CALIBRATE"] != "no"
        np.testing.assert_array_equal(r15.read(), x2.read())


@pytest.mark.parametrize("value", ["no", "off", 0.5])
def test_calibrate_must_be_true_false_or_none(calibrating, value):
    # a string such as "no" is truthy: taken as a bool it would turn calibration on
    import dask.array as dsa
    import xarray as xr

    from geosr.errors import InputError

    coarse = fbm_surface((30, 32), seed=12)
    with pytest.raises(InputError, match="calibrate must be True, False or None"):
        downscale(coarse, 2, calibrating, device="cpu", calibrate=value)
    with pytest.raises(InputError, match="calibrate must be True, False or None"):
        downscale(dsa.from_array(coarse), 2, calibrating, device="cpu", calibrate=value)
    da = xr.DataArray(coarse, dims=("y", "x"), coords={"y": np.arange(30.0), "x": np.arange(32.0)})
    with pytest.raises(InputError, match="calibrate must be True, False or None"):
        da.geosr.downscale(2, model=calibrating, device="cpu", calibrate=value)
    # and conserve likewise (before, "no" conserved)
    for data in (coarse, dsa.from_array(coarse)):
        with pytest.raises(InputError, match="conserve must be True, False or None"):
            downscale(data, 2, calibrating, device="cpu", conserve=value)
    with pytest.raises(InputError, match="conserve must be True, False or None"):
        da.geosr.downscale(2, model=calibrating, device="cpu", conserve=value)


def test_calibrated_ensembles_mirror_and_rotate_as_the_input_does(calibrating, tmp_path):
    # Sides that are not a whole number of cells: the cells of the calibration window start at its
    # first pixel, so a mirrored raster's were other cells, its gains other gains, and an ensemble's
    # output no longer mirrored. Here the gain of the unflipped raster is 0.5 by construction.
    coarse = fbm_surface((20, 21), seed=13).astype(np.float64)
    zero = _without_residual(calibrating, tmp_path / "zero.safetensors")
    full, base = (downscale(coarse, 2, m, device="cpu", calibrate=False, ensemble=4) for m in (calibrating, zero))
    raster = np.pad(0.5 * (full.astype(np.float64) + base), ((0, 1), (0, 1)), mode="reflect")  # 41 x 43
    out = downscale(raster, 2, calibrating, device="cpu", ensemble=4)
    assert np.abs(out - downscale(raster, 2, calibrating, device="cpu", ensemble=4, calibrate=False)).max() > 1.0
    for flip in ((-1,), (-2,), (-2, -1)):
        mirrored = np.flip(downscale(np.flip(raster, flip).copy(), 2, calibrating, device="cpu", ensemble=4), flip)
        np.testing.assert_allclose(mirrored, out, atol=1e-3)
    out8 = downscale(raster, 2, calibrating, device="cpu", ensemble=8)
    turned = downscale(np.rot90(raster).copy(), 2, calibrating, device="cpu", ensemble=8)
    np.testing.assert_allclose(np.rot90(turned, -1), out8, atol=1e-3)


def test_asked_for_at_a_fractional_scale_it_is_refused_in_one_line(cli, make_geotiff, calibrating, tmp_path):
    from conftest import assert_one_line_error

    from geosr.errors import InputError

    src = make_geotiff("frac.tif", fbm_surface((30, 30), seed=12))
    result = cli("downscale", src, "--scale", 2.5, "--model", calibrating, "--calibrate", "-o", tmp_path / "o.tif")
    assert_one_line_error(result.err, result.code, "whole scale", "2.5", "drop --calibrate")
    assert not (tmp_path / "o.tif").exists()
    with pytest.raises(InputError, match="whole scale"):
        downscale(fbm_surface((30, 30), seed=12), 2.5, calibrating, device="cpu", calibrate=True)


def test_a_few_valid_pixels_give_no_estimate(calibrating):
    band = area_average(_smooth((96, 96)), 2)  # an estimate on the whole of it withdraws the detail
    downscaler = Downscaler(calibrating, device="cpu")
    assert residual_gains(downscaler, band[None], 2)[0] < 0.5
    islet = np.full_like(band, np.nan)
    islet[20:30, 20:30] = band[20:30, 20:30]  # 100 valid cells in a window of 48 x 48, fewer than 6 x 6 cells x 4
    assert residual_gains(downscaler, islet[None], 2)[0] == 1.0
    islet[14:36, 14:36] = band[14:36, 14:36]  # 484: enough
    assert residual_gains(downscaler, islet[None], 2)[0] < 1.0


def test_gains_are_estimated_band_by_band_for_a_one_band_model(calibrating, make_geotiff, tmp_path, monkeypatch):
    # a 1-band model on a long stack: memory follows one band's window, in every front door
    import dask.array as dsa

    from geosr import calibrate, io, pipeline

    stack = np.stack([fbm_surface((40, 40), seed=s) for s in range(5)]).astype(np.float64)
    seen: list[int] = []
    original = calibrate._sums
    monkeypatch.setattr(
        calibrate, "_sums", lambda d, target, f, *wrap: seen.append(target.shape[0]) or original(d, target, f, *wrap)
    )
    whole = downscale(stack, 2, calibrating, device="cpu")
    assert seen == [1] * 5
    lazy = downscale(dsa.from_array(stack, chunks=(5, 20, 20)), 2, calibrating, device="cpu")
    np.testing.assert_array_equal(lazy.compute(), whole)
    reads: list[int] = []
    original_read = io.read_window
    monkeypatch.setattr(
        pipeline, "read_window", lambda d, r, c, *f: reads.append(d.count) or original_read(d, r, c, *f)
    )
    src = make_geotiff("stack.tif", stack.astype(np.float32))
    assert cli_run(src, calibrating, tmp_path / "out.tif") == 0
    calibration_reads = [n for n in reads if n == 1]
    assert len(calibration_reads) == 5 and max(reads) == 5  # the tiles read every band, the estimate one
    with rasterio.open(tmp_path / "out.tif") as out:
        np.testing.assert_allclose(out.read(), whole, atol=1e-4)


def cli_run(src: Path, model: Path, out: Path) -> int:
    from geosr.pipeline import downscale_raster

    downscale_raster(src, out, scale=2, model=model, device="cpu")
    return 0


def test_calibrating_a_lazy_stack_reads_each_input_chunk_once(calibrating):
    # a NetCDF variable of many time steps in one dask chunk: each step's calibration took the chunk through
    # a graph of its own keys and read it again (25 reads for 24 steps); now it shares the tiles' chunk keys
    import dask
    import dask.array as dsa
    import xarray as xr

    stack = np.stack([fbm_surface((30, 34), seed=s) for s in range(6)]).astype(np.float64)
    loads: list[int] = []

    def load() -> np.ndarray:
        loads.append(1)
        return stack

    lazy = dsa.from_delayed(dask.delayed(load, pure=True)(), shape=stack.shape, dtype=stack.dtype)
    coords = {"time": np.arange(6), "y": -np.arange(30.0), "x": np.arange(34.0)}
    grid = xr.DataArray(lazy, dims=("time", "y", "x"), coords=coords, name="tas")
    expected = [downscale(step, 2, calibrating, device="cpu") for step in stack]
    for calibrate in (False, True):
        loads.clear()
        out = grid.geosr.downscale(2, model=str(calibrating), calibrate=calibrate, device="cpu").compute()
        assert len(loads) == 1, calibrate
    np.testing.assert_allclose(out.values, np.stack(expected), atol=1e-5)

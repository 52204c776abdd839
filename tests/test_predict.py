"""Promises 2, 3, 4 and 10 on arrays: seam-free tiling, equivariance, nodata, determinism."""

from __future__ import annotations

import dataclasses
import threading

import dask
import dask.array as da
import numpy as np
import pytest
from conftest import DEPTH, data_tolerance, footprint_cells

from geosr.errors import InputError, ModelError
from geosr.predict import Downscaler, downscale
from geosr.stats import BandStats, as_float
from geosr.testing import fbm_surface
from geosr.tiling import TilePlan

WHOLE = 10_000  # a tile size larger than any test raster: one tile, no seams possible


def run(data, scale, model, **kwargs):
    kwargs.setdefault("device", "cpu")
    return downscale(data, scale, str(model), **kwargs)


def assert_close(actual, expected, tol):
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    diff = np.abs(actual - expected)[~np.isnan(expected)]
    assert diff.max() <= tol, f"max abs diff {diff.max()} > {tol}"


def expected_nodata_mask(coarse_missing: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """Fine pixels whose centre falls in a coarse cell without data, or on the edge of one (computed without
    geosr: :func:`conftest.footprint_cells`)."""
    (h, w), (ho, wo) = coarse_missing.shape, out_shape
    rows, cols = footprint_cells(h, ho), footprint_cells(w, wo)
    return np.logical_or.reduce([coarse_missing[r[:, None], c[None, :]] for r in rows for c in cols])


# --- seam-free tiling ------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4, 2.5])
@pytest.mark.parametrize("tile", [7, 16, 33])
def test_tiled_equals_whole(dem, model1, scale, tile):
    whole = run(dem, scale, model1, tile_size=WHOLE)
    tiled = run(dem, scale, model1, tile_size=tile)
    h, w = dem.shape
    assert tiled.shape == whole.shape == (round(h * scale), round(w * scale))
    assert len(Downscaler(str(model1), device="cpu", tile_size=tile).plan(dem.shape, scale)) > 1
    assert np.isfinite(tiled).all()
    assert_close(tiled, whole, data_tolerance(dem))


@pytest.mark.parametrize("scale", [2, 3, 2.5])
def test_tiled_equals_whole_with_the_consistent_kernel(dem, model_consistent, scale):
    whole = run(dem, scale, model_consistent, tile_size=WHOLE)
    for tile in (7, 16):
        assert len(Downscaler(str(model_consistent), device="cpu", tile_size=tile).plan(dem.shape, scale)) > 1
        assert_close(run(dem, scale, model_consistent, tile_size=tile), whole, data_tolerance(dem))
    lazy = run(da.from_array(dem, chunks=(5, 6)), scale, model_consistent, tile_size=16)
    assert_close(lazy.compute(), whole, data_tolerance(dem))


def test_a_zero_residual_consistent_model_is_back_projection():
    from geosr.degrade import area_average
    from geosr.evaluate import back_project
    from geosr.models.files import load_model

    loaded = load_model(None)
    if not loaded.card.interpolation.startswith("consistent"):
        pytest.skip("the shipped default model uses another kernel")
    loaded.network.body[-1].weight.data.zero_()
    loaded.network.body[-1].bias.data.zero_()
    terrain = fbm_surface((64, 72), seed=3).astype(np.float64)
    out = downscale(terrain, 3, loaded, device="cpu", tile_size=50)
    inner = (slice(60, -60), slice(60, -60))
    reference = back_project(terrain, 3, iterations=60)
    assert np.abs(out - reference)[inner].max() < 1e-4 * np.ptp(terrain)
    assert np.abs(area_average(out, 3) - terrain)[20:-20, 20:-20].max() < 1e-4 * np.ptp(terrain)


def test_tiled_equals_whole_multiband_with_batches(bands3, model1, model3):
    for model in (model1, model3):
        whole = run(bands3, 3, model, tile_size=WHOLE)
        for batch in (1, 4):
            tiled = run(bands3, 3, model, tile_size=9, batch_size=batch)
            for b in range(3):
                assert_close(tiled[b], whole[b], data_tolerance(bands3[b]))


def test_halo_zero_control_shows_seams(dem, model1):
    """Without the halo, tiles see zero padding at their borders: the comparison above can fail."""
    scale, tile = 4, 16
    whole = run(dem, scale, model1, tile_size=WHOLE)
    downscaler = Downscaler(str(model1), device="cpu", tile_size=tile)
    assert downscaler.halo == DEPTH
    filled = as_float(dem[None])
    plan = TilePlan.build(dem.shape, whole.shape, tile, halo=0)
    sources = ((t, filled[:, t.rows.source.as_slice(), t.cols.source.as_slice()]) for t in plan)
    seamy = np.empty((1, *whole.shape), dtype=np.float32)
    for t, core in downscaler.run(plan, BandStats.of_block(filled), sources):
        seamy[:, t.rows.core.as_slice(), t.cols.core.as_slice()] = core
    assert np.abs(seamy[0] - whole).max() > 100 * data_tolerance(dem)
    # ... and with the model's halo the same plan machinery matches
    plan = TilePlan.build(dem.shape, whole.shape, tile, halo=downscaler.halo)
    sources = ((t, filled[:, t.rows.source.as_slice(), t.cols.source.as_slice()]) for t in plan)
    for t, core in downscaler.run(plan, BandStats.of_block(filled), sources):
        seamy[:, t.rows.core.as_slice(), t.cols.core.as_slice()] = core
    assert_close(seamy[0], whole, data_tolerance(dem))


def test_network_adds_real_detail(dem, model1):
    """The test model's residual is far from zero, so the tolerances above are meaningful."""
    from geosr.models.files import load_model

    loaded = load_model(str(model1))
    loaded.network.body[-1].weight.data.zero_()
    loaded.network.body[-1].bias.data.zero_()
    ilr_only = downscale(dem, 4, loaded, device="cpu")
    assert np.abs(run(dem, 4, model1) - ilr_only).max() > 100 * data_tolerance(dem)


@pytest.mark.parametrize("scale", [2, 2.5])
def test_dask_equals_numpy(dem, model1, scale):
    whole = run(dem, scale, model1, tile_size=WHOLE)
    lazy = run(da.from_array(dem, chunks=(5, 6)), scale, model1, tile_size=16)
    assert isinstance(lazy, da.Array)
    assert lazy.shape == whole.shape and lazy.dtype == np.float32
    assert_close(lazy.compute(), whole, data_tolerance(dem))


@pytest.mark.parametrize("chunks", [(3, 5, 6), (1, 5, 6), (2, 12, 15)])
def test_dask_multiband_equals_numpy(bands3, model1, model3, chunks):
    # chunks that split the bands must not mix the bands' statistics
    for model in (model1, model3):
        whole = run(bands3, 2, model, tile_size=WHOLE)
        with dask.config.set(scheduler="threads"):
            lazy = run(da.from_array(bands3, chunks=chunks), 2, model, tile_size=8).compute()
        for b in range(3):
            assert_close(lazy[b], whole[b], data_tolerance(bands3[b]))


def test_dask_with_nodata_equals_numpy(dem, model1):
    data = dem.copy()
    data[2:5, 3:9] = -9999
    whole = run(data, 3, model1, nodata=-9999)
    lazy = run(da.from_array(data, chunks=(4, 4)), 3, model1, nodata=-9999, tile_size=7).compute()
    assert_close(lazy, whole, data_tolerance(dem))


# --- equivariance ------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [(3.28084, 1000.0), (1.0, 1000.0), (0.001, -50.0)])
@pytest.mark.parametrize("tile", [WHOLE, 9])
def test_equivariance(dem, model1, a, b, tile):
    base = run(dem, 3, model1, tile_size=tile)
    moved = run(a * dem.astype(np.float64) + b, 3, model1, tile_size=tile)
    assert_close(moved, a * base.astype(np.float64) + b, data_tolerance(a * dem))


def test_equivariance_is_per_band(bands3, model1):
    base = run(bands3, 2, model1)
    changed = bands3.astype(np.float64)
    changed[1] = 1e4 * changed[1] + 7.0
    out = run(changed, 2, model1)
    assert_close(out[0], base[0], data_tolerance(bands3[0]))
    assert_close(out[2], base[2], data_tolerance(bands3[2]))
    assert_close(out[1], 1e4 * base[1].astype(np.float64) + 7.0, data_tolerance(changed[1]))


# --- self-ensemble -----------------------------------------------------------------------------

FLIPS = {
    "left-right": lambda a: a[..., ::-1],
    "up-down": lambda a: a[..., ::-1, :],
    "both": lambda a: a[..., ::-1, ::-1],
}


def flipped(data: np.ndarray, name: str) -> np.ndarray:
    return np.ascontiguousarray(FLIPS[name](data))


@pytest.mark.parametrize("flip", sorted(FLIPS))
def test_ensemble_of_4_mirrors_as_the_input_does(dem, model1, flip):
    for ensemble in (4, 8):
        base = run(dem, 3, model1, ensemble=ensemble, tile_size=9)
        assert_close(FLIPS[flip](run(flipped(dem, flip), 3, model1, ensemble=ensemble, tile_size=9)), base, 1e-3)
    # control: the random network alone is not symmetric, so the comparison above can fail
    single = run(dem, 3, model1)
    assert np.abs(FLIPS[flip](run(flipped(dem, flip), 3, model1)) - single).max() > 0.1


def test_ensemble_of_8_rotates_as_the_input_does(dem, model1):
    base = run(dem, 2, model1, ensemble=8, tile_size=16)
    for k in (1, 2, 3):
        rotated = run(np.ascontiguousarray(np.rot90(dem, k)), 2, model1, ensemble=8, tile_size=16)
        assert_close(np.rot90(rotated, -k), base, 1e-3)
    transposed = run(np.ascontiguousarray(dem.T), 2, model1, ensemble=8)
    assert_close(transposed.T, base, 1e-3)
    assert (
        np.abs(run(np.ascontiguousarray(dem.T), 2, model1, ensemble=4).T - run(dem, 2, model1, ensemble=4)).max() > 0.1
    )


def test_ensemble_is_the_mean_of_the_model_on_flipped_copies(dem, model_consistent):
    """Computed independently: flip the input, run the model alone, flip back, average (no conservation)."""
    copies = [FLIPS[f](run(flipped(dem, f), 2, model_consistent)) for f in FLIPS]
    expected = np.mean([run(dem, 2, model_consistent), *copies], axis=0)
    assert_close(run(dem, 2, model_consistent, ensemble=4), expected, data_tolerance(dem))


@pytest.mark.parametrize("scale", [2, 3, 2.5])
def test_ensemble_tiles_without_seams_conserves_and_keeps_nodata(dem, model_like_shipped, scale):
    data, missing = with_holes(dem, -9999.0)
    whole = run(data, scale, model_like_shipped, nodata=-9999.0, tile_size=WHOLE, ensemble=8)
    np.testing.assert_array_equal(np.isnan(whole), expected_nodata_mask(missing, whole.shape))
    for tile in (7, 16):
        tiled = run(data, scale, model_like_shipped, nodata=-9999.0, tile_size=tile, ensemble=8)
        assert_close(tiled, whole, data_tolerance(dem))
    if scale == int(scale):
        s = int(scale)
        cells = whole.reshape(dem.shape[0], s, dem.shape[1], s).mean(axis=(1, 3))
        ok = ~missing
        np.testing.assert_allclose(cells[ok], dem[ok], atol=1e-4 * np.ptp(dem))


def test_ensemble_keeps_equivariance(dem, model_like_shipped):
    base = run(dem, 3, model_like_shipped, ensemble=4, tile_size=9)
    moved = run(3.28084 * dem.astype(np.float64) + 1000.0, 3, model_like_shipped, ensemble=4, tile_size=9)
    assert_close(moved, 3.28084 * base.astype(np.float64) + 1000.0, data_tolerance(3.28084 * dem))


@pytest.mark.parametrize("bad", [0, 2, 3, 16, "4", True, 4.5])
def test_bad_ensemble_refused(dem, model1, bad):
    with pytest.raises(InputError, match=r"ensemble must be one of 1, 4, 8.*got"):
        run(dem, 2, model1, ensemble=bad)


def test_ensemble_of_8_refuses_non_square_pixels():
    from geosr.predict import check_ensemble

    assert check_ensemble(8, (30.0, -30.0)) == 8
    assert check_ensemble(4, (30.0, -20.0)) == 4
    with pytest.raises(InputError, match=r"square pixels.*30 x 20.*ensemble of 4"):
        check_ensemble(8, (30.0, -20.0))


# --- a network that takes the input cells ------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 2.5])
def test_cell_input_tiles_without_seams_keeps_nodata_and_equivariance(dem, model_cells, scale):
    data, missing = with_holes(dem, -9999.0)
    whole = run(data, scale, model_cells, nodata=-9999.0, tile_size=WHOLE)
    np.testing.assert_array_equal(np.isnan(whole), expected_nodata_mask(missing, whole.shape))
    for tile in (7, 16):
        assert_close(run(data, scale, model_cells, nodata=-9999.0, tile_size=tile), whole, data_tolerance(dem))
    moved = run(3.28084 * dem.astype(np.float64) + 1000.0, scale, model_cells, tile_size=9)
    assert_close(moved, 3.28084 * run(dem, scale, model_cells, tile_size=9) + 1000.0, data_tolerance(3.28084 * dem))
    for flip in FLIPS:
        mirrored = FLIPS[flip](run(flipped(dem, flip), scale, model_cells, ensemble=4, tile_size=16))
        assert_close(mirrored, run(dem, scale, model_cells, ensemble=4, tile_size=16), 1e-3)


def test_cell_input_reaches_the_network(dem, model_cells, tmp_path):
    """The cells are the input repeated onto the fine grid: zeroing their first-layer weights changes the
    output, and equals running the same network on the interpolated bands alone (computed independently)."""
    import torch

    from geosr.models.files import load_model, save_model
    from geosr.models.vdsr import VDSR

    loaded = load_model(model_cells)
    plain = VDSR(1, depth=loaded.card.depth, width=loaded.card.width)
    state = loaded.network.state_dict()
    state["body.0.weight"] = state["body.0.weight"][:, :1]
    plain.load_state_dict(state)
    card = dataclasses.replace(loaded.card, cell_input=False)
    without = save_model(plain, card, tmp_path / "without.safetensors")
    zeroed = loaded.network.state_dict()
    zeroed["body.0.weight"] = torch.cat([state["body.0.weight"], torch.zeros_like(state["body.0.weight"])], dim=1)
    loaded.network.load_state_dict(zeroed)
    same = save_model(loaded.network, loaded.card, tmp_path / "zeroed.safetensors")
    assert_close(run(dem, 3, same), run(dem, 3, without), data_tolerance(dem))
    assert np.abs(run(dem, 3, model_cells) - run(dem, 3, without)).max() > 100 * data_tolerance(dem)


# --- nodata ------------------------------------------------------------------------------------


def with_holes(dem: np.ndarray, fill: float) -> tuple[np.ndarray, np.ndarray]:
    data = dem.astype(np.float64).copy()
    missing = np.zeros(dem.shape, bool)
    missing[3:6, 4:8] = True  # a block
    missing[0, :] = True  # a whole edge row
    missing[10, 15] = True  # a lone cell
    data[missing] = fill
    return data, missing


@pytest.mark.parametrize("scale", [2, 2.5, 4])
def test_nodata_value_masks_footprint(dem, model1, scale):
    data, missing = with_holes(dem, -9999.0)
    out = run(data, scale, model1, nodata=-9999.0, tile_size=11)
    mask = expected_nodata_mask(missing, out.shape)
    np.testing.assert_array_equal(np.isnan(out), mask)
    assert np.isfinite(out[~mask]).all()
    # valid output stays in a plausible range: the stored -9999 did not leak in
    assert out[~mask].min() > dem.min() - 0.5 * np.ptp(dem)


@pytest.mark.parametrize("scale", [2, 3])
def test_nan_nodata_masks_footprint(dem, model1, scale):
    data, missing = with_holes(dem, np.nan)
    out = run(data, scale, model1, tile_size=11)
    mask = expected_nodata_mask(missing, out.shape)
    np.testing.assert_array_equal(np.isnan(out), mask)


def test_valid_output_does_not_depend_on_stored_nodata_value(dem, model1):
    first, missing = with_holes(dem, -9999.0)
    second, _ = with_holes(dem, 1e30)
    out1 = run(first, 3, model1, nodata=-9999.0, tile_size=8)
    out2 = run(second, 3, model1, nodata=1e30, tile_size=8)
    as_nan, _ = with_holes(dem, np.nan)
    out3 = run(as_nan, 3, model1, tile_size=8)
    np.testing.assert_array_equal(out1, out2)  # NaN in the same places, identical elsewhere
    np.testing.assert_array_equal(out1, out3)
    # but the valid data does matter (the comparison can fail)
    other = first.copy()
    other[8, 8] += 100
    assert not np.array_equal(run(other, 3, model1, nodata=-9999.0, tile_size=8), out1, equal_nan=True)


def test_integer_input_with_nodata(dem, model1):
    data, missing = with_holes(dem, -32768)
    data = np.round(data).astype(np.int16)
    out = run(data, 2, model1, nodata=-32768)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(out), expected_nodata_mask(missing, out.shape))


def test_tiled_equals_whole_with_nodata(dem, model1):
    rng = np.random.default_rng(3)
    data = dem.astype(np.float64)
    data[rng.random(dem.shape) < 0.15] = np.nan
    whole = run(data, 4, model1, tile_size=WHOLE)
    for tile in (7, 16):
        assert_close(run(data, 4, model1, tile_size=tile), whole, data_tolerance(dem))


def test_a_band_without_data_comes_out_without_data(bands3, model1):
    # every fine pixel's footprint is missing; the other bands are as without it (a 1-channel model)
    data = bands3.astype(np.float64)
    data[1] = np.nan
    out = run(data, 2, model1)
    assert np.isnan(out[1]).all()
    np.testing.assert_array_equal(out[[0, 2]], run(data[[0, 2]], 2, model1))
    assert np.isnan(run(np.full((6, 7), -1.0), 2, model1, nodata=-1.0)).all()


# --- special inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [123.25, -4.0, 0.0])
def test_constant_raster_gives_the_constant(model1, value):
    out = run(np.full((9, 11), value, dtype=np.float32), 3, model1, tile_size=8)
    assert out.shape == (27, 33)
    np.testing.assert_allclose(out, value, rtol=1e-6, atol=1e-6)


def test_constant_band_among_varying_bands(bands3, model1):
    data = bands3.copy()
    data[0] = 42.0
    out = run(data, 2, model1)
    np.testing.assert_allclose(out[0], 42.0, rtol=1e-6)
    assert np.ptp(out[1]) > 0


def test_one_channel_model_applies_to_each_band(bands3, model1):
    out = run(bands3, 2, model1)
    assert out.shape == (3, 24, 30) and out.dtype == np.float32
    for b in range(3):
        assert_close(out[b], run(bands3[b], 2, model1), data_tolerance(bands3[b]))


def test_three_channel_model_mixes_three_bands(bands3, model3):
    out = run(bands3, 2, model3)
    assert out.shape == (3, 24, 30) and np.isfinite(out).all()
    changed = bands3.copy()
    changed[0] = np.flipud(changed[0])
    out2 = run(changed, 2, model3)
    # band 1 did not change, but the 3-channel model sees band 0 when predicting it
    assert np.abs(out2[1] - out[1]).max() > data_tolerance(bands3[1])


@pytest.mark.parametrize("n_bands", [2, 4])
def test_three_channel_model_refuses_other_band_counts(bands3, model3, n_bands):
    data = np.concatenate([bands3, bands3])[:n_bands]
    with pytest.raises(ModelError, match=f"takes 3 bands but the raster has {n_bands}"):
        run(data, 2, model3)
    with pytest.raises(ModelError):
        run(da.from_array(data), 2, model3)


def test_cpu_runs_are_bit_identical(bands3, model1, model3):
    for model in (model1, model3):
        first = run(bands3, 2.5, model, tile_size=11)
        second = run(bands3, 2.5, model, tile_size=11)
        assert first.tobytes() == second.tobytes()


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0), (3, 0, 4), (0, 4, 4)])
def test_zero_size_refused(model1, shape):
    with pytest.raises(InputError, match="zero size"):
        run(np.zeros(shape, dtype=np.float32), 2, model1)
    with pytest.raises(InputError, match="zero size"):
        run(da.zeros(shape, dtype=np.float32), 2, model1)


@pytest.mark.parametrize("shape", [(5,), (1, 2, 5, 5)])
def test_wrong_dimensions_refused(model1, shape):
    with pytest.raises(InputError, match="dimensions"):
        run(np.ones(shape), 2, model1)


def test_dimensions_kept(dem, model1):
    assert run(dem, 2, model1).shape == (26, 34)
    assert run(dem[None], 2, model1).shape == (1, 26, 34)
    assert run(da.from_array(dem), 2, model1).shape == (26, 34)
    np.testing.assert_array_equal(run(dem, 2, model1), run(dem[None], 2, model1)[0])


def test_progress_reports_every_tile(dem, model1):
    calls = []
    run(dem, 2, model1, tile_size=10, progress=lambda done, total: calls.append((done, total)))
    total = len(Downscaler(str(model1), device="cpu", tile_size=10).plan(dem.shape, 2))
    assert calls == [(i, total) for i in range(1, total + 1)]


def test_bad_options_refused(dem, model1):
    with pytest.raises(InputError, match="tile size"):
        run(dem, 2, model1, tile_size=0)
    with pytest.raises(InputError, match="precision"):
        run(dem, 2, model1, precision="fp8")
    with pytest.raises(ValueError, match="scale"):
        run(dem, 1, model1)


def test_top_level_downscale(dem, model1):
    import geosr

    np.testing.assert_array_equal(geosr.downscale(dem, 2, str(model1), device="cpu"), run(dem, 2, model1))


def test_fbm_fixture_is_not_trivial():
    surface = fbm_surface((13, 17), seed=1)
    assert np.ptp(surface) == pytest.approx(500.0, rel=1e-5)


# --- device ------------------------------------------------------------------------------------


def test_select_device():
    import torch

    from geosr.errors import DeviceError
    from geosr.predict import select_device

    assert select_device("cpu") == torch.device("cpu")
    auto = select_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    assert auto.type in ("cuda", "mps", "cpu")
    with pytest.raises(DeviceError, match="unknown device"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA"):
            select_device("cuda")


def test_cuda_matches_cpu(bands3, model1):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    cpu = run(bands3, 3, model1, device="cpu", tile_size=16)
    gpu = run(bands3, 3, model1, device="cuda", tile_size=16)
    for b in range(3):
        assert_close(gpu[b], cpu[b], data_tolerance(bands3[b]))


# --- the promises with the shipped models' configuration (consistent kernel, conserving) -------


@pytest.mark.parametrize(("a", "b"), [(3.28084, 1000.0), (0.001, -50.0)])
def test_equivariance_of_a_conserving_consistent_model(dem, model_like_shipped, a, b):
    base = run(dem, 3, model_like_shipped, tile_size=9)
    moved = run(a * dem.astype(np.float64) + b, 3, model_like_shipped, tile_size=9)
    assert_close(moved, a * base.astype(np.float64) + b, data_tolerance(a * dem))


@pytest.mark.parametrize("scale", [2, 3, 2.5])
def test_nodata_and_tiles_with_a_conserving_consistent_model(dem, model_like_shipped, scale):
    data, missing = with_holes(dem, -9999.0)
    whole = run(data, scale, model_like_shipped, nodata=-9999.0, tile_size=WHOLE)
    np.testing.assert_array_equal(np.isnan(whole), expected_nodata_mask(missing, whole.shape))
    assert np.isfinite(whole[~np.isnan(whole)]).all()
    for tile in (7, 16):
        assert_close(run(data, scale, model_like_shipped, nodata=-9999.0, tile_size=tile), whole, data_tolerance(dem))
    as_nan, _ = with_holes(dem, np.nan)
    np.testing.assert_array_equal(run(as_nan, scale, model_like_shipped, tile_size=WHOLE), whole)


def test_fp32_turns_tf32_off_on_cuda_only_while_the_network_runs():
    # cuDNN's default TF32 moved the output on an H200 by 2.6e-4 of the relief (benchmarks/cuda_check.py)
    import torch

    from geosr.predict import _ieee_fp32

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        cuda = torch.device("cuda")
        with _ieee_fp32(cuda, True):
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
            with _ieee_fp32(cuda, True):  # a second, concurrent run
                pass
            assert not torch.backends.cudnn.allow_tf32  # still off while the first runs
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        for device, enabled in ((torch.device("cpu"), True), (cuda, False)):  # CPU, or bf16/fp16: untouched
            with _ieee_fp32(device, enabled):
                assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture
def finishing_threads(monkeypatch):
    """The names of the threads Downscaler._complete (conservation and un-normalisation) runs in."""
    from geosr.predict import Downscaler

    threads = set()
    real_complete = Downscaler._complete

    def complete(self, *args, **kwargs):
        threads.add(threading.current_thread().name.split("_")[0])
        return real_complete(self, *args, **kwargs)

    monkeypatch.setattr(Downscaler, "_complete", complete)
    return threads


def _tiles_of(data, plan):
    return ((t, data[:, t.rows.source.as_slice(), t.cols.source.as_slice()]) for t in plan)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_overlapped_run_equals_the_sequential_one(bands3, model_cells, batch_size, finishing_threads):
    """With overlap, tiles are prepared ahead and finished behind in worker threads: the same tiles, in
    the same order, with the same values, and the finishing really runs beside the network."""
    from geosr.predict import Downscaler
    from geosr.stats import BandStats

    data = bands3.astype(np.float64)
    data[1, 3:5, 4:9] = np.nan  # nodata stays nodata on both paths
    downscaler = Downscaler(model_cells, device="cpu", tile_size=8, batch_size=batch_size)
    plan = downscaler.plan(data.shape[1:], 2)
    stats = BandStats.of_block(data)
    assert len(plan) > 4
    sequential = list(downscaler.run(plan, stats, _tiles_of(data, plan), overlap=False))
    assert finishing_threads == {"MainThread"}
    finishing_threads.clear()
    overlapped = list(downscaler.run(plan, stats, _tiles_of(data, plan), overlap=True))
    assert finishing_threads == {"geosr-finish"}
    assert [t for t, _ in overlapped] == [t for t, _ in sequential] == list(plan)
    for (_, a), (_, b) in zip(sequential, overlapped, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(np.isnan(core).any() for _, core in sequential)


def test_a_tile_too_large_to_hold_several_runs_one_step_after_another(bands3, model1, monkeypatch, finishing_threads):
    """Overlapped, about five tiles are in memory at once: a tile of many bands runs without the threads."""
    from geosr import predict
    from geosr.predict import Downscaler
    from geosr.stats import BandStats

    data = bands3.astype(np.float64)
    downscaler = Downscaler(model1, device="cpu", tile_size=8)
    plan = downscaler.plan(data.shape[1:], 2)
    stats = BandStats.of_block(data)
    extended = max(t.extended.size for t in plan.row_tiles) * max(t.extended.size for t in plan.col_tiles)
    assert downscaler.tile_bytes(plan, 3) == 3 * 8 * 3 * extended
    monkeypatch.setattr(predict, "OVERLAP_MAX_BYTES", downscaler.tile_bytes(plan, 3) - 1)
    sequential = list(downscaler.run(plan, stats, _tiles_of(data, plan), overlap=True))
    assert finishing_threads == {"MainThread"}
    monkeypatch.setattr(predict, "OVERLAP_MAX_BYTES", downscaler.tile_bytes(plan, 3))
    finishing_threads.clear()
    overlapped = list(downscaler.run(plan, stats, _tiles_of(data, plan), overlap=True))
    assert finishing_threads == {"geosr-finish"}
    for (_, a), (_, b) in zip(sequential, overlapped, strict=True):
        np.testing.assert_array_equal(a, b)
    # a batch of two such tiles does not fit: one step after another
    finishing_threads.clear()
    batched = Downscaler(model1, device="cpu", tile_size=8, batch_size=2)
    list(batched.run(plan, stats, _tiles_of(data, plan), overlap=True))
    assert finishing_threads == {"MainThread"}


@pytest.mark.parametrize("scale", [1.5, 2.5, 3.5])
@pytest.mark.parametrize("flip", sorted(FLIPS))
def test_the_nodata_mask_mirrors_at_fractional_scales(model1, model_cells, scale, flip):
    """x2.5 puts the centre of every fifth fine pixel on a coarse cell edge: such a pixel is nodata when
    either cell is, whichever way the raster runs (it went to the later cell: a missing cell blanked 6 x 6
    fine pixels one way and 4 x 4 mirrored). Even sides, so that the edges fall on fine centres."""
    data = fbm_surface((20, 20), seed=8)
    data[7, 11] = np.nan
    data[0, 3] = np.nan
    for model in (model1, model_cells):
        out = run(data, scale, model, ensemble=4)
        mirrored = FLIPS[flip](run(flipped(data, flip), scale, model, ensemble=4))
        np.testing.assert_array_equal(np.isnan(mirrored), np.isnan(out))
        assert_close(mirrored, out, 1e-3)  # the ensemble's values mirror too, the input cells' path included
        missing = np.zeros(data.shape, bool)
        missing[7, 11] = missing[0, 3] = True
        np.testing.assert_array_equal(np.isnan(out), expected_nodata_mask(missing, out.shape))


# A fuzzing audit: a dask run that self-calibrates failed on a raster with a side shorter than the scale
# (its calibration window is empty) where a chunk boundary fell on that window ("List at arrays[0] cannot
# be empty"), though numpy ran it; and a NumPy masked array's masked cells entered as data.


@pytest.mark.parametrize(("shape", "chunks"), [((15, 2), (15, 1)), ((2, 10), (1, 10))])
def test_dask_calibrating_a_side_shorter_than_the_scale_equals_numpy(model_calibrating, shape, chunks):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) ** 1.5
    whole = downscale(x, 3, str(model_calibrating), device="cpu", calibrate=True)
    lazy = downscale(da.from_array(x, chunks=chunks), 3, str(model_calibrating), device="cpu", calibrate=True)
    np.testing.assert_array_equal(lazy.compute(), whole)


def test_the_masked_cells_of_a_masked_array_are_missing(dem, model1):
    holes = np.zeros(dem.shape, bool)
    holes[5:9, 7:12] = True
    for values in (dem, (dem * 10).astype(np.int32)):
        masked = np.ma.masked_array(values, mask=holes)
        expected = downscale(np.where(holes, np.nan, values.astype(np.float64)), 2, str(model1), device="cpu")
        np.testing.assert_array_equal(downscale(masked, 2, str(model1), device="cpu"), expected)
    assert np.isnan(downscale(np.ma.masked_array(dem, mask=holes), 2, str(model1), device="cpu")).any()


@pytest.mark.parametrize("chunks", [(64, 64), (13, 17)])
def test_the_masked_cells_of_a_masked_dask_array_are_missing(dem, model1, chunks):
    # dask chunks that are masked arrays: their masked cells entered the statistics and the tiles as data
    holes = np.zeros(dem.shape, bool)
    holes[5:9, 7:12] = holes[30:34, 2:40] = True
    for values in (dem, (dem * 10).astype(np.int32)):
        stored = np.where(holes, -1e6, values).astype(values.dtype)  # what lies under the mask
        lazy = da.from_array(np.ma.masked_array(stored, mask=holes), chunks=chunks)
        expected = downscale(np.where(holes, np.nan, values.astype(np.float64)), 2, str(model1), device="cpu")
        np.testing.assert_array_equal(downscale(lazy, 2, str(model1), device="cpu").compute(), expected)

"""Output next to nodata: missing cells next to data are filled from their neighbours
(:func:`geosr.tiling.extend_into_missing`) before the interpolation and the network, within input
windows padded so that tiles stay exact. With the band mean there instead, the last cells before a
coast or void were bent towards it, worse than a classical resampler that ignores missing cells
(benchmarks/results/nodata_edges.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from conftest import REPO
from scipy import ndimage

import geosr
from geosr.degrade import area_average
from geosr.evaluate import interpolate_valid
from geosr.tiling import BICUBIC, CONSISTENT, TilePlan, extend_into_missing, fill_padding, fill_radius
from geosr.training.sources import JACKSBORO_TEST


def void(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2


def test_a_missing_cell_takes_the_mean_of_its_known_neighbours_one_ring_a_round():
    z = np.zeros((9, 9))
    valid = np.zeros((9, 9), dtype=bool)
    z[4, 4], valid[4, 4] = 5.0, True
    one = extend_into_missing(z, valid, 1)
    assert np.all(one[3:6, 3:6] == 5.0)
    assert np.count_nonzero(one) == 9  # the next ring waits for the next round
    two = extend_into_missing(z, valid, 2)
    assert np.all(two[2:7, 2:7] == 5.0) and np.count_nonzero(two) == 25
    # two known cells: a cell touching both takes their mean, a cell touching one takes its value
    z[4, 6], valid[4, 6] = 1.0, True
    both = extend_into_missing(z, valid, 1)
    assert both[4, 5] == 3.0 and both[3, 5] == 3.0 and both[4, 3] == 5.0 and both[4, 7] == 1.0
    # known cells never change, cells beyond the rounds keep their value
    assert both[4, 4] == 5.0 and both[4, 6] == 1.0 and both[0, 0] == 0.0


def test_a_trend_continues_a_slope_into_the_first_missing_ring_only():
    # a plane rising 1 a column, missing from column 5 on: the first ring's valid neighbours (W, NW, SW)
    # are all 4 with 3 beyond them, so the ring takes 4 + t; the next rings take the ring's mean (rows
    # away from the grid's edges, where a diagonal neighbour or the cell beyond it is missing)
    x = np.tile(np.arange(12, dtype=np.float64), (15, 1))
    valid = x < 5
    flat = extend_into_missing(np.where(valid, x, 0.0), valid, 3)
    sloped = extend_into_missing(np.where(valid, x, 0.0), valid, 3, trend=0.25)
    assert np.all(flat[:, 5:8] == 4.0)
    assert np.all(sloped[5:-5, 5:8] == 4.25)
    assert sloped[0, 5] == 4.25 and sloped[1, 5] == (4.0 + 4.25 + 4.25) / 3  # at row 1 the NW cell has none beyond
    assert np.array_equal(sloped[:, :5], x[:, :5]) and np.all(sloped[:, 8:] == 0.0)
    # a neighbour with nothing valid beyond it counts as itself: one valid cell, no slope to continue
    z, valid = np.zeros((7, 7)), np.zeros((7, 7), dtype=bool)
    z[3, 3], valid[3, 3] = 5.0, True
    assert np.array_equal(extend_into_missing(z, valid, 2, trend=0.25), extend_into_missing(z, valid, 2))


@pytest.mark.parametrize("trend", [0.0, 0.25])
def test_fill_commutes_with_affine_maps_flips_and_transposes(trend: float):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 23, 31))
    valid = rng.random((2, 23, 31)) < 0.3
    valid[1] = void((23, 31), (11, 15), 8) ^ True
    filled = extend_into_missing(np.where(valid, z, 0.0), valid, 6, trend)
    np.testing.assert_allclose(
        extend_into_missing(np.where(valid, 2.5 * z + 7.0, 7.0), valid, 6, trend),
        2.5 * filled + 7.0,
        rtol=0,
        atol=1e-12,
    )
    for view in (lambda a: a[..., ::-1, :], lambda a: a[..., :, ::-1], lambda a: np.swapaxes(a, -1, -2)):
        got = extend_into_missing(view(np.where(valid, z, 0.0)), view(valid), 6, trend)
        assert np.array_equal(got, view(filled))


def test_a_window_padded_by_the_rounds_fills_its_inside_as_the_whole_grid():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(60, 70))
    valid = ~void((60, 70), (30, 30), 18) & (rng.random((60, 70)) < 0.9)
    rounds = 7
    whole = extend_into_missing(np.where(valid, z, 0.0), valid, rounds)
    rows, cols = slice(20, 41), slice(25, 52)
    padded = (slice(rows.start - rounds, rows.stop + rounds), slice(cols.start - rounds, cols.stop + rounds))
    window = extend_into_missing(np.where(valid, z, 0.0)[padded], valid[padded], rounds)
    assert np.array_equal(window[rounds:-rounds, rounds:-rounds], whole[rows, cols])
    # without the padding the inside differs: the test can see a missing pad
    unpadded = extend_into_missing(np.where(valid, z, 0.0)[rows, cols], valid[rows, cols], rounds)
    assert not np.array_equal(unpadded, whole[rows, cols])


def test_with_a_trend_a_window_padded_by_one_more_cell_fills_its_inside_as_the_whole_grid():
    # the trend's first round reads the cell beyond each neighbour: a fill of r rounds reaches r + 1 cells
    rng = np.random.default_rng(5)
    z = rng.normal(size=(60, 70))
    valid = ~void((60, 70), (30, 30), 18) & (rng.random((60, 70)) < 0.9)
    rounds, trend = 7, 0.25
    pad = fill_padding(rounds, trend)
    assert pad == rounds + 1 and fill_padding(rounds) == rounds and fill_padding(0, trend) == 0
    whole = extend_into_missing(np.where(valid, z, 0.0), valid, rounds, trend)
    rows, cols = slice(20, 41), slice(25, 52)

    def window(p: int) -> np.ndarray:
        cut = (slice(rows.start - p, rows.stop + p), slice(cols.start - p, cols.stop + p))
        return extend_into_missing(np.where(valid, z, 0.0)[cut], valid[cut], rounds, trend)[p:-p, p:-p]

    assert np.array_equal(window(pad), whole[rows, cols])
    assert not np.array_equal(window(rounds), whole[rows, cols])  # the rounds alone are one cell short
    # and a plan with the trend pads its input windows by that one more cell
    plan = TilePlan.build((200, 200), (400, 400), 32, 10, CONSISTENT, fill=rounds, fill_trend=trend)
    flat = TilePlan.build((200, 200), (400, 400), 32, 10, CONSISTENT, fill=rounds)
    sloped, level = plan.row_tiles[6].source, flat.row_tiles[6].source
    assert (sloped.start, sloped.stop) == (level.start - 1, level.stop + 1)


def test_fill_radius_covers_the_network_and_the_kernel():
    # the coarse cells a valid fine pixel can see: halo / scale through the network, then the kernel's support
    assert fill_radius(20, 2, BICUBIC) == 10 + 2 + 1
    assert fill_radius(21, 4, CONSISTENT) == 6 + CONSISTENT.support + 1
    assert fill_radius(20, 2.5, BICUBIC) == 8 + 2 + 1


@pytest.mark.parametrize("kind", ["plain", "consistent", "shipped", "trend"])
def test_tiles_next_to_a_large_void_equal_the_whole_raster(
    kind: str, model1: Path, model_consistent: Path, model_like_shipped: Path, model_trend: Path
):
    model = {"plain": model1, "consistent": model_consistent, "shipped": model_like_shipped, "trend": model_trend}[kind]
    data = geosr.testing.fbm_surface((96, 84), seed=8, relief=300.0).astype(np.float64)
    data[void(data.shape, (40, 34), 24)] = np.nan
    data[:, -6:] = np.nan  # and a strip along an edge
    whole = geosr.downscale(data, 3, str(model), device="cpu", tile_size=4096)
    for tile in (16, (24, 40), 50):
        tiled = geosr.downscale(data, 3, str(model), device="cpu", tile_size=tile)
        assert np.array_equal(np.isnan(tiled), np.isnan(whole))
        np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-4 * 300)


def test_geotiff_with_a_sea_through_the_command_line_equals_the_array_path(
    cli: Any, make_geotiff: Any, model_like_shipped: Path, tmp_path: Path
):
    data = geosr.testing.fbm_surface((40, 44), seed=9, relief=200.0).astype(np.float32) + 100
    sea = np.add.outer(np.arange(40), np.arange(44)) < 30
    stored = np.where(sea, np.float32(-9999), data)
    src = make_geotiff("coast.tif", stored, nodata=-9999)
    out = tmp_path / "coast_x2.tif"
    result = cli("downscale", src, "--scale", 2, "--model", model_like_shipped, "-o", out, "--tile-size", 32)
    assert result.code == 0, result.err
    with rasterio.open(out) as dst:
        got = dst.read(1, masked=True).astype(np.float64).filled(np.nan)
    expected = geosr.downscale(np.where(sea, np.nan, data), 2, str(model_like_shipped), device="cpu")
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)


def test_shipped_dem_beats_a_renormalised_bicubic_next_to_a_void_on_the_held_out_real_dem():
    with rasterio.open(REPO / "examples" / "jacksboro_fault_dem.tif") as src:
        truth = src.read(1).astype(np.float64)[:200, JACKSBORO_TEST][:, :140]
    scale = 2
    masked = np.where(void(truth.shape, (100, 70), 35), np.nan, truth)
    coarse = area_average(masked, scale)
    missing = np.repeat(np.repeat(np.isnan(coarse), scale, axis=0), scale, axis=1)
    out = geosr.downscale(coarse, scale, "dem", device="cpu")
    assert np.array_equal(np.isnan(out), missing)
    near = ~missing & (ndimage.distance_transform_edt(~missing) <= 2 * scale)
    near[: 2 * scale], near[-2 * scale :], near[:, : 2 * scale], near[:, -2 * scale :] = False, False, False, False

    def rmse(values: np.ndarray) -> float:
        return float(np.sqrt(np.mean((values[near] - truth[near]) ** 2)))

    unmasked = geosr.downscale(area_average(truth, scale), scale, "dem", device="cpu")
    # with the band mean in the void: 9.0 m against bicubic's 6.5 (filled from the neighbours: 5.38; with
    # the dem card's fill trend, 5.31)
    assert rmse(out) < 0.9 * rmse(interpolate_valid(coarse, truth.shape, "bicubic"))
    # ... and within 1.6x of what the same pixels get with no void at all (4.1)
    assert rmse(out) < 1.6 * rmse(unmasked)


def test_tiles_whose_input_holds_no_data_skip_the_network(model1: Path, monkeypatch: Any):
    # the sea of a coastal DEM: such a tile's output is all nodata whatever the network says, and it ran anyway
    # (the SRTM tile at Gothenburg, 86% sea, x4: 52.9 s, now 31.8 s, the same output)
    from geosr.predict import Downscaler

    data = geosr.testing.fbm_surface((64, 96), seed=4, relief=300.0).astype(np.float64)
    data[:, 24:] = np.nan  # the east is sea
    whole = geosr.downscale(data, 2, str(model1), device="cpu", tile_size=4096)
    calls = []
    original = Downscaler._residuals

    def counted(self: Downscaler, ilr: np.ndarray, cells: np.ndarray | None = None) -> np.ndarray:
        calls.append(len(ilr))
        return original(self, ilr, cells)

    monkeypatch.setattr(Downscaler, "_residuals", counted)
    tiled = geosr.downscale(data, 2, str(model1), device="cpu", tile_size=32)
    assert np.array_equal(np.isnan(tiled), np.isnan(whole))
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-4 * 300)
    plan = Downscaler(str(model1), device="cpu", tile_size=32).plan(data.shape, 2)
    with_data = [t for t in plan if np.isfinite(data[t.rows.source.as_slice(), t.cols.source.as_slice()]).any()]
    assert 0 < sum(calls) == len(with_data) < len(plan)


def _nodata_benchmark() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("nodata_edges", REPO / "benchmarks" / "nodata_edges.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_nodata_benchmark_measures_near_edge_pixels_by_their_distance_to_a_missing_cell():
    # benchmarks/nodata_edges.py judges candidate models (--compare) on these two RMSEs
    bench = _nodata_benchmark()
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(48, 64))
    truth[20:30, 30:44] = np.nan  # a void of whole cells at x2
    truth_cut, coarse, missing = bench._degraded(truth, 2)
    assert coarse.shape == (24, 32) and np.array_equal(missing, np.isnan(truth))
    # brute force: valid pixels inside the 4-pixel border within 4 pixels (2 cells) of a missing pixel
    yy, xx = np.mgrid[:48, :64]
    gaps = np.argwhere(missing)
    distance = np.min(np.hypot(yy[..., None] - gaps[:, 0], xx[..., None] - gaps[:, 1]), axis=-1)
    inside = (yy >= 4) & (yy < 44) & (xx >= 4) & (xx < 60) & ~missing
    near = inside & (distance <= 4)
    error = np.where(near, 2.0, 0.5)
    outputs = {"a": np.where(missing, np.nan, truth + error), "b": np.where(missing, np.nan, truth - 1.0)}
    result = bench._rmses(truth_cut, missing, 2, outputs, ["a", "b"])
    assert result["pixels"] == (near.sum(), inside.sum())
    assert result["a"] == pytest.approx((2.0, np.sqrt(np.mean(error[inside] ** 2))))
    assert result["b"] == pytest.approx((1.0, 1.0))
    outputs["b"][5, 5] = np.nan
    with pytest.raises(AssertionError, match="another nodata mask"):
        bench._rmses(truth_cut, missing, 2, outputs, ["a", "b"])


def test_a_cards_fill_trend_changes_the_output_only_within_reach_of_the_filled_cells(
    model_like_shipped: Path, model_trend: Path
):
    # the same network (seed) with and without the card's trend: the fill changes only missing cells, so
    # fine pixels further from the missing ones than the kernel, the network and the conservation reach
    # are the same to the bit
    from geosr.predict import Downscaler

    scale = 2
    data = geosr.testing.fbm_surface((72, 80), seed=3, relief=300.0).astype(np.float64)
    data[:, 40:] = np.nan  # the east missing: fine columns from 80 on
    flat = geosr.downscale(data, scale, str(model_like_shipped), device="cpu")
    sloped = geosr.downscale(data, scale, str(model_trend), device="cpu")
    assert np.array_equal(np.isnan(flat), np.isnan(sloped))
    differs = np.isfinite(flat) & (flat != sloped)
    assert differs[:, 76:80].any()  # the last cells before the edge
    halo = Downscaler(str(model_trend), device="cpu").halo
    reach = scale * (CONSISTENT.support + 1) + halo + scale
    assert not differs[:, : 80 - reach].any()


def test_nodata_benchmark_compares_fill_trends_on_copies_with_the_same_weights(
    model_like_shipped: Path, tmp_path: Path
):
    # benchmarks/nodata_edges.py --trend T measures a model with fill_trend 0 against itself with T
    import torch

    from geosr.models.files import load_model

    bench = _nodata_benchmark()
    paths = [bench.with_trend(str(model_like_shipped), t, tmp_path) for t in (0.0, 0.25)]
    assert len(set(paths)) == 2
    original = load_model(model_like_shipped)
    for path, trend in zip(paths, (0.0, 0.25), strict=True):
        copy = load_model(path)
        assert copy.card.fill_trend == trend and copy.card.conserve == original.card.conserve
        for name, tensor in original.network.state_dict().items():
            assert torch.equal(copy.network.state_dict()[name], tensor)

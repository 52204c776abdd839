"""Promise 2 (tiling maths): every output pixel planned exactly once, halos and source windows right,
and the bicubic interpolation matrices equal to an independent implementation of Keys' kernel."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from geosr.georef import output_shape
from geosr.tiling import (
    CONSISTENT,
    KERNEL_SUPPORT,
    Span,
    TilePlan,
    cubic_kernel,
    footprint_index,
    halo_fraction,
    interpolation_matrix,
    kernel_named,
    plan_axis,
    source_span,
)


def keys(s: float) -> float:
    """Keys (1981) cubic convolution kernel with a = -0.5, written out from the paper."""
    s = abs(s)
    if s <= 1:
        return 1.5 * s**3 - 2.5 * s**2 + 1
    if s < 2:
        return -0.5 * s**3 + 2.5 * s**2 - 4 * s + 2
    return 0.0


def reference_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Bicubic resampling matrix along one axis, pixel by pixel: centres aligned, edges replicated."""
    matrix = np.zeros((n_out, n_in))
    for j in range(n_out):
        x = (j + 0.5) * n_in / n_out - 0.5  # fine centre in coarse index coordinates
        for k in range(math.floor(x) - 3, math.floor(x) + 4):
            matrix[j, min(max(k, 0), n_in - 1)] += keys(x - k)
    return matrix


PLANS = [
    # (in_shape, scale, tile, halo)
    ((13, 17), 2, 7, 4),
    ((13, 17), 3, 16, 4),
    ((13, 17), 4, 33, 4),
    ((13, 17), 2.5, 10, 4),
    ((20, 24), 2.5, 16, 20),
    ((5, 9), 2, 100, 4),  # one tile bigger than the raster
    ((6, 7), 2, 1, 3),  # one-pixel tiles
    ((1, 1), 4, 3, 2),  # a single coarse pixel
    ((50, 3), 1.3, 8, 0),  # no halo
]


@pytest.mark.parametrize(("in_shape", "scale", "tile", "halo"), PLANS)
def test_plan_covers_every_output_pixel_exactly_once(in_shape, scale, tile, halo):
    out_shape = output_shape(*in_shape, scale)
    plan = TilePlan.build(in_shape, out_shape, tile, halo)
    hits = np.zeros(out_shape, dtype=int)
    for t in plan:
        hits[t.rows.core.as_slice(), t.cols.core.as_slice()] += 1
        assert t.core_shape == (t.rows.core.size, t.cols.core.size)
        assert 0 < t.rows.core.size <= tile and 0 < t.cols.core.size <= tile
    assert (hits == 1).all()
    expected_tiles = math.ceil(out_shape[0] / tile) * math.ceil(out_shape[1] / tile)
    assert len(plan) == expected_tiles == len(list(plan))
    assert plan.grid_shape == (math.ceil(out_shape[0] / tile), math.ceil(out_shape[1] / tile))


@pytest.mark.parametrize(("in_shape", "scale", "tile", "halo"), PLANS)
def test_halo_and_source_spans(in_shape, scale, tile, halo):
    out_shape = output_shape(*in_shape, scale)
    plan = TilePlan.build(in_shape, out_shape, tile, halo)
    for axis_tiles, n_in, n_out in (
        (plan.row_tiles, in_shape[0], out_shape[0]),
        (plan.col_tiles, in_shape[1], out_shape[1]),
    ):
        for t in axis_tiles:
            core, ext, src = t.core, t.extended, t.source
            # the halo is the receptive radius on every side that is not a raster edge
            assert ext.start == max(0, core.start - halo)
            assert ext.stop == min(n_out, core.stop + halo)
            # the source window holds every coarse pixel the kernel touches for the extended window,
            # computed here independently (edge pixels replicated, so indices clamp to the raster)
            needed = set()
            for j in range(ext.start, ext.stop):
                x = (j + 0.5) * n_in / n_out - 0.5
                for k in range(math.floor(x) - KERNEL_SUPPORT + 1, math.floor(x) + KERNEL_SUPPORT + 1):
                    needed.add(min(max(k, 0), n_in - 1))
            assert src.start <= min(needed) and src.stop >= max(needed) + 1
            assert 0 <= src.start < src.stop <= n_in
            # and not needlessly more
            assert src == Span(min(needed), max(needed) + 1)


def test_last_tile_is_kept_when_smaller():
    tiles = plan_axis(n_in=10, n_out=25, tile=8, halo=2)
    assert [(t.core.start, t.core.stop) for t in tiles] == [(0, 8), (8, 16), (16, 24), (24, 25)]
    assert tiles[-1].extended == Span(22, 25)


def test_tiles_laid_from_the_far_end_are_whole_counted_from_it():
    # a south-up raster runs mirrored and is written back: its tiles must be whole from the stored first row
    tiles = plan_axis(n_in=10, n_out=25, tile=8, halo=2, from_end=True)
    assert [(t.core.start, t.core.stop) for t in tiles] == [(0, 1), (1, 9), (9, 17), (17, 25)]
    assert tiles[0].extended == Span(0, 3) and tiles[-1].extended == Span(15, 25)
    whole = plan_axis(n_in=10, n_out=24, tile=8, halo=2, from_end=True)
    assert [(t.core.start, t.core.stop) for t in whole] == [(0, 8), (8, 16), (16, 24)]


@pytest.mark.parametrize("tile", [0, -3])
def test_plan_refuses_non_positive_tile(tile):
    with pytest.raises(ValueError, match="tile size"):
        plan_axis(10, 20, tile, 2)


def test_tile_core_in_extended():
    plan = TilePlan.build((13, 17), (26, 34), 7, 4)
    for t in plan:
        rows, cols = t.core_in_extended
        extended = np.zeros(t.extended_shape)
        extended[rows, cols] = 1
        assert extended.sum() == t.core_shape[0] * t.core_shape[1]
        assert rows.start == t.rows.core.start - t.rows.extended.start
        assert cols.stop - cols.start == t.cols.core.size


@pytest.mark.parametrize(("n_in", "n_out"), [(7, 14), (13, 39), (10, 25), (5, 20), (1, 4), (2, 3), (9, 31)])
def test_interpolation_matrix_matches_independent_bicubic(n_in, n_out):
    full = Span(0, n_out)
    matrix = interpolation_matrix(full, source_span(full, n_in, n_out), n_in, n_out)
    src = source_span(full, n_in, n_out)
    embedded = np.zeros((n_out, n_in))
    embedded[:, src.as_slice()] = matrix
    np.testing.assert_allclose(embedded, reference_matrix(n_in, n_out), rtol=0, atol=1e-12)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_bicubic_known_weights_at_scale_2():
    # Fine pixel 3 of a x2 grid (centre 1.75 coarse pixels from the left edge) sits a quarter pixel
    # right of the centre of coarse pixel 1: Keys' weights for the distances 1.25, 0.25, 0.75, 1.75
    # to coarse pixels 0..3 are -9/128, 111/128, 29/128, -3/128; fine pixel 4 mirrors them.
    matrix = interpolation_matrix(Span(3, 5), Span(0, 8), 8, 16)
    np.testing.assert_allclose(matrix[0, :5], [-9 / 128, 111 / 128, 29 / 128, -3 / 128, 0], atol=1e-15)
    np.testing.assert_allclose(matrix[1, :5], [-3 / 128, 29 / 128, 111 / 128, -9 / 128, 0], atol=1e-15)
    # the kernel itself: 1 at 0, 0 at the other integers
    np.testing.assert_allclose(cubic_kernel(np.array([0.0, 1.0, 2.0, 2.5, -1.0])), [1, 0, 0, 0, 0], atol=1e-15)


@pytest.mark.parametrize(("n_in", "n_out"), [(20, 40), (20, 60), (20, 50), (17, 61)])
def test_bicubic_reproduces_quadratics_away_from_edges(n_in, n_out):
    # Keys' kernel with a = -0.5 is third-order accurate: it interpolates quadratics exactly.
    k = np.arange(n_in, dtype=float)
    x = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    quadratic = lambda t: 3.0 - 2.0 * t + 0.25 * t**2  # noqa: E731
    full = Span(0, n_out)
    fine = interpolation_matrix(full, Span(0, n_in), n_in, n_out) @ quadratic(k)
    interior = (x > 2) & (x < n_in - 3)
    assert interior.sum() > n_out // 2
    np.testing.assert_allclose(fine[interior], quadratic(x[interior]), rtol=0, atol=1e-10)


@pytest.mark.parametrize(("in_shape", "scale", "tile", "halo"), PLANS[:5])
def test_tile_matrices_give_the_whole_raster_values(in_shape, scale, tile, halo):
    # A tile's interpolation from its own source window equals the whole-raster interpolation
    # on its extended window: edges are replicated at the raster's border, never at a tile's.
    rng = np.random.default_rng(0)
    z = rng.normal(size=in_shape)
    out_shape = output_shape(*in_shape, scale)
    whole = reference_matrix(in_shape[0], out_shape[0]) @ z @ reference_matrix(in_shape[1], out_shape[1]).T
    plan = TilePlan.build(in_shape, out_shape, tile, halo)
    for t in plan:
        rows, cols = plan.matrices(t)
        assert rows.shape == (t.rows.extended.size, t.rows.source.size)
        assert cols.shape == (t.cols.extended.size, t.cols.source.size)
        window = z[t.rows.source.as_slice(), t.cols.source.as_slice()]
        np.testing.assert_allclose(
            rows @ window @ cols.T, whole[t.rows.extended.as_slice(), t.cols.extended.as_slice()], atol=1e-12
        )


def test_interpolation_matrix_refuses_a_short_source():
    with pytest.raises(ValueError, match="does not cover"):
        interpolation_matrix(Span(10, 20), Span(5, 8), 20, 40)


@pytest.mark.parametrize(("n_in", "n_out"), [(7, 14), (13, 39), (10, 25), (9, 31), (1, 4), (6, 7)])
def test_footprint_index_is_the_coarse_cell_holding_the_fine_centre(n_in, n_out):
    index = footprint_index(n_in, n_out, Span(0, n_out))
    for j, i in enumerate(index):
        centre = (Fraction(j) + Fraction(1, 2)) * Fraction(n_in, n_out)  # in coarse pixel-edge coordinates
        if centre.denominator == 1:  # exactly on a coarse edge: either neighbour is right
            assert int(i) in (int(centre) - 1, min(int(centre), n_in - 1))
        else:
            assert i == math.floor(centre)
    assert index.min() >= 0 and index.max() <= n_in - 1
    assert set(index.tolist()) == set(range(n_in))  # refining: every coarse cell has fine pixels
    # a sub-span gives the same global indices
    np.testing.assert_array_equal(footprint_index(n_in, n_out, Span(2, n_out - 1)), index[2 : n_out - 1])


@pytest.mark.parametrize(("n_in", "n_out"), [(7, 14), (10, 25), (20, 50), (20, 30), (9, 31), (6, 21), (2, 5)])
def test_footprint_pair_takes_both_cells_for_a_centre_on_their_edge_and_mirrors(n_in, n_out):
    from geosr.tiling import footprint_pair

    later, earlier = footprint_pair(n_in, n_out, Span(0, n_out))
    for j in range(n_out):
        centre = (Fraction(j) + Fraction(1, 2)) * Fraction(n_in, n_out)
        if centre.denominator == 1:  # on the edge between cells centre - 1 and centre
            assert (later[j], earlier[j]) == (int(centre), int(centre) - 1)
        else:
            assert later[j] == earlier[j] == math.floor(centre)
    # the cells of a pixel, mirrored, are the cells of the mirrored pixel: the rule has no direction
    for j in range(n_out):
        mirrored = {n_in - 1 - int(later[j]), n_in - 1 - int(earlier[j])}
        assert mirrored == {int(later[n_out - 1 - j]), int(earlier[n_out - 1 - j])}
    np.testing.assert_array_equal(footprint_index(n_in, n_out, Span(0, n_out)), later)


def test_halo_fraction():
    assert halo_fraction(100, 0) == 0
    assert halo_fraction(1024, 20) == pytest.approx(1 - 1024**2 / 1064**2)
    assert 0 < halo_fraction(16, 4) < 1


# --- the consistent kernel (limit of back-projection) -----------------------------------------


def _consistent(coarse: np.ndarray, scale: int) -> np.ndarray:
    (h, w) = coarse.shape
    rows = interpolation_matrix(Span(0, h * scale), Span(0, h), h, h * scale, CONSISTENT)
    cols = interpolation_matrix(Span(0, w * scale), Span(0, w), w, w * scale, CONSISTENT)
    return rows @ coarse @ cols.T


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_consistent_kernel_keeps_the_cell_averages_and_equals_back_projection(scale):
    from geosr.degrade import area_average
    from geosr.evaluate import back_project

    rng = np.random.default_rng(scale)
    coarse = rng.normal(size=(60, 64)).cumsum(axis=0).cumsum(axis=1)  # rough, like terrain
    fine = _consistent(coarse, scale)
    inner = (slice(20, -20), slice(20, -20))  # away from the replicated edges
    error = area_average(fine, scale) - coarse
    assert np.abs(error[inner]).max() < 1e-6 * np.ptp(coarse)
    # bicubic does not keep them: the property is not trivial
    bicubic = interpolation_matrix(Span(0, 60 * scale), Span(0, 60), 60, 60 * scale)
    cols = interpolation_matrix(Span(0, 64 * scale), Span(0, 64), 64, 64 * scale)
    assert np.abs((area_average(bicubic @ coarse @ cols.T, scale) - coarse)[inner]).max() > 1e-3 * np.ptp(coarse)
    # iterative back-projection (Lanczos up, error fed back) converges to the same interpolation
    reference = back_project(coarse, scale, iterations=60)
    fine_inner = (slice(20 * scale, -20 * scale), slice(20 * scale, -20 * scale))
    assert np.abs(fine - reference)[fine_inner].max() < 1e-5 * np.ptp(coarse)


@pytest.mark.parametrize(("n_in", "n_out"), [(30, 60), (30, 75), (9, 31), (1, 4)])
def test_consistent_weights_sum_to_one_and_constants_stay(n_in, n_out):
    matrix = interpolation_matrix(Span(0, n_out), Span(0, n_in), n_in, n_out, CONSISTENT)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)
    assert source_span(Span(0, n_out), n_in, n_out, CONSISTENT) == Span(0, n_in)


def test_consistent_weights_take_distances_of_any_number_type():
    # the weights are cached by the bytes of the distances: integer or float32 distances must not be
    # read back as other float64 numbers
    expected = CONSISTENT.weights(np.array([0.0, 1.0, 2.0, -0.75, 0.25]), 2.0)
    np.testing.assert_array_equal(CONSISTENT.weights(np.array([0, 1, 2]), 2.0), expected[:3])
    single = np.array([-0.75, 0.25, 1.0], dtype=np.float32)
    np.testing.assert_array_equal(CONSISTENT.weights(single, 2.0), expected[[3, 4, 1]])
    assert len(set(expected[:3])) == 3


@pytest.mark.parametrize(("in_shape", "scale", "tile", "halo"), PLANS[:5])
def test_consistent_tile_matrices_give_the_whole_raster_values(in_shape, scale, tile, halo):
    rng = np.random.default_rng(1)
    z = rng.normal(size=in_shape)
    out_shape = output_shape(*in_shape, scale)
    rows_all = interpolation_matrix(Span(0, out_shape[0]), Span(0, in_shape[0]), in_shape[0], out_shape[0], CONSISTENT)
    cols_all = interpolation_matrix(Span(0, out_shape[1]), Span(0, in_shape[1]), in_shape[1], out_shape[1], CONSISTENT)
    whole = rows_all @ z @ cols_all.T
    plan = TilePlan.build(in_shape, out_shape, tile, halo, CONSISTENT)
    for t in plan:
        rows, cols = plan.matrices(t)
        window = z[t.rows.source.as_slice(), t.cols.source.as_slice()]
        np.testing.assert_allclose(
            rows @ window @ cols.T, whole[t.rows.extended.as_slice(), t.cols.extended.as_slice()], atol=1e-12
        )


def test_kernel_named_reads_card_descriptions():
    assert kernel_named("bicubic (Keys a=-0.5), edges replicated").name == "bicubic"
    assert kernel_named(CONSISTENT.description) is CONSISTENT
    with pytest.raises(ValueError, match="unknown interpolation 'spline16'"):
        kernel_named("spline16")

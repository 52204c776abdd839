"""Promise 1 (georeferencing): output shape, transform and bounds of the fine grid."""

from __future__ import annotations

import math

import pytest
from affine import Affine
from conftest import affine_mul

from geosr.errors import InputError, ScaleError
from geosr.georef import check_scale, output_shape, output_transform, pixel_centres, scale_for_resolution

NORTH_UP = Affine(30.0, 0.0, 500_000.0, 0.0, -30.0, 4_200_000.0)
#: Rotated by 30 degrees, then sheared: nothing lines up with the axes.
ROTATED = affine_mul(
    affine_mul(Affine.translation(600_000.0, 5_000_000.0), Affine.rotation(30.0)),
    affine_mul(Affine.shear(10.0, 0.0), Affine.scale(20.0, -25.0)),
)


def corners(transform: Affine, shape: tuple[int, int]) -> list[tuple[float, float]]:
    h, w = shape
    return [affine_mul(transform, (c, r)) for r, c in ((0, 0), (0, w), (h, 0), (h, w))]


def assert_points_close(a: list[tuple[float, float]], b: list[tuple[float, float]], tol: float = 1e-6) -> None:
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert math.isclose(xa, xb, rel_tol=1e-12, abs_tol=tol)
        assert math.isclose(ya, yb, rel_tol=1e-12, abs_tol=tol)


def assert_affine_close(a: Affine, b: Affine) -> None:
    for x, y in zip(a, b, strict=True):
        assert math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-9), (a, b)


@pytest.mark.parametrize(
    ("shape", "scale", "expected"),
    [
        ((10, 12), 2, (20, 24)),
        ((7, 9), 3, (21, 27)),
        ((13, 17), 4, (52, 68)),
        ((20, 24), 2.5, (50, 60)),
        ((21, 19), 2.7, (57, 51)),  # 56.7 and 51.3 round to the nearest pixel
        ((2, 1), 1.3, (3, 1)),  # one axis gains a pixel, the other stays
    ],
)
def test_output_shape_is_rounded_product(shape, scale, expected):
    assert output_shape(*shape, scale) == expected


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_integer_scale_transform_is_affine_scale(scale):
    shape = (11, 14)
    out_shape = output_shape(*shape, scale)
    assert out_shape == (11 * scale, 14 * scale)
    out = output_transform(NORTH_UP, shape, out_shape)
    assert_affine_close(out, affine_mul(NORTH_UP, Affine.scale(1 / scale)))
    assert out.a == pytest.approx(30.0 / scale) and out.e == pytest.approx(-30.0 / scale)
    assert (out.c, out.f) == (NORTH_UP.c, NORTH_UP.f)  # same upper-left corner


def test_scale_2_5_transform_and_bounds():
    shape = (20, 24)
    out_shape = output_shape(*shape, 2.5)
    out = output_transform(NORTH_UP, shape, out_shape)
    assert_affine_close(out, affine_mul(NORTH_UP, Affine.scale(1 / 2.5)))
    assert out.a == pytest.approx(12.0)
    assert_points_close(corners(out, out_shape), corners(NORTH_UP, shape))


@pytest.mark.parametrize(("shape", "scale"), [((21, 19), 2.7), ((13, 17), 2.5), ((5, 3), 3.3), ((101, 7), 1.01)])
def test_non_integer_scale_keeps_bounds_exactly(shape, scale):
    h, w = shape
    out_shape = output_shape(h, w, scale)
    out = output_transform(NORTH_UP, shape, out_shape)
    # per-axis factors are the ones that make the bounds match, not the requested scale
    assert out.a == pytest.approx(NORTH_UP.a * w / out_shape[1], rel=1e-12)
    assert out.e == pytest.approx(NORTH_UP.e * h / out_shape[0], rel=1e-12)
    assert_points_close(corners(out, out_shape), corners(NORTH_UP, shape))


@pytest.mark.parametrize("scale", [2, 2.5, 3.7])
def test_rotated_transform_stays_consistent(scale):
    shape = (16, 22)
    out_shape = output_shape(*shape, scale)
    out = output_transform(ROTATED, shape, out_shape)
    # same four corners, so the same footprint on the ground
    assert_points_close(corners(out, out_shape), corners(ROTATED, shape))
    # each fine pixel centre lies where the coarse grid says it does
    rows = pixel_centres(out_shape[0], shape[0])
    cols = pixel_centres(out_shape[1], shape[1])
    for i in (0, 3, out_shape[0] - 1):
        for j in (0, 5, out_shape[1] - 1):
            fine = affine_mul(out, (j + 0.5, i + 0.5))
            coarse = affine_mul(ROTATED, (cols[j] + 0.5, rows[i] + 0.5))
            assert fine == pytest.approx(coarse, abs=1e-6)
    # rotation and shear angles are unchanged: only the pixel size shrinks
    assert out.a / out.d == pytest.approx(ROTATED.a / ROTATED.d)
    assert out.b / out.e == pytest.approx(ROTATED.b / ROTATED.e)


def test_pixel_centres_in_coarse_index_coordinates():
    # scale 2: fine pixels 0 and 1 straddle the centre of coarse pixel 0, a quarter pixel each side
    assert pixel_centres(4, 2) == pytest.approx([-0.25, 0.25, 0.75, 1.25])
    # identity: fine centres are the coarse centres
    assert pixel_centres(5, 5) == pytest.approx([0, 1, 2, 3, 4])


@pytest.mark.parametrize(("resolution", "expected"), [(10, 3.0), (12, 2.5), (7.5, 4.0), (15, 2.0)])
def test_scale_for_resolution(resolution, expected):
    assert scale_for_resolution(NORTH_UP, resolution) == pytest.approx(expected, rel=1e-12)


def test_scale_for_resolution_rotated_square_pixels():
    rotated = affine_mul(affine_mul(Affine.translation(1000, 2000), Affine.rotation(40.0)), Affine.scale(30.0, -30.0))
    assert scale_for_resolution(rotated, 10) == pytest.approx(3.0, rel=1e-12)


@pytest.mark.parametrize("transform", [Affine(30.0, 0, 0, 0, -20.0, 0), ROTATED])
def test_scale_for_resolution_needs_square_pixels(transform):
    with pytest.raises(ScaleError, match="square pixels"):
        scale_for_resolution(transform, 5)


@pytest.mark.parametrize("resolution", [30, 45, 0, -10, float("nan"), float("inf"), "ten", None])
def test_scale_for_resolution_refusals(resolution):
    with pytest.raises(ScaleError):
        scale_for_resolution(NORTH_UP, resolution)


@pytest.mark.parametrize("scale", [0.5, 1, 1.0, 0, -2, float("nan"), float("inf"), "abc", None, [2]])
def test_check_scale_refusals(scale):
    with pytest.raises(ScaleError) as info:
        check_scale(scale)
    assert isinstance(info.value, ValueError)  # callers who only know the builtins can catch it
    assert "scale" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), "inf", "-inf"])
def test_a_scale_that_is_not_finite_is_called_so(scale):
    """inf is not "not greater than 1": the message says what is wrong with it."""
    with pytest.raises(ScaleError, match=r"^scale must be a finite number greater than 1, got .*(nan|inf)"):
        check_scale(scale)


@pytest.mark.parametrize(("scale", "expected"), [(2, 2.0), ("3", 3.0), (1.0001, 1.0001), (2.5, 2.5)])
def test_check_scale_accepts(scale, expected):
    assert check_scale(scale) == expected


def test_output_shape_refuses_zero_size_and_bad_scale():
    with pytest.raises(InputError, match="zero size"):
        output_shape(0, 5, 2)
    with pytest.raises(InputError, match="zero size"):
        output_shape(5, 0, 2)
    with pytest.raises(ScaleError):
        output_shape(5, 5, 1)


def test_output_shape_refuses_a_scale_that_refines_nothing():
    # 10 x 10 at 1.01 would round back to 10 x 10: a copy of the input under a new name
    with pytest.raises(ScaleError, match=r"scale 1.01 leaves the 10 x 10 raster 10 x 10 pixels.*above 1.05"):
        output_shape(10, 10, 1.01)
    assert output_shape(10, 10, 1.06) == (11, 11)
    assert output_shape(50, 70, 1.01) == (50, 71)  # one axis refined: allowed, the transform says so


def test_the_smallest_scale_suggested_is_above_the_given_one():
    with pytest.raises(ScaleError, match=r"above 1\.0005$"):
        output_shape(1000, 1000, 1.0004)

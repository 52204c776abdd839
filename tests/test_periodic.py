"""Global grids: columns that span 360 degrees of longitude wrap around, so the output has no seam where the
last column meets the first (the Greenwich meridian of a 0-360 climate grid, the antimeridian of a -180-180 one).

Before, the raster's two edges were run as edges (their pixels replicated, the network's halo cut there): a
global grid came out with a discontinuity along that meridian, up to 0.69 K on a real temperature grid. The
defining property now: the output of a global grid rolled by k columns is the output rolled by k x scale
columns, and every front door (NumPy, dask, the accessor, a GeoTIFF) gives the same, tiled or whole.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import write_geotiff
from rasterio.transform import from_origin

from geosr.accessor import periodic_longitudes
from geosr.io import full_turn, periodic_columns, raster_info, read_window
from geosr.predict import downscale
from geosr.testing import fbm_surface, random_model
from geosr.tiling import Span, plan_axis, wrapped_indices, wrapped_pieces

NY, NX = 18, 36  # 10-degree cells: a global grid


def grid(seed: int = 1, missing: bool = True) -> np.ndarray:
    z = fbm_surface((NY, NX), seed=seed).astype(np.float64)
    if missing:
        z[4:7, 10:13] = np.nan
        z[9:12, -2:] = np.nan  # a void across the seam
        z[9:12, :2] = np.nan
    return z


def test_wrapped_pieces_put_side_by_side_are_the_unwrapped_span():
    n = 10
    for span in (Span(-3, 4), Span(7, 13), Span(-2, 12), Span(-12, 25), Span(2, 8)):
        pieces = wrapped_pieces(span, n)
        assert all(0 <= p.start < p.stop <= n for p in pieces)
        joined = np.concatenate([np.arange(p.start, p.stop) for p in pieces])
        assert np.array_equal(joined, wrapped_indices(span, n))
        assert np.array_equal(joined, np.arange(span.start, span.stop) % n)


def test_a_periodic_axis_reaches_across_its_edges_and_a_plain_one_stops_there():
    plain = plan_axis(36, 72, 24, halo=5)
    periodic = plan_axis(36, 72, 24, halo=5, periodic=True)
    assert plain[0].extended.start == 0 and plain[-1].extended.stop == 72 and plain[0].source.start == 0
    assert periodic[0].extended.start == -5 and periodic[-1].extended.stop == 77
    assert periodic[0].source.start < 0 and periodic[-1].source.stop > 36
    assert [t.core for t in plain] == [t.core for t in periodic]


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("fixture", ["model1", "model_like_shipped", "model_cells"])
def test_a_global_grid_rolled_gives_its_output_rolled(request, fixture, scale):
    model = str(request.getfixturevalue(fixture))
    z = grid()
    whole = downscale(z, scale, model, device="cpu", periodic=True, tile_size=4096)
    for tile in [(24, 20), 16]:
        tiled = downscale(z, scale, model, device="cpu", periodic=True, tile_size=tile)
        np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-4)
        assert np.array_equal(np.isnan(tiled), np.isnan(whole))
    for k in (1, 7, 20):
        rolled = downscale(np.roll(z, k, axis=1), scale, model, device="cpu", periodic=True, tile_size=(24, 20))
        back = np.roll(rolled, -k * scale, axis=1)
        np.testing.assert_allclose(back, whole, rtol=1e-5, atol=1e-4)
        assert np.array_equal(np.isnan(back), np.isnan(whole))
    # without wrapping, the edges differ (the seam), and only they
    plain = downscale(z, scale, model, device="cpu", tile_size=4096)
    edge = 12 * scale  # beyond the halo and the kernel's support from either edge
    assert np.nanmax(np.abs(plain - whole)[:, :2]) > 1e-3
    np.testing.assert_allclose(plain[:, edge:-edge], whole[:, edge:-edge], rtol=1e-5, atol=1e-4)


def test_a_fractional_scale_tiles_as_the_whole_grid(model_like_shipped):
    z = grid(missing=False)
    whole = downscale(z, 2.5, str(model_like_shipped), device="cpu", periodic=True, tile_size=4096)
    tiled = downscale(z, 2.5, str(model_like_shipped), device="cpu", periodic=True, tile_size=(20, 15))
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-4)
    rolled = downscale(np.roll(z, 2, axis=1), 2.5, str(model_like_shipped), device="cpu", periodic=True)
    np.testing.assert_allclose(np.roll(rolled, -5, axis=1), whole, rtol=1e-5, atol=1e-4)  # 2 cells = 5 pixels


@pytest.mark.parametrize("ensemble", [4, 8])
def test_a_self_ensemble_wraps_as_well(model1, ensemble):
    z = grid()
    whole = downscale(z, 2, str(model1), device="cpu", periodic=True, ensemble=ensemble, tile_size=4096)
    tiled = downscale(z, 2, str(model1), device="cpu", periodic=True, ensemble=ensemble, tile_size=(20, 24))
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-4)
    rolled = downscale(np.roll(z, 5, axis=1), 2, str(model1), device="cpu", periodic=True, ensemble=ensemble)
    np.testing.assert_allclose(np.roll(rolled, -10, axis=1), whole, rtol=1e-5, atol=1e-4)


def test_dask_wraps_as_numpy_does_whatever_the_chunks(model_cells):
    da = pytest.importorskip("dask.array")
    z = grid()
    eager = downscale(z, 2, str(model_cells), device="cpu", periodic=True, tile_size=(20, 24))
    for chunks in [(6, 7), (18, 36), (5, 30)]:
        lazy = downscale(
            da.from_array(z, chunks=chunks), 2, str(model_cells), device="cpu", periodic=True, tile_size=(20, 24)
        )
        np.testing.assert_allclose(lazy.compute(), eager, rtol=1e-5, atol=1e-4)


def lonlat(z: np.ndarray, west: float = -180.0, **attrs) -> xr.DataArray:
    lon = west + 10.0 * (np.arange(z.shape[1]) + 0.5)
    lat = 90.0 - 10.0 * (np.arange(z.shape[0]) + 0.5)
    return xr.DataArray(z, dims=("lat", "lon"), coords={"lat": lat, "lon": lon}, attrs=attrs)


def test_the_accessor_wraps_a_global_longitude_axis_and_not_a_regional_one(model1):
    z = grid()
    expected = downscale(z, 2, str(model1), device="cpu", periodic=True)
    out = lonlat(z).geosr.downscale(2, model=str(model1), device="cpu")
    np.testing.assert_allclose(out.values, expected, rtol=1e-5, atol=1e-4)
    # 0-360 and descending longitudes too; by CF attributes on a dimension named x
    east = lonlat(z, west=0.0).geosr.downscale(2, model=str(model1), device="cpu")
    np.testing.assert_allclose(east.values, expected, rtol=1e-5, atol=1e-4)
    flipped = lonlat(z[:, ::-1]).assign_coords(lon=lambda d: d.lon[::-1].values)
    back = flipped.geosr.downscale(2, model=str(model1), device="cpu").values[:, ::-1]
    np.testing.assert_allclose(back, expected, rtol=1e-5, atol=1e-4)
    cf = lonlat(z).rename(lon="x", lat="y")
    cf["x"].attrs.update(standard_name="longitude", units="degrees_east")
    np.testing.assert_allclose(cf.geosr.downscale(2, model=str(model1), device="cpu").values, expected, atol=1e-4)
    # a regional grid (35 of the 36 columns) and a projected axis spanning 360 units run as before
    regional = lonlat(z[:, :35])
    plain = downscale(z[:, :35], 2, str(model1), device="cpu")
    np.testing.assert_allclose(regional.geosr.downscale(2, model=str(model1), device="cpu").values, plain, atol=1e-4)
    metres = lonlat(z).rename(lon="x", lat="y")
    plain = downscale(z, 2, str(model1), device="cpu")
    np.testing.assert_allclose(metres.geosr.downscale(2, model=str(model1), device="cpu").values, plain, atol=1e-4)


def global_tif(path, z, west=-180.0, crs="EPSG:4326", flip_cols=False):
    data = z[:, ::-1] if flip_cols else z
    transform = from_origin(west, 90.0, 10.0, 10.0)
    if flip_cols:  # stored east to west
        transform = rasterio.Affine(-10.0, 0.0, west + 360.0, 0.0, -10.0, 90.0)
    return write_geotiff(
        path, np.where(np.isnan(data), -9999.0, data).astype(np.float32), nodata=-9999.0, transform=transform, crs=crs
    )


def wraps(path) -> bool:
    with rasterio.open(path) as dataset:
        return periodic_columns(raster_info(dataset))


def test_periodic_columns_only_for_a_geographic_grid_of_one_full_turn(tmp_path):
    z = grid(missing=False)
    assert wraps(global_tif(tmp_path / "a.tif", z))
    assert wraps(global_tif(tmp_path / "b.tif", z, west=0.0))
    assert wraps(global_tif(tmp_path / "c.tif", z, flip_cols=True))
    assert not wraps(global_tif(tmp_path / "d.tif", z[:, :35]))
    assert not wraps(global_tif(tmp_path / "e.tif", z, crs="EPSG:32633"))


def test_a_global_geotiff_wraps_as_the_accessor_does_tiled_or_whole(cli, tmp_path, model_like_shipped):
    z = grid()
    expected = lonlat(z).geosr.downscale(2, model=str(model_like_shipped), device="cpu").values
    for name, flip in (("global.tif", False), ("east_west.tif", True)):
        src = global_tif(tmp_path / name, z, flip_cols=flip)
        for tile in ("4096", "20"):
            dst = tmp_path / f"{name}_{tile}_x2.tif"
            result = cli(
                "downscale",
                src,
                "--scale",
                2,
                "--model",
                model_like_shipped,
                "--device",
                "cpu",
                "--tile-size",
                tile,
                "-o",
                dst,
                "-q",
            )
            assert result.code == 0, result.err
            with rasterio.open(dst) as out:
                got = (
                    out.read(1, masked=True).filled(np.nan)[:, ::-1]
                    if flip
                    else out.read(1, masked=True).filled(np.nan)
                )
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
            assert np.array_equal(np.isnan(got), np.isnan(expected))


def test_read_window_reads_columns_beyond_the_edges_from_the_other_side(tmp_path):
    z = grid(missing=False)
    with rasterio.open(global_tif(tmp_path / "g.tif", z)) as dataset:
        got = read_window(dataset, Span(2, 5), Span(-3, 40))[0]
    np.testing.assert_allclose(got, z[2:5, np.arange(-3, 40) % NX], rtol=1e-6)


@pytest.mark.parametrize(
    ("step", "n", "wraps"),
    [
        (0.0083333, 43200, True),  # 30 arc-seconds stored rounded: 359.99856 degrees, 0.17 of a pixel short
        (0.041667, 8640, True),  # 2.5 arc-minutes rounded up: 0.07 of a pixel long
        (1.0, 360, True),
        (1.0, 359, False),  # a column short: a regional grid
        (1.0, 361, False),
        (0.5, 719, False),
        (2.5, 144, True),
    ],
)
def test_a_full_turn_is_measured_in_pixels(step, n, wraps):
    assert full_turn(step * n, step) is wraps


def test_the_accessor_wraps_rounded_float32_and_rotated_pole_longitudes():
    step = np.float32(0.1)
    lon = np.cumsum(np.full(3600, step, dtype=np.float32)) - np.float32(180.05)  # float32 steps add up 0.0036 off
    lat = np.array([0.05, -0.05])
    da = xr.DataArray(np.zeros((2, 3600), np.float32), dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    assert abs(float(lon[-1] - lon[0]) / 3599 * 3600 - 360) > 1e-3  # beyond a relative 1e-6 of a turn
    assert periodic_longitudes(da, "lon", None, float(lon[-1] - lon[0]) / 3599)
    rotated = xr.DataArray(np.zeros((2, 36)), dims=("rlat", "rlon"), coords={"rlat": lat, "rlon": np.arange(36.0) * 10})
    rotated["rlon"].attrs.update(standard_name="grid_longitude", units="degrees")
    assert periodic_longitudes(rotated, "rlon", None, 10.0)
    rotated["rlon"].attrs["units"] = "m"
    assert not periodic_longitudes(rotated, "rlon", None, 10.0)


# --- geosr evaluate measures a global grid as geosr downscale runs it ------------------------------------


@pytest.mark.parametrize("method", ["bicubic", "cubic_spline", "lanczos", "backprojection"])
def test_the_classical_methods_wrap_a_global_grid_too(method):
    from geosr.evaluate import classical

    coarse = fbm_surface((12, 24), seed=3)
    whole = classical(coarse, 2, method, periodic=True)
    for k in (1, 9):
        rolled = classical(np.roll(coarse, k, axis=1), 2, method, periodic=True)
        np.testing.assert_allclose(np.roll(rolled, -2 * k, axis=1), whole, rtol=1e-6, atol=1e-6 * np.ptp(coarse))
    plain = classical(coarse, 2, method)
    assert np.abs(plain - whole)[:, :2].max() > 1e-3 * np.ptp(coarse)  # the edges differ, the middle not
    np.testing.assert_allclose(plain[:, 20:-20], whole[:, 20:-20], atol=1e-4 * np.ptp(coarse))


def test_evaluate_runs_the_model_on_a_global_grid_as_downscale_does(model_like_shipped):
    from geosr.degrade import area_average
    from geosr.evaluate import evaluate_array

    fine = fbm_surface((36, 72), seed=5)
    results = evaluate_array(fine, 2, str(model_like_shipped), device="cpu", periodic=True)
    estimate = downscale(area_average(fine, 2), 2, str(model_like_shipped), device="cpu", periodic=True)
    inner = (slice(4, -4), slice(4, -4))
    assert results["model_conserved"].rmse == pytest.approx(np.sqrt(np.mean((estimate - fine)[inner] ** 2)), rel=1e-5)
    plain = evaluate_array(fine, 2, str(model_like_shipped), device="cpu")
    assert plain["model_conserved"].rmse != pytest.approx(results["model_conserved"].rmse, rel=1e-6)


def test_geosr_evaluate_says_when_a_grid_wraps(cli, tmp_path):
    z = fbm_surface((40, 72), seed=5)
    west = rasterio.Affine(5.0, 0.0, -180.0, 0.0, -4.5, 90.0)
    for name, data, scale, wraps in (("global", z, 2, True), ("odd", z[:, :71], 2, False), ("x5", z, 5, False)):
        transform = west if name != "odd" else rasterio.Affine(360 / 71, 0.0, -180.0, 0.0, -4.5, 90.0)
        path = write_geotiff(tmp_path / f"{name}.tif", data, transform=transform, crs="EPSG:4326")
        result = cli("evaluate", path, "--scale", scale, "--no-model", "--json")
        assert result.code == 0, result.err
        assert json.loads(result.out)["periodic"] is wraps, name  # 71 columns at x2, 72 at x5: not whole cells


def test_a_periodic_and_a_plain_dask_run_of_one_array_do_not_share_their_tiles(model1):
    da = pytest.importorskip("dask.array")
    lazy = da.from_array(grid(missing=False), chunks=(9, 18))
    wrapped = downscale(lazy, 2, str(model1), device="cpu", periodic=True)
    plain = downscale(lazy, 2, str(model1), device="cpu")
    assert wrapped.name != plain.name
    both = da.stack([wrapped, plain]).compute()  # one graph: each keeps its own tiles
    np.testing.assert_allclose(both[0], wrapped.compute(), atol=1e-5)
    np.testing.assert_allclose(both[1], plain.compute(), atol=1e-5)
    assert np.abs(both[0] - both[1]).max() > 1e-3


def test_the_output_says_whether_it_wrapped(cli, tmp_path, model1):
    z = grid(missing=False)
    assert lonlat(z).geosr.downscale(2, model=str(model1), device="cpu").attrs["geosr_periodic"] == "yes"
    assert lonlat(z[:, :35]).geosr.downscale(2, model=str(model1), device="cpu").attrs["geosr_periodic"] == "no"
    for name, data, wraps in (("global.tif", z, "yes"), ("regional.tif", z[:, :35], "no")):
        src = global_tif(tmp_path / name, data)
        result = cli("downscale", src, "--scale", 2, "--model", model1, "--device", "cpu", "-q")
        assert result.code == 0, result.err
        with rasterio.open(tmp_path / name.replace(".tif", "_x2.tif")) as out:
            assert out.tags()["GEOSR_PERIODIC"] == wraps


@pytest.fixture(scope="module")
def calibrating(tmp_path_factory):
    """A random self-calibrating model whose gain on :func:`calibrated_grid` lies inside (0, 1)."""
    path = tmp_path_factory.mktemp("cal") / "cal.safetensors"
    return str(
        random_model(
            path, depth=4, width=8, seed=3, name="cal", interpolation="consistent", conserve=True, calibrate=True
        )
    )


def calibrated_grid() -> np.ndarray:
    return fbm_surface((36, 72), seed=1, relief=500.0)


def test_a_self_calibrating_model_gets_the_same_gains_wherever_the_columns_start(calibrating):
    from geosr.calibrate import residual_gains
    from geosr.predict import Downscaler

    downscaler = Downscaler(calibrating, device="cpu")
    z = calibrated_grid()
    gains = [float(residual_gains(downscaler, np.roll(z, k, axis=1)[None], 2, periodic=True)[0]) for k in (0, 1, 37)]
    assert 0.01 < gains[0] < 0.99  # an estimate, neither clipped end
    # to float32's precision: the network's sums round differently with a pixel's place in its vector registers
    # (1.5e-7 apart on an AVX-512 CPU, equal on the machine this was written on); without the wrap, by half
    assert gains[1] == pytest.approx(gains[0], rel=1e-6) and gains[2] == pytest.approx(gains[0], rel=1e-6)
    plain = [float(residual_gains(downscaler, np.roll(z, k, axis=1)[None], 2)[0]) for k in (0, 37)]
    assert plain[0] != pytest.approx(plain[1], abs=1e-6)  # without the wrap, they move with the seam


def test_a_self_calibrating_models_output_rolls_with_a_global_grid(cli, tmp_path, calibrating):
    da = pytest.importorskip("dask.array")
    z = calibrated_grid()
    whole = downscale(z, 2, calibrating, device="cpu", periodic=True)
    for k in (1, 37):
        rolled = downscale(np.roll(z, k, axis=1), 2, calibrating, device="cpu", periodic=True, tile_size=(24, 20))
        np.testing.assert_allclose(np.roll(rolled, -2 * k, axis=1), whole, rtol=1e-5, atol=1e-3)
    lazy = downscale(
        da.from_array(np.roll(z, 37, axis=1), chunks=(12, 20)),
        2,
        calibrating,
        device="cpu",
        periodic=True,
        tile_size=(24, 20),
    ).compute()
    np.testing.assert_allclose(np.roll(lazy, -74, axis=1), whole, rtol=1e-5, atol=1e-3)
    # the same field from -180 and from 0 degrees: the same gains, the same values rolled
    tags = []
    for west, k in ((-180.0, 0), (0.0, 36)):
        src = write_geotiff(
            tmp_path / f"w{k}.tif",
            np.roll(z, -k, axis=1).astype(np.float32),
            transform=rasterio.Affine(5.0, 0.0, west, 0.0, -5.0, 90.0),
            crs="EPSG:4326",
        )
        result = cli("downscale", src, "--scale", 2, "--model", calibrating, "--device", "cpu", "-q")
        assert result.code == 0, result.err
        with rasterio.open(tmp_path / f"w{k}_x2.tif") as out:
            tags.append(out.tags()["GEOSR_CALIBRATE"])
            np.testing.assert_allclose(np.roll(out.read(1), 2 * k, axis=1), whole, rtol=1e-5, atol=1e-3)
    assert tags[0] == tags[1] != "no"


def test_a_global_grid_wider_than_the_calibration_window_keeps_every_column(calibrating, monkeypatch):
    from geosr import calibrate

    monkeypatch.setattr(calibrate, "MAX_WINDOW", 32)  # a 72-column grid now stands for one wider than 1024
    rows, cols = calibrate.window((36, 72), 2, periodic=True)
    assert cols == slice(0, 72) and (rows.stop - rows.start) * 72 <= 32 * 32 + 2 * 72
    assert calibrate.window((36, 72), 2) == (slice(2, 34), slice(20, 52))  # a regional grid's: central, as before
    assert calibrate.window((36, 72), 5, periodic=True) == calibrate.window((36, 72), 5)  # 72 is no whole cells
    z = calibrated_grid()
    whole = downscale(z, 2, calibrating, device="cpu", periodic=True)
    rolled = downscale(np.roll(z, 37, axis=1), 2, calibrating, device="cpu", periodic=True, tile_size=(24, 20))
    np.testing.assert_allclose(np.roll(rolled, -74, axis=1), whole, rtol=1e-5, atol=1e-3)

"""``geosr evaluate``: regressions found by a third audit.

Scattered missing cells blew up the renormalised Lanczos and cubic spline (a weight sum of 0.009) and
back-projection (RMSE 1.6e14); PSNR and SSIM took their data range over pixels never measured; slopes in
Web Mercator took CRS metres for ground metres (26% off at 60 N); ``--elevation`` took any unit for metres;
the table printed fixed decimals (0.0000 for a band of 3e-5); ``--bands 0`` exited 1.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from affine import Affine
from conftest import assert_one_line_error, write_geotiff
from rasterio.crs import CRS as RasterioCRS

from geosr.degrade import area_average
from geosr.evaluate import classical, evaluate_array, interpolate, measure, missing_cells
from geosr.georef import ground_pixel_size
from geosr.testing import fbm_surface

# --- scattered missing cells -----------------------------------------------------------------------


def lace(scale: int = 4, fraction: float = 0.5, seed: int = 0) -> np.ndarray:
    """A 120 x 120 surface with ``fraction`` of its coarse cells missing at random (a lace of valid cells)."""
    truth = fbm_surface((120, 120), seed=3, relief=500.0).astype(np.float64)
    cells = np.random.default_rng(seed).random((120 // scale, 120 // scale)) < fraction
    return np.where(np.repeat(np.repeat(cells, scale, axis=0), scale, axis=1), np.nan, truth)


@pytest.mark.parametrize("method", ["bicubic", "cubic_spline", "lanczos"])
def test_renormalised_interpolators_stay_near_their_valid_cells_on_a_lace_of_missing_cells(method):
    # x4, half the cells missing: the Lanczos weights of the valid cells summed to 0.0085 at a pixel, which
    # came out 4213 m off; now a pixel whose renormalised weights are ill-conditioned is bilinear
    data = lace()
    coarse = area_average(data, 4)
    out = classical(coarse, 4, method)
    valid = ~missing_cells(coarse, 4)
    assert np.isfinite(out[valid]).all()
    low, high = np.nanmin(coarse), np.nanmax(coarse)
    span = high - low
    assert out[valid].min() > low - 0.5 * span and out[valid].max() < high + 0.5 * span
    results = evaluate_array(data, 4, methods=("nearest", "bilinear", method))
    assert results[method].rmse < results["nearest"].rmse  # it was 2.5 times nearest's for Lanczos
    assert results[method].max_error < 2 * results["bilinear"].max_error


def test_an_ill_conditioned_pixel_takes_the_renormalised_bilinear_value():
    coarse = area_average(lace(), 4)
    lanczos, bilinear = classical(coarse, 4, "lanczos"), classical(coarse, 4, "bilinear")
    # the valid cells' Lanczos weights at fine pixel (111, 80) sum to 0.0085 (their absolute values to 1.2)
    assert lanczos[111, 80] == pytest.approx(bilinear[111, 80], rel=1e-12)
    assert np.count_nonzero(lanczos == bilinear) < 0.1 * np.count_nonzero(np.isfinite(lanczos))  # only a few


def test_back_projection_does_not_diverge_on_a_lace_of_missing_cells():
    data = lace()
    results = evaluate_array(data, 4, methods=("lanczos", "backprojection"))
    bp, lanczos = results["backprojection"], results["lanczos"]
    assert bp.rmse < lanczos.rmse  # was 1.6e14 after its 20 corrections
    assert bp.consistency_rmse < 1e-3 * lanczos.consistency_rmse  # and it still matches the valid cells


def test_voids_and_complete_rasters_are_interpolated_as_before():
    # a disc void and a missing corner: no pixel is ill-conditioned, every weight renormalised as before
    data = fbm_surface((48, 60), seed=7, relief=300.0).astype(np.float64)
    yy, xx = np.mgrid[:48, :60]
    data[(yy - 24) ** 2 + (xx - 20) ** 2 < 9.6**2] = np.nan
    data[:5, -7:] = np.nan
    for scale in (2, 3, 4):
        coarse = area_average(data, scale)
        valid = np.isfinite(coarse)
        shape = (coarse.shape[0] * scale, coarse.shape[1] * scale)
        for method in ("bicubic", "cubic_spline", "lanczos"):
            plain = interpolate(np.where(valid, coarse, 0.0), shape, method) / interpolate(valid * 1.0, shape, method)
            out = classical(coarse, scale, method)
            keep = np.isfinite(out)
            np.testing.assert_allclose(out[keep], plain[keep], rtol=1e-12, err_msg=f"{method} x{scale}")
    complete = area_average(fbm_surface((48, 48), seed=2).astype(np.float64), 4)
    assert np.array_equal(classical(complete, 4, "lanczos"), interpolate(complete, (48, 48), "lanczos"))


def test_cli_table_stays_readable_on_a_lace_of_missing_cells(tmp_path, cli):
    data = lace()
    path = write_geotiff(tmp_path / "lace.tif", np.where(np.isnan(data), -9999, data).astype(np.float32), nodata=-9999)
    result = cli("evaluate", path, "--scale", 4, "--no-model", "--json")
    assert result.code == 0, result.err
    methods = json.loads(result.out)["bands"]["band 1"]["methods"]
    assert max(m["rmse"] for m in methods.values()) < 2 * methods["nearest"]["rmse"]


# --- PSNR's and SSIM's data range ----------------------------------------------------------------


def test_psnr_and_ssim_take_the_range_of_the_measured_pixels_only():
    truth = fbm_surface((40, 40), seed=1, relief=100.0).astype(np.float64)
    coarse = area_average(truth, 2)
    estimate = classical(coarse, 2, "bicubic")
    base = measure(estimate, truth, coarse, 2)
    assert base.psnr == pytest.approx(20 * np.log10(np.ptp(truth[4:-4, 4:-4]) / base.rmse), rel=1e-12)
    spiked = truth.copy()
    spiked[0, 0] = 5000.0  # in the cropped border: no error reads it
    again = measure(estimate, spiked, area_average(spiked, 2), 2)
    assert (again.rmse, again.psnr, again.ssim) == (base.rmse, base.psnr, base.ssim)
    # the finite pixels of a missing cell are not measured either
    holed = truth.copy()
    holed[20, 20], holed[21, 21] = np.nan, 5000.0  # one 2 x 2 cell: missing, one of its pixels a spike
    results = evaluate_array(holed, 2, methods=("bicubic",))
    mask = ~missing_cells(area_average(holed, 2), 2)[4:-4, 4:-4]
    expected = 20 * np.log10(np.ptp(truth[4:-4, 4:-4][mask]) / results["bicubic"].rmse)
    assert results["bicubic"].psnr == pytest.approx(expected, rel=1e-12)


def test_cli_psnr_ignores_a_row_the_crop_to_whole_cells_drops(tmp_path, cli):
    dem = fbm_surface((40, 40), seed=1, relief=100.0)
    plain = write_geotiff(tmp_path / "plain.tif", dem, units=["m"])
    extra = write_geotiff(tmp_path / "extra.tif", np.vstack([dem, np.full((1, 40), 5000.0, np.float32)]), units=["m"])
    found = []
    for path in (plain, extra):  # 41 rows at x2: the last is never measured
        result = cli("evaluate", path, "--scale", 2, "--no-model", "--json")
        assert result.code == 0, result.err
        found.append(json.loads(result.out)["bands"]["band 1"]["methods"]["bicubic"])
    assert found[1]["psnr"] == pytest.approx(found[0]["psnr"], rel=1e-9)
    assert found[1]["ssim"] == pytest.approx(found[0]["ssim"], rel=1e-9)


# --- ground pixel size in projected CRSs -----------------------------------------------------------


def info(crs: str | RasterioCRS, transform: Affine, height: int = 64, width: int = 64) -> SimpleNamespace:
    crs = crs if isinstance(crs, RasterioCRS) else RasterioCRS.from_user_input(crs)
    return SimpleNamespace(crs=crs, transform=transform, height=height, width=width, gcps=None)


#: Web Mercator's y of 60 N.
Y60 = 6_378_137.0 * math.log(math.tan(math.radians(45 + 30)))


def test_web_mercator_pixels_are_measured_on_the_ground():
    # 30 units of EPSG:3857 at 60 N are about 15 m on the ground (cos 60; the ellipsoid adds 0.25%)
    dx, dy = ground_pixel_size(info("EPSG:3857", Affine(30.0, 0, 1e6, 0, -30.0, Y60)))
    assert np.shape(dx) == np.shape(dy) == (64,)
    assert 15.0 < dx[0] < 15.1 and 14.98 < dy[0] < 15.05
    assert dx[0] < dx[-1]  # row by row: the northern rows are smaller
    # north-up order whatever the storage: the same raster stored south-up gives the same rows
    south_up = ground_pixel_size(info("EPSG:3857", Affine(30.0, 0, 1e6, 0, 30.0, Y60 - 64 * 30.0)))
    np.testing.assert_allclose(south_up[0], dx, rtol=1e-12)


def test_utm_pixels_change_by_its_scale_factor_only():
    # on the central meridian UTM shrinks the ground by 0.9996: 30 units are 30.012 m
    dx, dy = ground_pixel_size(info("EPSG:32633", Affine(30.0, 0, 499_040.0, 0, -30.0, 4_200_000.0)))
    np.testing.assert_allclose(dx, 30.0 / 0.9996, rtol=2e-6)
    np.testing.assert_allclose(dy, 30.0 / 0.9996, rtol=2e-6)
    # a rotated raster: its centre's size, along its own axes
    rotated = Affine.translation(499_040.0, 4_200_000.0) @ Affine.rotation(30) @ Affine.scale(30.0, -30.0)
    rx, ry = ground_pixel_size(info("EPSG:32633", rotated))
    assert rx == pytest.approx(30.0 / 0.9996, rel=1e-5) and ry == pytest.approx(30.0 / 0.9996, rel=1e-5)


def test_pixels_agree_with_the_projections_scale_factors():
    pyproj = pytest.importorskip("pyproj")
    for crs, transform in [
        ("EPSG:32617", Affine(30.0, 0, 700_000.0, 0, -30.0, 4_000_000.0)),
        ("EPSG:3413", Affine(1000.0, 0, -2e6, 0, -1000.0, -1e6)),  # polar stereographic north
        ("EPSG:2227", Affine(100.0, 0, 6e6, 0, -100.0, 2e6)),  # Lambert conformal conic, US survey feet
    ]:
        dx, dy = ground_pixel_size(info(crs, transform))
        x, y = transform.c + transform.a * 32, transform.f + transform.e * 0.5
        lon, lat = pyproj.Transformer.from_crs(crs, 4326, always_xy=True).transform(x, y)
        factors = pyproj.Proj(crs).get_factors(lon, lat)
        metres = RasterioCRS.from_user_input(crs).linear_units_factor[1] * transform.a
        assert dx[0] == pytest.approx(metres / factors.parallel_scale, rel=1e-6), crs
        assert dy[0] == pytest.approx(metres / factors.meridional_scale, rel=1e-6), crs


def test_a_crs_without_latitude_and_longitude_keeps_its_units():
    local = RasterioCRS.from_wkt('LOCAL_CS["arbitrary",UNIT["metre",1],AXIS["x",EAST],AXIS["y",NORTH]]')
    assert ground_pixel_size(info(local, Affine(30.0, 0, 0, 0, -20.0, 0))) == (30.0, 20.0)


def test_cli_slope_in_web_mercator_is_that_of_the_ground(tmp_path, cli):
    dem = fbm_surface((64, 64), seed=6, relief=60.0)
    mercator = write_geotiff(
        tmp_path / "merc.tif", dem, crs="EPSG:3857", transform=Affine(30.0, 0, 1e6, 0, -30.0, Y60), units=["m"]
    )
    dx, dy = ground_pixel_size(info("EPSG:3857", Affine(30.0, 0, 1e6, 0, -30.0, Y60)))
    size = float(np.mean([dx.mean(), dy.mean()])) * 0.9996  # the same ground pixel on UTM's central meridian
    on_meridian = Affine(size, 0, 499_000, 0, -size, 6_650_000)
    utm = write_geotiff(tmp_path / "utm.tif", dem, crs="EPSG:32633", transform=on_meridian, units=["m"])
    slopes = []
    for path in (mercator, utm):
        result = cli("evaluate", path, "--scale", 2, "--no-model", "--json")
        assert result.code == 0, result.err
        slopes.append(json.loads(result.out)["bands"]["band 1"]["methods"]["bicubic"]["slope_rmse"])
    assert slopes[0] == pytest.approx(slopes[1], rel=5e-3)  # it was about 26% lower


# --- --elevation and the band's unit ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "per_metre"), [("km", 1e-3), ("cm", 100.0), ("mm", 1000.0), ("ft [US]", 3937 / 1200), ("m a.s.l.", 1.0)]
)
def test_elevation_converts_the_common_length_units(tmp_path, cli, unit, per_metre):
    dem = fbm_surface((48, 48), seed=6, relief=300.0).astype(np.float64)
    metres = write_geotiff(tmp_path / "m.tif", dem.astype(np.float32), units=["m"])
    other = write_geotiff(tmp_path / "u.tif", (dem * per_metre).astype(np.float32), units=[unit])
    found = []
    for path in (metres, other):
        result = cli("evaluate", path, "--scale", 2, "--no-model", "--json", "--elevation")
        assert result.code == 0, result.err
        found.append(json.loads(result.out)["bands"]["band 1"]["methods"]["bicubic"]["slope_rmse"])
    assert found[1] == pytest.approx(found[0], rel=1e-4)
    # without --elevation, as before: no slope for a unit that is not m or ft
    plain = cli("evaluate", other, "--scale", 2, "--no-model", "--json")
    slope = json.loads(plain.out)["bands"]["band 1"]["methods"]["bicubic"]["slope_rmse"]
    assert slope is None or unit == "ft [US]" and slope == pytest.approx(found[0], rel=1e-4)


@pytest.mark.parametrize("unit", ["K", "degC", "hPa"])
def test_elevation_refuses_a_unit_it_cannot_convert(tmp_path, cli, unit):
    path = write_geotiff(tmp_path / "u.tif", fbm_surface((48, 48), seed=6), units=[unit])
    result = cli("evaluate", path, "--scale", 2, "--no-model", "--elevation")
    assert result.code == 1 and result.out == ""
    assert_one_line_error(result.err, result.code, "band 1", f"'{unit}'", "--elevation", "gdal_edit.py -units m")
    assert cli("evaluate", path, "--scale", 2, "--no-model").code == 0  # without --elevation: as before


def test_elevation_takes_a_band_without_a_unit_as_metres(tmp_path, cli):
    dem = fbm_surface((48, 48), seed=6, relief=300.0)
    found = []
    for name, units in (("m.tif", ["m"]), ("none.tif", None)):
        path = write_geotiff(tmp_path / name, dem, units=units)
        result = cli("evaluate", path, "--scale", 2, "--no-model", "--json", "--elevation")
        assert result.code == 0, result.err
        found.append(json.loads(result.out)["bands"]["band 1"]["methods"]["bicubic"]["slope_rmse"])
    assert found[0] is not None and found[0] == found[1]


# --- the text table ----------------------------------------------------------------------------------


def table_rows(text: str) -> dict[str, list[str]]:
    names = ("nearest", "bilinear", "bicubic", "cubic_spline", "lanczos", "backprojection", "model", "model_conserved")
    return {line.split()[0]: line for line in text.splitlines() if line.split()[:1] and line.split()[0] in names}


def test_table_shows_significant_digits_aligned_and_the_unit(tmp_path, cli):
    dem = fbm_surface((48, 48), seed=6, relief=1.0).astype(np.float64)
    bands = np.stack([dem * 3e-5, 1e5 + dem * 5e4]).astype(np.float32)  # a precipitation flux, a pressure in Pa
    path = write_geotiff(tmp_path / "b.tif", bands, units=["kg m-2 s-1", "Pa"])
    text = cli("evaluate", path, "--scale", 2, "--no-model")
    assert text.code == 0, text.err
    report = json.loads(cli("evaluate", path, "--scale", 2, "--no-model", "--json").out)["bands"]
    assert [report[b]["unit"] for b in ("band 1", "band 2")] == ["kg m-2 s-1", "Pa"]
    assert "band 1 (unit kg m-2 s-1)" in text.out and "band 2 (unit Pa)" in text.out
    blocks = text.out.split("band 2 (unit Pa)")
    for block, band in zip(blocks, ("band 1", "band 2"), strict=True):
        rows = table_rows(block)
        assert len(rows) == 6
        assert len({len(line) for line in rows.values()}) == 1  # aligned: every row as long
        for name, line in rows.items():
            cells = line.split()
            expected = report[band]["methods"][name]
            for column, key in ((1, "rmse"), (2, "mae"), (5, "max_error")):
                assert float(cells[column]) == pytest.approx(expected[key], rel=1e-4), (band, name, key)
                assert float(cells[column]) != 0  # was 0.0000 for band 1
    header = next(line for line in text.out.splitlines() if line.split()[:1] == ["method"])
    rows = table_rows(blocks[1])
    for title in ("RMSE", "MAE", "max", "consist"):  # right-aligned under their title
        end = header.index(title) + len(title)
        assert all(line[end - 1] != " " and (end == len(line) or line[end] == " ") for line in rows.values()), title


# --- --bands 0 and the --calibrate help ------------------------------------------------------------


@pytest.mark.parametrize("command", ["evaluate", "downscale", "train"])
def test_band_zero_is_wrong_as_typed(tmp_path, cli, command):
    path = write_geotiff(tmp_path / "hr.tif", fbm_surface((48, 48), seed=6))
    extra = {"evaluate": ["--scale", 2, "--no-model"], "downscale": ["--scale", 2, "-o", tmp_path / "o.tif"]}
    extra["train"] = ["-o", tmp_path / "m.safetensors"]
    result = cli(command, path, *extra[command], "--bands", "0,1")
    assert result.code == 2, result.err
    assert_one_line_error(result.err, result.code, "band 0", "count from 1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr.tif"]


def test_calibrate_help_says_both_shipped_models_calibrate(cli):
    from geosr.training.shipped import CARDS

    assert all(card().calibrate for card in CARDS.values())
    text = " ".join(cli("evaluate", "--help").out.split())
    assert "dem does not" not in text and "both shipped models" in text

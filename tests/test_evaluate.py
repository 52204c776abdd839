"""``geosr evaluate``: classical baselines and metrics checked against independent computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from affine import Affine
from conftest import write_geotiff
from PIL import Image
from scipy import ndimage

from geosr.degrade import area_average
from geosr.evaluate import back_project, best_classical, evaluate_array, interpolate, measure, slope_degrees, ssim
from geosr.testing import fbm_surface

PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


@pytest.fixture
def coarse() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(10, 12))


@pytest.mark.parametrize("method", sorted(PIL_FILTERS))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_interpolators_match_pillow_away_from_the_edges(coarse, method, scale):
    # Pillow renormalises its kernel at the raster edge where we replicate edge pixels, so the two
    # agree wherever the kernel stays inside the raster (3 coarse pixels from the edge for Lanczos-3).
    ours = interpolate(coarse, (10 * scale, 12 * scale), method)
    pil = np.asarray(
        Image.fromarray(coarse.astype(np.float32), mode="F").resize((12 * scale, 10 * scale), PIL_FILTERS[method])
    )
    inner = (slice(3 * scale, -3 * scale),) * 2
    np.testing.assert_allclose(ours[inner], pil[inner], atol=1e-5)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bilinear_matches_torch_everywhere(coarse, scale):
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(coarse)[None, None], scale_factor=scale, mode="bilinear", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_allclose(interpolate(coarse, (10 * scale, 12 * scale), "bilinear"), expected, atol=1e-12)


@pytest.mark.parametrize("scale", [2, 3])
def test_cubic_spline_matches_scipy_zoom(coarse, scale):
    expected = ndimage.zoom(coarse, scale, order=3, mode="nearest", grid_mode=True)
    ours = interpolate(coarse, (10 * scale, 12 * scale), "cubic_spline")
    inner = (slice(2 * scale, -2 * scale),) * 2
    np.testing.assert_allclose(ours[inner], expected[inner], atol=1e-3)


def test_nearest_repeats_each_cell(coarse):
    np.testing.assert_array_equal(interpolate(coarse, (30, 36), "nearest"), np.kron(coarse, np.ones((3, 3))))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_back_projection_matches_the_cell_averages(scale):
    coarse = area_average(fbm_surface((48, 60), seed=2).astype(np.float64), scale)
    fine = back_project(coarse, scale)
    lanczos = interpolate(coarse, fine.shape, "lanczos")
    assert np.abs(area_average(fine, scale) - coarse).max() < 0.02 * np.abs(area_average(lanczos, scale) - coarse).max()


def test_metrics_against_direct_formulas():
    rng = np.random.default_rng(1)
    truth = fbm_surface((40, 40), seed=1).astype(np.float64)
    estimate = truth + rng.normal(scale=3.0, size=truth.shape)
    coarse = area_average(truth, 2)
    m = measure(estimate, truth, coarse, 2)
    err = (estimate - truth)[4:-4, 4:-4]
    assert m.rmse == pytest.approx(np.sqrt(np.mean(err**2)))
    assert m.mae == pytest.approx(np.mean(np.abs(err)))
    assert m.max_error == pytest.approx(np.abs(err).max())
    assert m.psnr == pytest.approx(20 * np.log10(np.ptp(truth[4:-4, 4:-4]) / m.rmse))  # the measured pixels'
    back = area_average(estimate, 2) - coarse
    assert m.consistency_rmse == pytest.approx(np.sqrt(np.mean(back[2:-2, 2:-2] ** 2)))  # the 2-cell border
    assert ssim(truth, truth, np.ptp(truth)) == pytest.approx(1.0)
    assert 0 < m.ssim < 1
    assert measure(truth + 1.5 * (estimate - truth), truth, coarse, 2).ssim < m.ssim


def test_slope_of_a_plane():
    y, x = np.mgrid[0:20, 0:30].astype(np.float64)
    plane = 0.3 * x * 30.0 + 0.4 * y * 10.0  # rises 0.3 per metre eastwards and 0.4 per metre southwards
    np.testing.assert_allclose(slope_degrees(plane, 30.0, 10.0), np.degrees(np.arctan(0.5)))


def test_real_dem_best_classical_is_back_projection():
    from geosr.training.sources import jacksboro

    results = evaluate_array(jacksboro()[:120, :120], 2)
    assert best_classical(results) == "backprojection"
    order = [results[m].rmse for m in ("nearest", "bilinear", "bicubic", "lanczos", "backprojection")]
    assert order == sorted(order, reverse=True)


def test_cli_json_reports_every_method(tmp_path, model1, cli):
    data = fbm_surface((40, 44), seed=7)
    path = write_geotiff(tmp_path / "hr.tif", data)
    result = cli("evaluate", path, "--scale", 2, "--model", model1, "--json", "--device", "cpu")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    methods = report["bands"]["band 1"]["methods"]
    assert set(methods) == {
        "nearest",
        "bilinear",
        "bicubic",
        "cubic_spline",
        "lanczos",
        "backprojection",
        "model",
        "model_conserved",
    }
    assert report["border"] == 4
    coarse = area_average(data.astype(np.float64), 2)
    pil = np.asarray(Image.fromarray(coarse.astype(np.float32), mode="F").resize((44, 40), Image.BICUBIC))
    expected = np.sqrt(np.mean((pil - data)[4:-4, 4:-4] ** 2))
    assert methods["bicubic"]["rmse"] == pytest.approx(expected, rel=1e-4)
    assert methods["model_conserved"]["consistency_rmse"] < 1e-3


def test_cli_without_model_evaluates_the_default_model(tmp_path, cli):
    """No --model means geosr's default model, as for downscale (it once meant no model at all)."""
    data = fbm_surface((32, 36), seed=3)
    path = write_geotiff(tmp_path / "hr.tif", data)
    result = cli("evaluate", path, "--scale", 2, "--json", "--device", "cpu")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["model"] == "dem" and report["ensemble"] == 1
    assert {"model", "model_conserved"} <= set(report["bands"]["band 1"]["methods"])
    assert json.loads(cli("evaluate", path, "--scale", 2, "--json", "--no-model").out)["model"] is None


def test_cli_ensemble_reports_the_ensemble(tmp_path, model1, cli):
    data = fbm_surface((32, 36), seed=3)
    path = write_geotiff(tmp_path / "hr.tif", data)
    runs = {
        e: json.loads(cli("evaluate", path, "--scale", 2, "--model", model1, "--json", "--ensemble", e).out)
        for e in ("1", "4")
    }
    assert runs["4"]["ensemble"] == 4
    single, four = (runs[e]["bands"]["band 1"]["methods"] for e in ("1", "4"))
    assert single["bicubic"] == four["bicubic"]
    assert single["model"]["rmse"] != four["model"]["rmse"]
    text = cli("evaluate", path, "--scale", 2, "--model", model1, "--ensemble", "4")
    assert "model tiny1, ensemble 4" in text.out


def _strict_json(text: str) -> dict:
    """``json.loads`` that refuses the NaN / Infinity / -Infinity that ``json.dumps`` writes by default."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_metrics_of_a_constant_truth_are_undefined_without_warnings():
    import warnings

    truth = np.full((24, 24), 5.0)
    coarse = area_average(truth, 2)
    noisy = truth + np.random.default_rng(0).normal(scale=0.1, size=truth.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any numpy RuntimeWarning fails the test
        exact = measure(truth.copy(), truth, coarse, 2)
        off = measure(noisy, truth, coarse, 2)
        results = evaluate_array(truth, 2)
    assert exact.rmse == 0 and exact.psnr is None and exact.ssim is None
    assert off.rmse > 0 and off.psnr is None and off.ssim is None
    assert ssim(truth, truth, 0.0) is None
    assert all(m.psnr is None and m.ssim is None for m in results.values())
    assert best_classical(results) in results  # still chosen, by RMSE


def test_psnr_of_an_exact_reconstruction_is_infinite():
    coarse = np.random.default_rng(2).normal(size=(12, 12))
    truth = np.kron(coarse, np.ones((2, 2)))  # nearest restores it exactly
    m = measure(interpolate(coarse, truth.shape, "nearest"), truth, coarse, 2)
    assert m.rmse == 0 and m.psnr == float("inf") and m.ssim == pytest.approx(1.0)


def test_ssim_is_stable_far_from_zero():
    # The same small relief on a large offset: SSIM does not depend on the cancellation of E[x^2] - E[x]^2.
    rng = np.random.default_rng(3)
    relief = fbm_surface((40, 40), seed=3, relief=1e-3, base=0.0).astype(np.float64)
    estimate = relief + rng.normal(scale=1e-4, size=relief.shape)
    reference = ssim(estimate + 1.0, relief + 1.0, np.ptp(relief))
    assert ssim(estimate + 1e5, relief + 1e5, np.ptp(relief)) == pytest.approx(reference, abs=1e-3)


def test_cli_constant_band_reports_undefined_metrics(tmp_path, cli, recwarn):
    path = write_geotiff(tmp_path / "flat.tif", np.full((24, 24), 5.0, dtype=np.float32))
    text = cli("evaluate", path, "--scale", 2, "--model", "backprojection", "--device", "cpu")
    assert text.code == 0, text.err
    rows = [
        line.split()
        for line in text.out.splitlines()
        if line.split()[:1]
        and line.split()[0]
        in ("nearest", "bilinear", "bicubic", "cubic_spline", "lanczos", "backprojection", "model", "model_conserved")
    ]
    assert len(rows) == 8
    assert all(row[3] == "n/a" and row[4] == "n/a" for row in rows)  # PSNR and SSIM columns
    assert "nan" not in text.out and "inf" not in text.out
    assert "constant" in text.out and "undefined" in text.out
    assert "RuntimeWarning" not in text.err and "Error" not in text.err
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]

    result = cli("evaluate", path, "--scale", 2, "--model", "backprojection", "--device", "cpu", "--json")
    assert result.code == 0, result.err
    band = _strict_json(result.out)["bands"]["band 1"]
    assert band["constant"] is True
    assert band["best_classical"] in band["methods"]
    for metrics in band["methods"].values():
        assert metrics["psnr"] is None and metrics["ssim"] is None
        assert metrics["rmse"] == pytest.approx(0.0, abs=1e-5)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_cli_exact_reconstruction_psnr_is_inf_in_text_and_null_in_json(tmp_path, cli):
    coarse = fbm_surface((12, 14), seed=4)
    path = write_geotiff(tmp_path / "blocks.tif", np.kron(coarse, np.ones((2, 2), dtype=np.float32)))
    text = cli("evaluate", path, "--scale", 2, "--no-model")
    assert text.code == 0, text.err
    nearest = next(line.split() for line in text.out.splitlines() if line.split()[:1] == ["nearest"])
    assert nearest[3] == "inf" and "constant" not in text.out
    report = _strict_json(cli("evaluate", path, "--scale", 2, "--no-model", "--json").out)
    band = report["bands"]["band 1"]
    assert band["constant"] is False and band["best_classical"] == "nearest"
    assert band["methods"]["nearest"]["psnr"] is None
    assert band["methods"]["bicubic"]["psnr"] > 0


def test_cli_model_versus_an_exact_classical_method_does_not_divide_by_zero(tmp_path, model1, cli):
    coarse = fbm_surface((12, 14), seed=4)
    path = write_geotiff(tmp_path / "blocks.tif", np.kron(coarse, np.ones((2, 2), dtype=np.float32)))
    result = cli("evaluate", path, "--scale", 2, "--model", model1, "--device", "cpu")
    assert result.code == 0, result.err
    assert "model: RMSE" in result.out and "than nearest (exact, RMSE 0)" in result.out


def test_cli_slope_uses_the_true_pixel_size_of_rotated_rasters_and_none_for_gcps(tmp_path, cli):
    import rasterio
    from affine import Affine
    from rasterio.control import GroundControlPoint

    dem = fbm_surface((48, 48), seed=6, relief=300.0)
    slopes = {}
    for name, transform in [
        ("north", Affine.scale(30.0, -30.0)),
        ("rotated", Affine.rotation(30) * Affine.scale(30.0, -30.0)),
    ]:
        path = write_geotiff(tmp_path / f"{name}.tif", dem, transform=transform, units=["m"])
        result = cli("evaluate", path, "--scale", 2, "--model", "backprojection", "--json", "--device", "cpu")
        assert result.code == 0, result.err
        slopes[name] = json.loads(result.out)["bands"]["band 1"]["methods"]["bicubic"]["slope_rmse"]
    # rotated about the origin, the raster lies elsewhere in the UTM zone, where the projection's scale factor
    # (which the ground pixel size divides out) differs by about 2e-6
    assert slopes["rotated"] == pytest.approx(slopes["north"], rel=1e-5)
    path = tmp_path / "gcp.tif"
    gcps = [GroundControlPoint(r, c, 500_000 + 30 * c, 4_600_000 - 30 * r) for r, c in [(0, 0), (0, 48), (48, 0)]]
    profile = {"driver": "GTiff", "height": 48, "width": 48, "count": 1, "dtype": "float32"}
    with rasterio.open(path, "w", **profile, gcps=gcps, crs="EPSG:32633") as dst:
        dst.write(dem.astype(np.float32), 1)
        dst.set_band_unit(1, "m")
    result = cli("evaluate", path, "--scale", 2, "--model", "backprojection", "--json", "--device", "cpu")
    assert result.code == 0, result.err
    assert json.loads(result.out)["bands"]["band 1"]["methods"]["bicubic"]["slope_rmse"] is None


def test_cli_slope_of_a_geographic_raster_whose_rows_the_scale_does_not_divide(tmp_path, cli):
    # the pixel size of each row's latitude came for every row of the raster, the measured rows one fewer:
    # "operands could not be broadcast together" on any geographic DEM of an odd number of rows at x2
    from affine import Affine

    dem = fbm_surface((61, 50), seed=4, relief=300.0) + 100.0
    transform = Affine(1 / 1200, 0, 11.5, 0, -1 / 1200, 58.0)
    slopes = []
    for rows in (61, 60):  # evaluate crops to whole cells: the 61st row is never measured
        path = write_geotiff(tmp_path / f"geo{rows}.tif", dem[:rows], transform=transform, crs="EPSG:4326", units=["m"])
        result = cli("evaluate", path, "--scale", 2, "--no-model", "--json")
        assert result.code == 0, result.err
        slopes.append(json.loads(result.out)["bands"]["band 1"]["methods"]["bicubic"]["slope_rmse"])
    assert slopes[0] is not None and slopes[0] > 0
    assert slopes[0] == slopes[1]


def test_cli_slope_and_errors_are_the_same_whatever_the_units(tmp_path, cli):
    """Slope is an angle: the same terrain stored in metres, in feet, on a CRS in US feet, or as int16
    decimetres with a scale of 0.1 has the same slope errors, and its height errors in the band's unit."""
    dem = np.round(fbm_surface((48, 48), seed=6, relief=300.0), 1)
    ft, ft_us = 0.3048, 1200 / 3937
    utm = Affine(90.0, 0, 700_000, 0, -90.0, 4_070_000)
    rasters = {
        "metres": write_geotiff(tmp_path / "m.tif", dem, transform=utm, crs="EPSG:32616", units=["m"]),
        "feet": write_geotiff(tmp_path / "ft.tif", dem / ft, transform=utm, crs="EPSG:32616", units=["ft"]),
        "crs in US feet": write_geotiff(
            tmp_path / "ftus.tif",
            dem,
            transform=Affine(90 / ft_us, 0, 2e6, 0, -90 / ft_us, 1e7),
            crs="EPSG:2277",
            units=["m"],
        ),
        "decimetres scaled": write_geotiff(
            tmp_path / "dm.tif",
            np.round(dem * 10),
            dtype="int16",
            transform=utm,
            crs="EPSG:32616",
            units=["m"],
            scales=[0.1],
        ),
    }
    found = {}
    for name, path in rasters.items():
        result = cli("evaluate", path, "--scale", 2, "--no-model", "--json")
        assert result.code == 0, result.err
        found[name] = json.loads(result.out)["bands"]["band 1"]["methods"]["bicubic"]
    for name in rasters:
        # the Texas CRS in US feet is another projection, at another place: its scale factor (divided out of the
        # ground pixel size) differs from UTM's there by about 1e-4
        rel = 1e-3 if name == "crs in US feet" else 1e-6
        assert found[name]["slope_rmse"] == pytest.approx(found["metres"]["slope_rmse"], rel=rel), name
    assert found["feet"]["rmse"] == pytest.approx(found["metres"]["rmse"] / ft, rel=1e-6)
    assert found["decimetres scaled"]["rmse"] == pytest.approx(found["metres"]["rmse"], rel=1e-6)
    gy, gx = np.gradient(dem.astype(np.float64), 90.0, 90.0)
    assert found["metres"]["slope_rmse"] > 0 and np.degrees(np.arctan(np.hypot(gx, gy))).mean() > 1


def test_cli_no_slope_without_a_crs(tmp_path, cli):
    dem = fbm_surface((48, 48), seed=6, relief=300.0)
    path = write_geotiff(tmp_path / "local.tif", dem, crs=None, transform=Affine.identity(), units=["m"])
    result = cli("evaluate", path, "--scale", 2, "--no-model", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["bands"]["band 1"]["methods"]["bicubic"]["slope_rmse"] is None


def test_cli_evaluates_a_model_of_two_bands_on_both_together(tmp_path, cli):
    from geosr.models.files import load_model
    from geosr.predict import downscale
    from geosr.testing import random_model

    model = random_model(tmp_path / "two.safetensors", in_channels=2, depth=3, width=4, name="two")
    data = np.stack([fbm_surface((40, 44), seed=s) for s in (1, 2)])
    path = write_geotiff(tmp_path / "two.tif", data)
    result = cli("evaluate", path, "--scale", 2, "--model", model, "--json", "--device", "cpu")
    assert result.code == 0, result.err
    bands = json.loads(result.out)["bands"]
    coarse = area_average(data.astype(np.float64), 2)
    estimate = downscale(coarse, 2, load_model(model), device="cpu", conserve=False)
    for b in range(2):
        expected = np.sqrt(np.mean((estimate[b] - data[b])[4:-4, 4:-4] ** 2))
        assert bands[f"band {b + 1}"]["methods"]["model"]["rmse"] == pytest.approx(expected, rel=1e-5)


def test_cli_refuses_a_model_whose_output_is_nan(tmp_path, cli):
    from geosr.models.files import load_model, save_model
    from geosr.testing import random_model

    broken = load_model(random_model(tmp_path / "ok.safetensors", depth=3, width=4))
    with torch.no_grad():  # finite weights whose product is NaN (inf x 0; NaN weights are refused on load)
        broken.network.body[0].weight.fill_(3e38)
        broken.network.body[2].weight.fill_(0.0)
    save_model(broken.network, broken.card, tmp_path / "nan.safetensors")
    path = write_geotiff(tmp_path / "hr.tif", fbm_surface((40, 44), seed=7))
    result = cli("evaluate", path, "--scale", 2, "--model", tmp_path / "nan.safetensors", "--json", "--device", "cpu")
    assert result.code == 1 and result.out == ""
    assert "gave NaN or infinite values" in result.err and "--lr" in result.err
    assert len(result.err.strip().splitlines()) == 1

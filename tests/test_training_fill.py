"""Training sees nodata as inference does: missing coarse cells next to data are filled from their
neighbours (:func:`geosr.tiling.extend_into_missing`) in the training pairs too, so that the ILR of a
patch next to a void is what inference computes there (``geosr train --fill-missing neighbours``, the
default); ``--fill-missing mean`` and the shipped recipes keep the band mean the shipped models were
trained with."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_TRAIN, assert_one_line_error, write_geotiff

from geosr.cli.train import split_validation
from geosr.degrade import area_average
from geosr.models.files import load_model
from geosr.predict import Downscaler
from geosr.testing import fbm_surface, random_model
from geosr.tiling import CONSISTENT, fill_radius
from geosr.training.data import Prepared, normalise
from geosr.training.train import Batches, TrainConfig


def voided(shape: tuple[int, int]) -> np.ndarray:
    data = fbm_surface(shape, seed=11, relief=200.0).astype(np.float64)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    data[(yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2 < (min(shape) / 4) ** 2] = np.nan
    return normalise(data[None])


def inference_ilr(model: Path, coarse: np.ndarray, scale: int) -> np.ndarray:
    """The ILR inference computes for a whole (band, y, x) normalised coarse raster (one tile)."""
    downscaler = Downscaler(str(model), device="cpu", tile_size=4096, conserve=False)
    plan = downscaler.plan(coarse.shape[1:], scale, missing=True)
    (tile,) = list(plan)
    item = downscaler._prepare(plan, tile, coarse, np.zeros((1, 1, 1)), np.ones((1, 1, 1)))
    return item.ilr


def test_training_pairs_next_to_a_void_get_the_ilr_inference_computes(tmp_path):
    model = random_model(tmp_path / "m.safetensors", depth=5, width=4, interpolation="consistent")
    raster, scale = voided((64, 72)), 2
    config = TrainConfig(depth=5, interpolation="consistent", scales=(scale,))
    prepared = Prepared(raster, scale, CONSISTENT, fill_radius(config.depth + scale, scale, CONSISTENT))
    coarse = area_average(raster, scale)  # NaN in the cells with a missing pixel, as inference gets them
    assert np.isnan(coarse).any()
    valid = np.isfinite(prepared.fine)  # the fine pixels of the cells with data: the targets
    expected = inference_ilr(model, coarse, scale)
    np.testing.assert_allclose(prepared.ilr[valid], expected[valid], rtol=0, atol=1e-5)
    # the band mean there instead (the shipped recipes): the ILR next to the void differs
    mean_filled = Prepared(raster, scale, CONSISTENT, 0)
    assert np.abs(mean_filled.ilr[valid] - expected[valid]).max() > 0.1
    # the training batches fill so by default, and give the mean with fill_missing=False
    for fill_missing, reference in ((True, prepared), (False, mean_filled)):
        batches = Batches([raster], replace(config, fill_missing=fill_missing), 0)
        batches.sample()
        assert np.array_equal(batches.prepared[0, scale].ilr, reference.ilr)


def test_training_pairs_get_the_fill_trend_of_the_model_card_as_inference_does(tmp_path, cli):
    # a model whose card continues the slope into the first missing ring (the shipped dem's fill_trend)
    model = random_model(tmp_path / "m.safetensors", depth=5, width=4, interpolation="consistent", fill_trend=0.25)
    raster, scale = voided((64, 72)), 2
    fill = fill_radius(5 + scale, scale, CONSISTENT)
    sloped = Prepared(raster, scale, CONSISTENT, fill, 0.25)
    valid = np.isfinite(sloped.fine)
    expected = inference_ilr(model, area_average(raster, scale), scale)
    np.testing.assert_allclose(sloped.ilr[valid], expected[valid], rtol=0, atol=1e-5)
    assert np.abs(Prepared(raster, scale, CONSISTENT, fill).ilr[valid] - expected[valid]).max() > 1e-3
    batches = Batches([raster], TrainConfig(depth=5, interpolation="consistent", scales=(scale,)), 0, fill_trend=0.25)
    batches.sample()
    assert np.array_equal(batches.prepared[0, scale].ilr, sloped.ilr)
    # geosr train --init keeps the trend of the model it starts from, as it keeps conservation
    data = fbm_surface((64, 48), seed=3, relief=50.0)
    data[20:34, 10:30] = -9999
    hr = write_geotiff(tmp_path / "hr.tif", data, nodata=-9999, units=["m"])
    start = random_model(tmp_path / "start.safetensors", depth=3, width=4, fill_trend=0.25)
    tuned = tmp_path / "tuned.safetensors"
    result = cli("train", hr, "-o", tuned, "--scales", "2", "--epochs", "1", *TINY_TRAIN, "--init", start)
    assert result.code == 0, result.err
    assert load_model(tuned).card.fill_trend == 0.25


def test_geosr_train_records_the_fill_and_a_resume_with_the_other_is_refused(tmp_path, cli):
    data = fbm_surface((64, 48), seed=3, relief=50.0)
    data[20:34, 10:30] = -9999
    hr = write_geotiff(tmp_path / "hr.tif", data, nodata=-9999, units=["m"])
    model = tmp_path / "m.safetensors"
    assert cli("train", hr, "-o", model, "--scales", "2", "--epochs", "1", *TINY_TRAIN).code == 0
    assert load_model(model).card.training["config"]["fill_missing"] is True
    result = cli(
        "train", hr, "-o", model, "--scales", "2", "--epochs", "2", *TINY_TRAIN,
        "--fill-missing", "mean", "--resume", f"{model}.ckpt",
    )  # fmt: skip
    assert_one_line_error(result.err, result.code, "another recipe", "--fill-missing neighbours then, mean now")
    other = tmp_path / "mean.safetensors"
    mean = ["--fill-missing", "mean"]
    assert cli("train", hr, "-o", other, "--scales", "2", "--epochs", "1", *TINY_TRAIN, *mean).code == 0
    assert load_model(other).card.training["config"]["fill_missing"] is False


@pytest.mark.parametrize(
    ("shape", "sea", "scales"),
    [
        # all of the last 15% (12 rows) is sea: the run stopped saying every validation part was constant
        ((80, 48), 16, "2"),
        # 6 of the last 18 rows hold data: no validation patch, which needs half of its pixels valid, could be cut
        # there, and the run stopped advising a smaller --patch-size
        ((110, 80), 12, "2,3"),
    ],
)
def test_a_raster_whose_last_part_is_sea_validates_on_its_first(tmp_path, cli, shape, sea, scales):
    data = fbm_surface(shape, seed=5, relief=50.0) + 10.0
    data[-sea:] = -9999
    hr = write_geotiff(tmp_path / "coast.tif", data, nodata=-9999, units=["m"])
    result = cli("train", hr, "-o", tmp_path / "m.safetensors", "--scales", scales, "--epochs", "1", *TINY_TRAIN)
    assert result.code == 0, result.err
    assert "Warning" not in result.err


def test_a_raster_without_data_at_either_end_is_refused_as_nodata(tmp_path, cli):
    data = fbm_surface((80, 48), seed=5, relief=50.0) + 10.0
    data[-16:] = data[:16] = -9999
    hr = write_geotiff(tmp_path / "middle.tif", data, nodata=-9999, units=["m"])
    result = cli("train", hr, "-o", tmp_path / "n.safetensors", "--scales", "2", "--epochs", "1", *TINY_TRAIN)
    assert_one_line_error(result.err, result.code, "validation part", "every raster is nodata")


def test_a_scale_without_any_validation_patch_is_said(tmp_path, cli):
    # both ends mostly nodata; the last 18 rows hold data in their first 8: patches of whole 2-pixel cells can be
    # cut there, patches of whole 3-pixel cells (6 valid rows of 16) cannot, and scale 3 went unvalidated silently
    data = fbm_surface((110, 80), seed=6, relief=50.0) + 10.0
    data[:18] = -9999
    data[-10:] = -9999
    hr = write_geotiff(tmp_path / "ends.tif", data, nodata=-9999, units=["m"])
    result = cli("train", hr, "-o", tmp_path / "m.safetensors", "--scales", "2,3", "--epochs", "1", *TINY_TRAIN)
    assert result.code == 0, result.err
    warning = [line for line in result.err.splitlines() if line.startswith("Warning")]
    assert len(warning) == 1 and "no validation patch at scale 3" in warning[0], result.err


def two_bands(shape: tuple[int, int]) -> np.ndarray:
    first = fbm_surface(shape, seed=7, relief=50.0) + 10.0
    return np.stack([first, fbm_surface(shape, seed=8, relief=20.0) + 5.0])


def test_a_band_missing_from_the_last_part_validates_on_the_first(tmp_path, cli):
    # band 2 is nodata in the last 20 of 80 rows, band 1 valid everywhere: over both bands the last part was
    # half valid, it was kept, and band 2 was never validated, silently; the first part holds both bands
    data = two_bands((80, 48))
    data[1, -20:] = -9999
    train_part, val_part = split_validation(normalise(np.where(data == -9999, np.nan, data)), 12, 1)
    assert val_part.shape == (2, 12, 48) and np.isfinite(val_part).all()
    assert train_part.shape == (2, 68, 48) and np.array_equal(
        np.isnan(train_part[1]), np.repeat(np.arange(68)[:, None] >= 48, 48, axis=1)
    )
    hr = write_geotiff(tmp_path / "two.tif", data, nodata=-9999, units=["m", "K"])
    result = cli("train", hr, "-o", tmp_path / "m.safetensors", "--scales", "2", "--epochs", "1", *TINY_TRAIN)
    assert result.code == 0, result.err
    assert "Warning" not in result.err


def test_a_band_without_data_at_either_end_is_said_unvalidated(tmp_path, cli):
    data = two_bands((80, 48))
    data[1, -20:] = data[1, :20] = -9999
    hr = write_geotiff(tmp_path / "two.tif", data, nodata=-9999, units=["m", "K"])
    result = cli("train", hr, "-o", tmp_path / "m.safetensors", "--scales", "2", "--epochs", "1", *TINY_TRAIN)
    assert result.code == 0, result.err
    warning = [line for line in result.err.splitlines() if line.startswith("Warning")]
    assert len(warning) == 1 and "band 2 has no valid pixel in the validation part" in warning[0], result.err


def test_a_band_without_data_in_any_training_part_is_refused(tmp_path, cli):
    # band 2 holds data only in the last 12 rows, the validation part: it would be on the model, never trained
    data = two_bands((80, 48))
    data[1, :-12] = -9999
    hr = write_geotiff(tmp_path / "two.tif", data, nodata=-9999, units=["m", "K"])
    output = tmp_path / "m.safetensors"
    result = cli("train", hr, "-o", output, "--scales", "2", "--epochs", "1", *TINY_TRAIN)
    assert_one_line_error(result.err, result.code, "band 2 has no valid pixel in the training part")
    assert not output.exists()


def test_a_raster_whose_validation_part_is_nodata_is_said(tmp_path, cli):
    # among two rasters, one's ends are both nodata: its validation part adds nothing, the other's validates
    good = write_geotiff(tmp_path / "good.tif", fbm_surface((80, 48), seed=5, relief=50.0) + 10.0, units=["m"])
    data = fbm_surface((80, 48), seed=6, relief=50.0) + 10.0
    data[-16:] = data[:16] = -9999
    middle = write_geotiff(tmp_path / "middle.tif", data, nodata=-9999, units=["m"])
    result = cli("train", good, middle, "-o", tmp_path / "m.safetensors", "--scales", "2", "--epochs", "1", *TINY_TRAIN)
    assert result.code == 0, result.err
    warning = [line for line in result.err.splitlines() if line.startswith("Warning")]
    assert len(warning) == 1 and "'middle.tif'" in warning[0] and "no valid pixel" in warning[0], result.err

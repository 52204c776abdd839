"""Training: area-averaged pairs, masked loss, a few steps that learn, models that load and run."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from conftest import CRS, assert_one_line_error, write_geotiff

from geosr.degrade import area_average
from geosr.errors import ModelError
from geosr.models.card import read_card
from geosr.models.files import load_model
from geosr.predict import downscale
from geosr.testing import fbm_surface
from geosr.tiling import BICUBIC, CONSISTENT
from geosr.training.data import Prepared, cut_sample, ilr_of, normalise
from geosr.training.train import TrainConfig, learning_rate, masked_mse, train

TINY = {"depth": 4, "width": 8, "patch": 16, "batch_size": 8, "steps_per_epoch": 15, "val_samples": 16}
#: Enough capacity and steps that learning shows clearly (a few seconds on one core).
SMALL = {**TINY, "width": 16, "patch": 24, "steps_per_epoch": 20, "scales": (2,)}


def terrain(seed: int, size: int = 64) -> np.ndarray:
    return normalise(fbm_surface((size, size), beta=2.6, seed=seed).astype(np.float64)[None])


def test_sample_is_an_area_averaged_pair():
    raster = terrain(0)
    sample = cut_sample(raster, 2, 16, np.random.default_rng(0), gain_range=(1, 1), offset_range=0)
    # the coarse values are the block means of the target
    assert sample.ilr.shape == sample.target.shape == (1, 16, 16)
    np.testing.assert_allclose(area_average(sample.coarse_up, 2), area_average(sample.target, 2), atol=1e-5)
    assert sample.valid.all()
    assert np.abs(sample.ilr - sample.target).max() > 0


def test_ilr_of_a_constant_is_the_constant():
    np.testing.assert_allclose(ilr_of(np.full((1, 5, 6), 3.5), (15, 18)), 3.5)
    np.testing.assert_allclose(ilr_of(np.full((1, 5, 6), 3.5), (15, 18), CONSISTENT), 3.5)


@pytest.mark.parametrize("scale", [2, 4])
def test_consistent_ilr_keeps_the_cell_averages(scale):
    raster = terrain(2, size=160)
    prepared = Prepared(raster, scale, CONSISTENT)
    inner = (slice(None), slice(15, -15), slice(15, -15))  # away from the replicated raster edges
    gap = np.abs(area_average(prepared.ilr, scale) - prepared.coarse)[inner].max()
    assert gap < 1e-5 * np.ptp(raster)
    assert np.abs(prepared.ilr - prepared.fine).max() > 0.01 * np.ptp(raster)


@pytest.mark.parametrize("kernel", [BICUBIC, CONSISTENT])
def test_a_sample_is_a_window_of_the_whole_raster_ilr(kernel):
    # the ILR of a patch is the whole-raster ILR there (what inference computes), flipped with the target
    raster = terrain(3, size=40)
    prepared = Prepared(raster, 2, kernel)
    rng = np.random.default_rng(4)
    for _ in range(5):
        sample = prepared.cut(12, rng, square_pixels=False, gain_range=(1, 1), offset_range=0)
        found = False
        for y0 in range(0, 40 - 12 + 1, 2):
            for x0 in range(0, 40 - 12 + 1, 2):
                window = (slice(None), slice(y0, y0 + 12), slice(x0, x0 + 12))
                for flip in ((), (-1,), (-2,), (-2, -1)):
                    if np.allclose(np.flip(prepared.fine[window], flip), sample.target, atol=1e-6):
                        np.testing.assert_allclose(np.flip(prepared.ilr[window], flip), sample.ilr, atol=1e-6)
                        found = True
        assert found


def test_fine_tuning_starts_from_the_given_model(tmp_path):
    from geosr.errors import ModelError
    from geosr.models.card import ModelCard

    config = TrainConfig(**TINY, epochs=1, lr=1e-3, interpolation="consistent")
    first = tmp_path / "first.safetensors"
    card = ModelCard(name="tiny", in_channels=1, depth=4, width=8)
    trained = train([terrain(0)], [terrain(1)], config, first, card, log=lambda line: None)
    assert read_card(first).kernel.name == "consistent"
    config.epochs = 0  # evaluate only: the starting point of each run
    tuned = train([terrain(0)], [terrain(1)], config, tmp_path / "t.safetensors", card, init=first, log=print)
    fresh = train([terrain(0)], [terrain(1)], config, tmp_path / "f.safetensors", card, log=print)
    assert tuned["initial_val_rmse"] == pytest.approx(trained["history"][-1]["val_rmse"], rel=1e-6)
    assert fresh["initial_val_rmse"] != pytest.approx(tuned["initial_val_rmse"], rel=1e-3)
    wider = TrainConfig(**{**TINY, "width": 16}, epochs=1)
    with pytest.raises(ModelError, match="width 8.*match them or drop --init"):
        train([terrain(0)], [terrain(1)], wider, tmp_path / "w.safetensors", card, init=first, log=print)


def test_nodata_pixels_do_not_enter_the_loss():
    pred, target = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    valid = torch.rand(2, 1, 8, 8) > 0.3
    garbage = torch.where(valid, target, torch.full_like(target, 1e6))
    assert masked_mse(pred, garbage, valid).item() == pytest.approx(masked_mse(pred, target, valid).item())
    expected = ((pred - target)[valid] ** 2).mean().item()
    assert masked_mse(pred, target, valid).item() == pytest.approx(expected, rel=1e-6)


def test_samples_with_nodata_mark_it_invalid():
    raster = terrain(1)
    raster[:, 20:30, 20:30] = np.nan
    rng = np.random.default_rng(3)
    samples = [cut_sample(raster, 2, 24, rng) for _ in range(20)]
    with_gaps = [s for s in samples if s is not None and not s.valid.all()]
    assert with_gaps
    for s in with_gaps:
        assert np.isfinite(s.ilr).all() and np.isfinite(s.target).all()


@pytest.mark.parametrize("scale", [2, 3])
def test_a_coarse_cell_with_a_missing_pixel_is_no_target(scale):
    # inference writes nodata over a whole nodata cell, so none of its fine pixels may be a target
    raster = terrain(1, size=48)
    raster[:, 10, 13] = np.nan  # one pixel: its whole coarse cell is missing after area averaging
    prepared = Prepared(raster, scale, BICUBIC)
    y, x = 10 // scale * scale, 13 // scale * scale
    assert np.isnan(prepared.fine[:, y : y + scale, x : x + scale]).all()
    assert np.isfinite(np.delete(prepared.fine.reshape(-1), np.flatnonzero(np.isnan(prepared.fine)))).all()
    assert np.isnan(prepared.fine).sum() == scale * scale
    rng = np.random.default_rng(0)
    for _ in range(30):
        sample = prepared.cut(12, rng, square_pixels=False, gain_range=(1, 1), offset_range=0)
        cells = sample.valid[0].reshape(12 // scale, scale, 12 // scale, scale)
        # validity is whole cells: every cell is all valid or all missing
        assert np.all(cells.all(axis=(1, 3)) == cells.any(axis=(1, 3)))


def test_relative_loss_weighs_every_sample_alike():
    from geosr.training.train import Batch

    rng = torch.Generator().manual_seed(0)
    ilr, target = torch.randn(2, 1, 12, 12, generator=rng), torch.randn(2, 1, 12, 12, generator=rng)
    residual = torch.randn(2, 1, 12, 12, generator=rng)
    coarse_up = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(target, 2), scale_factor=2)
    batch = Batch(ilr, target, torch.ones(2, 1, 12, 12, dtype=torch.bool), coarse_up, torch.tensor([2, 2]))
    # stretch the second sample (a steeper patch): its absolute error grows 100x, its relative error not
    gain = torch.tensor([1.0, 10.0])[:, None, None, None]
    stretched = Batch(ilr * gain, target * gain, batch.valid, coarse_up * gain, batch.scales)
    assert stretched.loss(residual * gain, "mse").item() > 20 * batch.loss(residual, "mse").item()
    assert stretched.loss(residual * gain, "relative").item() == pytest.approx(
        batch.loss(residual, "relative").item(), rel=0.5
    )
    # a perfect residual has zero loss either way
    assert batch.loss(target - ilr, "relative").item() == pytest.approx(0.0, abs=1e-10)


def test_learning_rate_schedules():
    cosine = TrainConfig(lr=1.0, epochs=10, cosine=True)
    assert learning_rate(cosine, 0) == pytest.approx(1.0)
    assert learning_rate(cosine, 5) == pytest.approx(0.5)
    assert learning_rate(TrainConfig(lr=1.0, lr_decay_epochs=3), 7) == pytest.approx(0.01)
    assert learning_rate(TrainConfig(lr=0.5), 99) == 0.5
    # with a budget of minutes, the cosine anneals over whichever of the budgets the run has used more of: it
    # followed the (default 50) epochs only, and a one-hour run stopped after 10 epochs at 90% of its rate
    timed = TrainConfig(lr=1.0, cosine=True, epochs=50, minutes=60)
    assert learning_rate(timed, 10, seconds=30 * 60) == pytest.approx(0.5)
    assert learning_rate(timed, 10, seconds=60 * 60) == pytest.approx(0.0)
    assert learning_rate(timed, 25, seconds=60) == pytest.approx(0.5)  # the epochs used more


@pytest.mark.parametrize("optimizer, lr", [("adam", 3e-3), ("sgd", 0.03)])
def test_a_few_epochs_reduce_the_validation_error_and_write_a_model(tmp_path, optimizer, lr):
    from geosr.models.card import ModelCard

    config = TrainConfig(**SMALL, epochs=5, lr=lr, optimizer=optimizer, seed=1)
    card = ModelCard(name="tiny", in_channels=1, depth=4, width=16, bands=["elevation"], units=["m"])
    output = tmp_path / "tiny.safetensors"
    summary = train([terrain(s) for s in range(3)], [terrain(9)], config, output, card, log=lambda line: None)
    assert summary["steps"] == 5 * SMALL["steps_per_epoch"]
    final = summary["history"][-1]["val_rmse"]
    assert np.isfinite(final)
    assert final < 0.99 * summary["initial_val_rmse"]
    assert final < summary["history"][-1]["val_interpolation"]
    loaded = load_model(output)
    assert loaded.card.training["steps"] == summary["steps"]
    # the processor time of the run (all threads) beside its wall-clock time, both whole seconds
    assert isinstance(loaded.card.training["processor_seconds"], int) and loaded.card.training["processor_seconds"] >= 0
    out = downscale(fbm_surface((20, 20), seed=4), 2, loaded, device="cpu")
    assert out.shape == (40, 40) and np.isfinite(out).all()


def test_resume_continues_from_the_checkpoint(tmp_path):
    from geosr.models.card import ModelCard

    card = ModelCard(name="tiny", in_channels=1, depth=4, width=8)
    output = tmp_path / "m.safetensors"
    config = TrainConfig(**TINY, epochs=1, lr=1e-3)
    train([terrain(0)], [terrain(1)], config, output, card, log=lambda line: None)
    config.epochs = 2
    summary = train([terrain(0)], [terrain(1)], config, output, card, resume=str(output) + ".ckpt", log=print)
    assert summary["epochs"] == 2 and summary["steps"] == 2 * TINY["steps_per_epoch"]


def test_a_resumed_fine_tuning_does_not_say_it_starts_from_the_initial_weights(tmp_path):
    """--init with --resume: the run continues the checkpoint's weights, and says only that."""
    from geosr.models.card import ModelCard
    from geosr.testing import random_model

    start = random_model(tmp_path / "start.safetensors", depth=4, width=8, name="start")
    output = tmp_path / "m.safetensors"
    config = TrainConfig(**TINY, epochs=1, lr=1e-3)
    first: list[str] = []
    train(
        [terrain(0)], [terrain(1)], config, output, ModelCard(name="tiny", in_channels=1), init=start, log=first.append
    )
    assert any(line.startswith("starting from the weights of") for line in first)
    config.epochs = 2
    lines: list[str] = []
    card = ModelCard(name="tiny", in_channels=1)
    train([terrain(0)], [terrain(1)], config, output, card, init=start, resume=str(output) + ".ckpt", log=lines.append)
    assert not any("starting from the weights" in line for line in lines), lines
    assert any(line.startswith("resumed from") and "at epoch 1" in line for line in lines), lines
    assert card.training["started_from"]["model"] == str(start)  # the card still records where the run began


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    """The checkpoint keeps the patch sampler's state, so stopping and resuming changes nothing."""
    from geosr.models.card import ModelCard

    def run(output, epochs, resume=None):
        card = ModelCard(name="tiny", in_channels=1, depth=4, width=8)
        config = TrainConfig(**TINY, epochs=epochs, lr=1e-3)
        train([terrain(0)], [terrain(1)], config, output, card, resume=resume, log=lambda line: None)
        return load_model(output).network.state_dict()

    whole = run(tmp_path / "whole.safetensors", 3)
    run(tmp_path / "parts.safetensors", 1)
    run(tmp_path / "parts.safetensors", 2, resume=str(tmp_path / "parts.safetensors.ckpt"))
    parts = run(tmp_path / "parts.safetensors", 3, resume=str(tmp_path / "parts.safetensors.ckpt"))
    assert whole.keys() == parts.keys()
    for name in whole:
        assert torch.equal(whole[name], parts[name]), name


def test_a_run_stopped_while_writing_its_checkpoint_can_still_resume(tmp_path, monkeypatch):

    import torch

    from geosr.models.card import ModelCard
    from geosr.training import train as train_module

    card = ModelCard(name="tiny", in_channels=1, depth=4, width=8)
    output = tmp_path / "m.safetensors"
    checkpoint = tmp_path / "m.safetensors.ckpt"
    config = TrainConfig(**TINY, epochs=1, lr=1e-3)
    train([terrain(0)], [terrain(1)], config, output, card, log=lambda line: None)
    first = checkpoint.read_bytes()

    real_save = torch.save

    def interrupted(state, path):
        real_save(state, path)
        Path(path).write_bytes(Path(path).read_bytes()[:100])  # half written
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module.torch, "save", interrupted)
    config.epochs = 2
    with pytest.raises(KeyboardInterrupt):
        train([terrain(0)], [terrain(1)], config, output, card, resume=str(checkpoint), log=lambda line: None)
    assert checkpoint.read_bytes() == first  # the epoch-1 checkpoint is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "m.safetensors.ckpt"]
    monkeypatch.setattr(train_module.torch, "save", real_save)
    summary = train([terrain(0)], [terrain(1)], config, output, card, resume=str(checkpoint), log=lambda line: None)
    assert summary["epochs"] == 2


def test_train_is_deterministic_on_cpu(tmp_path):
    from geosr.models.card import ModelCard

    config = TrainConfig(**TINY, epochs=1, lr=1e-3, seed=5)
    outputs = []
    for i in range(2):
        card = ModelCard(name="tiny", in_channels=1, depth=4, width=8)
        path = tmp_path / f"m{i}.safetensors"
        train([terrain(0)], [terrain(1)], config, path, card, log=lambda line: None)
        outputs.append(downscale(fbm_surface((16, 16), seed=2), 2, str(path), device="cpu"))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_cli_trains_a_multiband_model_that_downscales(tmp_path, cli):
    # tall enough for 16-pixel patches with the consistent kernel's margin (10 coarse pixels) at x3
    bands = np.stack([fbm_surface((160, 80), seed=s, relief=100.0 * (s + 1)) for s in range(2)])
    bands[1, :5, :5] = -9999
    hr = write_geotiff(
        tmp_path / "hr.tif", bands, nodata=-9999, descriptions=["elevation", "temperature"], units=["m", "K"]
    )
    model = tmp_path / "mine.safetensors"
    args = ["train", hr, "-o", model, "--scales", "2,3", "--epochs", "2", "--steps-per-epoch", "3"]
    args += ["--batch-size", "4", "--patch-size", "16", "--depth", "3", "--width", "4", "--device", "cpu", "-q"]
    result = cli(*args)
    assert result.code == 0, result.err
    card = read_card(model)
    assert (card.in_channels, card.depth, card.width) == (2, 3, 4)
    assert card.bands == ["elevation", "temperature"] and card.units == ["m", "K"]
    assert card.scales == [2.0, 3.0]
    assert card.kernel.name == "consistent"  # the default network input
    out = tmp_path / "out.tif"
    result = cli("downscale", hr, "--scale", 2, "--model", model, "-o", out, "-q")
    assert result.code == 0, result.err
    with rasterio.open(out) as dst:
        assert dst.count == 2 and dst.shape == (320, 160)
    again = cli(*args)
    assert again.code != 0 and "--overwrite" in again.err


@pytest.mark.parametrize(
    ("transform", "crs", "square"),
    [
        (Affine.rotation(30) * Affine.scale(10.0, -10.0), CRS, True),  # rotated, pixels still square
        (Affine.scale(10.0, -20.0), CRS, False),
        (Affine.rotation(30) * Affine.scale(10.0, -20.0), CRS, False),
        (Affine.rotation(90) * Affine.scale(10.0, -20.0), CRS, False),  # a == e == 0: compare the pixel sizes
        # a geographic raster's pixels are measured on the ground, where a degree of longitude is shorter than one
        # of latitude (before, 'square in degrees' was rotated): SRTM's 3 arc-seconds at 36 N are 75 x 93 m
        (Affine(1 / 1200, 0, -84.5, 0, -1 / 1200, 36.5), "EPSG:4326", False),
        # degrees of longitude 1/cos(36.45 N) times those of latitude: square on the ground to 1%
        (Affine(1 / 1200 / math.cos(math.radians(36.45)), 0, -84.5, 0, -1 / 1200, 36.5), "EPSG:4326", True),
    ],
)
def test_cli_rotates_training_patches_only_where_pixels_are_square(tmp_path, cli, transform, crs, square):
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((96, 48), seed=4, relief=50.0), transform=transform, crs=crs)
    model = tmp_path / "m.safetensors"
    args = ["train", hr, "-o", model, "--scales", "2", "--epochs", "1", "--steps-per-epoch", "1"]
    args += ["--batch-size", "2", "--patch-size", "16", "--depth", "3", "--width", "4", "--device", "cpu", "-q"]
    result = cli(*args)
    assert result.code == 0, result.err
    assert read_card(model).training["config"]["square_pixels"] is square


def test_an_interrupted_cli_training_says_what_it_left_and_how_to_resume(tmp_path, cli, monkeypatch):
    from geosr.training import train as train_module

    real_train = train_module.train
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((80, 60), seed=2, relief=100.0))
    model = tmp_path / "mine.safetensors"
    args = ["train", hr, "-o", model, "--epochs", "3", "--steps-per-epoch", "2", "--batch-size", "2"]
    args += ["--patch-size", "16", "--depth", "3", "--width", "4", "--device", "cpu", "-q"]

    def stopped_at_once(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train", stopped_at_once)
    result = cli(*args)
    assert result.code == 130
    assert assert_one_line_error(result.err, result.code).endswith("no epoch finished, so nothing was written")
    assert not model.exists()

    def stopped_in_epoch_two(rasters, val, config, output, card, **options):
        config.epochs = 1
        real_train(rasters, val, config, output, card, **options)  # one epoch: model and checkpoint written
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train", stopped_in_epoch_two)
    result = cli(*args)
    message = assert_one_line_error(result.err, result.code)
    assert result.code == 130
    assert f"{model} holds the model of the last finished epoch" in message
    assert message.endswith(f"--resume {model}.ckpt")
    assert read_card(model).training["epochs"] == 1
    monkeypatch.setattr(train_module, "train", real_train)
    first = torch.load(f"{model}.ckpt", weights_only=False)["processor_seconds"]
    resumed = cli(*args, "--resume", f"{model}.ckpt")
    assert resumed.code == 0, resumed.err
    assert read_card(model).training["epochs"] == 3
    # a resumed run's processor time counts on from the checkpoint's
    assert torch.load(f"{model}.ckpt", weights_only=False)["processor_seconds"] > first > 0


def test_cli_refuses_a_raster_too_small_for_the_patches(tmp_path, cli):
    hr = write_geotiff(tmp_path / "small.tif", fbm_surface((30, 30), seed=1))
    result = cli("train", hr, "-o", tmp_path / "m.safetensors", "--patch-size", "48")
    assert result.code != 0
    assert "too small" in result.err and "--patch-size" in result.err
    assert not (tmp_path / "m.safetensors").exists()


def test_cli_fine_tunes_a_model_and_refuses_a_mismatched_one(tmp_path, cli, model_like_shipped):
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((120, 64), seed=6))
    common = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--patch-size", "16", "--device", "cpu"]
    tuned = tmp_path / "tuned.safetensors"
    result = cli("train", hr, "-o", tuned, "--init", model_like_shipped, "--depth", 4, "--width", 8, *common, "-q")
    assert result.code == 0, result.err
    card = read_card(tuned)
    assert card.training["started_from"]["model"] == str(model_like_shipped)
    assert card.conserve  # inherited from the model it started from
    # a second stage keeps the whole chain: what the first stage started from stays in its card
    again = tmp_path / "again.safetensors"
    result = cli("train", hr, "-o", again, "--init", tuned, "--depth", 4, "--width", 8, *common, "-q")
    assert result.code == 0, result.err
    chain = read_card(again).training["started_from"]
    assert chain["model"] == str(tuned) and chain["started_from"]["model"] == str(model_like_shipped)
    bad = cli("train", hr, "-o", tmp_path / "bad.safetensors", "--init", model_like_shipped, *common)
    assert bad.code != 0
    assert "width 8" in bad.err and "drop --init" in bad.err and "Traceback" not in bad.err
    assert not (tmp_path / "bad.safetensors").exists()


def test_cli_fine_tunes_with_the_input_cells_from_a_model_without_them(tmp_path, cli, model_like_shipped):
    from geosr.models.files import load_model
    from geosr.predict import downscale

    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((120, 64), seed=6))
    common = ["--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "2", "--patch-size", "16", "--device", "cpu"]
    common += ["--depth", "4", "--width", "8", "-q"]
    tuned = tmp_path / "cells.safetensors"
    result = cli("train", hr, "-o", tuned, "--init", model_like_shipped, "--cell-input", "--lr", "1e-3", *common)
    assert result.code == 0, result.err
    loaded = load_model(tuned)
    assert loaded.card.cell_input and loaded.network.body[0].weight.shape[1] == 2
    assert loaded.network.body[0].weight[:, 1:].abs().max() > 0  # the cell weights started at zero and moved
    out = downscale(fbm_surface((20, 24), seed=2), 2, loaded, device="cpu")
    assert out.shape == (40, 48) and np.isfinite(out).all()
    # a model that takes the cells cannot be fine-tuned into one that does not
    back = cli("train", hr, "-o", tmp_path / "back.safetensors", "--init", tuned, *common)
    assert back.code != 0 and "--cell-input" in back.err and "Traceback" not in back.err


def _pp_record(rows: int, cols: int, data: np.ndarray, bdy: float, bmdi: float, stash: int) -> bytes:
    """One unpacked PP field written from the PP format description (64-word header, Fortran records)."""
    ints = np.zeros(45, dtype=">i4")
    ints[17], ints[18], ints[20], ints[41] = rows, cols, 0, stash
    reals = np.zeros(19, dtype=">f4")
    reals[14], reals[16], reals[17] = bdy, 1.0, bmdi
    header = ints.tobytes() + reals.tobytes()
    body = data.astype(">f4").tobytes()
    mark = lambda n: np.array([n], dtype=">i4").tobytes()  # noqa: E731
    return mark(len(header)) + header + mark(len(header)) + mark(len(body)) + body + mark(len(body))


def test_pp_reader_orients_rows_north_first_and_masks_missing(tmp_path):
    from geosr.training.sources import read_pp_fields

    south_first = np.arange(12, dtype=np.float64).reshape(3, 4)
    south_first[1, 2] = -999.0
    north_first = np.arange(6, dtype=np.float64).reshape(2, 3) + 100
    path = tmp_path / "two.pp"
    path.write_bytes(
        _pp_record(3, 4, south_first, bdy=1.25, bmdi=-999.0, stash=24)
        + _pp_record(2, 3, north_first, bdy=-0.5, bmdi=-1e30, stash=16)
    )
    (ints1, _, first), (ints2, _, second) = read_pp_fields(path)
    assert (int(ints1[41]), int(ints2[41])) == (24, 16)
    expected = south_first[::-1].copy()
    expected[1, 2] = np.nan
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(second, north_first)


def test_real_climate_training_grids_stay_clear_of_the_held_out_ones():
    pytest.importorskip("iris_sample_data")
    from geosr.training import sources

    train, val = sources.iris_climate_sets()
    assert len(train) == sources.IRIS_CLIMATE_RASTERS
    # GloSea4 members: the eastern hemisphere only (96 of 192 columns), so North America is never seen
    glosea = [g for g in train + val if g.shape[-2:] == (145, 96)]
    assert len(glosea) == 13 * 6
    # no validation grid is also a training grid
    assert not any(np.array_equal(v, t, equal_nan=True) for v in val for t in train)
    # NEMO: the held-out ORCA2 window's region is nodata
    import netCDF4

    name = "NEMO/nemo_1m_20150101-20150201_grid-T.nc"
    with netCDF4.Dataset(sources._iris_sample(name)) as dataset:
        lat, lon = dataset["nav_lat"][:][::-1], dataset["nav_lon"][:][::-1] % 360
    sst = sources.nemo_sea_surface_temperature(1)
    inside = (lon > 180) & (lon < 278) & (lat > -72) & (lat < 6)
    assert inside.sum() > 1000 and np.isnan(sst[inside]).all()
    assert np.isfinite(sst[~inside]).mean() > 0.3


def test_observed_ocean_grids_leave_out_the_held_out_and_validation_regions(monkeypatch):
    from geosr.training import sources

    grids = {name: np.random.default_rng(i).normal(size=(90, 180)) for i, name in enumerate(sources.OBSERVED_OCEAN)}
    monkeypatch.setattr(sources, "fetched", grids.__getitem__)
    train, val = sources.observed_ocean_sets()
    assert len(train) == len(sources.OBSERVED_OCEAN) and len(val) == 2
    for name, grid in zip(sources.OBSERVED_OCEAN, train, strict=True):
        held_out = sources.region_mask(name, (90, 180), **sources.HELDOUT_SEA)
        validation = sources.region_mask(name, (90, 180), **sources.OCEAN_VALIDATION)
        assert held_out.sum() > 1000 and validation.sum() > 2000 and not (held_out & validation).any()
        assert np.isnan(grid[0][held_out | validation]).all()
        np.testing.assert_array_equal(grid[0][~(held_out | validation)], grids[name][~(held_out | validation)])
    # validation: the surface grids cut to the region (20-120 E, 70 S-30 N), room for 48-pixel patches
    for name, grid in zip(("oisst", "woa_oxygen_saturation"), val, strict=True):
        mask = sources.region_mask(name, (90, 180), **sources.OCEAN_VALIDATION)
        assert grid.shape[0] == 1 and min(grid.shape[1:]) >= 50
        assert grid[0].size == mask.sum()
        np.testing.assert_array_equal(grid[0].ravel(), grids[name][mask])
    # WOA's columns start at 179.5 W: 20-120 E are columns 100-149 (centres 20.5 .. 118.5 E)
    lon0, _, step = sources.GLOBAL_GRIDS["woa_oxygen_saturation"]
    assert (lon0 + step * 100) % 360 == 20.5


def test_relief_validation_leaves_out_the_held_out_window_and_the_usa(monkeypatch):
    from geosr.training import heldout, sources

    grid = np.random.default_rng(3).normal(size=(180, 359))
    monkeypatch.setattr(sources, "fetched", lambda name: grid)
    monkeypatch.setattr(heldout, "fetched", lambda name: grid)
    relief = sources.relief_validation()[0]
    lon0, lat0, _ = sources.GLOBAL_GRIDS["hypsometry"]
    lons, lats = (lon0 + np.arange(359)) % 360, lat0 - np.arange(180)
    held = heldout._region("hypsometry", sources.EARTH_RELIEF_HELD_OUT)
    # the held-out window is every row of the columns 15-170 E, and none of them is validation
    columns = (lons >= 15) & (lons <= 170)
    np.testing.assert_array_equal(held, grid[:, columns])
    assert np.isnan(relief[:, (lons >= 10) & (lons <= 175)]).all()
    usa = ((lats >= 24) & (lats <= 50))[:, None] & ((lons >= 235) & (lons <= 293.5))[None, :]
    assert usa.sum() > 1000 and np.isnan(relief[usa]).all()
    rest = ~usa & ~((lons >= 10) & (lons <= 175))[None, :]
    np.testing.assert_array_equal(relief[rest], grid[rest])
    assert rest.sum() > 30000


def test_more_dems_split_into_training_and_validation_without_luxembourg(monkeypatch):
    from geosr.training import sources

    shapes = {"srtm_erzurum": (1000, 1000), "copernicus_grenoble": (500, 500), "gironde": (1142, 1093)}
    shapes["rhine"] = (682, 997)
    grids = {name: np.random.default_rng(i).normal(size=shape) for i, (name, shape) in enumerate(shapes.items())}
    monkeypatch.setattr(sources, "fetched", grids.__getitem__)
    train, val = sources.more_dem_sets()
    erzurum, grenoble, gironde, rhine = train
    # the southern rows of the SRTM and Gironde DEMs are validation, the rest training, nothing shared
    np.testing.assert_array_equal(np.vstack([erzurum, val[0]]), grids["srtm_erzurum"])
    np.testing.assert_array_equal(np.vstack([gironde, val[1]]), grids["gironde"])
    assert val[0].shape == (250, 1000) and val[1].shape == (285, 1093)
    np.testing.assert_array_equal(grenoble, grids["copernicus_grenoble"])
    # Luxembourg (5.73-6.53 E, 49.45-50.18 N), a held-out DEM, is nodata in the Rhine basin: 30
    # arc-second pixels from 3.5667 E and 52.0083 N
    rows = slice(int((52.00833333 - 50.18) * 120), int((52.00833333 - 49.45) * 120) + 1)
    cols = slice(int((5.73 - 3.56666667) * 120), int((6.53 - 3.56666667) * 120) + 1)
    assert np.isnan(rhine[rows, cols]).all()
    assert 0 < np.isnan(rhine).sum() < 0.05 * rhine.size  # the margined box only
    assert not np.isnan(grids["rhine"]).any()  # the fetched grid itself is left alone


def test_weight_average_lies_between_the_start_and_the_fine_tuned_model(tmp_path, model_consistent, model_like_shipped):
    import shutil

    from geosr.errors import ModelError
    from geosr.models.files import load_model
    from geosr.training.train import average_weights

    start, tuned = load_model(model_consistent, "cpu"), load_model(model_like_shipped, "cpu")
    a, b = start.network.state_dict(), tuned.network.state_dict()
    for alpha in (0.0, 0.5, 1.0):
        out = average_weights(model_consistent, model_like_shipped, alpha, tmp_path / f"avg{alpha}.safetensors")
        mixed = load_model(out, "cpu")
        for key, value in mixed.network.state_dict().items():
            torch.testing.assert_close(value, (1 - alpha) * a[key] + alpha * b[key])
        # the card is the fine-tuned model's, with the average recorded
        assert mixed.card.name == tuned.card.name and mixed.card.conserve == tuned.card.conserve
        assert mixed.card.training["weight_average"]["alpha"] == alpha
        assert not any(key.startswith("val_") for key in mixed.card.metrics)
    copy = tmp_path / "copy.safetensors"
    shutil.copy(model_like_shipped, copy)
    assert average_weights(model_consistent, copy, 0.25) == copy  # in place by default
    with pytest.raises(ModelError, match=r"\[0, 1\], got 1.5"):
        average_weights(model_consistent, model_like_shipped, 1.5, tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()


def test_weight_average_of_a_model_fine_tuned_with_the_cells_counts_the_start_cells_as_zero(
    tmp_path, model_like_shipped
):
    from geosr.models.files import load_model, save_model
    from geosr.training.train import average_weights

    start = load_model(model_like_shipped, "cpu")
    tuned_net = start.network.with_cell_input()
    with torch.no_grad():
        for parameter in tuned_net.parameters():
            parameter.add_(0.1)
    card = dataclasses.replace(start.card, cell_input=True, training={}, metrics={})
    tuned = save_model(tuned_net, card, tmp_path / "tuned.safetensors")
    out = load_model(average_weights(model_like_shipped, tuned, 0.5, tmp_path / "avg.safetensors"), "cpu")
    assert out.card.cell_input
    widened, moved = start.network.with_cell_input().state_dict(), tuned_net.state_dict()
    for key, value in out.network.state_dict().items():
        torch.testing.assert_close(value, 0.5 * widened[key] + 0.5 * moved[key])
    # the cell weights of the average are half the fine-tuned ones
    first = out.network.state_dict()["body.0.weight"][:, 1:]
    torch.testing.assert_close(first, 0.5 * moved["body.0.weight"][:, 1:])


def test_shipped_wise_needs_the_model_it_started_from():
    from geosr.training import shipped

    with pytest.raises(SystemExit):
        shipped.main(["climate", "--wise", "0.5", "--epochs", "1"])


@pytest.mark.parametrize(("flag", "fill"), [((), False), (("--fill-missing", "neighbours"), True)])
def test_shipped_recipes_fill_missing_cells_with_the_mean_unless_asked(monkeypatch, tmp_path, flag, fill):
    # the recipes regenerate models trained with the band mean; --fill-missing neighbours trains as inference fills
    from geosr.training import shipped

    seen = []
    monkeypatch.setitem(shipped.SOURCES, "dem", lambda: ([terrain(0)], [terrain(1)], 1))
    monkeypatch.setattr(shipped, "train", lambda rasters, val, config, *args, **kwargs: seen.append(config))
    shipped.main(["dem", "--epochs", "1", *flag, "--output", str(tmp_path / "m.safetensors")])
    assert [c.fill_missing for c in seen] == [fill]
    with pytest.raises(SystemExit):
        shipped.main(["dem", "--fill-missing", "nearest"])


def test_spectral_fields_are_band_limited_and_seeded():
    from geosr.training.sources import synthetic_spectral

    fields = synthetic_spectral(6, 64, seed=5)
    assert len(fields) == 6 and all(f.shape == (64, 64) for f in fields)
    for field in fields:
        assert np.isfinite(field).all() and field.std() > 0.5
        # without its gradient (constant along rows, removed with the row means) a field has no power at
        # wavelengths under 3 pixels
        detrended = field - field.mean(axis=1, keepdims=True)
        ky, kx = np.meshgrid(np.fft.fftfreq(64), np.fft.fftfreq(64), indexing="ij")
        power = np.abs(np.fft.fft2(detrended)) ** 2
        short = np.hypot(ky, kx) > 1 / 3 + 1e-9
        assert short.sum() > 1000 and power.sum() > 0
        assert power[short].sum() < 1e-12 * power.sum()
    np.testing.assert_array_equal(synthetic_spectral(2, 32, seed=5)[1], synthetic_spectral(2, 32, seed=5)[1])
    assert not np.array_equal(synthetic_spectral(1, 32, seed=5)[0], synthetic_spectral(1, 32, seed=6)[0])


def test_climate_sets_with_spectral_fields_add_training_fields_and_validation_grids(monkeypatch):
    from geosr.training import sources

    monkeypatch.setattr(sources, "iris_climate_sets", lambda: ([np.zeros((1, 8, 8))] * 3, [np.ones((1, 8, 8))]))
    monkeypatch.setattr(sources, "observed_ocean_sets", lambda: ([np.zeros((1, 8, 8))], [np.ones((1, 8, 8))]))
    grids = {"era5_z500": np.arange(61 * 120.0).reshape(61, 120), "gefs_mslp": np.ones((181, 360))}
    grids["era5_t850"] = grids["era5_z500"] + 1
    monkeypatch.setattr(sources, "fetched", grids.__getitem__)
    plain = sources.climate_training_sets(n_synthetic=2, size=16)
    train, val, n_real = sources.climate_training_sets(n_synthetic=2, size=16, spectral=3)
    assert n_real == plain[2] == 3
    assert len(train) == len(plain[0]) + 3 and len(val) == len(plain[1]) + 3
    assert [v.shape for v in val[-3:]] == [(1, 53, 120), (1, 53, 120), (1, 161, 360)]
    # the 3-degree grids lose the rows beyond about 80 degrees: row 4 is 78 N
    np.testing.assert_array_equal(val[-3][0], grids["era5_z500"][4:57])


TINY_CLI = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--depth", "3", "--width", "4"]
TINY_CLI += ["--device", "cpu", "-q"]


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("scale beyond the raster", "scale 30 gives no 12-pixel patch of whole 30-pixel cells in the training part"),
        # the first 15% too: with data there, a run validates on it (a coastal DEM)
        ("sea at both ends", "no 16-pixel patch of the validation part with at least half"),
    ],
)
def test_cli_refuses_data_that_cannot_give_patches_instead_of_hanging(tmp_path, cli, case, words):
    data = fbm_surface((48, 48), seed=3, relief=50.0)
    if case == "sea at both ends":
        data[-12:] = -9999
        data[:12] = -9999
        args = ["--scales", "2", "--patch-size", "16"]
    else:
        args = ["--scales", "30", "--patch-size", "12"]
    hr = write_geotiff(tmp_path / "hr.tif", data, nodata=-9999)
    result = cli("train", hr, "-o", tmp_path / "m.safetensors", *args, *TINY_CLI)
    assert result.code == 1
    assert_one_line_error(result.err, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr.tif"]


def test_cli_checks_the_output_before_training(tmp_path, cli):
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 32), seed=3, relief=50.0))
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    args = ["--scales", "2", "--patch-size", "16", *TINY_CLI]
    result = cli("train", hr, "-o", folder, "--overwrite", *args)
    assert result.code != 0 and "is a folder" in result.err
    assert (folder / "notes.txt").read_text() == "keep me"
    result = cli("train", hr, "-o", tmp_path / "missing" / "m.safetensors", *args)
    assert result.code != 0
    assert_one_line_error(result.err, "output folder")


def test_cli_resume_refusals_are_one_line(tmp_path, cli):
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 32), seed=3, relief=50.0))
    model = tmp_path / "m.safetensors"
    args = ["--scales", "2", "--patch-size", "16", *TINY_CLI]
    assert cli("train", hr, "-o", model, *args).code == 0
    checkpoint = tmp_path / "m.safetensors.ckpt"
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    cases = [
        (["--resume", checkpoint], "has already run 1 epoch, and --epochs asks for 1"),
        (["--resume", checkpoint, "--epochs", "2", "--width", "8"], "another recipe (--width 4 then, 8 now)"),
        (["--resume", junk, "--epochs", "2"], "is not a geosr training checkpoint"),
        (["--resume", model, "--epochs", "2"], "is not a geosr training checkpoint"),
    ]
    for extra, words in cases:
        result = cli("train", hr, "-o", tmp_path / "second.safetensors", *args, *extra)
        assert result.code == 1, (extra, result.err)
        assert_one_line_error(result.err, words)
    assert not (tmp_path / "second.safetensors").exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--lr", "0"),
        ("--lr", "-1"),
        ("--minutes", "-1"),
        ("--minutes", "0"),
        ("--lr", "nan"),
        ("--lr", "inf"),
        ("--minutes", "nan"),
    ],
)
def test_cli_refuses_a_learning_rate_or_budget_that_is_not_positive(tmp_path, cli, option, value):
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 32), seed=3, relief=50.0))
    result = cli("train", hr, "-o", tmp_path / "m.safetensors", option, value, *TINY_CLI)
    assert result.code == 2
    assert_one_line_error(result.err, f"Invalid value for '{option}'")
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [("--batch-size", "100000000"), ("--width", str(2**40)), ("--depth", "100000000")],
)
def test_cli_refuses_a_network_or_batch_larger_than_memory(tmp_path, cli, option, value):
    # before: a bare allocator line (width), or swapping until killed (batch, depth)
    from geosr.training.train import TrainConfig, device_memory, training_bytes

    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 32), seed=3, relief=50.0))
    result = cli("train", hr, "-o", tmp_path / "m.safetensors", *TINY_CLI, "--patch-size", "16", option, value)
    assert result.code == 1
    assert_one_line_error(result.err, "GiB of memory; lower --batch-size, --patch-size, --depth or --width")
    assert "needs at least" in result.err and "more than this machine's" in result.err
    assert not (tmp_path / "m.safetensors").exists()
    # the default recipe is far from refused: its lower bound is under a gigabyte
    assert training_bytes(TrainConfig(), 1) < 2**30 < device_memory(torch.device("cpu"))


def test_cli_refuses_constant_rasters(tmp_path, cli):
    hr = write_geotiff(tmp_path / "flat.tif", np.full((64, 32), 5.0, dtype=np.float32))
    result = cli("train", hr, "-o", tmp_path / "m.safetensors", "--scales", "2", "--patch-size", "16", *TINY_CLI)
    assert result.code == 1
    assert_one_line_error(result.err, "every raster is constant (flat.tif)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.tif"]


def test_a_diverging_training_stops_with_one_line_and_keeps_the_last_epoch(tmp_path, cli):
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 32), seed=3, relief=50.0))
    model = tmp_path / "m.safetensors"
    args = ["--scales", "2", "--patch-size", "16", *TINY_CLI]
    assert cli("train", hr, "-o", model, *args).code == 0
    before = model.read_bytes()
    result = cli("train", hr, "-o", model, *args, "--resume", f"{model}.ckpt", "--epochs", "2", "--lr", "1e30")
    assert result.code == 1
    assert_one_line_error(result.err, "training diverged: the ")
    assert "lower --lr" in result.err and f"{model} is unchanged" in result.err
    assert model.read_bytes() == before


def test_cli_never_writes_the_model_over_an_input_or_an_earlier_checkpoint(tmp_path, cli):
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 32), seed=3, relief=50.0))
    before = hr.read_bytes()
    args = ["--scales", "2", "--patch-size", "16", *TINY_CLI]
    result = cli("train", hr, "-o", hr, "--overwrite", *args)
    assert result.code == 1
    assert_one_line_error(result.err, "is one of the input rasters")
    assert hr.read_bytes() == before
    result = cli("train", hr, "-o", tmp_path / "dem", *args)
    assert result.code == 2
    assert_one_line_error(result.err, "must be named *.safetensors")
    # a checkpoint left by an earlier run is an output too
    model = tmp_path / "m.safetensors"
    assert cli("train", hr, "-o", model, *args).code == 0
    model.unlink()
    checkpoint = tmp_path / "m.safetensors.ckpt"
    kept = checkpoint.read_bytes()
    result = cli("train", hr, "-o", model, *args)
    assert result.code == 1
    assert_one_line_error(result.err, f"pass --resume {checkpoint} to continue that run, or --overwrite")
    assert checkpoint.read_bytes() == kept
    # resuming another run's checkpoint does not replace an existing model without --overwrite
    other = tmp_path / "other.safetensors"
    assert cli("train", hr, "-o", other, *args).code == 0
    result = cli("train", hr, "-o", other, "--resume", checkpoint, *args, "--epochs", "2")
    assert result.code == 1
    assert_one_line_error(result.err, "already exists; pass --overwrite")
    # its own checkpoint continues it
    assert cli("train", hr, "-o", other, "--resume", f"{other}.ckpt", *args, "--epochs", "2").code == 0


@pytest.mark.parametrize(
    ("value", "nodata", "words"),
    [
        (float(np.finfo(np.float32).min), None, "float32's limit, the usual marker of missing data"),
        (1e300, None, "beyond the range of float32"),
        (-9999.0, -9999.0, "has no valid pixel (nodata=-9999.0)"),
    ],
)
def test_cli_refuses_undeclared_nodata_markers_and_empty_rasters(tmp_path, cli, value, nodata, words):
    data = fbm_surface((64, 32), seed=3, relief=50.0).astype(np.float64)
    if nodata is None:
        data[10:20, 5:9] = value
    else:
        data[:] = value
    hr = write_geotiff(tmp_path / "hr.tif", data, nodata=nodata, dtype="float64")
    result = cli("train", hr, "-o", tmp_path / "m.safetensors", "--scales", "2", "--patch-size", "16", *TINY_CLI)
    assert result.code == 1
    assert_one_line_error(result.err, words)


def test_cli_refuses_rasters_in_different_units_and_repeated_values(tmp_path, cli):
    metres = write_geotiff(tmp_path / "m.tif", fbm_surface((64, 32), seed=3, relief=50.0), units=["m"])
    feet = write_geotiff(tmp_path / "ft.tif", fbm_surface((64, 32), seed=4, relief=150.0), units=["ft"])
    args = ["--patch-size", "16", *TINY_CLI]
    result = cli("train", metres, feet, "-o", tmp_path / "mix.safetensors", "--scales", "2", *args)
    assert result.code == 1
    assert_one_line_error(result.err, "channel 1 is in m in")
    # one unit spelled another way is the same unit
    metre = write_geotiff(tmp_path / "metre.tif", fbm_surface((64, 32), seed=5, relief=50.0), units=[" Metre "])
    result = cli("train", metres, metre, "-o", tmp_path / "same.safetensors", "--scales", "2", *args)
    assert result.code == 0, result.err
    for option, value in (("--scales", "2,2"), ("--bands", "1,1")):
        result = cli("train", metres, "-o", tmp_path / "dup.safetensors", option, value, *args)
        assert result.code == 2 and "names a value twice" in result.err, result.err


def test_cli_resume_with_another_optimiser_is_one_line(tmp_path, cli):
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 32), seed=3, relief=50.0))
    model = tmp_path / "m.safetensors"
    args = ["--scales", "2", "--patch-size", "16", *TINY_CLI]
    assert cli("train", hr, "-o", model, *args).code == 0
    resume = ["--resume", f"{model}.ckpt", *args, "--epochs", "2", "--optimizer", "sgd"]
    result = cli("train", hr, "-o", model, *resume)
    assert result.code == 1
    assert_one_line_error(result.err, "another recipe (--optimizer adam then, sgd now)")
    # a checkpoint written before checkpoints kept their recipe: the network or optimiser that fails to load
    state = torch.load(f"{model}.ckpt", weights_only=False)
    del state["recipe"]
    torch.save(state, f"{model}.ckpt")
    result = cli("train", hr, "-o", model, *resume)
    assert result.code == 1
    assert_one_line_error(result.err, "is of another network or optimiser")


def test_the_card_records_the_command_as_given_and_keeps_it_on_resume(tmp_path, cli, monkeypatch):
    import os

    monkeypatch.chdir(tmp_path)
    write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 32), seed=3, relief=50.0))
    args = ["train", "hr.tif", "-o", "m.safetensors", "--scales", "2", "--patch-size", "16", *TINY_CLI]
    assert cli(*args).code == 0
    training = read_card(tmp_path / "m.safetensors").training
    assert training["command"] == "geosr " + " ".join(args)
    assert training["folder"] == os.getcwd()
    # resumed from another folder: the card keeps the command that started the run and its folder
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    again = ["train", "../hr.tif", "-o", "../m.safetensors", *args[4:], "--resume", "../m.safetensors.ckpt"]
    again += ["--epochs", "2"]
    assert cli(*again).code == 0
    training = read_card(tmp_path / "m.safetensors").training
    assert training["command"] == "geosr " + " ".join(args) and training["folder"] == str(tmp_path)
    assert training["resumed_with"] == "geosr " + " ".join(again)
    assert training["resumed_in"] == str(tmp_path / "sub")


def test_the_card_says_the_scales_the_config_trained(tmp_path):
    from geosr.models.card import ModelCard

    card = ModelCard(name="tiny", in_channels=1, depth=4, width=8)  # the card's default scales are 2, 3, 4
    output = tmp_path / "m.safetensors"
    config = TrainConfig(**{**TINY, "scales": (2,)}, epochs=1)
    train([terrain(0)], [terrain(1)], config, output, card, log=lambda line: None)
    assert read_card(output).scales == [2.0]
    with pytest.raises(ModelError, match="the model card says 3 channels, but the rasters have 1 bands"):
        train([terrain(0)], [terrain(1)], config, output, ModelCard(name="t", in_channels=3, depth=4, width=8))


def test_cli_too_small_says_what_it_needs_and_divergence_what_it_left(tmp_path, cli):
    small = write_geotiff(tmp_path / "small.tif", fbm_surface((32, 32), seed=3, relief=50.0))
    result = cli("train", small, "-o", tmp_path / "s.safetensors", "--scales", "2,3", "--patch-size", "16", *TINY_CLI)
    assert result.code == 1
    assert_one_line_error(result.err, "it needs 16 pixels across and 34 along")
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 32), seed=3, relief=50.0))
    args = ["--scales", "2", "--patch-size", "16", *TINY_CLI]
    assert cli("train", hr, "-o", tmp_path / "m.safetensors", *args).code == 0
    # resumed into a new file and diverging at once: that file was never written
    new = tmp_path / "new.safetensors"
    result = cli(
        "train", hr, "-o", new, "--resume", tmp_path / "m.safetensors.ckpt", *args, "--epochs", "2", "--lr", "1e30"
    )
    assert result.code == 1
    assert_one_line_error(result.err, "training diverged", "this run wrote no model")
    assert not new.exists()


def _batch(patch: int = 24, n: int = 4, scale: int = 2):
    from geosr.training.train import Batch

    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.normal(size=(n, 1, patch, patch)).astype(np.float32))
    ilr = target + torch.from_numpy(rng.normal(scale=0.5, size=target.shape).astype(np.float32))
    coarse = area_average(target.numpy().astype(np.float64), scale)
    coarse_up = torch.from_numpy(np.repeat(np.repeat(coarse, scale, -2), scale, -1).astype(np.float32))
    return Batch(ilr, target, torch.ones_like(target, dtype=torch.bool), coarse_up, torch.full((n,), scale))


@pytest.mark.parametrize("kind", ["mse", "relative"])
def test_loss_margin_leaves_the_padded_border_out_of_the_loss(kind):
    batch = _batch()
    rng = np.random.default_rng(1)
    residual = torch.from_numpy(rng.normal(scale=0.1, size=batch.target.shape).astype(np.float32))
    border = residual.clone()
    border[..., :6, :] += 5.0  # wrong only within 6 pixels of the edges
    border[..., :, -6:] -= 5.0
    # conservation spreads a cell's error over the cell: keep the changed rows and columns whole cells (scale 2)
    assert batch.loss(border, kind, margin=6) == pytest.approx(batch.loss(residual, kind, margin=6).item())
    assert batch.loss(border, kind) > 2 * batch.loss(residual, kind)  # without a margin the border counts
    inner = residual.clone()
    inner[..., 10:14, 10:14] += 5.0  # wrong inside: counted with the margin too
    assert batch.loss(inner, kind, margin=6) > 2 * batch.loss(residual, kind, margin=6)


def test_a_loss_margin_that_leaves_no_patch_is_refused(tmp_path):
    from geosr.errors import InputError
    from geosr.models.card import ModelCard

    config = TrainConfig(**{**TINY, "patch": 16}, epochs=1, loss_margin=8)
    with pytest.raises(InputError, match=r"loss margin of 8 pixels leaves nothing of a 16-pixel patch.*0 to 7"):
        train([terrain(0)], [terrain(1)], config, tmp_path / "m.safetensors", ModelCard(name="t", in_channels=1))
    assert not (tmp_path / "m.safetensors").exists()


def test_a_margin_of_zero_keeps_the_recipe_of_older_checkpoints():
    """Checkpoints written before the option have no loss_margin in their recipe: a resume must still match."""
    from geosr.training.train import _recipe

    rasters = [terrain(0)]
    assert "loss_margin" not in _recipe(TrainConfig(**TINY), rasters, rasters, None, None)
    assert _recipe(TrainConfig(**TINY, loss_margin=4), rasters, rasters, None, None)["loss_margin"] == 4


def test_training_with_a_margin_runs_and_validates_on_the_inner_pixels(tmp_path):
    from geosr.models.card import ModelCard

    config = TrainConfig(**{**TINY, "patch": 24}, epochs=1, lr=1e-3, loss_margin=4)
    summary = train(
        [terrain(0)], [terrain(1)], config, tmp_path / "m.safetensors", ModelCard(name="t", in_channels=1), log=print
    )
    assert summary["steps"] == TINY["steps_per_epoch"] and (tmp_path / "m.safetensors").is_file()


def test_validation_is_printed_against_bicubic_too_on_the_same_patches(tmp_path):
    # the network's input is the consistent kernel, a stronger baseline; the is bicubic: both are printed
    from geosr.models.card import ModelCard

    def run(interpolation: str, margin: int) -> tuple[list[str], dict]:
        options = {**SMALL, "scales": (2, 3), "patch": 30, "loss_margin": margin}
        config = TrainConfig(**options, epochs=1, lr=1e-3, interpolation=interpolation)
        card = ModelCard(name="t", in_channels=1, depth=4, width=16, bands=["elevation"], units=["m"])
        lines: list[str] = []
        out = tmp_path / f"{interpolation}{margin}.safetensors"
        summary = train([terrain(s) for s in range(2)], [terrain(9, 96)], config, out, card, log=lines.append)
        return lines, summary["history"][-1]

    for margin in (0, 4):
        lines, consistent = run("consistent", margin)
        assert all(" vs consistent " in line and ", bicubic " in line for line in lines), lines
        bicubic_lines, bicubic = run("bicubic", margin)
        assert not any(", bicubic " in line for line in bicubic_lines), bicubic_lines
        # the bicubic-input run measures its own input on the same patches: the same RMSE
        assert consistent["val_bicubic"] == pytest.approx(bicubic["val_interpolation"], rel=1e-6)
        assert bicubic["val_bicubic"] == bicubic["val_interpolation"]
        assert consistent["val_interpolation"] != pytest.approx(consistent["val_bicubic"], rel=1e-3)

"""Audit of ``geosr train``, ``geosr evaluate`` and ``geosr models`` (each test failed before its fix)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from affine import Affine
from conftest import TINY_TRAIN, assert_one_line_error, write_geotiff

from geosr.evaluate import classical
from geosr.models.card import read_card
from geosr.testing import fbm_surface
from geosr.tiling import KERNELS
from geosr.training import train as train_module
from geosr.training.data import Prepared, normalise
from geosr.training.train import Batch


def _block_means(a: np.ndarray, s: int) -> np.ndarray:
    """Means of the whole s x s cells of a (..., y, x) array, counted from its first row and column."""
    h, w = (a.shape[-2] // s) * s, (a.shape[-1] // s) * s
    cut = a[..., :h, :w]
    return cut.reshape(*cut.shape[:-2], h // s, s, w // s, s).mean(axis=(-3, -1))


def _samples(scale: int, patch: int, n: int) -> list:
    raster = normalise(fbm_surface((60, 60), seed=3)[None].astype(np.float64))
    prepared = Prepared(raster, scale, KERNELS["consistent"])
    rng = np.random.default_rng(0)
    samples = [prepared.cut(patch, rng, gain_range=(1, 1), offset_range=0) for _ in range(n)]
    return [s for s in samples if s is not None]


def test_flipped_patch_whose_size_is_not_a_multiple_of_the_scale_starts_on_a_cell_boundary():
    """--patch-size 16 --scales 3: a patch cut and then flipped started with a partial cell, so its
    coarse values no longer lined up with the cells counted from its first pixel."""
    for sample in _samples(3, 16, 24):
        cells = _block_means(sample.target, 3)
        np.testing.assert_allclose(cells, sample.coarse_up[:, :15:3, :15:3], atol=1e-5)


def test_conserved_half_of_the_loss_conserves_whole_cells_when_the_patch_is_not_a_multiple_of_the_scale():
    """The conserved output (half of the loss, and the conserved validation RMSE) was the plain output at
    every scale that does not divide --patch-size (48 and scale 5, 40 and scale 3)."""
    samples = _samples(3, 16, 8)
    stack = lambda name: torch.from_numpy(np.stack([getattr(s, name) for s in samples]))  # noqa: E731
    batch = Batch(stack("ilr"), stack("target"), stack("valid"), stack("coarse_up"), torch.tensor([3] * len(samples)))
    out = batch.ilr + 0.3 * torch.randn(batch.ilr.shape, generator=torch.Generator().manual_seed(0))
    conserved = batch.conserved(out).numpy()
    np.testing.assert_allclose(_block_means(conserved, 3), batch.coarse_up.numpy()[..., :15:3, :15:3], atol=1e-5)
    # the partial cells at the far edges are left as they were
    np.testing.assert_array_equal(conserved[..., 15:, :], out.numpy()[..., 15:, :])
    # the loss then sees the conserved output: it differs from the plain one
    assert not torch.equal(batch.conserved(out), out)


def _slope_rmse_per_row_sphere(z: np.ndarray, scale: int, top: float, step: float) -> float:
    """Independent slope RMSE (degrees) of bicubic on a geographic raster: pixel sizes on a sphere of the
    mean Earth radius at each row's latitude (north-up rows)."""
    radius = 6_371_008.8
    rows = z.shape[0]
    lat = np.radians(top - (np.arange(rows) + 0.5) * step)
    dx = np.radians(step) * radius * np.cos(lat)
    dy = np.full(rows, np.radians(step) * radius)

    def slope(a: np.ndarray) -> np.ndarray:
        gy, gx = np.gradient(a)
        return np.degrees(np.arctan(np.hypot(gx / dx[:, None], gy / dy[:, None])))

    coarse = _block_means(z, scale)
    estimate = classical(coarse, scale, "bicubic")
    b = 2 * scale
    err = (slope(estimate) - slope(z))[b:-b, b:-b]
    return float(np.sqrt(np.mean(err**2)))


def test_slope_of_a_geographic_raster_uses_each_rows_latitude(tmp_path, cli):
    """A 0.25-degree DEM from 70 N to 20 N: degrees were turned into metres at the centre's latitude (45 N)
    alone, so the slope RMSE came out 12% too low (a degree of longitude is half as long at 60 N as at
    the equator). South-up storage gives the same figure."""
    z = fbm_surface((200, 200), seed=7, relief=4000.0, base=0.0).astype(np.float64)
    expected = _slope_rmse_per_row_sphere(z.astype(np.float32).astype(np.float64), 2, 70.0, 0.25)
    found = {}
    for name, data, transform in [
        ("north", z, Affine(0.25, 0, 0, 0, -0.25, 70)),
        ("south", z[::-1], Affine(0.25, 0, 0, 0, 0.25, 20)),
    ]:
        path = write_geotiff(tmp_path / f"{name}.tif", data, crs="EPSG:4326", transform=transform, units=["m"])
        result = cli("evaluate", path, "--scale", 2, "--no-model", "--json")
        assert result.code == 0, result.err
        found[name] = json.loads(result.out)["bands"]["band 1"]["methods"]["bicubic"]["slope_rmse"]
    # the ellipsoid against the sphere: well within 1%; the centre's latitude alone was 12% off
    assert found["north"] == pytest.approx(expected, rel=0.01)
    assert found["south"] == pytest.approx(found["north"], rel=1e-9)


def test_resume_with_another_recipe_is_refused_and_the_same_one_continues(tmp_path, cli):
    """Resumed with other rasters, --scales or --seed, a run went on silently: the weights mixed two trainings
    and the card recorded the first command with the second run's data and scales."""

    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 48), seed=3, relief=50.0), units=["m"])
    other = write_geotiff(tmp_path / "other.tif", fbm_surface((64, 48), seed=4, relief=50.0), units=["m"])
    model = tmp_path / "m.safetensors"
    assert cli("train", hr, "-o", model, "--scales", "2", "--epochs", "1", *TINY_TRAIN).code == 0
    before = model.read_bytes()
    resume = ["--resume", f"{model}.ckpt", "--epochs", "2"]
    for inputs, extra, words in [
        ([other], ["--scales", "2"], "other rasters or --bands"),
        ([hr], ["--scales", "2,4"], "--scales 2 then, 2,4 now"),
        ([hr], ["--scales", "2", "--seed", "3"], "--seed 0 then, 3 now"),
        ([hr], ["--scales", "2", "--patch-size", "24"], "--patch-size 16 then, 24 now"),
        # the network's shape and the optimiser are named too (they failed to load first: "another network")
        ([hr], ["--scales", "2", "--depth", "4"], "--depth 3 then, 4 now"),
        ([hr], ["--scales", "2", "--optimizer", "sgd"], "--optimizer adam then, sgd now"),
        # a switch and an option left out, in words (they read "--cell-input False then, True now")
        ([hr], ["--scales", "2", "--cell-input"], "without --cell-input then, with it now"),
    ]:
        result = cli("train", *inputs, "-o", model, *TINY_TRAIN, *extra, *resume)
        message = assert_one_line_error(result.err, result.code, "was written with another recipe", words)
        assert "resume it with the command that started it (geosr train " in message
        assert model.read_bytes() == before
    # the same recipe, with more epochs, a budget and another learning rate, continues
    result = cli("train", hr, "-o", model, "--scales", "2", *TINY_TRAIN, *resume, "--minutes", "5", "--lr", "5e-5")
    assert result.code == 0, result.err
    assert read_card(model).training["epochs"] == 2


def test_interrupted_between_the_checkpoint_and_the_model_says_so(tmp_path, cli, monkeypatch):
    """Ctrl+C after an epoch's checkpoint was written but before its model: the message said the model
    file held the last finished epoch, though there was none yet."""

    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 48), seed=3, relief=50.0))
    model = tmp_path / "m.safetensors"

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_model", stopped)
    args = ["train", hr, "-o", model, "--scales", "2", "--epochs", "2", *TINY_TRAIN]
    result = cli(*args)
    message = assert_one_line_error(result.err, result.code)
    assert result.code == 130 and not model.exists()
    assert f"{model}.ckpt holds the last finished epoch, but it was stopped before writing {model}" in message
    assert message.endswith(f"--resume {model}.ckpt")
    monkeypatch.undo()
    result = cli(*args, "--resume", f"{model}.ckpt")
    assert result.code == 0, result.err
    assert model.exists()


def test_a_resumed_run_interrupted_before_an_epoch_says_its_checkpoint_is_still_there(tmp_path, cli, monkeypatch):

    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 48), seed=3, relief=50.0))
    model = tmp_path / "m.safetensors"
    args = ["train", hr, "-o", model, "--scales", "2", *TINY_TRAIN]
    assert cli(*args, "--epochs", "1").code == 0

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train", stopped)
    result = cli(*args, "--epochs", "2", "--resume", f"{model}.ckpt")
    message = assert_one_line_error(result.err, result.code)
    assert result.code == 130
    assert f"no epoch finished in this run; {model}.ckpt still holds the last one" in message
    assert message.endswith(f"--resume {model}.ckpt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_device_is_refused_before_the_rasters_are_read(tmp_path, cli):
    """--device cuda without a GPU was refused only after every raster had been read and normalised."""

    result = cli("train", tmp_path / "missing.tif", "-o", tmp_path / "m.safetensors", "--device", "cuda")
    assert_one_line_error(result.err, result.code, "no CUDA GPU is available")


@pytest.mark.parametrize("with_model", [False, True])
def test_evaluate_refuses_an_undeclared_float32_nodata_marker(tmp_path, cli, model1, with_model):
    """A DEM with a hole of -3.4028235e38 and no nodata declared: evaluate --no-model printed RMSEs of 1e37
    and a PSNR of 747 dB (train and downscale refuse it), and with a model failed only after all the
    baselines, without naming the file."""
    dem = fbm_surface((48, 48), seed=6)
    dem[20:24, 10:20] = -3.4028235e38
    path = write_geotiff(tmp_path / "marker.tif", dem, units=["m"])
    model = ["--model", model1, "--device", "cpu"] if with_model else ["--no-model"]
    result = cli("evaluate", path, "--scale", 2, *model, "--json")
    assert_one_line_error(result.err, result.code, f"band 1 of '{path}'", "float32's limit", "declare them nodata")
    assert result.out == ""


def test_train_leaves_an_alpha_band_out_with_bands_as_its_refusal_advises(tmp_path, cli):
    """An RGBA raster: train refused it naming the alpha band and advising --bands 1,2,3, then refused it
    again with --bands 1,2,3 (it read every band before picking), as evaluate and downscale do not."""
    import rasterio
    from rasterio.enums import ColorInterp

    grey = fbm_surface((64, 48), seed=3, relief=200.0, base=20.0).astype(np.uint8)
    alpha = np.full_like(grey, 255)
    alpha[:8, :8] = 0  # transparent: nodata for the colour bands
    path = tmp_path / "rgba.tif"
    profile = {"driver": "GTiff", "width": 48, "height": 64, "count": 4, "dtype": "uint8", "crs": "EPSG:32633"}
    with rasterio.open(
        path, "w", **profile, transform=Affine(30, 0, 0, 0, -30, 0), photometric="RGB", alpha="YES"
    ) as dst:
        dst.write(np.stack([grey, grey // 2 + 10, 255 - grey, alpha]))
        dst.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha)
    model = tmp_path / "rgb.safetensors"
    refused = cli("train", path, "-o", model, "--scales", "2", "--epochs", "1", *TINY_TRAIN)
    assert_one_line_error(refused.err, refused.code, "is an alpha band", "pass --bands 1,2,3")
    result = cli("train", path, "-o", model, "--bands", "1,2,3", "--scales", "2", "--epochs", "1", *TINY_TRAIN)
    assert result.code == 0, result.err
    assert read_card(model).in_channels == 3
    # the model runs on the same bands, the transparent corner masked as in training
    out = tmp_path / "rgb_x2.tif"
    result = cli("downscale", path, "--bands", "1,2,3", "--scale", 2, "--model", model, "-o", out, "--device", "cpu")
    assert result.code == 0, result.err
    with rasterio.open(out) as done:
        masked = done.read(masked=True)
    assert masked.shape[0] == 3 and masked.mask[:, :16, :16].all() and not masked.mask[:, 16:, 16:].any()


def test_a_scale_nodata_leaves_without_training_patches_is_refused(tmp_path, cli):
    """Thin stripes of nodata leave whole cells of 2 pixels but none of 3 or 4: the sampler quietly trained
    scale 2 alone, and the card listed 2, 3, 4."""
    data = fbm_surface((120, 120), seed=1, relief=50.0)
    data[:, (np.arange(120) % 8 == 1) | (np.arange(120) % 8 == 6)] = np.nan
    hr = write_geotiff(tmp_path / "stripes.tif", data, units=["m"])
    model = tmp_path / "m.safetensors"
    result = cli("train", hr, "-o", model, "--epochs", "1", *TINY_TRAIN)
    assert_one_line_error(result.err, result.code, "can be cut at scales 3, 4", "leave them out of --scales")
    assert not model.exists()
    assert cli("train", hr, "-o", model, "--scales", "2", "--epochs", "1", *TINY_TRAIN).code == 0


def test_an_input_where_the_checkpoint_goes_is_refused_and_kept(tmp_path, cli):
    """A raster named like the output's checkpoint (m.safetensors.ckpt) was replaced by the checkpoint."""
    hr = write_geotiff(tmp_path / "m.safetensors.ckpt", fbm_surface((64, 48), seed=3, relief=50.0), units=["m"])
    before = hr.read_bytes()
    result = cli("train", hr, "-o", tmp_path / "m.safetensors", "--epochs", "1", "--overwrite", *TINY_TRAIN)
    assert_one_line_error(result.err, result.code, "is where this run writes its checkpoint", "choose another name")
    assert hr.read_bytes() == before and not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize(
    ("option", "words"),
    [
        (["--seed", "-5"], "'--seed': -5 is not in the range 0<=x<=18446744073709551615"),
        (["--seed", "99999999999999999999999"], "'--seed'"),
        (["--lr", "1e300"], "'--lr': must be at most 1e+30, got 1e+300"),
    ],
)
def test_a_seed_or_learning_rate_out_of_range_is_refused_before_reading(tmp_path, cli, option, words):
    """They failed after every raster was read, with numpy's or torch's words and no option named."""
    missing = tmp_path / "not_read.tif"  # never opened: the refusal comes first
    result = cli("train", missing, "-o", tmp_path / "m.safetensors", *TINY_TRAIN, *option)
    assert_one_line_error(result.err, result.code, words)


def test_whether_a_patch_can_be_cut_is_exact_however_rare_the_patches():
    """The scale check tried 2000 random patches: a large raster with one small valid island was refused a
    scale the sampler could cut. Prepared.can_cut is exact: checked against every position and corner."""
    rng = np.random.default_rng(5)
    for trial in range(40):
        scale, patch = int(rng.integers(2, 5)), int(rng.integers(12, 20))
        raster = fbm_surface((40, 44), seed=trial)[None].astype(np.float64)
        raster[:, rng.random((40, 44)) < rng.uniform(0.2, 0.8)] = np.nan
        prepared = Prepared(raster, scale, KERNELS["bicubic"])
        _, h, w = prepared.fine.shape
        extra = -(-patch // scale) * scale - patch
        valid = np.isfinite(prepared.fine)
        brute = (
            h >= patch
            and w >= patch
            and any(
                valid[:, y + dy : y + dy + patch, x + dx : x + dx + patch].mean() >= 0.5
                for y in range(0, h - patch + 1, scale)
                for x in range(0, w - patch + 1, scale)
                for dy in (0, extra)
                for dx in (0, extra)
            )
        )
        assert prepared.can_cut(patch) == brute, (trial, scale, patch)
    island = np.full((1, 1200, 1200), np.nan)
    island[0, 600:650, 600:650] = fbm_surface((50, 50), seed=1)
    config = train_module.TrainConfig(scales=(2,), patch=48, depth=3, interpolation="bicubic")
    batches = train_module.Batches([island], config, 0)
    assert batches.scales_without_patches() == [] and batches.sample().scale == 2


def test_train_fills_its_pairs_with_the_trend_of_the_card_it_writes(tmp_path, cli, monkeypatch):
    """The card's fill trend reaches the training and validation pairs (a fine-tune of a model with one), and
    the band mean (--fill-missing mean) has none."""
    from geosr.testing import random_model

    data = fbm_surface((64, 48), seed=3, relief=50.0)
    data[20:34, 10:30] = -9999
    hr = write_geotiff(tmp_path / "hr.tif", data, nodata=-9999, units=["m"])
    start = random_model(tmp_path / "start.safetensors", depth=3, width=4, fill_trend=0.25)
    seen: list[float] = []
    original = train_module.Batches.__init__

    def recording(self, *args, fill_trend=0.0, **kwargs):
        seen.append(fill_trend)
        original(self, *args, fill_trend=fill_trend, **kwargs)

    monkeypatch.setattr(train_module.Batches, "__init__", recording)
    for fill, expected in (("neighbours", 0.25), ("mean", 0.0)):
        seen.clear()
        out = tmp_path / f"{fill}.safetensors"
        result = cli("train", hr, "-o", out, "--epochs", "1", *TINY_TRAIN, "--init", start, "--fill-missing", fill)
        assert result.code == 0, result.err
        assert seen and set(seen) == {expected}, (fill, seen)


def test_a_resume_whose_minutes_are_spent_is_refused_as_one_whose_epochs_are(tmp_path, cli):
    """Stopped by --minutes, the same command with --resume trained one more epoch every time it was run."""
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 48), seed=3, relief=50.0), units=["m"])
    model = tmp_path / "m.safetensors"
    budget = ["--scales", "2", "--epochs", "50", "--minutes", "0.0001", *TINY_TRAIN]
    assert cli("train", hr, "-o", model, *budget).code == 0
    assert read_card(model).training["epochs"] == 1
    before = model.read_bytes()
    result = cli("train", hr, "-o", model, *budget, "--resume", f"{model}.ckpt")
    assert_one_line_error(
        result.err, result.code, "has already run", "--minutes asks for 0.0001", "ask for more minutes"
    )
    assert model.read_bytes() == before
    result = cli("train", hr, "-o", model, "--scales", "2", "--epochs", "2", *TINY_TRAIN, "--resume", f"{model}.ckpt")
    assert result.code == 0, result.err
    assert read_card(model).training["epochs"] == 2


# A third audit: a band stored with a negative GDAL scale (depths stored as -1 x elevation) was trained on its
# stored numbers, valleys as ridges, where downscale and evaluate run its values; a resumed fine-tune rebuilt
# the card's started_from from the --init file as it was then (with -o the same file: the run's own first
# epoch, a phantom stage); --init from a self-calibrating model dropped the calibration its card asks for;
# --resume naming the model file first asked for --overwrite, and a file that is no checkpoint repeated
# torch's advice to load it with weights_only=False; a changed --patch-size also blamed "other rasters".


def _weights(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_a_band_stored_with_a_negative_scale_trains_on_its_values(tmp_path, cli):
    z = fbm_surface((64, 48), seed=3, relief=50.0).astype(np.float32)
    plain = write_geotiff(tmp_path / "plain.tif", z, units=["m"])
    negated = write_geotiff(tmp_path / "negated.tif", -z, units=["m"], scales=[-1.0])  # its values: z
    stored = write_geotiff(tmp_path / "stored.tif", -z, units=["m"])  # its values: -z
    models = {}
    for raster in (plain, negated, stored):
        models[raster.stem] = tmp_path / f"{raster.stem}.safetensors"
        result = cli("train", raster, "-o", models[raster.stem], "--scales", "2", "--epochs", "1", *TINY_TRAIN)
        assert result.code == 0, result.err
    a, b, c = (_weights(models[name]) for name in ("plain", "negated", "stored"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(c[k], b[k]) for k in a)


def test_a_resumed_fine_tune_keeps_the_card_of_the_model_it_started_from(tmp_path, cli):
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 48), seed=3, relief=50.0), units=["m"])
    model = tmp_path / "self.safetensors"
    base = ["--scales", "2", *TINY_TRAIN]
    assert cli("train", hr, "-o", model, *base, "--epochs", "1").code == 0
    first = read_card(model).training["command"]
    tune = [*base, "--init", model, "--overwrite"]
    assert cli("train", hr, "-o", model, *tune, "--epochs", "1").code == 0  # the --init file is now its output
    result = cli("train", hr, "-o", model, *tune, "--epochs", "2", "--resume", f"{model}.ckpt")
    assert result.code == 0, result.err
    training = read_card(model).training
    assert training["epochs"] == 2
    assert training["started_from"]["command"] == first and "started_from" not in training["started_from"]


def test_a_fine_tune_of_a_self_calibrating_model_self_calibrates(tmp_path, cli, model_calibrating):
    from geosr.models.files import load_model

    start = load_model(model_calibrating).card
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 48), seed=3, relief=50.0), units=["K"])
    out = tmp_path / "tuned.safetensors"
    shape = ["--depth", str(start.depth), "--width", str(start.width), "--interpolation", "consistent"]
    result = cli(
        "train", hr, "-o", out, "--scales", "2", "--epochs", "1", *TINY_TRAIN, *shape, "--init", model_calibrating
    )
    assert result.code == 0, result.err
    card = read_card(out)
    assert card.calibrate and card.conserve


def test_resume_errors_name_the_real_problem_first(tmp_path, cli):
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 48), seed=3, relief=50.0), units=["m"])
    model = tmp_path / "m.safetensors"
    assert cli("train", hr, "-o", model, "--scales", "2", "--epochs", "1", *TINY_TRAIN).code == 0
    before = model.read_bytes()
    result = cli("train", hr, "-o", model, "--scales", "2", "--epochs", "2", *TINY_TRAIN, "--resume", model)
    assert_one_line_error(result.err, result.code, "--resume names the model file", f"--resume {model}.ckpt")
    script, pickled = tmp_path / "script.py", tmp_path / "module.ckpt"
    script.write_text("print('hello')\n")
    torch.save({"layer": torch.nn.Linear(2, 2)}, pickled)  # a pickled module: torch refuses it with weights_only
    for other in (script, pickled):
        result = cli("train", hr, "-o", tmp_path / "n.safetensors", "--scales", "2", *TINY_TRAIN, "--resume", other)
        message = assert_one_line_error(result.err, result.code, "is not a geosr training checkpoint")
        assert "weights" not in message.lower() and "trust" not in message and "\x1b" not in message
    result = cli(
        "train",
        hr,
        "-o",
        model,
        "--scales",
        "2",
        "--epochs",
        "2",
        *TINY_TRAIN,
        "--patch-size",
        "24",
        "--resume",
        f"{model}.ckpt",
    )
    message = assert_one_line_error(result.err, result.code, "--patch-size 16 then, 24 now")
    assert "other rasters" not in message
    assert model.read_bytes() == before


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--model", "nothing.safetensors"], "drop --model"),
        (["--ensemble", "4"], "drop --ensemble"),
        (["--no-calibrate", "--model", "dem"], "drop --model and --no-calibrate"),
    ],
)
def test_evaluate_refuses_model_options_beside_no_model(tmp_path, cli, options, words):
    # they were ignored (a model that does not exist too), and the JSON reported an ensemble of 4 never run
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((48, 48), seed=3, relief=50.0), units=["m"])
    result = cli("evaluate", hr, "--scale", "2", "--no-model", "--json", *options)
    assert_one_line_error(result.err, result.code, "--no-model measures the classical methods only", words)
    plain = cli("evaluate", hr, "--scale", "2", "--no-model", "--json")
    assert plain.code == 0 and json.loads(plain.out)["model"] is None


def test_a_model_trained_from_scratch_conserves_by_default_when_that_validates_better(tmp_path, cli):
    # its card said conserve: false whatever the validation said, so geosr downscale --model gave the plain
    # output, 37-45% above back-projection in an audit's tiny runs where the conserved one was within 0.3%
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 48), seed=3, relief=50.0), units=["m"])
    model = tmp_path / "m.safetensors"
    assert cli("train", hr, "-o", model, "--scales", "2", "--epochs", "1", *TINY_TRAIN).code == 0
    card = read_card(model)
    plain, conserved = card.metrics["val_rmse_normalised"], card.metrics["val_rmse_conserved_normalised"]
    assert conserved < plain and card.conserve


def test_a_cosine_over_minutes_never_reaches_a_rate_of_zero(tmp_path, cli):
    # the rate followed a fresher clock than the budget check: a budget spent during validation or saving
    # started one more epoch at a rate of exactly 0, where SGD's clipping (theta / rate) divided by zero
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 48), seed=3, relief=50.0), units=["m"])
    model = tmp_path / "m.safetensors"
    recipe = ["--scales", "2", "--optimizer", "sgd", "--schedule", "cosine", *TINY_TRAIN]
    assert cli("train", hr, "-o", model, *recipe, "--epochs", "1").code == 0
    seconds = float(torch.load(f"{model}.ckpt", weights_only=True)["seconds"])
    budget = str((seconds + 0.0005) / 60)  # spent by the first validation of the resumed run
    result = cli("train", hr, "-o", model, *recipe, "--epochs", "3", "--minutes", budget, "--resume", f"{model}.ckpt")
    assert result.code == 0, result.err
    assert read_card(model).training["epochs"] == 2

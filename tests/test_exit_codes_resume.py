"""A resumed ``geosr train`` given no budget continues its run's budget, and the exit codes of bad values agree
across the commands: 2 for a value wrong as typed, 1 for a problem in the files or data (each test failed before
its fix)."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_TRAIN, assert_one_line_error, write_geotiff

from geosr.models.card import read_card
from geosr.testing import fbm_surface, random_model
from geosr.training import train as train_module

# A resumed run without --epochs or --minutes ---------------------------------------------------------------------
# It fell back to the default of 50 epochs (a cosine annealing over 50), and once a checkpoint had run 50 the
# refusal said "--epochs asks for 50" to a user who never typed --epochs.


def _hr(tmp_path):
    return write_geotiff(tmp_path / "hr.tif", fbm_surface((64, 48), seed=3, relief=50.0), units=["m"])


def test_a_resume_without_a_budget_continues_the_budget_its_run_was_started_with(tmp_path, cli, monkeypatch):
    hr, model = _hr(tmp_path), tmp_path / "m.safetensors"
    args = ["train", hr, "-o", model, "--scales", "2", *TINY_TRAIN]
    real_save = train_module.save_model

    def save_then_stop(*a, **k):  # Ctrl+C after the first epoch's model is written
        real_save(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_model", save_then_stop)
    assert cli(*args, "--epochs", "3").code == 130
    monkeypatch.undo()
    checkpoint = torch.load(f"{model}.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["budget"] == {"epochs": 3, "minutes": None}
    shown = [a for a in args if a != "-q"]
    result = cli(*shown, "--resume", f"{model}.ckpt")
    assert result.code == 0, result.err
    assert "continuing its run's budget (--epochs 3)" in result.err
    assert read_card(model).training["epochs"] == 3  # not 50
    assert read_card(model).training["config"]["epochs"] == 3


@pytest.mark.parametrize(
    ("budget", "words"),
    [
        (["--epochs", "2"], ["has already run 2 epochs", "(--epochs 2)", "--epochs (more than 2)"]),
        (["--minutes", "0.0001"], ["minutes, all of the budget", "(--minutes 0.0001)", "with --minutes"]),
    ],
)
def test_a_resume_without_a_budget_whose_budget_is_spent_says_so_without_naming_an_option_not_given(
    tmp_path, cli, budget, words
):
    hr, model = _hr(tmp_path), tmp_path / "m.safetensors"
    args = ["train", hr, "-o", model, "--scales", "2", *TINY_TRAIN]
    assert cli(*args, *budget).code == 0
    before = model.read_bytes()
    result = cli(*args, "--resume", f"{model}.ckpt")  # it trained on to the default 50 epochs
    message = assert_one_line_error(result.err, result.code, "all of the budget of the run that wrote it", *words)
    assert result.code == 1 and "asks for" not in message
    assert model.read_bytes() == before


def test_an_older_checkpoint_without_its_budget_falls_back_to_50_epochs_and_says_so(tmp_path, cli):
    hr, model = _hr(tmp_path), tmp_path / "m.safetensors"
    args = ["train", hr, "-o", model, "--scales", "2", *TINY_TRAIN]
    assert cli(*args, "--epochs", "1").code == 0
    older = torch.load(f"{model}.ckpt", weights_only=True)
    del older["budget"]  # as checkpoints were written before they kept it
    older["epoch"] = 50
    torch.save(older, f"{model}.ckpt")
    result = cli(*args, "--resume", f"{model}.ckpt")
    message = assert_one_line_error(result.err, result.code, "has already run 50 epochs", "default budget of 50")
    assert "--epochs asks for" not in message and "without --epochs or --minutes" in message
    older["epoch"] = 49
    torch.save(older, f"{model}.ckpt")
    shown = [a for a in args if a != "-q"]
    result = cli(*shown, "--resume", f"{model}.ckpt")
    assert result.code == 0, result.err
    assert "keeps no budget (an older checkpoint): the default of 50 epochs applies" in result.err
    assert read_card(model).training["epochs"] == 50
    # a budget given on the command line still wins, as before
    assert torch.load(f"{model}.ckpt", weights_only=True)["budget"] == {"epochs": 50, "minutes": None}
    result = cli(*args, "--resume", f"{model}.ckpt", "--epochs", "50")
    assert_one_line_error(result.err, result.code, "and --epochs asks for 50; ask for more epochs to continue it")


# Exit codes ------------------------------------------------------------------------------------------------------
# The same kind of bad value exited 2 in geosr train (a click usage error) but 1 in downscale and evaluate.


@pytest.fixture
def files(tmp_path):
    dem = write_geotiff(tmp_path / "dem.tif", fbm_surface((40, 44), seed=5), units=["m"])
    return dem, random_model(tmp_path / "m1.safetensors", depth=3, width=4), tmp_path


TYPED = {
    "downscale --scale 1": (["downscale", "{dem}", "--scale", "1"], "scale must be greater than 1"),
    "downscale --scale 0.5": (["downscale", "{dem}", "--scale", "0.5"], "scale must be greater than 1"),
    "downscale --scale nan": (["downscale", "{dem}", "--scale", "nan"], "finite number greater than 1"),
    "downscale --scale inf": (["downscale", "{dem}", "--scale", "inf"], "finite number greater than 1"),
    "downscale --resolution 0": (["downscale", "{dem}", "--resolution", "0"], "resolution must be a positive"),
    "downscale --resolution nan": (["downscale", "{dem}", "--resolution", "nan"], "resolution must be a positive"),
    "downscale --bands 1,1": (["downscale", "{dem}", "--scale", "2", "--bands", "1,1"], "name a band twice"),
    "downscale -o x.png": (["downscale", "{dem}", "--scale", "2", "-o", "{tmp}/x.png"], "of GDAL's PNG format"),
    "downscale --variable -o x.tif": (
        ["downscale", "{tmp}/tas.nc", "--variable", "tas", "--scale", "2", "-o", "{tmp}/x.tif"],
        "must be a NetCDF file (.nc) or a Zarr store (.zarr)",
    ),
    "evaluate --scale 1": (["evaluate", "{dem}", "--scale", "1"], "--scale must be a whole number of at least 2"),
    "evaluate --scale -3": (["evaluate", "{dem}", "--scale", "-3", "--no-model"], "at least 2, got -3"),
    "evaluate --bands 1,1": (["evaluate", "{dem}", "--scale", "2", "--bands", "1,1"], "name a band twice"),
    "train -o m.pt": (["train", "{dem}", "-o", "{tmp}/m.pt", *TINY_TRAIN], "must be named *.safetensors"),
    # click's own, as before: the codes to agree with
    "train --bands 1,1": (["train", "{dem}", "-o", "{tmp}/t.safetensors", "--bands", "1,1"], "names a value twice"),
    "evaluate --scale 2.5": (["evaluate", "{dem}", "--scale", "2.5"], "is not a valid integer"),
}


@pytest.mark.parametrize(("argv", "words"), TYPED.values(), ids=TYPED.keys())
def test_a_value_wrong_as_typed_exits_2_in_every_command(files, cli, argv, words):
    dem, model, tmp = files
    argv = [a.format(dem=dem, tmp=tmp) for a in argv] + (["--model", model] if argv[0] == "downscale" else [])
    result = cli(*argv)
    assert result.code == 2, result.err
    assert_one_line_error(result.err, result.code, words)
    assert sorted(p.name for p in tmp.iterdir()) == ["dem.tif", "m1.safetensors"]  # nothing written
    verbose = cli(*argv, "--verbose")  # --verbose does not change the exit code
    assert verbose.code == 2 and words in verbose.err


def test_a_scale_a_patch_cannot_hold_twice_exits_2_and_a_missing_checkpoint_1(tmp_path, cli):
    hr = write_geotiff(tmp_path / "hr.tif", fbm_surface((200, 120), seed=3, relief=50.0), units=["m"])
    model = tmp_path / "m.safetensors"
    result = cli("train", hr, "-o", model, "--scales", "2,40", "--epochs", "1", *TINY_TRAIN)
    assert result.code == 2  # --scales 40 with --patch-size 16, whatever the rasters
    assert_one_line_error(result.err, result.code, "scale 40 (--scales) is more than half of --patch-size 16")
    # a checkpoint that is not there is a missing file, as a missing raster (click's check said 2)
    result = cli("train", hr, "-o", model, "--scales", "2", *TINY_TRAIN, "--resume", tmp_path / "nope.ckpt")
    assert result.code == 1
    assert_one_line_error(result.err, result.code, f"checkpoint '{tmp_path / 'nope.ckpt'}' does not exist")
    assert not model.exists()


DATA = {
    "downscale: no such input": (["downscale", "{tmp}/nope.tif", "--scale", "2"], "does not exist"),
    "downscale: resolution not finer": (["downscale", "{dem}", "--resolution", "100"], "is not finer than"),
    "downscale: scale leaves the size": (["downscale", "{dem}", "--scale", "1.001"], "nothing would be refined"),
    "downscale: no band 4": (["downscale", "{dem}", "--scale", "2", "--bands", "4"], "there is no band 4"),
    "evaluate: raster too small": (["evaluate", "{dem}", "--scale", "8", "--no-model"], "is too small to evaluate"),
    "train: no output folder": (["train", "{dem}", "-o", "{tmp}/no/m.safetensors", *TINY_TRAIN], "output folder"),
}


@pytest.mark.parametrize(("argv", "words"), DATA.values(), ids=DATA.keys())
def test_a_problem_in_the_files_or_data_exits_1(files, cli, argv, words):
    dem, model, tmp = files
    argv = [a.format(dem=dem, tmp=tmp) for a in argv] + (["--model", model] if argv[0] == "downscale" else [])
    result = cli(*argv)
    assert result.code == 1, result.err
    assert_one_line_error(result.err, result.code, words)

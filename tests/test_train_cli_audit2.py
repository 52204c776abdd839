"""Second audit of ``geosr train`` and ``geosr models`` on the command line (each test failed before its fix)."""

from __future__ import annotations

import os
import pickle
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TINY_TRAIN, assert_one_line_error, write_geotiff

from geosr.models.card import read_card
from geosr.testing import fbm_surface

#: TINY_TRAIN without -q: the epoch lines, the progress and the summary shown
SHOWN = [a for a in TINY_TRAIN if a != "-q"]


def _hr(tmp_path: Path, name: str = "hr.tif", shape: tuple[int, int] = (64, 48), **kwargs) -> Path:
    return write_geotiff(tmp_path / name, fbm_surface(shape, seed=3, relief=50.0), units=["m"], **kwargs)


# D1: the progress bar ------------------------------------------------------------------------------------------


def test_no_progress_bar_where_stderr_is_not_a_terminal_and_each_epoch_starts_a_line(tmp_path, cli):
    """To a log file the bar was redrawn with carriage returns (1,642 in an 8-minute run), and the epoch lines
    were glued onto it: '...| 299/600 [00:09<00:05]epoch 1 step 300 ...'."""
    hr = _hr(tmp_path)
    result = cli("train", hr, "-o", tmp_path / "m.safetensors", "--scales", "2", "--epochs", "2", *SHOWN)
    assert result.code == 0, result.err
    assert "\r" not in result.err
    assert re.findall(r"(?m)^epoch (\d+)", result.err) == ["0", "1", "2"]
    assert all(line.startswith(("epoch ", "wrote ")) for line in result.err_lines), result.err


def test_the_error_of_a_diverged_run_starts_its_own_line(tmp_path, cli):
    """'^M  0%|          | 0/150 [00:00<?, ?step/s]Error: training diverged: ...'."""
    hr = _hr(tmp_path)
    args = ["--scales", "2", "--epochs", "2", *SHOWN, "--steps-per-epoch", "4", "--lr", "1e29"]
    result = cli("train", hr, "-o", tmp_path / "m.safetensors", *args)
    assert result.code == 1
    assert "\r" not in result.err
    errors = [line for line in result.err.split("\n") if "Error" in line]
    assert len(errors) == 1 and errors[0].startswith("Error: training diverged"), result.err


def _run_in_terminal(*args: str, timeout: float = 120.0) -> bytes:
    """What a terminal shows of ``python -m geosr ARGS`` run in it (stdout and stderr are the terminal)."""
    pty = pytest.importorskip("pty")
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal's command, in a terminal of 100 columns (0: tqdm draws nothing)
        import fcntl
        import struct
        import termios

        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        os.chdir(REPO)
        os.environ["OMP_NUM_THREADS"] = "1"
        os.execv(sys.executable, [sys.executable, "-m", "geosr", *args])
    chunks, end = [], time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the command ended and closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    return b"".join(chunks)


def test_on_a_terminal_the_lines_print_above_the_bar_each_at_the_start_of_a_line(tmp_path):
    """On a terminal, the epoch lines and the error line went after the bar on its line."""
    hr = _hr(tmp_path)
    args = ["--scales", "2", *SHOWN, "--steps-per-epoch", "20"]
    shown = _run_in_terminal("train", str(hr), "-o", str(tmp_path / "m.safetensors"), *args, "--epochs", "2")
    text = shown.decode(errors="replace")
    starts = [m.start() for m in re.finditer(r"epoch \d+ step|wrote ", text)]
    assert len(starts) == 3, text
    assert "step/s" in text or "it/s" in text, text  # the bar was drawn
    for start in starts:
        assert text[start - 1] in "\r\n", repr(text[max(0, start - 40) : start + 20])
    shown = _run_in_terminal(
        "train", str(hr), "-o", str(tmp_path / "d.safetensors"), *args, "--epochs", "2", "--lr", "1e29"
    )
    text = shown.decode(errors="replace")
    start = text.index("Error: training diverged")
    assert text[start - 1] in "\r\n", repr(text[max(0, start - 40) : start + 20])


def test_with_a_budget_of_minutes_the_progress_has_no_total_of_epochs(tmp_path):
    """--minutes 5 with the default 50 epochs showed a bar counting down to 50 x 100 steps that the minutes
    ended long before (or, resumed, after)."""
    from geosr.models.card import ModelCard
    from geosr.training.train import TrainConfig, train

    rasters = [fbm_surface((40, 40), seed=s)[None].astype(np.float64) for s in range(2)]
    rasters = [(r - r.mean()) / r.std() for r in rasters]
    tiny = {"patch": 16, "batch_size": 2, "steps_per_epoch": 2, "depth": 3, "width": 4, "scales": (2,)}
    seen: list[tuple[str, int | None]] = []
    for budget, total in (({"epochs": 2}, 4), ({"epochs": 2, "minutes": 5.0}, None)):
        card = ModelCard(name="t", in_channels=1, depth=3, width=4)
        config = TrainConfig(**tiny, **budget, val_samples=4)
        output = tmp_path / f"{len(budget)}.safetensors"
        train(rasters[:1], rasters[1:], config, output, card, log=lambda line: None,
              progress=lambda done, total, run=output.stem: seen.append((run, total)))  # fmt: skip
        assert {t for run, t in seen if run == output.stem} == {total}, (budget, seen)


# D2: a folder at OUTPUT.ckpt -----------------------------------------------------------------------------------


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_folder_where_the_checkpoint_goes_is_refused_and_kept(tmp_path, cli, overwrite):
    """--overwrite deleted a user's folder at OUTPUT.ckpt with its files; without it, the message called the
    folder 'the checkpoint of an earlier run'."""
    hr = _hr(tmp_path)
    folder = tmp_path / "m.safetensors.ckpt"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    result = cli(
        "train", hr, "-o", tmp_path / "m.safetensors", "--scales", "2", "--epochs", "1", *TINY_TRAIN, *overwrite
    )
    message = assert_one_line_error(result.err, result.code, "m.safetensors.ckpt' is a folder", "choose another -o")
    assert "earlier run" not in message
    assert (folder / "notes.txt").read_text() == "precious"
    assert not (tmp_path / "m.safetensors").exists()


# D3: --resume of a pickle of another protocol ------------------------------------------------------------------


def test_resuming_a_pickle_prints_one_line_without_torchs_warning(tmp_path, cli_subprocess):
    """torch's UserWarning about the pickle's protocol (2 lines) came before the error line."""
    hr = _hr(tmp_path)
    pickled = tmp_path / "pickle.ckpt"
    with open(pickled, "wb") as handle:
        pickle.dump(object, handle, protocol=4)
    args = ["--scales", "2", "--epochs", "1", *TINY_TRAIN, "--resume", pickled]
    result = cli_subprocess("train", hr, "-o", tmp_path / "m.safetensors", *args)
    assert_one_line_error(result.stderr, result.returncode, "is not a geosr training checkpoint")


# D4: rasters of other numbers of bands -------------------------------------------------------------------------


def test_rasters_of_other_band_counts_are_named_with_their_counts_before_reading_the_second(tmp_path, cli, monkeypatch):
    """'the rasters have different numbers of bands' named neither raster nor count, after reading all of them."""
    import geosr.io

    one = _hr(tmp_path, "one.tif")
    data = np.stack([fbm_surface((64, 48), seed=4, relief=50.0), fbm_surface((64, 48), seed=5, relief=5.0)])
    two = write_geotiff(tmp_path / "two.tif", data)
    read, blocks = [], geosr.io.iter_blocks

    def counted(dataset, *args, **kwargs):
        read.append(Path(dataset.name).name)
        return blocks(dataset, *args, **kwargs)

    monkeypatch.setattr(geosr.io, "iter_blocks", counted)
    result = cli("train", one, two, "-o", tmp_path / "m.safetensors", "--scales", "2", "--epochs", "1", *TINY_TRAIN)
    assert_one_line_error(
        result.err, result.code, f"'{one}' has 1 band, '{two}' has 2", "choose the same bands with --bands"
    )
    assert read == ["one.tif"]


# D5: --minutes and --epochs ------------------------------------------------------------------------------------


def test_minutes_alone_are_the_budget_and_with_epochs_whichever_ends_first(tmp_path, cli, monkeypatch):
    """--minutes 5 stopped after the default 50 epochs, in seconds, with no note."""
    from geosr.training import train as train_module

    hr = _hr(tmp_path)
    given = []

    def fake(rasters, val_rasters, config, output, card, **kwargs):
        given.append((config.epochs, config.minutes))
        return {"steps": 3, "epochs": 3, "seconds": 300.0, "ended_by": "minutes"}

    monkeypatch.setattr(train_module, "train", fake)
    for budget, expected in (
        (["--minutes", "5"], (None, 5.0)),  # no epoch limit: the minutes are the budget
        ([], (50, None)),  # the default
        (["--epochs", "7", "--minutes", "5"], (7, 5.0)),
        (["--epochs", "7"], (7, None)),
    ):
        result = cli("train", hr, "-o", tmp_path / "m.safetensors", "--scales", "2", *TINY_TRAIN, *budget)
        assert result.code == 0, result.err
        assert given[-1] == expected, budget


def test_the_last_line_says_which_budget_ended_the_run(tmp_path, cli):
    hr = _hr(tmp_path)
    model = tmp_path / "m.safetensors"
    result = cli("train", hr, "-o", model, "--scales", "2", *SHOWN, "--minutes", "0.0001")
    assert result.code == 0, result.err
    assert re.fullmatch(rf"wrote {re.escape(str(model))} after 0\.0 minutes \(--minutes; 1 epoch, 1 step\)",
                        result.err_lines[-1]), result.err  # fmt: skip
    assert read_card(model).training["config"]["epochs"] is None
    # resumed with a budget of both, the epochs end it, and the last line says so
    resume = ["--resume", f"{model}.ckpt"]
    result = cli("train", hr, "-o", model, "--scales", "2", *SHOWN, "--epochs", "2", "--minutes", "30", *resume)
    assert result.code == 0, result.err
    assert result.err_lines[-1].startswith(f"wrote {model} after 2 epochs (--epochs; 2 steps, "), result.err


def test_a_library_run_without_an_epoch_limit_ends_with_its_minutes(tmp_path, monkeypatch):
    from geosr.models.card import ModelCard
    from geosr.training import train as train_module
    from geosr.training.train import TrainConfig, learning_rate, train

    clock = iter(range(0, 10**6, 30))  # 30 s a reading: a 2-minute budget ends after a few epochs
    monkeypatch.setattr(train_module.time, "perf_counter", lambda: float(next(clock)))
    raster = fbm_surface((40, 40), seed=1)[None].astype(np.float64)
    raster = (raster - raster.mean()) / raster.std()
    config = TrainConfig(patch=16, batch_size=2, steps_per_epoch=1, depth=3, width=4, scales=(2,), val_samples=4,
                         epochs=None, minutes=2.0)  # fmt: skip
    card = ModelCard(name="t", in_channels=1, depth=3, width=4)
    summary = train([raster], [raster], config, tmp_path / "m.safetensors", card, log=lambda line: None)
    assert summary["ended_by"] == "minutes" and summary["seconds"] >= 120 and summary["epochs"] >= 2
    # the cosine anneals over the minutes alone
    cosine = TrainConfig(lr=1.0, cosine=True, epochs=None, minutes=60)
    assert learning_rate(cosine, 10, seconds=30 * 60) == pytest.approx(0.5)


# D7: --help ----------------------------------------------------------------------------------------------------


def test_help_explains_every_training_option(cli):
    text = " ".join(cli("train", "--help").out.split())
    for words in (
        "--epochs INTEGER RANGE Stop after this many epochs",
        "Default: 50 without --minutes, no limit with it",
        "--steps-per-epoch INTEGER RANGE Training steps",
        "--batch-size INTEGER RANGE Patches per training step",
        "--depth INTEGER RANGE Convolution layers",
        "--width INTEGER RANGE Features per layer",
        "--optimizer [adam|sgd] adam, or sgd",
        "auto picks CUDA, then Apple MPS, then the CPU",
        "--precision [fp32|bf16|fp16] Arithmetic",
        "--seed INTEGER RANGE Seed",
        "whole numbers of at least 2",
        "only warnings and errors are printed",
    ):
        assert words in text, words


# D9: refusals that advise what helps ---------------------------------------------------------------------------


def test_a_raster_too_small_for_any_patch_asks_for_a_larger_raster(tmp_path, cli):
    """A 1 x 1 raster was told to use a smaller --patch-size, which cannot help (the smallest is 12)."""
    tiny = write_geotiff(tmp_path / "one.tif", np.array([[5.0]], dtype=np.float32))
    result = cli("train", tiny, "-o", tmp_path / "m.safetensors", "--epochs", "1", *TINY_TRAIN)
    message = assert_one_line_error(result.err, result.code, "is too small", "use a larger raster")
    assert "--patch-size of" not in message and "smaller --patch-size" not in message


def test_a_scale_larger_than_the_raster_asks_for_a_smaller_scale(tmp_path, cli):
    """--scales 100 on a 96-pixel raster was told to use a smaller --patch-size."""
    hr = _hr(tmp_path, shape=(96, 96))
    result = cli("train", hr, "-o", tmp_path / "m.safetensors", "--scales", "100", "--epochs", "1", *TINY_TRAIN)
    message = assert_one_line_error(result.err, result.code, "is too small", "use a smaller scale (--scales 8 at most)")
    assert "--patch-size" not in message.split(";")[-1]


def test_where_a_smaller_patch_helps_the_size_it_names_trains(tmp_path, cli):
    hr = _hr(tmp_path, shape=(40, 20))
    args = ["--scales", "2", "--epochs", "1", *TINY_TRAIN]
    result = cli("train", hr, "-o", tmp_path / "m.safetensors", *args, "--patch-size", "24")
    assert_one_line_error(result.err, result.code, "is too small", "use a --patch-size of 20 or less")
    result = cli("train", hr, "-o", tmp_path / "m.safetensors", *args, "--patch-size", "20")
    assert result.code == 0, result.err


def test_an_empty_output_name_is_called_empty(tmp_path, cli):
    """-o '' said "output '.' is a folder"."""
    hr = _hr(tmp_path)
    result = cli("train", hr, "-o", "", "--epochs", "1", *TINY_TRAIN)
    message = assert_one_line_error(result.err, result.code, "the output name is empty", "model.safetensors")
    assert "folder" not in message


# D10, D11 ------------------------------------------------------------------------------------------------------


def test_a_scale_whose_cells_a_patch_cannot_hold_twice_is_refused(tmp_path, cli):
    """--scales 40 --patch-size 16 trained a model on patches each inside one coarse cell."""
    hr = _hr(tmp_path, shape=(200, 120))
    model = tmp_path / "m.safetensors"
    result = cli("train", hr, "-o", model, "--scales", "2,40", "--epochs", "1", *TINY_TRAIN)
    assert_one_line_error(
        result.err, result.code, "scale 40 (--scales) is more than half of --patch-size 16", "at most 8", "80 or more"
    )
    assert not model.exists()


def test_a_raster_given_twice_is_refused(tmp_path, cli, monkeypatch):
    """The same raster twice was trained on twice as often, and listed twice on the card."""
    hr = _hr(tmp_path)
    model = tmp_path / "m.safetensors"
    result = cli("train", hr, hr, "-o", model, "--scales", "2", "--epochs", "1", *TINY_TRAIN)
    assert_one_line_error(result.err, result.code, f"'{hr}' is given twice", "give each raster once")
    monkeypatch.chdir(tmp_path)
    result = cli("train", hr, "./hr.tif", "-o", model, "--scales", "2", "--epochs", "1", *TINY_TRAIN)
    assert_one_line_error(result.err, result.code, f"'./hr.tif' (as '{hr}') is given twice")
    assert not model.exists()


# D12: a training checkpoint where a model is expected ----------------------------------------------------------


def test_a_checkpoint_given_as_a_model_is_called_a_checkpoint(tmp_path, cli):
    """`geosr models X.ckpt` and `--init X.ckpt` said 'not a geosr model file (Error while deserializing header:
    header too large)'."""
    hr = _hr(tmp_path)
    model = tmp_path / "m.safetensors"
    assert cli("train", hr, "-o", model, "--scales", "2", "--epochs", "1", *TINY_TRAIN).code == 0
    checkpoint = f"{model}.ckpt"
    words = (f"'{checkpoint}' is a training checkpoint, not a model", f"--resume {checkpoint}", f"('{model}')")
    result = cli("models", checkpoint)
    message = assert_one_line_error(result.err, result.code, *words)
    assert "header" not in message
    result = cli("train", hr, "-o", tmp_path / "n.safetensors", "--scales", "2", "--epochs", "1", *TINY_TRAIN,
                 "--init", checkpoint)  # fmt: skip
    assert_one_line_error(result.err, result.code, *words)
    # any other file is still not a model file
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    result = cli("models", junk)
    assert_one_line_error(result.err, result.code, "is not a geosr model file")

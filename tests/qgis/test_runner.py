"""The plugin's runner without QGIS: choice of geosr, command line, subprocess and in-process runs, cancel.

Runs in geosr's environment (``make test``: the in-process path) and in QGIS's Python
(``make test-qgis``: the subprocess path; the in-process tests skip there, geosr not being installed).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from pathlib import Path
from typing import Any

import pytest
from geosr_processing import runner
from geosr_processing.runner import EXECUTABLE_ENV, Canceled, GeosrNotFound, Job, RunError, find_geosr, run

pytest_plugins = ["plugin_fixtures"]

NO_GEOSR = "geosr is not installed in this Python; its in-process path is tested in geosr's environment (make test)"


class Recorder:
    """A stand-in for ``QgsProcessingFeedback`` that records progress and can cancel at the first report."""

    def __init__(self, cancel_on_progress: bool = False) -> None:
        self.cancel_on_progress = cancel_on_progress
        self.canceled_at: float | None = None
        self.progress: list[float] = []
        self.messages: list[str] = []

    def isCanceled(self) -> bool:  # noqa: N802
        return self.canceled_at is not None

    def setProgress(self, progress: float) -> None:  # noqa: N802
        self.progress.append(progress)
        if self.cancel_on_progress and self.canceled_at is None:
            self.canceled_at = time.monotonic()

    def pushInfo(self, info: str) -> None:  # noqa: N802
        self.messages.append(info)

    pushCommandInfo = pushConsoleInfo = pushInfo  # noqa: N815


def shell_script(path: Path) -> Path:
    """An executable script whose interpreter is there (/bin/sh): a geosr that can start, for find_geosr."""
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def make_job(jacksboro: Path, output: Path, model: Path, **changes: Any) -> Job:
    options: dict[str, Any] = {
        "source": str(jacksboro),
        "output": str(output),
        "scale": 2.0,
        "resolution": None,
        "model": str(model),
        "device": "cpu",
        "tile_size": 256,
        "conserve": None,
    }
    return Job(**{**options, **changes})


def test_cli_arguments_are_geosr_downscale_options(jacksboro, tmp_path):
    job = make_job(jacksboro, tmp_path / "out.tif", Path("m.safetensors"), scale=None, resolution=0.0004, conserve=True)
    assert job.cli_arguments() == [
        "downscale",
        str(jacksboro),
        "--output",
        str(tmp_path / "out.tif"),
        "--overwrite",
        "--progress-lines",
        "--resolution",
        "0.0004",
        "--model",
        "m.safetensors",
        "--device",
        "cpu",
        "--tile-size",
        "256",
        "--conserve",
    ]
    assert "--model" not in dataclasses.replace(job, model="").cli_arguments()  # geosr's default model
    assert dataclasses.replace(job, ensemble=8).cli_arguments()[-2:] == ["--ensemble", "8"]
    assert dataclasses.replace(job, ensemble=8).pipeline_keywords()["ensemble"] == 8
    assert "calibrate" not in " ".join(job.cli_arguments()) and job.pipeline_keywords()["calibrate"] is None
    assert dataclasses.replace(job, calibrate=True).cli_arguments()[-1] == "--calibrate"
    assert dataclasses.replace(job, calibrate=False).cli_arguments()[-1] == "--no-calibrate"
    assert dataclasses.replace(job, calibrate=False).pipeline_keywords()["calibrate"] is False
    # bands are chosen by geosr itself (not through a VRT), numbered as in the input
    assert "--bands" not in job.cli_arguments() and job.pipeline_keywords()["bands"] is None
    assert dataclasses.replace(job, bands=(3, 1)).cli_arguments()[-2:] == ["--bands", "3,1"]
    assert dataclasses.replace(job, bands=(3, 1)).pipeline_keywords()["bands"] == [3, 1]


def test_both_runners_leave_conservation_to_the_model_unless_told(jacksboro, tmp_path):
    # "model": the CLI gets neither flag and the pipeline None, i.e. the model card's default (on for the
    # shipped models at whole scales); "on" and "off" force it either way, in both runners alike
    job = make_job(jacksboro, tmp_path / "out.tif", Path("m.safetensors"), conserve=None)
    assert "--conserve" not in job.cli_arguments() and "--no-conserve" not in job.cli_arguments()
    assert job.pipeline_keywords()["conserve"] is None
    assert dataclasses.replace(job, conserve=True).pipeline_keywords()["conserve"] is True
    assert dataclasses.replace(job, conserve=True).cli_arguments()[-1] == "--conserve"
    assert dataclasses.replace(job, conserve=False).pipeline_keywords()["conserve"] is False
    assert dataclasses.replace(job, conserve=False).cli_arguments()[-1] == "--no-conserve"


def test_configured_executable_comes_first(monkeypatch, tmp_path, geosr_executable):
    monkeypatch.setenv(EXECUTABLE_ENV, str(geosr_executable))
    assert find_geosr() == geosr_executable
    other = shell_script(tmp_path / "geosr")
    assert find_geosr(str(other)) == other
    with pytest.raises(GeosrNotFound, match="nope.*Processing setting.*pip install geosr"):
        find_geosr(str(tmp_path / "nope"))
    monkeypatch.setenv(EXECUTABLE_ENV, str(tmp_path / "missing"))
    with pytest.raises(GeosrNotFound, match=f"missing.*{EXECUTABLE_ENV} variable"):
        find_geosr()


def test_unconfigured_uses_importable_geosr_then_path(monkeypatch, tmp_path):
    monkeypatch.delenv(EXECUTABLE_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(runner, "geosr_importable", lambda: True)
    assert find_geosr() is None
    monkeypatch.setattr(runner, "geosr_importable", lambda: False)
    with pytest.raises(GeosrNotFound, match=f"geosr is not available; install geosr .*{EXECUTABLE_ENV}"):
        find_geosr()
    on_path = shell_script(tmp_path / "geosr")
    assert find_geosr() == on_path


def test_an_executable_that_cannot_start_is_said_in_one_line(monkeypatch, tmp_path, jacksboro, tiny_model):
    # a virtual environment whose Python was removed: found, not startable; said by find_geosr (canExecute)
    monkeypatch.delenv(EXECUTABLE_ENV, raising=False)
    orphan = tmp_path / "venv" / "bin" / "geosr"
    orphan.parent.mkdir(parents=True)
    orphan.write_text(f"#!{tmp_path / 'venv' / 'bin' / 'python'}\n")
    orphan.chmod(0o755)
    with pytest.raises(GeosrNotFound, match="cannot start: its interpreter .*venv/bin/python' is not there"):
        find_geosr(str(orphan))
    monkeypatch.setenv("PATH", str(orphan.parent))
    monkeypatch.setattr(runner, "geosr_importable", lambda: False)
    with pytest.raises(GeosrNotFound, match="found on the PATH cannot start"):
        find_geosr()
    # a file no interpreter names and the system cannot run (damaged, another platform's): at run time, one line
    garbage = tmp_path / "garbage"
    garbage.write_bytes(bytes(range(256)) * 4)
    garbage.chmod(0o755)
    assert find_geosr(str(garbage)) == garbage
    with pytest.raises(RunError, match="could not be started \\(Exec format error\\); check it"):
        run(make_job(jacksboro, tmp_path / "out.tif", tiny_model), Recorder(), garbage)
    assert not (tmp_path / "out.tif").exists()


def test_a_geosr_in_qgis_python_that_fails_to_import_falls_back_to_the_path(monkeypatch, tmp_path):
    # installed beside a numpy its other packages do not take: importing it fails, which find_spec cannot see
    import importlib

    monkeypatch.delenv(EXECUTABLE_ENV, raising=False)
    # tried anew with the stand-ins below, in a cache of this test's own
    monkeypatch.setattr(runner, "_try_import", functools.cache(runner._try_import.__wrapped__))
    monkeypatch.setattr(runner.importlib.util, "find_spec", lambda name, *args: object())

    def broken(name: str, *args: Any) -> Any:
        if name.startswith("geosr"):
            raise ImportError("Please upgrade numpy to >= 2.0.2 to use this pandas version.\nmore lines")
        return importlib.import_module(name, *args)

    monkeypatch.setattr(runner.importlib, "import_module", broken)
    assert not runner.geosr_importable()
    assert runner.import_error() == "ImportError: Please upgrade numpy to >= 2.0.2 to use this pandas version."
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GeosrNotFound, match="installed in QGIS's Python but cannot be imported \\(ImportError: Please"):
        find_geosr()
    on_path = shell_script(tmp_path / "geosr")
    assert find_geosr() == on_path


def test_in_process_failures_geosr_did_not_foresee_are_one_line(monkeypatch, jacksboro, tmp_path, tiny_model):
    if not runner.geosr_importable():
        pytest.skip(NO_GEOSR)
    import geosr.pipeline

    def fails(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("CUDA driver version is insufficient\nsecond line")

    monkeypatch.setattr(geosr.pipeline, "downscale_raster", fails)
    feedback = Recorder()
    with pytest.raises(RunError) as error:
        run(make_job(jacksboro, tmp_path / "out.tif", tiny_model), feedback, None)
    assert str(error.value).startswith(
        "geosr failed in QGIS's Python (RuntimeError: CUDA driver version is insufficient)"
    )
    assert "\n" not in str(error.value) and any("Traceback" in m for m in feedback.messages)


def test_subprocess_run_streams_progress(jacksboro, tmp_path, geosr_executable, tiny_model):
    feedback = Recorder()
    run(make_job(jacksboro, tmp_path / "out.tif", tiny_model), feedback, geosr_executable)
    assert (tmp_path / "out.tif").is_file()
    assert len(feedback.progress) == 12 and feedback.progress[-1] == 100  # 806 x 688 px in 256 px tiles
    assert feedback.messages[0].startswith(f"{geosr_executable} downscale")
    assert any(message.startswith("wrote ") for message in feedback.messages)


def test_subprocess_error_is_geosrs_line(jacksboro, tmp_path, geosr_executable, tiny_model):
    with pytest.raises(RunError, match=r"^scale must be greater than 1, got 1\.0") as error:
        run(make_job(jacksboro, tmp_path / "out.tif", tiny_model, scale=1.0), Recorder(), geosr_executable)
    assert "Error:" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_subprocess_cancel_stops_promptly_and_leaves_nothing(jacksboro, tmp_path, geosr_executable, make_model):
    slow = make_model(8, 32)
    feedback = Recorder(cancel_on_progress=True)
    out = tmp_path / "out" / "cancelled.tif"
    out.parent.mkdir()
    with pytest.raises(Canceled):
        run(make_job(jacksboro, out, slow, scale=4.0, tile_size=64), feedback, geosr_executable)
    assert feedback.canceled_at is not None
    assert time.monotonic() - feedback.canceled_at < runner.STOP_SECONDS
    assert len(feedback.progress) == 1
    assert list(out.parent.iterdir()) == []


def test_in_process_run_equals_subprocess_run(jacksboro, tmp_path, geosr_executable, tiny_model):
    if not runner.geosr_importable():
        pytest.skip(NO_GEOSR)
    import numpy as np
    import rasterio

    from geosr.predict import DEFAULT_TILE_SIZE

    assert runner.DEFAULT_TILE_SIZE == DEFAULT_TILE_SIZE
    feedback = Recorder()
    run(make_job(jacksboro, tmp_path / "in.tif", tiny_model, scale=2.5), feedback, None)
    run(make_job(jacksboro, tmp_path / "sub.tif", tiny_model, scale=2.5), Recorder(), geosr_executable)
    assert feedback.progress[-1] == 100 and any(m.startswith("wrote ") for m in feedback.messages)
    with rasterio.open(tmp_path / "in.tif") as a, rasterio.open(tmp_path / "sub.tif") as b:
        assert (a.shape, a.transform, a.crs, a.nodata) == (b.shape, b.transform, b.crs, b.nodata)
        np.testing.assert_array_equal(a.read(), b.read())


def test_in_process_errors_and_cancel(jacksboro, tmp_path, tiny_model):
    if not runner.geosr_importable():
        pytest.skip(NO_GEOSR)
    with pytest.raises(RunError, match="greater than 1"):
        run(make_job(jacksboro, tmp_path / "bad.tif", tiny_model, scale=0.5), Recorder(), None)
    feedback = Recorder(cancel_on_progress=True)
    with pytest.raises(Canceled):
        run(make_job(jacksboro, tmp_path / "cancelled.tif", tiny_model), feedback, None)
    assert len(feedback.progress) == 1
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "output 'a.tif' is the input file; choose another name with -o",
            "output 'a.tif' is the input file; choose another Downscaled raster (OUTPUT)",
        ),
        (
            "conservation needs a whole scale (2, 3, 4...), got 2.5; drop --conserve or use a whole scale",
            "conservation needs a whole scale (2, 3, 4...), got 2.5; set Conserve (CONSERVE) to model or off or use a "
            "whole scale",
        ),
        (
            "self-calibration needs a whole scale (2, 3, 4...), got 2.5; drop --calibrate or use a whole scale",
            "self-calibration needs a whole scale (2, 3, 4...), got 2.5; set Calibrate (CALIBRATE) to model or off or "
            "use a whole scale",
        ),
        (
            "--resolution needs square pixels but this raster's are 1 x 2; use --scale instead",
            "the Target resolution (RESOLUTION) needs square pixels but this raster's are 1 x 2; "
            "use the Scale factor (SCALE) instead",
        ),
        (
            "model 'm3' takes the bands a, b in that order, but it was given bands 1 (b), 2 (a) of 'x.tif'; "
            "pass --bands 2,1",
            "model 'm3' takes the bands a, b in that order, but it was given bands 1 (b), 2 (a) of 'x.tif'; "
            "set the Bands (BANDS) to 2;1",
        ),
        (
            "band 4 of 'rgba.tif' is an alpha band (a transparency mask, not data); leave it out with --bands 1,2,3 "
            "(its transparent pixels become nodata), or turn it into nodata first",
            "band 4 of 'rgba.tif' is an alpha band (a transparency mask, not data); leave it out with the Bands "
            "(BANDS) set to 1;2;3 (its transparent pixels become nodata), or turn it into nodata first",
        ),
        # what the messages say for Python callers is left out
        (
            "device 'cuda' was asked for but no CUDA GPU is available; use --device cpu or auto (device='cpu' in "
            "Python)",
            "device 'cuda' was asked for but no CUDA GPU is available; set the Device (DEVICE) to cpu or auto",
        ),
        (
            "conservation needs a whole scale (2, 3, 4...), got 2.5; drop --conserve (conserve=True in Python) or use "
            "a whole scale",
            "conservation needs a whole scale (2, 3, 4...), got 2.5; set Conserve (CONSERVE) to model or off or use a "
            "whole scale",
        ),
        # quoted names (paths, models) stay as they are
        ("input file '/home/u/-o/dem.tif' does not exist", "input file '/home/u/-o/dem.tif' does not exist"),
        ("input file '/d/a (b=c in Python).tif' is odd", "input file '/d/a (b=c in Python).tif' is odd"),
        (
            "unknown model '/m/try --scale 3.safetensors' (shipped: dem); pass --model",
            "unknown model '/m/try --scale 3.safetensors' (shipped: dem); pass the Model (MODEL)",
        ),
    ],
)
def test_messages_name_the_tools_parameters_not_geosrs_options(message, expected):
    assert runner.for_qgis(message) == expected


def test_a_killed_run_s_temporaries_are_found_for_long_output_names_too(tmp_path):
    """geosr cuts the name part of a temporary file short where the whole would pass the file system's 255 bytes
    (a 250-byte output name): the cleanup after a kill looked for the whole name only and left them."""
    long_name = "a" * 246 + ".tif"
    ours = [tmp_path / f".{'a' * 220}.0123abcd.geosr-part", tmp_path / f".{long_name[:200]}.89abcdef.geosr-cog.ovr.tmp"]
    short = tmp_path / ".out.tif.0123abcd.geosr-part"
    theirs = [tmp_path / ".other.tif.0123abcd.geosr-part", tmp_path / ".out.0123abcd.geosr-part", tmp_path / "out.tif"]
    for path in [*ours, short, *theirs]:
        path.write_bytes(b"")
    assert sorted(runner._temporaries(tmp_path / long_name)) == sorted(ours)
    # a short name's temporaries carry it whole: another output's ('out', a prefix of 'out.tif') are not touched
    assert runner._temporaries(tmp_path / "out.tif") == [short]

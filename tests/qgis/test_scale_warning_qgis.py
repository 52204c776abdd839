"""The QGIS tool says so when the scale lies outside the range of the model's trained scales: one warning
in the log (``pushWarning``), in the tool's terms, and the output is still written.

Like ``test_runner.py``, the runner's tests also run in geosr's environment (``make test``: the in-process
path); the end-to-end test needs QGIS (``make test-qgis``). The test model's card says scales 2, 3, 4.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from geosr_processing import runner
from geosr_processing.runner import Job, push_warning, run

pytest_plugins = ["plugin_fixtures"]

NO_GEOSR = "geosr is not installed in this Python; its in-process path is tested in geosr's environment (make test)"


class Recorder:
    """A stand-in for ``QgsProcessingFeedback`` that records its warnings apart from its other messages."""

    def __init__(self) -> None:
        self.progress: list[float] = []
        self.messages: list[str] = []
        self.warnings: list[str] = []

    def isCanceled(self) -> bool:  # noqa: N802
        return False

    def setProgress(self, progress: float) -> None:  # noqa: N802
        self.progress.append(progress)

    def pushInfo(self, info: str) -> None:  # noqa: N802
        self.messages.append(info)

    pushCommandInfo = pushConsoleInfo = pushInfo  # noqa: N815

    def pushWarning(self, warning: str) -> None:  # noqa: N802
        self.warnings.append(warning)


def make_job(source: Path, output: Path, model: Path, scale: float) -> Job:
    return Job(
        source=str(source),
        output=str(output),
        scale=scale,
        resolution=None,
        model=str(model),
        device="cpu",
        tile_size=512,
        conserve=None,
    )


def assert_one_scale_warning(feedback: Recorder) -> None:
    assert len(feedback.warnings) == 1, feedback.warnings
    warning = feedback.warnings[0]
    assert "was trained at scales 2, 3, 4, and x1.5 lies below them" in warning
    assert "set the Model (MODEL) to backprojection" in warning  # the dialog's parameter, not --model
    assert not warning.startswith("Warning:")
    assert not any("lies below" in message for message in feedback.messages)  # not also as console text


def executables(geosr_executable: Path) -> list[Path | None]:
    """The runs to check: the geosr executable, and QGIS's Python when geosr imports there."""
    return [geosr_executable, *([None] if runner.geosr_importable() else [])]


def test_a_scale_below_the_trained_ones_is_one_warning(jacksboro, tmp_path, geosr_executable, tiny_model):
    for n, executable in enumerate(executables(geosr_executable)):
        feedback = Recorder()
        out = tmp_path / f"x1.5_{n}.tif"
        run(make_job(jacksboro, out, tiny_model, 1.5), feedback, executable)
        assert out.is_file() and feedback.progress[-1] == 100
        assert_one_scale_warning(feedback)
        assert any(message.startswith("wrote ") for message in feedback.messages)


def test_a_scale_between_the_trained_ones_is_not_warned_about(jacksboro, tmp_path, geosr_executable, tiny_model):
    for n, executable in enumerate(executables(geosr_executable)):
        feedback = Recorder()
        out = tmp_path / f"x2.5_{n}.tif"
        run(make_job(jacksboro, out, tiny_model, 2.5), feedback, executable)
        assert out.is_file()
        assert feedback.warnings == []
        assert not any("trained at scales" in message for message in feedback.messages)


def test_a_feedback_without_push_warning_gets_an_info_line():
    class Old:
        def __init__(self) -> None:
            self.messages: list[str] = []

        def pushInfo(self, info: str) -> None:  # noqa: N802
            self.messages.append(info)

    feedback: Any = Old()
    push_warning(feedback, "model 'dem' was trained at scales 2, 3, 4; set --model to backprojection")
    assert feedback.messages == [
        "Warning: model 'dem' was trained at scales 2, 3, 4; set the Model (MODEL) to backprojection"
    ]


@pytest.fixture
def qgis_processing(request: pytest.FixtureRequest) -> Any:
    """QGIS's ``processing`` (the ``processing`` fixture), or a skip where QGIS does not import (``make test``)."""
    pytest.importorskip("qgis.core", reason="QGIS's Python bindings are not importable here: run `make test-qgis`")
    return request.getfixturevalue("processing")


def test_processing_run_pushes_the_warning(qgis_processing, jacksboro, tiny_model, tmp_path, warnings_feedback):
    feedback = warnings_feedback
    out = tmp_path / "x1.5.tif"
    parameters = {"INPUT": str(jacksboro), "SCALE": 1.5, "MODEL": str(tiny_model), "DEVICE": "cpu", "OUTPUT": str(out)}
    result = qgis_processing.run("geosr:downscale", parameters, feedback=feedback)
    assert Path(result["OUTPUT"]) == out and out.is_file()
    assert len(feedback.warnings) == 1 and "x1.5 lies below them" in feedback.warnings[0], feedback.warnings

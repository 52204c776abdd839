"""A job geosr refuses is one error in the QGIS tool's terms: geosr's own ``Error: ...`` line, which names its
command-line options (``choose another -o``, ``drop --conserve``), never reaches the tool's log; the error,
naming the tool's parameters (OUTPUT, CONSERVE), is raised once, as the ``QgsProcessingException``, and QGIS
shows it once in the tool's log (``reportError``).

Like ``test_runner.py``, the runner's tests also run in geosr's environment (``make test``: the in-process
path too); the QGIS tests need QGIS (``make test-qgis``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from geosr_processing import runner
from geosr_processing.runner import Job, RunError, run

pytest_plugins = ["plugin_fixtures"]

#: geosr's refusals the walkthrough met: the job's changes, geosr's wording, and the tool's
REFUSALS = {
    "missing output folder": (
        {"output": "nodir/q10.tif"},
        "create it or choose another -o",
        "create it or choose another Downscaled raster (OUTPUT)",
    ),
    "conserve at a fractional scale": (
        {"scale": 2.5, "conserve": True},
        "drop --conserve or use a whole scale",
        "set Conserve (CONSERVE) to model or off or use a whole scale",
    ),
}


class Pushes:
    """The push methods of ``QgsProcessingFeedback``, recording each message with the method that pushed it."""

    pushed: list[tuple[str, str]]

    def pushInfo(self, info: str) -> None:  # noqa: N802
        self.pushed.append(("pushInfo", info))

    def pushCommandInfo(self, info: str) -> None:  # noqa: N802
        self.pushed.append(("pushCommandInfo", info))

    def pushConsoleInfo(self, info: str) -> None:  # noqa: N802
        self.pushed.append(("pushConsoleInfo", info))

    def pushDebugInfo(self, info: str) -> None:  # noqa: N802
        self.pushed.append(("pushDebugInfo", info))

    def pushWarning(self, warning: str) -> None:  # noqa: N802
        self.pushed.append(("pushWarning", warning))


class Recorder(Pushes):
    """A stand-in for ``QgsProcessingFeedback`` that records each message with the method that pushed it."""

    def __init__(self) -> None:
        self.pushed = []
        self.progress: list[float] = []

    def isCanceled(self) -> bool:  # noqa: N802
        return False

    def setProgress(self, progress: float) -> None:  # noqa: N802
        self.progress.append(progress)


def make_job(source: Path, folder: Path, model: Path, **changes: Any) -> Job:
    options: dict[str, Any] = {
        "source": str(source),
        "output": "out.tif",
        "scale": 2.0,
        "resolution": None,
        "model": str(model),
        "device": "cpu",
        "tile_size": 512,
        "conserve": None,
    }
    options.update(changes)
    options["output"] = str(folder / options["output"])
    return Job(**options)


def assert_not_pushed(pushed: list[tuple[str, str]], geosrs: str, tools: str) -> None:
    """Neither geosr's raw error line nor the tool's message was pushed (the command line may name the options)."""
    for method, text in pushed:
        assert not text.startswith("Error:"), (method, text)
        assert geosrs not in text, (method, text)
        assert tools not in text, (method, text)  # shown once, by QGIS, from the exception


def executables(geosr_executable: Path) -> list[Path | None]:
    """The runs to check: the geosr executable, and QGIS's Python when geosr imports there."""
    return [geosr_executable, *([None] if runner.geosr_importable() else [])]


@pytest.mark.parametrize(("changes", "geosrs", "tools"), REFUSALS.values(), ids=REFUSALS.keys())
def test_a_refusal_is_raised_in_the_tools_terms_and_not_pushed(
    jacksboro, tmp_path, geosr_executable, tiny_model, changes, geosrs, tools
):
    for n, executable in enumerate(executables(geosr_executable)):
        feedback = Recorder()
        (tmp_path / str(n)).mkdir()
        job = make_job(jacksboro, tmp_path / str(n), tiny_model, **changes)
        with pytest.raises(RunError) as error:
            run(job, feedback, executable)
        assert tools in str(error.value) and geosrs not in str(error.value)
        assert not str(error.value).startswith("Error:")
        assert_not_pushed(feedback.pushed, geosrs, tools)
        if executable is not None:  # the command line is still shown, as before
            assert feedback.pushed[0] == ("pushCommandInfo", runner.shlex.join([str(executable), *job.cli_arguments()]))


def fake_geosr(folder: Path, lines: str, code: int) -> Path:
    """A stand-in for the geosr executable that writes ``lines`` (shell ``echo`` commands) and exits with ``code``."""
    script = folder / "geosr"
    script.write_text(f"#!/bin/sh\n{lines}\nexit {code}\n")
    script.chmod(0o755)
    return script


def test_other_lines_still_reach_the_log_around_an_error(tmp_path):
    """Progress, geosr's warnings (one ``pushWarning`` each, as test_scale_warning_qgis.py checks) and other stderr
    lines are shown as before; only the error line is held back, and raised in the tool's terms."""
    geosr = fake_geosr(
        tmp_path,
        "echo 'PROGRESS 1/2'\n"
        "echo \"Warning: model 'dem' was trained at scales 2, 3, 4; set --model to backprojection\" >&2\n"
        "echo 'some other line' >&2\n"
        "echo \"Error: output folder 'nodir' does not exist; create it or choose another -o\" >&2",
        1,
    )
    feedback = Recorder()
    with pytest.raises(RunError) as error:
        run(make_job(Path("in.tif"), tmp_path, Path("m.safetensors")), feedback, geosr)
    tools = "output folder 'nodir' does not exist; create it or choose another Downscaled raster (OUTPUT)"
    assert str(error.value) == tools
    assert feedback.progress == [50.0]
    assert feedback.pushed[1:] == [
        ("pushWarning", "model 'dem' was trained at scales 2, 3, 4; set the Model (MODEL) to backprojection"),
        ("pushConsoleInfo", "some other line"),
    ]


def test_an_error_line_of_a_run_that_succeeds_is_shown_in_the_tools_terms(tmp_path):
    """geosr never does this; should it, its error line is shown (not lost), but in the tool's terms."""
    script = fake_geosr(
        tmp_path, f"echo 'Error: drop --conserve or use a whole scale' >&2\ntouch '{tmp_path}/out.tif'", 0
    )
    feedback = Recorder()
    run(make_job(Path("in.tif"), tmp_path, Path("m.safetensors")), feedback, script)
    console = [text for method, text in feedback.pushed if method == "pushConsoleInfo"]
    assert console == ["Error: set Conserve (CONSERVE) to model or off or use a whole scale"]


@pytest.mark.parametrize("existing", [False, True])
def test_an_executable_that_succeeds_without_writing_the_output_is_an_error(tmp_path, existing):
    # a wrong executable configured (/usr/bin/true): the tool reported the output, which did not exist (or was
    # the one an earlier run left)
    script = fake_geosr(tmp_path, "echo 'nothing done'", 0)
    if existing:
        (tmp_path / "out.tif").write_bytes(b"an earlier run's")
    with pytest.raises(RunError, match="ended without an error but wrote no .*out.tif': is it geosr"):
        run(make_job(Path("in.tif"), tmp_path, Path("m.safetensors")), Recorder(), script)


@pytest.fixture
def qgis_processing(request: pytest.FixtureRequest) -> Any:
    """QGIS's ``processing`` (the ``processing`` fixture), or a skip where QGIS does not import (``make test``)."""
    pytest.importorskip("qgis.core", reason="QGIS's Python bindings are not importable here: run `make test-qgis`")
    return request.getfixturevalue("processing")


def recording_feedback() -> Any:
    """A ``QgsProcessingFeedback`` that records what is pushed to it and the errors QGIS reports to it."""
    from qgis.core import QgsProcessingFeedback

    class Feedback(Pushes, QgsProcessingFeedback):
        def __init__(self) -> None:
            super().__init__()
            self.pushed = []
            self.errors: list[str] = []

        def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803
            self.errors.append(error)
            super().reportError(error, fatalError)

    return Feedback()


#: The refusals as the tool's parameters
PARAMETER_REFUSALS = {
    "missing output folder": ({"SCALE": 2, "OUTPUT": "nodir/q10.tif"},) + REFUSALS["missing output folder"][1:],
    "conserve at a fractional scale": ({"SCALE": 2.5, "CONSERVE": "on", "OUTPUT": "q11.tif"},)
    + REFUSALS["conserve at a fractional scale"][1:],
}


def tool_parameters(given: dict[str, Any], source: Path, model: Path, folder: Path) -> dict[str, Any]:
    return {
        "INPUT": str(source),
        "MODEL": str(model),
        "DEVICE": "cpu",
        **given,
        "OUTPUT": str(folder / given["OUTPUT"]),
    }


@pytest.mark.parametrize(("given", "geosrs", "tools"), PARAMETER_REFUSALS.values(), ids=PARAMETER_REFUSALS.keys())
def test_processing_run_raises_the_tools_error_once(
    qgis_processing, jacksboro, tiny_model, tmp_path, given, geosrs, tools
):
    from qgis.core import QgsProcessingException

    feedback = recording_feedback()
    with pytest.raises(QgsProcessingException) as error:
        qgis_processing.run(
            "geosr:downscale", tool_parameters(given, jacksboro, tiny_model, tmp_path), feedback=feedback
        )
    assert tools in str(error.value) and geosrs not in str(error.value)
    assert_not_pushed(feedback.pushed, geosrs, tools)
    assert feedback.errors == []  # processing.run raises; the exception is the one message
    assert not (tmp_path / "q11.tif").exists()


@pytest.mark.parametrize(("given", "geosrs", "tools"), PARAMETER_REFUSALS.values(), ids=PARAMETER_REFUSALS.keys())
def test_the_algorithms_run_reports_the_tools_error_once(
    qgis_processing, jacksboro, tiny_model, tmp_path, given, geosrs, tools
):
    """``QgsProcessingAlgorithm.run``, as qgis_process and the toolbox run the tool: QGIS catches the exception
    and reports it to the feedback; that is then its only line about the error."""
    from qgis.core import QgsApplication, QgsProcessingContext

    algorithm = QgsApplication.processingRegistry().algorithmById("geosr:downscale")
    feedback = recording_feedback()
    _, ok = algorithm.run(tool_parameters(given, jacksboro, tiny_model, tmp_path), QgsProcessingContext(), feedback)
    assert not ok
    assert len(feedback.errors) == 1 and tools in feedback.errors[0], feedback.errors
    assert geosrs not in feedback.errors[0]
    assert_not_pushed(feedback.pushed, geosrs, tools)
    assert tools not in feedback.textLog().replace(feedback.errors[0], "", 1)  # the log has it once


def test_qgis_process_shows_the_tools_error_not_geosrs_line(
    qgis_processing, qgis_profile, run_qgis_process, jacksboro, tiny_model, tmp_path
):
    call = run_qgis_process
    assert call("plugins", "enable", "geosr_processing").returncode == 0
    for given, geosrs, tools in PARAMETER_REFUSALS.values():
        parameters = tool_parameters(given, jacksboro, tiny_model, tmp_path)
        refused = call("run", "geosr:downscale", "--", *[f"{name}={value}" for name, value in parameters.items()])
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert geosrs not in refused.stdout + refused.stderr and "Error:" not in refused.stdout + refused.stderr
        assert tools not in refused.stdout  # the tool's log (stdout) has no copy of it
        # qgis_process's one error line; QGIS also writes the exception to its message log (stderr), as for
        # every algorithm's error (native:raiseexception too), which the tool cannot change
        assert refused.stderr.count("ERROR:\t") == 1 and tools in refused.stderr.split("ERROR:\t")[1]

"""Run geosr for the QGIS tool: inside QGIS's Python when geosr imports there, else as a subprocess.

This module does not import QGIS: it talks to a QGIS feedback object through :class:`Feedback`
(which ``QgsProcessingFeedback`` satisfies) and reports failures as :class:`RunError` and
:class:`Canceled`, which the algorithm turns into ``QgsProcessingException``. That keeps it testable
from geosr's own environment, where geosr imports but QGIS does not.

Which geosr runs, first match wins:

1. the executable configured in the Processing settings (``configured``), else the one named by the
   ``GEOSR_EXECUTABLE`` environment variable: a deliberate choice, for example an environment with
   CUDA;
2. geosr imported in this Python, when it and torch are installed there;
3. ``geosr`` on the ``PATH``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import queue
import re
import shlex
import shutil
import subprocess
import threading
import traceback
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

#: Environment variable naming the geosr executable (used when the Processing setting is empty).
EXECUTABLE_ENV = "GEOSR_EXECUTABLE"
#: geosr's default tile size (``geosr.predict.DEFAULT_TILE_SIZE``, which may not import here).
DEFAULT_TILE_SIZE = 1024
#: geosr's default batch size (``geosr downscale --batch-size``, ``geosr.pipeline.downscale_raster``).
DEFAULT_BATCH_SIZE = 1
#: geosr's network precisions (``--precision``); the first is geosr's default.
PRECISIONS = ("fp32", "bf16", "fp16")
#: How often (seconds) a subprocess run looks at the cancel button while waiting for output.
POLL_SECONDS = 0.1
#: How long (seconds) a cancelled geosr gets to delete its partial output before it is killed.
STOP_SECONDS = 10.0
#: Variables QGIS may set for its own Python, GDAL and PROJ (the Windows installers do); geosr's
#: environment brings its own, and a mismatched ``proj.db`` or ``PYTHONHOME`` breaks it.
FOREIGN_ENV = ("PYTHONHOME", "PYTHONPATH", "GDAL_DATA", "GDAL_DRIVER_PATH", "PROJ_LIB", "PROJ_DATA")
INSTALL_HINT = (
    "install geosr (pip install geosr) and give the path of its `geosr` executable in Processing > Options > "
    f"Providers > geosr, or in the {EXECUTABLE_ENV} environment variable; or install geosr into QGIS's own Python"
)

_PROGRESS = re.compile(r"PROGRESS (\d+)/(\d+)")


class Feedback(Protocol):
    """The part of ``QgsProcessingFeedback`` that a run uses."""

    def isCanceled(self) -> bool: ...  # noqa: N802 (QGIS's names)

    def setProgress(self, progress: float) -> None: ...  # noqa: N802

    def pushInfo(self, info: str) -> None: ...  # noqa: N802

    def pushCommandInfo(self, info: str) -> None: ...  # noqa: N802

    def pushConsoleInfo(self, info: str) -> None: ...  # noqa: N802

    def pushWarning(self, warning: str) -> None: ...  # noqa: N802 (QGIS 3.16 and later; else pushInfo is used)


#: How geosr's command line starts a warning line on stderr (the run goes on; ``Error: `` ends it).
WARNING_PREFIX = "Warning: "
#: How geosr's command line starts its one-line error on stderr (then it exits non-zero).
ERROR_PREFIX = "Error: "


def _push_debug(feedback: Feedback, text: str) -> None:
    """``text`` in the log's debug lines where the feedback has them (QGIS's), else its console lines."""
    push = getattr(feedback, "pushDebugInfo", None) or feedback.pushConsoleInfo
    push(text)


def push_warning(feedback: Feedback, message: str) -> None:
    """Show one of geosr's warnings (a scale the model was not trained at) in the tool's log, in the
    tool's terms (:func:`for_qgis`): ``pushWarning``, or ``pushInfo`` for a feedback without it."""
    text = for_qgis(message)
    push = getattr(feedback, "pushWarning", None)
    if callable(push):
        push(text)
    else:
        feedback.pushInfo(f"Warning: {text}")


class RunError(Exception):
    """geosr refused the job or failed; the message is geosr's one-line explanation."""


class Canceled(Exception):
    """The user cancelled the run; no output was written."""


@dataclass(frozen=True)
class Job:
    """One downscaling run, in the terms of ``geosr downscale``.

    Parameters
    ----------
    source : str
        The input raster, as GDAL opens it.
    output : str
        The GeoTIFF to write (replaced if it exists, as Processing outputs are).
    scale, resolution : float or None
        Exactly one is given: the refinement factor, or the target pixel size in CRS units.
    model : str
        A shipped model's name or a model file; empty for geosr's default model.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    tile_size : int
        Output pixels per tile side.
    conserve : bool or None
        Make each input cell's output pixels average exactly to the input value (True), never (False),
        or as the model's card says (None).
    ensemble : int
        Copies of the raster the model is averaged over: 1, 4 (flips) or 8 (flips and rotations).
    calibrate : bool or None
        Scale each band's added detail by what the input's own coarser copy supports (True), never
        (False), or as the model's card says (None).
    bands : tuple of int
        The input's bands to downscale (1-based), in this order; empty for all. Chosen by geosr itself
        (``--bands``), never through a VRT of them: geosr then checks them against all the raster's
        bands (a multiband model's band names) and names them in its messages as the user numbers them.
    precision : str
        The network's arithmetic: ``fp32`` (geosr's default), ``bf16`` or ``fp16``.
    batch_size : int
        Tile images per network call (geosr's default: :data:`DEFAULT_BATCH_SIZE`).
    cog : bool
        Write a Cloud Optimized GeoTIFF with overviews.
    keep_dtype : bool
        Write the input's data type (rounded, clipped) instead of float32.
    """

    source: str
    output: str
    scale: float | None
    resolution: float | None
    model: str
    device: str
    tile_size: int
    conserve: bool | None
    ensemble: int = 1
    calibrate: bool | None = None
    bands: tuple[int, ...] = ()
    precision: str = PRECISIONS[0]
    batch_size: int = DEFAULT_BATCH_SIZE
    cog: bool = False
    keep_dtype: bool = False

    def cli_arguments(self) -> list[str]:
        """Arguments of ``geosr`` for this job, with progress as lines on stdout."""
        arguments = ["downscale", self.source, "--output", self.output, "--overwrite", "--progress-lines"]
        if self.scale is not None:
            arguments += ["--scale", repr(self.scale)]
        if self.resolution is not None:
            arguments += ["--resolution", repr(self.resolution)]
        if self.model:
            arguments += ["--model", self.model]
        arguments += ["--device", self.device, "--tile-size", str(self.tile_size)]
        if self.conserve is not None:
            arguments.append("--conserve" if self.conserve else "--no-conserve")
        if self.ensemble != 1:
            arguments += ["--ensemble", str(self.ensemble)]
        if self.calibrate is not None:
            arguments.append("--calibrate" if self.calibrate else "--no-calibrate")
        if self.bands:
            arguments += ["--bands", ",".join(map(str, self.bands))]
        # geosr's defaults are left out: the command reads as before these options were added
        if self.precision != PRECISIONS[0]:
            arguments += ["--precision", self.precision]
        if self.batch_size != DEFAULT_BATCH_SIZE:
            arguments += ["--batch-size", str(self.batch_size)]
        if self.cog:
            arguments.append("--cog")
        if self.keep_dtype:
            arguments.append("--keep-dtype")
        return arguments

    def pipeline_keywords(self) -> dict[str, Any]:
        """Keyword arguments of :func:`geosr.pipeline.downscale_raster` for this job."""
        return {
            "scale": self.scale,
            "resolution": self.resolution,
            "model": self.model or None,
            "device": self.device,
            "tile_size": self.tile_size,
            "conserve": self.conserve,  # None: as the model says, like the CLI without --conserve
            "ensemble": self.ensemble,
            "calibrate": self.calibrate,
            "bands": list(self.bands) or None,
            "precision": self.precision,
            "batch_size": self.batch_size,
            "cog": self.cog,
            "keep_dtype": self.keep_dtype,
            "overwrite": True,
        }


class GeosrNotFound(Exception):
    """Neither a geosr executable nor an importable geosr is available; the message says how to fix it."""


def find_geosr(configured: str = "") -> Path | None:
    """The geosr executable to run, or ``None`` to run geosr inside this Python.

    Parameters
    ----------
    configured : str
        The Processing setting (a path, or empty when unset).

    Raises
    ------
    GeosrNotFound
        When the configured executable does not exist, or when no geosr is available at all.
    """
    for origin, value in (
        ("Processing setting", configured),
        (f"{EXECUTABLE_ENV} variable", os.environ.get(EXECUTABLE_ENV, "")),
    ):
        if value:
            path = Path(value).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise GeosrNotFound(
                    f"the geosr executable '{value}' named by the {origin} is not an executable file; {INSTALL_HINT}"
                )
            _check_startable(path, f"named by the {origin}")
            return path
    if geosr_importable():
        return None
    found = shutil.which("geosr")
    if found is None:
        broken = import_error()
        if broken is not None:
            raise GeosrNotFound(
                f"geosr is installed in QGIS's Python but cannot be imported ({broken}); {INSTALL_HINT}"
            )
        raise GeosrNotFound(f"geosr is not available; {INSTALL_HINT}")
    _check_startable(Path(found), "found on the PATH")
    return Path(found)


def _check_startable(path: Path, origin: str) -> None:
    """Raise :class:`GeosrNotFound` when the script ``path`` names an interpreter that is not there (a virtual
    environment whose Python was removed or upgraded): it would fail to start, with an error about itself."""
    try:
        with path.open("rb") as handle:
            first = handle.readline(4096)
    except OSError as exc:
        raise GeosrNotFound(
            f"the geosr executable '{path}' {origin} cannot be read ({exc.strerror}); {INSTALL_HINT}"
        ) from None
    if not first.startswith(b"#!"):
        return
    interpreter = (first[2:].decode("utf-8", "replace").split() or [""])[0]
    if not (Path(interpreter).is_file() and os.access(interpreter, os.X_OK)):
        raise GeosrNotFound(
            f"the geosr executable '{path}' {origin} cannot start: its interpreter '{interpreter}' is not there "
            f"(was its Python removed or upgraded?); reinstall geosr, or {INSTALL_HINT}"
        )


@functools.lru_cache(maxsize=None)  # not functools.cache, which is Python 3.9+: QGIS 3.22 may run 3.8
def _try_import() -> tuple[bool, str | None]:
    """Whether geosr runs in this Python, and why not where it is installed but fails to import; tried once."""
    if any(importlib.util.find_spec(name) is None for name in ("geosr", "torch", "rasterio")):
        return False, None  # not installed here: nothing to say about it
    try:
        importlib.import_module("geosr.pipeline")
    except Exception as exc:  # noqa: BLE001 - any failure: geosr cannot run in this Python
        return False, f"{type(exc).__name__}: {_first_line(exc)}"
    return True, None


def import_error() -> str | None:
    """Why geosr, installed in this Python with torch and rasterio, fails to import (as beside a numpy that its
    other packages do not take), or None (it imports, or is not installed). Tried once; QGIS restarts to retry."""
    return _try_import()[1]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def geosr_importable() -> bool:
    """Whether geosr, torch and rasterio are installed in this Python and geosr imports (:func:`import_error`)."""
    return _try_import()[0]


def run(job: Job, feedback: Feedback, executable: Path | None) -> None:
    """Run ``job`` with ``executable`` (see :func:`find_geosr`), or in this Python when it is ``None``.

    Raises
    ------
    RunError
        geosr refused the job or failed (the message is geosr's, in the tool's terms: :func:`for_qgis`). geosr's
        own error line is not also pushed to ``feedback``: QGIS shows the exception as the tool's error.
    Canceled
        ``feedback`` was cancelled; geosr stopped and left no output.
    """
    if executable is None:
        _run_in_process(job, feedback)
    else:
        _run_executable(executable, job, feedback)


def _run_in_process(job: Job, feedback: Feedback) -> None:
    from geosr.errors import GeosrError
    from geosr.pipeline import downscale_raster

    def progress(done: int, total: int) -> None:
        feedback.setProgress(100.0 * done / total)
        if feedback.isCanceled():
            raise Canceled  # the pipeline deletes its temporary file on the way out

    feedback.pushInfo(f"Running geosr in QGIS's Python: downscale_raster({job.source!r}, {job.output!r})")
    try:
        with _warnings_to(feedback):
            result = downscale_raster(job.source, job.output, **job.pipeline_keywords(), progress=progress)
    except GeosrError as exc:
        raise RunError(for_qgis(str(exc))) from exc
    except Canceled:
        raise
    except Exception as exc:  # noqa: BLE001 - a failure geosr did not foresee: one line, the traceback in the log
        _push_debug(feedback, traceback.format_exc())
        raise RunError(
            f"geosr failed in QGIS's Python ({type(exc).__name__}: {_first_line(exc)}); the traceback is in the log. "
            f"Running a geosr executable instead may help: {INSTALL_HINT}"
        ) from exc
    rows, cols = result.shape
    feedback.pushInfo(f"wrote {result.path}: {cols} x {rows} pixels, model {result.model}, {result.device}")


@contextlib.contextmanager
def _warnings_to(feedback: Feedback) -> Iterator[None]:
    """geosr's own warnings given inside (:class:`geosr.errors.GeosrWarning`) as :func:`push_warning`
    lines, as the command line prints them; other warnings as Python shows them. (Python's warning
    settings are global: a warning another thread gives meanwhile passes through here too.)"""
    from geosr.errors import GeosrWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("default", category=GeosrWarning, append=True)
        python_shows = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, GeosrWarning):
                push_warning(feedback, str(message))
            else:
                python_shows(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


def _stamp(path: str) -> tuple[int, int] | None:
    """A file's inode and modification time (a replaced or rewritten file has others), None when absent."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns


def _run_executable(executable: Path, job: Job, feedback: Feedback) -> None:
    before = _stamp(job.output)
    command = [str(executable), *job.cli_arguments()]
    feedback.pushCommandInfo(shlex.join(command))
    env = {name: value for name, value in os.environ.items() if name not in FOREIGN_ENV}
    env["PYTHONIOENCODING"] = "utf-8"
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            encoding="utf-8",
            errors="replace",
        )
    except OSError as exc:  # not a program this system runs (a damaged file, another platform's binary)
        raise RunError(
            f"the geosr executable '{executable}' could not be started ({exc.strerror or exc}); check it, or "
            f"{INSTALL_HINT}"
        ) from None
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    assert process.stdout is not None and process.stderr is not None
    for name, stream in (("stdout", process.stdout), ("stderr", process.stderr)):
        threading.Thread(target=_pump, args=(name, stream, lines), daemon=True).start()
    errors: list[str] = []
    open_streams = 2
    while open_streams:
        if feedback.isCanceled():
            _stop(process, Path(job.output))
            raise Canceled
        try:
            name, line = lines.get(timeout=POLL_SECONDS)
        except queue.Empty:
            continue
        if line is None:
            open_streams -= 1
        elif name == "stdout" and (match := _PROGRESS.fullmatch(line)):
            feedback.setProgress(100.0 * int(match[1]) / int(match[2]))
        elif name == "stderr" and line.startswith(ERROR_PREFIX):
            # geosr's error names its command-line options ('choose another -o'): it is not shown as it is,
            # but raised below in the tool's terms, which QGIS then shows once, as the tool's error
            errors.append(line)
        elif name == "stderr" and line.startswith(WARNING_PREFIX):
            push_warning(feedback, line[len(WARNING_PREFIX) :])
            errors.append(line)
        else:
            feedback.pushConsoleInfo(line)
            if name == "stderr":
                errors.append(line)
    code = process.wait()
    # geosr gives one error line, then fails; any other (none now) is shown in the tool's terms
    held = [line for line in errors if line.startswith(ERROR_PREFIX)]
    for line in held[:-1] if code != 0 else held:
        feedback.pushConsoleInfo(for_qgis(line))
    if code != 0:
        raise RunError(_error_message(errors, code))
    after = _stamp(job.output)
    if after is None or after == before:  # a wrong executable (not geosr) that succeeds without doing the work
        raise RunError(
            f"'{executable}' ended without an error but wrote no '{job.output}': is it geosr? Set the geosr "
            "executable in Processing > Options > Providers > geosr"
        )


def _pump(name: str, stream: IO[str], lines: queue.Queue[tuple[str, str | None]]) -> None:
    """Forward the lines of one pipe to ``lines``, then ``None`` when it closes."""
    with stream:
        for line in stream:
            if line.strip():
                lines.put((name, line.rstrip()))
    lines.put((name, None))


def _stop(process: subprocess.Popen[str], output: Path) -> None:
    """Stop geosr (SIGTERM: it then deletes its temporary file itself); kill it if it does not stop."""
    process.terminate()
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    # a killed geosr cannot clean up: remove its temporary files (".<name>.<random>.geosr-part" beside the output)
    for leftover in _temporaries(output):
        leftover.unlink(missing_ok=True)


#: geosr's temporary files beside an output: ".NAME.XXXXXXXX.geosr-part" and the like (GDAL's ".ovr.tmp" after it)
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.geosr-")
#: Output names longer than this many bytes may have their temporary names cut short (NAME a prefix of the name)
_SHORTENED_FROM = 200


def _temporaries(output: Path) -> list[Path]:
    """geosr's temporary files of ``output``: NAME is the output's name, or for a name long enough that geosr cut it
    short to fit the file system's limit (a 250-byte name), a prefix of it."""
    name = output.name
    long_name = len(os.fsencode(name)) > _SHORTENED_FROM
    found = []
    for entry in output.parent.glob(".*.geosr-*"):
        match = _TEMPORARY.match(entry.name)
        if match and (match["name"] == name or (long_name and name.startswith(match["name"]))):
            found.append(entry)
    return found


#: geosr's command-line options named in its messages, and the tool's parameters that set them
PARAMETER_NAMES = {
    "-o": "the Downscaled raster (OUTPUT)",
    "--output": "the Downscaled raster (OUTPUT)",
    "--scale": "the Scale factor (SCALE)",
    "--resolution": "the Target resolution (RESOLUTION)",
    "--model": "the Model (MODEL)",
    "--device": "the Device (DEVICE)",
    "--tile-size": "the Tile size (TILE_SIZE)",
    "--conserve": "the Conserve (CONSERVE) choice",
    "--no-conserve": "the Conserve (CONSERVE) choice",
    "--ensemble": "the Ensemble (ENSEMBLE)",
    "--calibrate": "the Calibrate (CALIBRATE) choice",
    "--no-calibrate": "the Calibrate (CALIBRATE) choice",
    "--bands": "the Bands (BANDS)",
    "--precision": "the Precision (PRECISION)",
    "--batch-size": "the Batch size (BATCH_SIZE)",
    "--cog": "the Cloud Optimized GeoTIFF (COG) option",
    "--keep-dtype": "the Keep data type (KEEP_DTYPE) option",
}
_LONGEST_FIRST = sorted(PARAMETER_NAMES, key=len, reverse=True)
_OPTION = re.compile(r"(?<![\w-])(" + "|".join(re.escape(o) for o in _LONGEST_FIRST) + r")(?![\w-])")


#: Whole phrases of geosr's messages that read better said another way for the dialog
PHRASES = {
    "choose another name with -o": "choose another Downscaled raster (OUTPUT)",
    "give a file name with -o": "give the Downscaled raster (OUTPUT) a file name",
    "or choose another -o": "or choose another Downscaled raster (OUTPUT)",
    "or -o to choose another": "or choose another Downscaled raster (OUTPUT)",
    "drop --conserve": "set Conserve (CONSERVE) to model or off",
    "drop --calibrate": "set Calibrate (CALIBRATE) to model or off",
    "use --device ": "set the Device (DEVICE) to ",
    "drop --keep-dtype": "turn Keep data type (KEEP_DTYPE) off",
    "pass --keep-dtype": "turn Keep data type (KEEP_DTYPE) on",
    # an unforeseen failure: the tool has no --verbose, the command it ran (in the log) does
    "rerun with --verbose for details": "run the geosr command in the log with --verbose in a terminal for details",
}
#: What geosr's messages say for Python callers ("(device='cpu' in Python)"): not the dialog's words
_PYTHON_WORDS = re.compile(r" \(\w+=[^()]* in Python\)")
#: A quoted name in geosr's messages (a path, a model): left as it is
_QUOTED = re.compile(r"('[^']*')")
#: "pass --bands 2,3,4", "leave it out with --bands 1,2,3": the dialog's Bands (BANDS) take the same
#: numbers, separated by ';' in qgis_process
_BANDS = re.compile(r"(pass |with )?--bands (\d+(?:,\d+)*)")
_BANDS_WORDS = {
    "pass ": "set the Bands (BANDS) to ",
    "with ": "with the Bands (BANDS) set to ",
    None: "the Bands (BANDS) ",
}


def for_qgis(message: str) -> str:
    """geosr's message with its command-line options named as the tool's parameters ('use --scale
    instead' -> 'use the Scale factor (SCALE) instead'): the dialog has no -o or --conserve. Quoted
    names (paths, models) are left as they are."""

    def words(text: str) -> str:
        for phrase, replacement in PHRASES.items():
            text = text.replace(phrase, replacement)
        text = _BANDS.sub(lambda match: _BANDS_WORDS[match[1]] + match[2].replace(",", ";"), text)
        return _OPTION.sub(lambda match: PARAMETER_NAMES[match[1]], text)

    def quoted(part: str) -> str:  # click quotes the option it refuses a value of: "for '--tile-size': ..."
        return PARAMETER_NAMES.get(part[1:-1], part)

    quotes = [m.span() for m in _QUOTED.finditer(message)]  # a path may hold anything: left as it is
    python = [m.span() for m in _PYTHON_WORDS.finditer(message) if not any(a <= m.start() < b for a, b in quotes)]
    for start, end in reversed(python):
        message = message[:start] + message[end:]
    return "".join(quoted(part) if _QUOTED.fullmatch(part) else words(part) for part in _QUOTED.split(message))


def _error_message(stderr: Sequence[str], code: int) -> str:
    """geosr's one-line error (``Error: ...`` on stderr) without its prefix, else the last line and the code."""
    for line in reversed(stderr):
        if line.startswith(ERROR_PREFIX):
            return for_qgis(line[len(ERROR_PREFIX) :])
    last = stderr[-1] if stderr else "no message"
    return f"geosr stopped with exit code {code}: {last}"

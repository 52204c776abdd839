"""Options shared by several subcommands, defined once, and the one-line error reporting.

Exit codes: a value wrong as typed (its form, its range, or options that contradict each other: wrong whatever
the files, data, device or environment) is a usage error, exit code 2, as click's own; a problem found in the
files, the data, the device or the environment exits 1; an interrupted run 130 (:func:`geosr.cli.main`).
"""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import click

#: ``verbose``, set by ``--verbose`` (errors then show their traceback); ``argv``, the arguments of the
#: running command (set by :func:`geosr.cli.main`; ``geosr train`` records them in the model card).
state: dict[str, Any] = {"verbose": False, "argv": []}


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        state["verbose"] = True
    return value


verbose_option = click.option(
    "-v",
    "--verbose",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_verbose,
    help="Show details, and a traceback on error.",
)
quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="No progress bar and no summary (a warning about the result still shows)."
)
device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "cpu", "cuda", "mps"]),
    help="Where the network runs: auto picks CUDA, then Apple MPS, then the CPU.",
)
calibrate_option = click.option(
    "--calibrate/--no-calibrate",
    default=None,
    help="Scale each band's added detail by how much of it the input's own coarser copy supports (0 to 1, "
    "estimated once per band; whole scales). Default: as the model's card says (both shipped models, dem and "
    "climate, calibrate).",
)
precision_option = click.option(
    "--precision",
    default="fp32",
    show_default=True,
    type=click.Choice(["fp32", "bf16", "fp16"]),
    help="Arithmetic of the network: fp32, or bf16 and fp16 (faster on GPUs with them; on a CPU without their "
    "instructions, emulated and many times slower).",
)
ensemble_option = click.option(
    "--ensemble",
    default="1",
    show_default=True,
    type=click.Choice(["1", "4", "8"]),
    help="Average the model over this many flipped copies of the raster (4), or flipped and rotated copies (8, "
    "square pixels only): N times slower, usually a little more accurate, and the output mirrors exactly as the "
    "input does.",
)
model_option = click.option(
    "--model",
    "model",
    default=None,
    metavar="NAME|PATH",
    help="A shipped model (see `geosr models`) or a .safetensors model file. Default: dem.",
)
overwrite_option = click.option("--overwrite", is_flag=True, help="Replace the output if it exists.")


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal, where a progress bar may be drawn."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_bar(quiet: bool, unit: str) -> Callable[[int, int], None]:
    """A callback ``(done, total)`` that drives a tqdm bar on stderr where that is a terminal; nothing when quiet
    or where stderr is a file or a pipe (a log), where the bar was redrawn with carriage returns and the run's last
    line (``wrote ...`` or ``Error: ...``) was glued onto it (``--progress-lines`` is the progress for a program)."""
    if quiet or not stderr_is_terminal():
        return lambda done, total: None
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, unit=unit, file=sys.stderr, leave=False)
        bar["bar"].update(done - bar["bar"].n)
        if done >= total:
            bar["bar"].close()

    return update


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn geosr's and the libraries' expected errors into a one-line :class:`click.ClickException`."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from geosr.errors import GeosrError

        try:
            return command(*args, **kwargs)
        except GeosrError as exc:
            if state["verbose"]:
                raise
            raise click.ClickException(str(exc)) from None

    return wrapper


@contextlib.contextmanager
def typed_values() -> Iterator[None]:
    """geosr's errors raised inside by checks of typed values alone (no file, data, device or environment looked
    at) as click usage errors: exit code 2, as click's own, with geosr's one-line message."""
    from geosr.errors import GeosrError

    try:
        yield
    except GeosrError as exc:
        raise click.UsageError(str(exc)) from None


def echo_warning(message: str) -> None:
    """Print one of geosr's warnings as one line on stderr: ``Warning: ...``, as errors are ``Error: ...``."""
    click.echo(f"Warning: {message}", err=True)


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Show geosr's own warnings (:class:`geosr.errors.GeosrWarning`) given inside as :func:`echo_warning`
    lines, when given, with no file name, line number or source line; other warnings as Python shows them.

    Filters set by the user come first (``PYTHONWARNINGS=ignore::UserWarning`` silences them); otherwise
    each is shown.
    """
    from geosr.errors import GeosrWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("default", category=GeosrWarning, append=True)
        python_shows = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, GeosrWarning):
                echo_warning(str(message))
            else:
                python_shows(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


def int_list(text: str, what: str, *, unique: bool = True, bands: bool = False) -> list[int]:
    """Whole numbers separated by commas (``--scales 2,3,4``, ``--bands 3,1``), as a click parameter error
    when they are not, are empty, (``unique``) repeat one, or (``bands``) are not band numbers (from 1)."""
    parts = text.split(",")
    if not any(v.strip() for v in parts):
        raise click.BadParameter(f"{what} must not be empty")
    if not all(v.strip() for v in parts):  # '2,,3' or '2,3,': a value left out by a slip, not read as 2,3
        raise click.BadParameter(
            f"{what} has an empty entry in {text!r}; give whole numbers separated by single commas"
        )
    try:
        values = [int(v) for v in parts]
    except ValueError:
        raise click.BadParameter(f"{what} must be whole numbers separated by commas, got {text!r}") from None
    if bands and min(values) < 1:  # no raster has a band 0: wrong as typed, whatever the raster
        raise click.BadParameter(
            f"{what} {text!r} names band {min(values)}, but bands count from 1; give band numbers as gdalinfo "
            "lists them (1, 2, ...)"
        )
    if unique and len(set(values)) != len(values):
        raise click.BadParameter(f"{what} names a value twice ({text!r}); give each once")
    return values


def band_list(text: str) -> list[int]:
    """The bands of ``--bands 3,1`` (downscale, evaluate): a band named twice refused in the words of the raster's
    band view (geosr.io), but before the raster is opened, as a usage error (exit code 2); and so is a band
    number below 1."""
    values = int_list(text, "--bands", unique=False, bands=True)
    if len(set(values)) != len(values):
        raise click.UsageError(f"bands {','.join(map(str, values))} name a band twice; give each once")
    return values

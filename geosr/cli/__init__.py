"""The ``geosr`` command: one click group, one module per subcommand.

Only click is imported here, so ``geosr --help`` stays fast; each subcommand imports what it needs.
Every error ends as one line on stderr and a non-zero exit code: 2 for usage (an option or argument value wrong
as typed, whatever the files: click's own refusals and geosr's alike), 1 for a problem found in the files, data,
device or environment, 130 when interrupted; ``--verbose`` adds the traceback (not to a usage error).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import traceback

import click

from geosr import __version__
from geosr.cli.downscale import downscale
from geosr.cli.evaluate import evaluate
from geosr.cli.models import models
from geosr.cli.options import state
from geosr.cli.train import train
from geosr.errors import Interrupted


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geosr")
def cli() -> None:
    """Super-resolve geospatial rasters (DEMs, climate grids, multiband GeoTIFFs) with a VDSR network."""


cli.add_command(downscale)
cli.add_command(models)
cli.add_command(evaluate)
cli.add_command(train)


#: Raised by click 8.2 and later for a group called with no arguments; its message is the help.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the group and report errors in one line."""
    state["verbose"] = False  # set again by --verbose; not carried over from an earlier call in this process
    state["argv"] = list(sys.argv[1:] if argv is None else argv)  # what was asked for (train records it)
    io = sys.modules.get("geosr.io")  # not imported here, so that `geosr --help` stays fast
    published = len(io.PUBLISHED) if io is not None else 0
    try:
        cli.main(args=argv, prog_name="geosr", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except _NO_ARGS_IS_HELP as exc:  # plain `geosr`: the help, as --help gives it, not an error
        click.echo(exc.format_message())
        return 0
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        return exc.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort) as exc:
        return _interrupted(exc, published)
    except Exception as exc:  # an unexpected failure still gets one line unless --verbose
        behind = _interrupt_behind(exc)
        if behind is not None:  # an error while the run stopped: click's blank line to a terminal gone (SIGHUP)
            return _interrupted(behind, published)
        if state["verbose"]:
            traceback.print_exc()
        else:
            click.echo(f"Error: {type(exc).__name__}: {exc} (rerun with --verbose for details)", err=True)
        return 1
    return 0


def _interrupted(exc: BaseException, published: int) -> int:
    """Report an interrupted run in one line, saying what it left behind; the exit code 130."""
    # click turns KeyboardInterrupt into Abort; an Interrupted says what the run left behind
    cause = exc if isinstance(exc, Interrupted) else exc.__cause__
    left = str(cause) if isinstance(cause, Interrupted) else _written(published) or "no output was written"
    _report(f"Error: interrupted; {left}")
    return 130


def _interrupt_behind(exc: BaseException) -> BaseException | None:
    """The interrupt (KeyboardInterrupt, or click's Abort made of one) during whose handling ``exc`` was raised."""
    seen: set[int] = set()
    error: BaseException | None = exc.__context__
    while error is not None and id(error) not in seen:
        if isinstance(error, (KeyboardInterrupt, click.exceptions.Abort)):
            return error
        seen.add(id(error))
        error = error.__context__
    return None


def _written(mark: int) -> str | None:
    """What an interrupted run says when it was interrupted only after its output was moved into place (the
    interrupt landed just after the rename): that the output is complete, not that none was written."""
    io = sys.modules.get("geosr.io")
    written = io.written_since(mark) if io is not None else []
    if not written:
        return None
    names = ", ".join(f"'{path}'" for path in written)
    return f"the output {names} had already been written in full and is complete"


def _report(line: str) -> None:
    """Print an interrupted run's line on stderr, if stderr is still there: after SIGHUP (the terminal closed)
    writing to it fails, which must not turn a clean stop into a traceback and exit code 1."""
    with contextlib.suppress(OSError, ValueError):
        click.echo(line, err=True)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


#: Signals that stop a run as Ctrl+C does (SIGTERM always; the others where they would kill the process outright):
#: ``kill`` (SIGTERM), the terminal closed or the ssh connection dropped (SIGHUP), Ctrl+\ (SIGQUIT).
STOP_SIGNALS = ("SIGTERM", "SIGHUP", "SIGQUIT")


def run() -> None:
    """Console script: ``kill`` (SIGTERM), a closed terminal or dropped ssh connection (SIGHUP) and Ctrl+\\
    (SIGQUIT) stop a run like Ctrl+C, leaving no partial output.

    SIGTERM is used by programs that run geosr (the QGIS tool) because SIGINT may be ignored in a
    process started in the background of a non-interactive shell. SIGHUP and SIGQUIT killed geosr
    outright (Python's default), leaving its temporary files beside the output; they are taken over only
    where their default action holds, so that ``nohup geosr ...`` (SIGHUP ignored) still runs on.
    """
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    for name in STOP_SIGNALS[1:]:
        number = getattr(signal, name, None)  # none of them on Windows
        if number is not None and signal.getsignal(number) == signal.SIG_DFL:
            signal.signal(number, _stop_on_sigterm)
    sys.exit(main())

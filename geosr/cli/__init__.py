"""The ``geosr`` command: one click group, one module per subcommand.

Only click is imported here, so ``geosr --help`` stays fast; each subcommand imports what it needs.
Every error ends as one line on stderr and a non-zero exit code (2 for usage, 1 otherwise, 130 when
interrupted); ``--verbose`` adds the traceback.
"""

from __future__ import annotations

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
        # click turns KeyboardInterrupt into Abort; an Interrupted says what the run left behind
        cause = exc if isinstance(exc, Interrupted) else exc.__cause__
        left = str(cause) if isinstance(cause, Interrupted) else "no output was written"
        click.echo(f"Error: interrupted; {left}", err=True)
        return 130
    except Exception as exc:  # an unexpected failure still gets one line unless --verbose
        if state["verbose"]:
            traceback.print_exc()
        else:
            click.echo(f"Error: {type(exc).__name__}: {exc} (rerun with --verbose for details)", err=True)
        return 1
    return 0


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run() -> None:
    """Console script: ``kill`` (SIGTERM) stops a run like Ctrl+C, leaving no partial output.

    SIGTERM is used by programs that run geosr (the QGIS tool) because SIGINT may be ignored in a
    process started in the background of a non-interactive shell.
    """
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    sys.exit(main())

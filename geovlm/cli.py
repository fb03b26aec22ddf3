"""The ``geovlm`` command line: each command parses, makes one engine call and reports.

User mistakes (`GeovlmError`) print one ``Error:`` line and exit with status 2. SIGTERM and
Ctrl-C stop a run cleanly (marked ``interrupted``, resumable) with status 143 or 130.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from geovlm import __version__
from geovlm.commands import dataset as dataset_commands
from geovlm.commands import refer as refer_commands
from geovlm.commands import serve as serve_commands
from geovlm.commands import version as version_commands
from geovlm.commands import xbd as xbd_commands
from geovlm.commands.classify import classify
from geovlm.commands.damage import damage
from geovlm.commands.evaluate import evaluate
from geovlm.commands.models import models
from geovlm.commands.options import JSON_EVENTS
from geovlm.commands.report import report
from geovlm.commands.tile import tile
from geovlm.commands.train import train
from geovlm.errors import GeovlmError, first_line
from geovlm.events.library_warnings import LOG_FORMAT, silence_harmless_warnings
from geovlm.events.protocol import EventKind, RunStatus, error_kind, stdout_events
from geovlm.events.signals import Interrupted, stop_on_signals

__all__ = ["cli", "main"]


class _UserError(click.ClickException):
    """A `GeovlmError` shown the click way: ``Error: <message>`` and exit status 2."""

    exit_code = 2


class _Group(click.Group):
    """Turns `GeovlmError` raised anywhere in a command into a one-line error."""

    def invoke(self, ctx: click.Context) -> Any:
        events = stdout_events()
        events.ended = False
        try:
            return super().invoke(ctx)
        except GeovlmError as exc:
            if ctx.meta.get(JSON_EVENTS):
                events.emit(EventKind.ERROR, message=str(exc), kind=error_kind(exc))
            raise _UserError(str(exc)) from exc
        except Interrupted:
            if ctx.meta.get(JSON_EVENTS) and not events.ended:  # stopped before the first chip
                events.emit(EventKind.DONE, status=RunStatus.INTERRUPTED.value)
            raise
        except click.ClickException as exc:
            if ctx.meta.get(JSON_EVENTS):
                events.emit(EventKind.ERROR, message=exc.format_message(), kind="usage")
            raise
        except Exception as exc:  # a bug: reported, then its traceback
            if ctx.meta.get(JSON_EVENTS):
                events.emit(EventKind.ERROR, message=f"{type(exc).__name__}: {first_line(exc)}",
                            kind="internal")
            raise


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geovlm")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Run vision-language models over GeoTIFF scenes and write GeoPackage layers for QGIS."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format=LOG_FORMAT)
    silence_harmless_warnings()


cli.add_command(tile)
cli.add_command(classify)
cli.add_command(damage)
cli.add_command(models)
cli.add_command(xbd_commands.xbd)
cli.add_command(dataset_commands.dataset)
cli.add_command(train)
cli.add_command(evaluate)
cli.add_command(refer_commands.refer)
cli.add_command(version_commands.version)
cli.add_command(serve_commands.serve)
cli.add_command(report)


def main() -> None:
    """Entry point of the ``geovlm`` console script; a signal ends it with ``128 + signum``."""
    try:
        with stop_on_signals():
            cli.main(prog_name="geovlm")
    except Interrupted as stop:
        click.echo(f"Interrupted by {stop}; run the same command again to resume.", err=True)
        sys.exit(stop.exit_code)


if __name__ == "__main__":
    main()

"""The ``geovlm`` command line: each command parses, makes one engine call and reports.

User mistakes (`GeovlmError`) print one ``Error:`` line and exit with status 2.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from geovlm import __version__
from geovlm.errors import GeovlmError
from geovlm.options import output_options, tiling_options
from geovlm.progress import ProgressMode

__all__ = ["cli", "main"]


class _UserError(click.ClickException):
    """A `GeovlmError` shown the click way: ``Error: <message>`` and exit status 2."""

    exit_code = 2


class _Group(click.Group):
    """Turns `GeovlmError` raised anywhere in a command into a one-line error."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GeovlmError as exc:
            raise _UserError(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geovlm")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Run vision-language models over GeoTIFF scenes and write GeoPackage layers for QGIS."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _report(summary: dict[str, Any], progress: str, quiet: bool) -> None:
    """Print the closing line for people; JSON mode already emitted a ``done`` event."""
    if quiet or ProgressMode(progress) is ProgressMode.JSON:
        return
    click.echo(
        f"Wrote {summary['written']} chips to {summary['output']}"
        f" ({summary['already_done']} already done, {summary['skipped_invalid']} skipped"
        f" under --min-valid, {summary['seconds']:.1f} s).",
        err=True,
    )


@cli.command()
@click.argument("scene", type=str)
@output_options
@tiling_options()
@click.option("--save-chips", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Also write each chip as a small georeferenced GeoTIFF into DIR.")
def tile(
    scene: str,
    output: str,
    overwrite: bool,
    progress: str,
    quiet: bool,
    size: int,
    overlap: int,
    bands: tuple[int, ...] | None,
    min_valid: float,
    nodata: float | None,
    gsd: float | None,
    save_chips: str | None,
) -> None:
    """Cut SCENE into chips and write their footprints to a GeoPackage layer ``chips``.

    SCENE is any raster GDAL opens: GeoTIFF, COG, VRT or a /vsicurl/ URL.
    """
    from geovlm.tasks.tile import tile_scene
    from geovlm.tiling import TilingOptions

    summary = tile_scene(
        scene,
        output,
        TilingOptions(size, overlap, bands, min_valid, nodata, gsd),
        save_chips=save_chips,
        progress=ProgressMode.NONE if quiet else ProgressMode(progress),
        overwrite=overwrite,
    )
    _report(summary.as_dict(), progress, quiet)


def main() -> None:
    """Entry point of the ``geovlm`` console script."""
    sys.exit(cli.main(prog_name="geovlm"))


if __name__ == "__main__":
    main()

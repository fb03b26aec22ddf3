"""``geovlm tile``: chip footprints of a scene, no model; and the closing line of chip runs."""

from __future__ import annotations

from typing import Any

import click

from geovlm.commands.options import output_options, run_settings, tiling_options
from geovlm.events.progress import ProgressMode

__all__ = ["report_chips", "tile"]


def report_chips(summary: dict[str, Any], progress: str, quiet: bool) -> None:
    """Print the closing line for people; JSON mode already emitted a ``done`` event."""
    if quiet or ProgressMode(progress) is ProgressMode.JSON:
        return
    click.echo(
        f"Wrote {summary['written']} chips to {summary['output']}"
        f" ({summary['already_done']} already done, {summary['skipped_invalid']} skipped"
        f" under --min-valid, {summary['seconds']:.1f} s).",
        err=True,
    )


@click.command()
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
    from geovlm.pipeline.run_scenes import one_scene
    from geovlm.scenes.tiling import TilingOptions
    from geovlm.tasks.tile import tile_scene

    tiling = TilingOptions(size, overlap, bands, min_valid, nodata, gsd)
    summary = tile_scene(one_scene(scene, tiling),
                         run_settings(output, progress, quiet, overwrite), save_chips)
    report_chips(summary.as_dict(), progress, quiet)

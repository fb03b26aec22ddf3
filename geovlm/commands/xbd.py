"""``geovlm xbd``: commands on xBD (xView2) folders."""

from __future__ import annotations

import click

from geovlm.commands.options import run_options
from geovlm.events.progress import ProgressMode

__all__ = ["xbd"]

#: ``--phase`` values; ``both`` reads pre- and post-disaster tiles.
_PHASES = ("both", "pre", "post")


@click.group()
def xbd() -> None:
    """Commands on xBD (xView2) folders.

    An xBD folder holds images/<tile>_{pre,post}_disaster.png and labels/<same>.json.
    """


@xbd.command()
@click.argument("xbd_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Output folder: images/<tile>.tif and buildings.gpkg.")
@click.option("--phase", type=click.Choice(_PHASES), default="both", show_default=True,
              help="Which images to georeference: before, after the disaster, or both.")
@run_options("Replace the GeoTIFFs and GeoPackage of an earlier run in the output folder.")
def georef(
    xbd_dir: str, output: str, phase: str, overwrite: bool, progress: str, quiet: bool
) -> None:
    """Georeference the tiles of XBD_DIR from their building polygons.

    Each image's affine transform to longitude/latitude is fitted by least squares to its
    label's building vertices (given both in pixels and in lon/lat), and the image is written
    as a GeoTIFF in EPSG:4326 to DIR/images/. All buildings go to layer ``buildings`` of
    DIR/buildings.gpkg (with their damage grade), each tile's footprint and fit residuals to
    layer ``tiles``. Tiles without buildings cannot be placed and are skipped with a warning.
    """
    from geovlm.tasks.xbd_georef import georeference_xbd

    mode = ProgressMode.NONE if quiet else ProgressMode(progress)
    summary = georeference_xbd(
        xbd_dir, output, phase=None if phase == "both" else phase, progress=mode,
        overwrite=overwrite,
    )
    if quiet or mode is ProgressMode.JSON:
        return
    click.echo(f"{'tile':<40} {'phase':<5} {'buildings':>9} {'points':>6} {'rms px':>8}"
               f" {'max px':>8}", err=True)
    for done in summary.tiles:
        click.echo(f"{done.tile.name:<40} {done.tile.phase.value:<5}"
                   f" {len(done.tile.buildings):>9} {done.fit.points:>6}"
                   f" {done.fit.rms_px:>8.4f} {done.fit.max_px:>8.4f}", err=True)
    facts = summary.as_dict()
    click.echo(
        f"Wrote {facts['written']} GeoTIFFs and {facts['buildings']} buildings to"
        f" {summary.output} ({len(summary.skipped)} tiles skipped,"
        f" {summary.seconds:.1f} s).",
        err=True,
    )

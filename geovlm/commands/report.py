"""``geovlm report``: the responders' roll-up of a damage layer, as a page, CSVs and a layer."""

from __future__ import annotations

import click

from geovlm.commands.options import run_options
from geovlm.events.progress import ProgressMode
from geovlm.events.protocol import EventKind, RunStatus, stdout_events

__all__ = ["report"]


@click.command()
@click.argument("damage", type=click.Path(dir_okay=False), metavar="OUT.gpkg")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              metavar="REPORT.html",
              help="The page; its map and tables go beside it (REPORT.png, REPORT-areas.csv,"
                   " REPORT-totals.csv, REPORT-disaster.csv, REPORT.gpkg).")
@click.option("--cell", type=float, default=None, metavar="METRES",
              help="Count per square grid cell of this size."
                   "  [default: a round size, at most 8 cells across the buildings]")
@click.option("--areas", type=click.Path(dir_okay=False), default=None, metavar="VECTOR",
              help="Count per polygon of this admin layer (any GDAL vector, any CRS) instead.")
@click.option("--areas-name", default=None, metavar="FIELD",
              help="The field of --areas that names each area.  [default: area 1, area 2...]")
@click.option("--areas-layer", default=None, metavar="NAME",
              help="The layer of --areas to read.  [default: its first]")
@click.option("--classify", type=click.Path(dir_okay=False), default=None, metavar="GPKG",
              help="A `geovlm classify` output whose disaster types the report adds.")
@click.option("--scene", type=click.Path(dir_okay=False), default=None, metavar="RASTER",
              help="The imagery under the map.  [default: the run's recorded scenes, if found]")
@click.option("--gpkg", type=click.Path(dir_okay=False), default=None, metavar="GPKG",
              help="Where layer damage_by_area goes.  [default: REPORT.gpkg beside the page]")
@run_options("Replace the files of an earlier report.")
def report(
    damage: str,
    output: str,
    cell: float | None,
    areas: str | None,
    areas_name: str | None,
    areas_layer: str | None,
    classify: str | None,
    scene: str | None,
    gpkg: str | None,
    overwrite: bool,
    progress: str,
    quiet: bool,
) -> None:
    """Roll the ``buildings`` layer of OUT.gpkg (`geovlm damage`) up for responders.

    Counts buildings per damage grade per grid cell (--cell, in metres: the layer's CRS where it
    is projected, else its UTM zone) or per admin area (--areas), with ``uncertain`` counted
    apart, and writes a one-page HTML report: a "verify before acting" box (what the model
    cannot see, calibration, the uncertain share), the totals, a map of the grades over the
    scene with the areas outlined and counted, the table per area, the disaster types of a
    classify layer (--classify) and the runs' provenance. The same tables are written as CSV
    beside the page, and the areas with their counts as layer ``damage_by_area`` of a
    GeoPackage of the report's own (styled for QGIS; the damage output is left untouched).

    \b
    Examples:
      geovlm report damage.gpkg -o report.html
      geovlm report damage.gpkg -o report.html --cell 250
      geovlm report damage.gpkg -o report.html --areas districts.shp --areas-name NAME
      geovlm report damage.gpkg -o report.html --classify classified.gpkg
    """  # noqa: D301 (click's \b keeps the examples' lines)
    from geovlm.reporting.report import ReportSettings, write_report

    settings = ReportSettings(cell, areas, areas_name, areas_layer, classify, scene)
    report = write_report(damage, output, settings, gpkg=gpkg, overwrite=overwrite)
    summary = report.as_dict()
    if ProgressMode(progress) is ProgressMode.JSON:
        stdout_events().emit(EventKind.DONE, status=RunStatus.COMPLETE.value, **summary)
    elif not quiet:
        click.echo(f"{report.counted()} ({summary['uncertain']} uncertain): {summary['output']},"
                   f" its tables beside it, layer damage_by_area in {summary['gpkg']}.", err=True)

"""``geovlm report``'s engine: read the damage layer, count per area, write page, map and tables.

Everything is checked (outputs, inputs, the areas) before anything is written. The page
(``NAME.html``) has its files beside it: ``NAME.png`` (the map, also embedded),
``NAME-areas.csv``, ``NAME-totals.csv``, ``NAME-disaster.csv`` (with a classify layer) and
``NAME.gpkg`` (layer ``damage_by_area``; another path with ``gpkg``).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shapely

from geovlm.errors import OutputError, ParameterError
from geovlm.reporting.areas import Areas, choose_cell, grid_cells, metric_crs, read_areas
from geovlm.reporting.backdrop import scene_backdrop
from geovlm.reporting.layers import CATEGORIES, read_buildings, read_chips
from geovlm.reporting.page import ReportContent, render_page
from geovlm.reporting.picture import draw_map
from geovlm.reporting.provenance import RunProvenance, read_runs
from geovlm.reporting.tables import AREA_LAYER, write_area_layer, write_csv
from geovlm.reporting.tally import AreaCounts, count_buildings

__all__ = ["ReportFiles", "ReportSettings", "ReportSummary", "write_report"]

_AREA_COLUMNS = ("name", *CATEGORIES, "total", "damaged_share")


@dataclass(frozen=True, slots=True)
class ReportSettings:
    """What to count in and what to add.

    Attributes
    ----------
    cell_m
        Grid cell size in metres; None (and no `areas`): a round size, at most 8 cells across.
    areas
        An admin layer (any GDAL vector, any CRS) to count in instead of a grid.
    areas_name
        Its field that names each area; None: ``area 1``, ``area 2``...
    areas_layer
        The layer of `areas` to read; None: its first.
    classify
        A `geovlm classify` GeoPackage whose disaster types the report adds.
    scene
        The raster drawn under the map; None: the runs' recorded scenes, where they exist.
    """

    cell_m: float | None = None
    areas: str | None = None
    areas_name: str | None = None
    areas_layer: str | None = None
    classify: str | None = None
    scene: str | None = None

    def __post_init__(self) -> None:
        if self.cell_m is not None and self.areas is not None:
            raise ParameterError("Count per grid cell (--cell) or per admin area (--areas),"
                                 " not both.")
        if self.cell_m is not None and not self.cell_m > 0:
            raise ParameterError(f"--cell {self.cell_m:g} must be a positive size in metres.")
        if (self.areas_name or self.areas_layer) is not None and self.areas is None:
            raise ParameterError("--areas-name and --areas-layer concern --areas; pass --areas"
                                 " too.")


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """The files a report writes, named after its page."""

    html: Path
    png: Path
    areas_csv: Path
    totals_csv: Path
    disaster_csv: Path
    gpkg: Path

    @classmethod
    def from_html(cls, html: str | Path, gpkg: str | Path | None = None) -> ReportFiles:
        """The page at `html` and its files beside it (the GeoPackage at `gpkg` if given).

        Examples
        --------
        >>> files = ReportFiles.from_html("out/report.html")
        >>> files.areas_csv.as_posix(), files.gpkg.as_posix()
        ('out/report-areas.csv', 'out/report.gpkg')
        """
        page = Path(html)
        stem = page.with_suffix("")
        return cls(page, stem.with_suffix(".png"), Path(f"{stem}-areas.csv"),
                   Path(f"{stem}-totals.csv"), Path(f"{stem}-disaster.csv"),
                   Path(gpkg) if gpkg is not None else stem.with_suffix(".gpkg"))

    def check(self, overwrite: bool, with_disaster: bool) -> None:
        """Refuse a page that is no ``.html``, a missing folder, or files there already.

        Raises
        ------
        OutputError
            With the fix in one sentence.
        """
        if self.html.suffix.lower() not in (".html", ".htm"):
            raise OutputError(f"-o {self.html} must end in .html (the page of the report).")
        if self.gpkg.suffix.lower() != ".gpkg":
            raise OutputError(f"--gpkg {self.gpkg} must end in .gpkg.")
        for folder in {self.html.parent, self.gpkg.parent}:
            if not folder.is_dir():
                raise OutputError(f"Folder {folder} does not exist; create it or choose"
                                  " another output.")
        written = [self.html, self.png, self.areas_csv, self.totals_csv, self.gpkg]
        found = [p for p in written + [self.disaster_csv] * with_disaster if p.exists()]
        if found and not overwrite:
            raise OutputError(f"{found[0]} exists; pass --overwrite to replace the report.")


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """What a report counted and where it went.

    Attributes
    ----------
    outside
        Buildings in no admin area (in the totals, in no area's row).
    cell_m
        The grid's cell size in metres; None for admin areas.
    """

    files: ReportFiles
    buildings: int
    areas: int
    uncertain: int
    seconds: float
    outside: int = 0
    cell_m: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The summary as the ``done`` event and the closing line give it."""
        return {"output": str(self.files.html), "gpkg": str(self.files.gpkg),
                "layers": [AREA_LAYER], "buildings": self.buildings, "areas": self.areas,
                "outside": self.outside, "uncertain": self.uncertain,
                "seconds": round(self.seconds, 2)}

    def counted(self) -> str:
        """What was counted where, in words, for the closing line.

        Examples
        --------
        >>> files = ReportFiles.from_html("r.html")
        >>> ReportSummary(files, 42, 21, 0, 1.0, cell_m=100).counted()
        '42 buildings in 21 grid cells of 100 m'
        >>> ReportSummary(files, 42, 1, 0, 1.0, outside=20).counted()
        '42 buildings: 22 in 1 area, 20 outside every area'
        """
        plural = "s" * (self.areas != 1)
        if self.cell_m is not None:
            return (f"{self.buildings} buildings in {self.areas} grid cell{plural} of"
                    f" {self.cell_m:g} m")
        if not self.outside:
            return f"{self.buildings} buildings in {self.areas} area{plural}"
        return (f"{self.buildings} buildings: {self.buildings - self.outside} in {self.areas}"
                f" area{plural}, {self.outside} outside every area")


def _areas(settings: ReportSettings, footprints: Any) -> tuple[Areas, bool]:
    crs = metric_crs(footprints)
    if settings.areas is not None:
        return read_areas(settings.areas, settings.areas_name, crs, settings.areas_layer), True
    bounds = tuple(footprints.to_crs(crs).total_bounds)
    return grid_cells(bounds, settings.cell_m or choose_cell(bounds), crs), False


def _scenes(settings: ReportSettings, runs: list[RunProvenance]) -> list[str]:
    if settings.scene is not None:
        return [settings.scene]
    return sorted({scene for run in runs for scene in run.scenes if Path(scene).is_file()})


def write_report(
    source: str | Path,
    html: str | Path,
    settings: ReportSettings,
    *,
    gpkg: str | Path | None = None,
    overwrite: bool = False,
) -> ReportSummary:
    """Roll the ``buildings`` layer of `source` up per area into a page, CSVs and a layer.

    Parameters
    ----------
    source
        A GeoPackage written by `geovlm damage`.
    html
        The page to write; its files go beside it (`ReportFiles.from_html`).
    settings
        What to count in, and what to add.
    gpkg
        The GeoPackage of layer ``damage_by_area``; default: beside the page.
    overwrite
        Replace the files of an earlier report.

    Returns
    -------
    ReportSummary

    Raises
    ------
    InputError
        A layer is missing or malformed, or no building lies in the areas.
    ParameterError
        The grid would be too fine.
    OutputError
        An output cannot be written or exists (without `overwrite`).
    """
    started = time.monotonic()
    files = ReportFiles.from_html(html, gpkg)
    files.check(overwrite, settings.classify is not None)
    buildings = read_buildings(source)
    chips = read_chips(settings.classify) if settings.classify is not None else None
    areas, admin = _areas(settings, buildings.geometry)
    footprints = buildings.geometry.to_crs(areas.crs).to_numpy()
    damage = buildings["damage"].to_numpy(dtype=str)
    counts = count_buildings(shapely.point_on_surface(footprints), damage, areas,
                             keep_empty=admin)
    runs = read_runs(source, "buildings")
    backdrops = [b for b in (scene_backdrop(s, areas.crs) for s in _scenes(settings, runs)) if b]
    disaster = (dict(Counter(str(label) for label in chips["label"]))
                if chips is not None else None)
    files.png.write_bytes(draw_map(footprints, damage, counts, backdrops))
    _write_tables(files, counts, disaster)
    write_area_layer(files.gpkg, counts, {"source": str(source), "cell_m": areas.cell_m,
                                          "areas": settings.areas,
                                          "areas_name": settings.areas_name,
                                          "runs": [run.run_id for run in runs]})
    shown = {"per area": files.areas_csv.name, "totals": files.totals_csv.name,
             **({"disaster types": files.disaster_csv.name} if disaster else {}),
             "areas with counts (QGIS)": f"{files.gpkg.name}, layer {AREA_LAYER}",
             "map": files.png.name}
    content = ReportContent(str(source), counts, runs, files.png.read_bytes(), disaster,
                            read_runs(settings.classify, "chips") if settings.classify else (),
                            shown)
    files.html.write_text(render_page(content), encoding="utf-8")
    totals = counts.total_row()
    return ReportSummary(files, totals["total"], len(counts.areas.names), totals["uncertain"],
                         time.monotonic() - started, int(counts.outside.sum()), areas.cell_m)


def _write_tables(files: ReportFiles, counts: AreaCounts, disaster: dict[str, int] | None) -> None:
    write_csv(files.areas_csv, counts.rows(), _AREA_COLUMNS)
    write_csv(files.totals_csv, [counts.total_row()], _AREA_COLUMNS)
    if disaster:
        total = sum(disaster.values())
        write_csv(files.disaster_csv,
                  [{"label": k, "chips": n, "share": n / total} for k, n in
                   sorted(disaster.items(), key=lambda item: -item[1])],
                  ("label", "chips", "share"))

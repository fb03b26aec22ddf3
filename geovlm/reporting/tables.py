"""The report's tables as files: CSV beside the page, and the ``damage_by_area`` layer.

The layer goes into a GeoPackage of the report's own (never into the damage output it reads,
which a resumed `geovlm damage` may be writing), with the usual ``runs`` row and a stored QGIS
style: areas coloured by their worst grade and labelled with their counts.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import shapely
from rasterio.crs import CRS

from geovlm.output.fields import FieldType
from geovlm.output.geopackage import GeoPackageWriter
from geovlm.output.runs import RunRecord
from geovlm.output.styles import categorized_style, with_labels
from geovlm.output.versions import library_versions
from geovlm.reporting.layers import CATEGORIES, CATEGORY_COLOURS, UNCERTAIN
from geovlm.reporting.tally import AreaCounts

__all__ = ["AREA_LAYER", "field_name", "write_area_layer", "write_csv"]

#: The report's layer of areas with their counts.
AREA_LAYER = "damage_by_area"
_NO_BUILDING = "none"


def field_name(category: str) -> str:
    """A category as a field name QGIS expressions take unquoted.

    Examples
    --------
    >>> field_name("major-damage")
    'major_damage'
    """
    return category.replace("-", "_")


_FIELDS: dict[str, FieldType] = {
    "area_id": FieldType.STRING,
    "name": FieldType.STRING,
    **{field_name(category): FieldType.INTEGER for category in CATEGORIES},
    "total": FieldType.INTEGER,
    "damaged_share": FieldType.REAL,
    "worst": FieldType.STRING,
    "counts": FieldType.STRING,
}


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Write `rows` as a CSV file with a header of `columns` (empty cells for None)."""
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _worst(row: Mapping[str, Any]) -> str:
    graded = [category for category in CATEGORIES if category != UNCERTAIN and row[category]]
    return graded[-1] if graded else (UNCERTAIN if row[UNCERTAIN] else _NO_BUILDING)


def _record(index: int, row: Mapping[str, Any]) -> dict[str, Any]:
    shown = ", ".join(f"{row[c]} {c}" for c in CATEGORIES if row[c] and c != "no-damage")
    return {
        "area_id": str(index + 1), "name": row["name"],
        **{field_name(category): row[category] for category in CATEGORIES},
        "total": row["total"], "damaged_share": row["damaged_share"], "worst": _worst(row),
        "counts": f"{row['name']}: {row['total']}" + (f" ({shown})" if shown else ""),
    }


def write_area_layer(path: Path, counts: AreaCounts, parameters: Mapping[str, Any]) -> None:
    """Write the areas and their counts as layer `AREA_LAYER` of a new GeoPackage at `path`.

    Parameters
    ----------
    path
        The report's GeoPackage (replaced if it exists: the caller checked it may be).
    counts
        The areas, in their metric CRS, and their counts.
    parameters
        What the report was made from, recorded in the ``runs`` row.
    """
    rows = [_record(i, row) for i, row in enumerate(counts.rows())]
    grid = counts.areas.cell_m is not None
    geometries = [geometry if grid else shapely.multipolygons(
        [part for part in shapely.get_parts(geometry) if isinstance(part, shapely.Polygon)])
        for geometry in counts.areas.geometries]
    colours = {**CATEGORY_COLOURS, _NO_BUILDING: (255, 255, 255)}
    run = RunRecord(command="report", parameters=dict(parameters), versions=library_versions())
    style = with_labels(categorized_style("worst", colours), "counts")
    with GeoPackageWriter(path, layer=AREA_LAYER, fields=_FIELDS,
                          crs=CRS.from_wkt(counts.areas.crs.to_wkt()), run=run, style_qml=style,
                          overwrite=True, id_field="area_id",
                          geometry_type="Polygon" if grid else "MultiPolygon") as writer:
        writer.begin()
        writer.write(rows, geometries)

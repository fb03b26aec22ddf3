"""The areas a report counts in: square cells of a metric grid, or the polygons of an admin layer.

Counting and drawing happen in a metric CRS: the buildings' own where it is projected in metres,
else the UTM zone of their centre. A grid's cells are aligned on multiples of their size, so two
reports over one event share cells, and named as on a paper map: a column letter from the west
and a row number from the north (``B3``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from pyproj import CRS

from geovlm.errors import InputError, ParameterError, first_line

__all__ = [
    "MAX_CELLS", "Areas", "cell_name", "choose_cell", "grid_cells", "metric_crs", "read_areas",
]

#: The most cells a grid may have over the buildings' extent: a report is one page.
MAX_CELLS = 2500
#: Round cell sizes (metres) an automatic grid picks from.
_ROUND_SIZES = (50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 50000)


@dataclass(frozen=True, slots=True)
class Areas:
    """The areas counted in, in a metric CRS.

    Attributes
    ----------
    names
        One label per area (a cell's grid reference, or the admin layer's field).
    geometries
        One polygon per area, in `crs`.
    crs
        The metric CRS everything is counted and drawn in.
    cell_m
        The cell size in metres for a grid, None for an admin layer.
    """

    names: tuple[str, ...]
    geometries: np.ndarray
    crs: CRS
    cell_m: float | None = None

    @property
    def kind(self) -> str:
        """``cell`` or ``area``, as the tables head their first column."""
        return "cell" if self.cell_m is not None else "area"


def metric_crs(buildings: gpd.GeoSeries) -> CRS:
    """The CRS to count in: the layer's own if projected in metres, else its UTM zone.

    Examples
    --------
    >>> from shapely import box
    >>> metric_crs(gpd.GeoSeries([box(-84.4, 33.7, -84.3, 33.8)], crs=4326)).to_epsg()
    32616
    """
    crs = CRS.from_user_input(buildings.crs)
    units = {axis.unit_name for axis in crs.axis_info}
    if crs.is_projected and units <= {"metre"}:
        return crs
    return CRS.from_user_input(buildings.to_crs(4326).estimate_utm_crs())


def cell_name(column: int, row: int) -> str:
    """A cell's grid reference: letters for the column (A..Z, AA..), the row from 1.

    Examples
    --------
    >>> cell_name(0, 0), cell_name(27, 4)
    ('A1', 'AB5')
    """
    letters, n = "", column + 1
    while n:
        n, rest = divmod(n - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"{letters}{row + 1}"


def choose_cell(bounds: tuple[float, float, float, float], across: int = 8) -> float:
    """The smallest round cell size (metres) that spans `bounds` in at most `across` cells.

    Examples
    --------
    >>> choose_cell((0, 0, 450, 300)), choose_cell((0, 0, 12_000, 3_000))
    (100, 2000)
    """
    span = max(bounds[2] - bounds[0], bounds[3] - bounds[1])
    return next((size for size in _ROUND_SIZES if span / size <= across), _ROUND_SIZES[-1])


def grid_cells(bounds: tuple[float, float, float, float], cell: float, crs: CRS) -> Areas:
    """The square cells of size `cell`, aligned on its multiples, that cover `bounds`.

    Parameters
    ----------
    bounds
        The buildings' extent (xmin, ymin, xmax, ymax) in `crs`.
    cell
        The cell size in metres.
    crs
        A metric CRS.

    Raises
    ------
    ParameterError
        The grid would have more than `MAX_CELLS` cells.

    Examples
    --------
    >>> grid = grid_cells((120, 30, 380, 180), 200, CRS.from_epsg(32616))
    >>> grid.names, shapely.bounds(grid.geometries[1]).tolist()
    (('A1', 'B1'), [200.0, 0.0, 400.0, 200.0])
    """
    xmin, ymin, xmax, ymax = bounds
    x0, y1 = math.floor(xmin / cell) * cell, (math.floor(ymax / cell) + 1) * cell
    columns = max(1, math.ceil((xmax - x0) / cell))
    rows = max(1, math.ceil((y1 - ymin) / cell))
    if columns * rows > MAX_CELLS:
        smallest = choose_cell(bounds, across=int(math.sqrt(MAX_CELLS)))
        raise ParameterError(f"--cell {cell:g} makes {columns * rows} cells over the buildings;"
                             f" pass --cell {smallest} or more (at most {MAX_CELLS} cells).")
    names, boxes = [], []
    for row in range(rows):
        for column in range(columns):
            left, top = x0 + column * cell, y1 - row * cell
            names.append(cell_name(column, row))
            boxes.append(shapely.box(left, top - cell, left + cell, top))
    return Areas(tuple(names), np.array(boxes, dtype=object), crs, float(cell))


def read_areas(
    path: str | Path, name_field: str | None, crs: CRS, layer: str | None = None
) -> Areas:
    """The polygons of an admin layer (any GDAL vector, any CRS), reprojected to `crs`.

    Parameters
    ----------
    path
        The vector file.
    name_field
        The field that labels each area; None: its feature number.
    crs
        The metric CRS to count in.
    layer
        The layer of `path` to read; None: its first.

    Raises
    ------
    InputError
        The file cannot be read, has no CRS or no polygon, or lacks `name_field`.
    """
    try:
        frame = pyogrio.read_dataframe(path, layer=layer)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise InputError(f"--areas {path} is not a vector file GDAL reads"
                         f" ({first_line(exc)}).") from exc
    if frame.crs is None:
        raise InputError(f"--areas {path} has no CRS; assign one (e.g. in QGIS) and save it.")
    frame = frame[frame.geometry.notna() & frame.geom_type.isin(["Polygon", "MultiPolygon"])]
    if frame.empty:
        raise InputError(f"--areas {path} holds no polygon; pass a layer of admin areas.")
    if name_field is not None and name_field not in frame.columns:
        fields = ", ".join(str(c) for c in frame.columns if c != "geometry")
        raise InputError(f"--areas-name {name_field} is no field of {path}; choose one of"
                         f" {fields or 'none (the layer has no fields)'}.")
    names = (frame[name_field].astype(str) if name_field is not None
             else [f"area {i + 1}" for i in range(len(frame))])
    geometries = frame.geometry.to_crs(crs).make_valid().to_numpy()
    return Areas(tuple(names), geometries, crs)

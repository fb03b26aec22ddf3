"""Read the layers a report rolls up: ``buildings`` of `geovlm damage`, ``chips`` of classify."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pyogrio

from geovlm.errors import InputError, first_line
from geovlm.labels.building_damage import GRADES
from geovlm.labels.ranking import UNCERTAIN
from geovlm.output.styles import GRADE_COLOURS

__all__ = ["CATEGORIES", "CATEGORY_COLOURS", "UNCERTAIN", "read_buildings", "read_chips"]

#: Every value a building's ``damage`` may hold, least to most severe, then `UNCERTAIN`.
CATEGORIES: tuple[str, ...] = (*(grade.value for grade in GRADES), UNCERTAIN)
#: Colour per category (RGB): the damage ramp of the layers' styles, grey for uncertain.
CATEGORY_COLOURS = GRADE_COLOURS


def _layers(path: Path) -> set[str]:
    if not path.is_file():
        raise InputError(f"{path} does not exist; pass the GeoPackage `geovlm damage` wrote.")
    try:
        return {str(name) for name, _ in pyogrio.list_layers(path)}
    except pyogrio.errors.DataSourceError as exc:
        raise InputError(f"{path} is not a vector file GDAL reads ({first_line(exc)}).") from exc


def _read(path: Path, layer: str, fields: tuple[str, ...], made_by: str) -> gpd.GeoDataFrame:
    if layer not in _layers(path):
        raise InputError(f"{path} has no {layer!r} layer; pass the GeoPackage {made_by} wrote.")
    frame = pyogrio.read_dataframe(path, layer=layer)
    missing = [name for name in fields if name not in frame.columns]
    if missing:
        raise InputError(f"Layer {layer!r} of {path} lacks the field(s) {', '.join(missing)};"
                         f" it was not written by {made_by}.")
    if frame.crs is None:
        raise InputError(f"Layer {layer!r} of {path} has no CRS; write it again with {made_by}.")
    return frame


def read_buildings(path: str | Path) -> gpd.GeoDataFrame:
    """The ``buildings`` layer, its ``damage`` checked against the grades and ``uncertain``.

    Parameters
    ----------
    path
        A GeoPackage written by `geovlm damage`.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per building, in the layer's CRS.

    Raises
    ------
    InputError
        The file or layer is missing, lacks ``damage``, has no CRS, holds no building, or
        holds a value that is no grade.
    """
    path = Path(path)
    frame = _read(path, "buildings", ("damage",), "`geovlm damage`")
    if frame.empty:
        raise InputError(f"Layer 'buildings' of {path} holds no building; nothing to report.")
    unknown = sorted(set(frame["damage"].dropna()) - set(CATEGORIES))
    if unknown or frame["damage"].isna().any():
        found = ", ".join(unknown) or "empty values"
        raise InputError(f"Field 'damage' of {path} holds {found}, not one of"
                         f" {', '.join(CATEGORIES)}.")
    return frame


def read_chips(path: str | Path) -> gpd.GeoDataFrame:
    """The ``chips`` layer of a `geovlm classify` output: a disaster label per chip.

    Raises
    ------
    InputError
        The file or layer is missing, or the layer has no ``label`` field.
    """
    return _read(Path(path), "chips", ("label",), "`geovlm classify`")

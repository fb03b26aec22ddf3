"""The attribute types of output layers and the schema of a layer, as GDAL writes them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import numpy as np

__all__ = ["GDAL_UTC", "MILLISECONDS_TRIGGER", "FieldType", "LayerSpec", "utc_moment"]

#: The numpy dtype of each `FieldType`'s columns, by its value.
_DTYPES: dict[str, np.dtype] = {
    "str": np.dtype(object), "int": np.dtype(np.int64), "float": np.dtype(np.float64),
    "datetime": np.dtype("datetime64[ms]"),
}


class FieldType(Enum):
    """Attribute types a layer field can have, with the numpy dtype pyogrio writes them from.

    A ``DATETIME`` value is an ISO-8601 string or a `datetime` (a naive one is taken as UTC);
    it is stored as a GeoPackage DateTime in UTC (``...Z``), so QGIS reads a real date and time.
    """

    STRING = "str"
    INTEGER = "int"
    REAL = "float"
    DATETIME = "datetime"

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of a column of this type."""
        return _DTYPES[self.value]

    def column(self, values: Sequence[Any]) -> np.ndarray:
        """The array pyogrio writes for `values` (None where null; the field's mask says so)."""
        if self is FieldType.INTEGER:  # a null's slot needs some integer
            values = [0 if value is None else value for value in values]
        elif self is FieldType.DATETIME:
            values = [utc_moment(value) for value in values]
        return np.array(values, dtype=self.dtype)

    @classmethod
    def of(cls, value: object) -> FieldType:
        """The type of a field holding `value` (e.g. a scene's own fields in an event's layer)."""
        if isinstance(value, datetime):
            return cls.DATETIME
        if isinstance(value, int):
            return cls.INTEGER
        return cls.REAL if isinstance(value, float) else cls.STRING


#: GDAL's time zone flag for UTC (RFC 56: 100 + offset in quarter hours).
GDAL_UTC = 100

#: GeoPackage 1.2 stores a DateTime as ``YYYY-MM-DDTHH:MM:SS.SSSZ``, but GDAL leaves out zero
#: milliseconds (its DATETIME_PRECISION layer option does not outlive the layer's creation), so
#: each inserted value is rewritten with them, in the insert's own transaction.
MILLISECONDS_TRIGGER = """
CREATE TRIGGER "{layer}_{field}_milliseconds" AFTER INSERT ON "{layer}"
WHEN NEW."{field}" IS NOT NULL
BEGIN
    UPDATE "{layer}" SET "{field}" = strftime('%Y-%m-%dT%H:%M:%fZ', NEW."{field}")
    WHERE rowid = NEW.rowid;
END"""


def utc_moment(value: str | datetime | None) -> np.datetime64:
    """A time as naive UTC milliseconds, the form pyogrio writes (with the UTC flag)."""
    if value is None:
        return np.datetime64("NaT", "ms")
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(moment, "ms")


@dataclass(frozen=True, slots=True)
class LayerSpec:
    """A further feature layer a `GeoPackageWriter` writes beside its main one, in the same run.

    Attributes
    ----------
    name
        The layer's name.
    fields
        Its attribute fields and their types, in order.
    style_qml
        Its default QGIS style.
    id_field
        The field identifying a record (unique in the layer; resumed runs skip what is done).
    """

    name: str
    fields: Mapping[str, FieldType]
    style_qml: str
    id_field: str = "chip_id"

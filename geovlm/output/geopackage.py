"""Stream records into a GeoPackage layer, resumably, with the run recorded beside them.

Features go through GDAL (pyogrio), one transaction per `write`, so a killed run keeps every written
batch and none half-written. The ``runs`` ledger (kept by `geovlm.output.runs`) and the QGIS
``layer_styles`` table are plain GeoPackage attribute tables, written with sqlite3. GDAL and
Python's sqlite3 carry separate copies of SQLite, and two copies holding the same file open in one
process can corrupt it (one copy's close drops the other's POSIX locks), so a sqlite3 connection is
never open while GDAL writes. A run is ``complete`` only once it ends normally; re-running the same
command and parameters resumes it, anything else is refused unless the caller asks to overwrite,
which starts afresh. Entering the writer only checks and locks the output (one writer per file) and
decides whether to resume, so a caller can refuse a bad output before a costly setup such as
loading a model; `GeoPackageWriter.begin` then creates or reopens the file (rebuilding the ``runs``
table of an output written before it had an integer key, so the file stays valid).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely
from pyogrio import raw
from rasterio.crs import CRS
from shapely.geometry.base import BaseGeometry

from geovlm.errors import OutputError
from geovlm.output.fields import GDAL_UTC, MILLISECONDS_TRIGGER, FieldType, LayerSpec
from geovlm.output.gpkg_file import (
    check_output_path,
    connect,
    gdal_config,
    is_geopackage,
    leave_wal,
    remove_geopackage,
)
from geovlm.output.locking import OutputLock
from geovlm.output.runs import (
    RunRecord,
    RunStatus,
    create_table,
    find_run,
    insert_run,
    set_status,
    update_notes,
    upgrade_table,
)

__all__ = ["GeoPackageWriter"]

logger = logging.getLogger(__name__)

_STYLES_DDL = """
CREATE TABLE IF NOT EXISTS layer_styles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    f_table_catalog TEXT(256), f_table_schema TEXT(256), f_table_name TEXT(256),
    f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT, styleSLD TEXT,
    useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30),
    update_time DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)"""
_GEOMETRY_COLUMN = "geom"
#: While a run writes, SQLite's write-ahead log with NORMAL sync commits a batch without an
#: fsync per transaction yet keeps the file consistent through a crash or power loss; the file
#: returns to a single-file rollback journal when the run ends.
#: GeoPackage 1.2, which every QGIS 3.x reads without a warning (GDAL 3.12 defaults to 1.4).
_GPKG_VERSION = {"VERSION": "1.2"}
_WRITE_CONFIG = {"OGR_SQLITE_JOURNAL": "WAL", "OGR_SQLITE_SYNCHRONOUS": "NORMAL"}


class GeoPackageWriter:
    """Appends records to one layer of a GeoPackage; use as a context manager, then `begin`.

    Entering checks the output, takes its lock and reads what an earlier run of the same
    parameters wrote (`done_ids`), without changing the file; `begin` makes it writable.

    Parameters
    ----------
    path
        The output ``.gpkg`` file.
    layer
        Name of the feature layer to write.
    fields
        The layer's attribute fields and their types, in order.
    crs
        The layer's coordinate reference system (the scene's).
    run
        The command and parameters of this run.
    style_qml
        A QGIS style stored as the layer's default, so QGIS draws it styled on open.
    overwrite
        Replace an existing output, its results included, instead of resuming or refusing.
    id_field
        The field that identifies a record, so a resumed run skips what is done.
    extra_layers
        Further layers of the same run (e.g. ``chips`` beside ``objects``), each written with
        ``write(..., layer=name)``; their ids already written are in `done_ids_of`.
    geometry_type
        The layers' geometry type, as GDAL names it (e.g. ``MultiPolygon`` for admin areas).

    Raises
    ------
    OutputError
        The path is not a ``.gpkg``, cannot be written, holds another run's results, or is
        being written by another process.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        layer: str,
        fields: Mapping[str, FieldType],
        crs: CRS,
        run: RunRecord,
        style_qml: str,
        overwrite: bool = False,
        id_field: str = "chip_id",
        extra_layers: Sequence[LayerSpec] = (),
        geometry_type: str = "Polygon",
    ) -> None:
        self.path = Path(path)
        self.layer = layer
        self.fields = dict(fields)
        self.crs = crs
        self.run = run
        self.style_qml = style_qml
        self.overwrite = overwrite
        self.id_field = id_field
        self.extra_layers = {spec.name: spec for spec in extra_layers}
        self.geometry_type = geometry_type
        self._extra_done: dict[str, set[str]] = {name: set() for name in self.extra_layers}
        self.run_id = uuid.uuid4().hex
        #: Ids of the records already in the layer (from earlier runs and this one).
        self.done_ids: set[str] = set()
        self.written = 0
        self.skipped = 0
        self._lock = OutputLock(self.path)
        self._resuming = False
        self._begun = False

    def __enter__(self) -> GeoPackageWriter:
        check_output_path(self.path)
        with contextlib.ExitStack() as on_refusal:
            on_refusal.enter_context(self._lock)
            if self.path.exists() and not self.overwrite:
                self._plan_resume()
            on_refusal.pop_all()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if self._begun:
                status = RunStatus.COMPLETE if exc_type is None else RunStatus.INTERRUPTED
                self._set_status(status)
                leave_wal(self.path)
        finally:
            self._lock.release()

    def begin(self) -> None:
        """Create the output, replace it (``overwrite``) or reopen it to resume, marked running.

        Raises
        ------
        OutputError
            GDAL cannot write the file.
        """
        if self.overwrite:
            remove_geopackage(self.path)
        if self._resuming:
            self._reopen()
        else:
            self._create()
        self._begun = True

    def write(
        self,
        rows: Sequence[Mapping[str, Any]],
        geometries: Sequence[BaseGeometry],
        layer: str | None = None,
    ) -> None:
        """Append one batch of records in a single transaction.

        Parameters
        ----------
        rows
            One mapping per record with a value (or None) for every field; ``chip_id`` is the
            record's id for resuming (see `id_field`).
        geometries
            One geometry per record, in the layer's CRS.
        layer
            One of `extra_layers` to write to; default: the main layer.
        """
        if not rows:
            return
        extra = self.extra_layers[layer] if layer is not None and layer != self.layer else None
        fields = self.fields if extra is None else extra.fields
        field_data = [kind.column([row[name] for row in rows]) for name, kind in fields.items()]
        masks = [
            np.array([row[name] is None for row in rows]) for name in fields
        ]
        self._gdal_write(
            self.path,
            shapely.to_wkb(np.asarray(geometries, dtype=object)),
            field_data,
            list(fields),
            field_mask=masks,
            append=True,
            layer_name=None if extra is None else extra.name,
            gdal_tz_offsets={name: np.full(len(rows), GDAL_UTC) for name, kind in fields.items()
                             if kind is FieldType.DATETIME},
        )
        if extra is not None:
            self._extra_done[extra.name].update(str(row[extra.id_field]) for row in rows)
            return
        self.done_ids.update(str(row[self.id_field]) for row in rows)
        self.written += len(rows)

    def done_ids_of(self, layer: str) -> set[str]:
        """Ids already in the main layer or one of `extra_layers` (earlier runs' and this one's).

        Parameters
        ----------
        layer
            The layer's name.

        Returns
        -------
        set of str
            Its records' ids (`done_ids` for the main layer).
        """
        return self.done_ids if layer == self.layer else self._extra_done[layer]

    def layer_spec(self, layer: str) -> LayerSpec:
        """The name, fields, style and id field of the main layer or one of `extra_layers`."""
        if layer == self.layer:
            return LayerSpec(self.layer, self.fields, self.style_qml, self.id_field)
        return self.extra_layers[layer]

    def count_skipped(self, n: int = 1) -> None:
        """Record chips left out (e.g. mostly nodata), for the run's summary."""
        self.skipped += n

    def _plan_resume(self) -> None:
        """Adopt the existing output's run if it is this run, else refuse to touch the file."""
        if not is_geopackage(self.path):
            raise OutputError(
                f"{self.path} exists and is not a GeoPackage; pass --overwrite to replace it."
            )
        with connect(self.path) as db:
            found = find_run(db, self.run, self.layer)
        if found is None:
            raise OutputError(
                f"{self.path} holds results of a different command or parameters; pass"
                " --overwrite to replace it, or choose another output."
            )
        self.run_id = found
        self.done_ids = self._existing_ids()
        for spec in self.extra_layers.values():
            self._extra_done[spec.name] = self._existing_ids(spec.name, spec.id_field)
        self.written = len(self.done_ids)
        self._resuming = True
        logger.info("resuming run %s: %d records already written", self.run_id, self.written)

    def _existing_ids(self, layer: str | None = None, id_field: str | None = None) -> set[str]:
        layer, id_field = layer or self.layer, id_field or self.id_field
        if layer not in {name for name, _ in pyogrio.list_layers(self.path)}:
            return set()
        with connect(self.path) as db:
            query = f'SELECT "{id_field}" FROM "{layer}"'
            return {str(row[0]) for row in db.execute(query)}

    def _create(self) -> None:
        """Build the empty layer and tables in a side file, then move it in place atomically.

        The side file's fixed name is safe under the output's lock; an interrupted build removes
        it, and a killed one's leftover is cleared by the next run.
        """
        partial = self.path.with_name(self.path.name + ".partial.gpkg")
        remove_geopackage(partial)
        try:
            self._build(partial)
            os.replace(partial, self.path)
        finally:
            remove_geopackage(partial)

    def _build(self, partial: Path) -> None:
        empty = [np.array([], dtype=kind.dtype) for kind in self.fields.values()]
        self._gdal_write(
            partial, np.array([], dtype=object), empty, list(self.fields),
            dataset_options=_GPKG_VERSION,
        )
        for spec in self.extra_layers.values():
            self._gdal_write(
                partial, np.array([], dtype=object),
                [np.array([], dtype=kind.dtype) for kind in spec.fields.values()],
                list(spec.fields), append=True, layer_name=spec.name,
            )
        with connect(partial) as db:
            create_table(db)
            db.execute(_STYLES_DDL)
            for table in ("runs", "layer_styles"):
                db.execute(
                    "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier,"
                    " last_change) VALUES"
                    " (?, 'attributes', ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                    (table, table),
                )
            layers = [(self.layer, self.id_field, self.style_qml)] + [
                (spec.name, spec.id_field, spec.style_qml) for spec in self.extra_layers.values()
            ]
            for layer, id_field, style_qml in layers:
                db.execute(
                    f'CREATE UNIQUE INDEX "{layer}_{id_field}" ON "{layer}" ("{id_field}")'
                )
                fields = self.fields if layer == self.layer else self.extra_layers[layer].fields
                for name, kind in fields.items():
                    if kind is FieldType.DATETIME:
                        db.execute(MILLISECONDS_TRIGGER.format(layer=layer, field=name))
                db.execute(
                    "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name,"
                    " f_geometry_column, styleName, styleQML, styleSLD, useAsDefault,"
                    " description, owner, ui) VALUES"
                    " ('', '', ?, ?, ?, ?, '', 1, 'geovlm default style', '', '')",
                    (layer, _GEOMETRY_COLUMN, layer, style_qml),
                )
            insert_run(db, self.run_id, self.run, self.layer)

    def _gdal_write(
        self, path: Path, geometry: np.ndarray, *args: Any, layer_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Write features through GDAL, turning its I/O failures into an `OutputError`."""
        try:
            with gdal_config(_WRITE_CONFIG):
                raw.write(
                    str(path), geometry, *args, layer=layer_name or self.layer, driver="GPKG",
                    geometry_type=self.geometry_type, crs=self.crs.to_wkt(), **kwargs,
                )
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
            raise OutputError(f"Cannot write {path} ({exc}); choose another output path.") from exc

    def _reopen(self) -> None:
        """Mark the resumed run running, first bringing an older output's ledger up to date."""
        with connect(self.path) as db:
            if upgrade_table(db):
                logger.info("%s: rebuilt its runs table with an integer key", self.path)
            update_notes(db, self.run_id, self.run)
        self._set_status(RunStatus.RUNNING)

    def _set_status(self, status: RunStatus) -> None:
        with connect(self.path) as db:
            set_status(db, self.run_id, status, written=self.written, skipped=self.skipped)

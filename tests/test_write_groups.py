"""Batches are written in groups: same records, in order, fewer GDAL writes, none lost on errors."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from geovlm.backends.base import ModelRun
from geovlm.events.progress import ProgressMode
from geovlm.output import grouped_writes
from geovlm.output.geopackage import GeoPackageWriter
from geovlm.output.styles import outline_style
from geovlm.pipeline.driver import run_over_chips
from geovlm.pipeline.plan import ChipTask, RunOptions
from geovlm.pipeline.run_scenes import one_scene
from geovlm.pipeline.work_items import ChipRecords, ChipSteps
from geovlm.scenes.tiling import TilingOptions
from geovlm.tasks.refer import ObjectSource, ReferModels, ReferSettings, refer_scene
from geovlm.tasks.tile import CHIP_FIELDS, chip_record
from tests.helpers import assert_valid_geopackage

SCENE = "rasterio/RGB.byte.tif"


def _run(scene, out, process=None):
    def default(batch, prepared):
        return ChipRecords([chip_record(chip) for chip in batch])

    return run_over_chips(
        one_scene(scene, TilingOptions(64)),
        ChipTask(command="test", parameters={}, layer="chips", fields=CHIP_FIELDS,
                 style_qml=outline_style(),
                 setup=lambda: ChipSteps(lambda batch: None, process or default)),
        RunOptions(out, batch_size=4, progress=ProgressMode.NONE),
    )


def _table(path):
    with closing(sqlite3.connect(path)) as db:
        query = "SELECT fid, chip_id, row, col, valid_fraction, geom FROM chips"
        return db.execute(query).fetchall()


def _count_writes(monkeypatch):
    calls = []
    real = GeoPackageWriter.write

    def write(self, rows, geometries, layer=None):
        calls.append(len(rows))
        real(self, rows, geometries, layer)

    monkeypatch.setattr(GeoPackageWriter, "write", write)
    return calls


def test_grouped_writes_give_the_same_table_in_fewer_writes(geotiff_dir, tmp_path, monkeypatch):
    calls = _count_writes(monkeypatch)
    monkeypatch.setattr(grouped_writes, "_GROUP_SECONDS", 0.0)  # every batch on its own
    each = _run(geotiff_dir / SCENE, tmp_path / "each.gpkg")
    per_batch = list(calls)
    calls.clear()
    # Only the row cap or the end writes.
    monkeypatch.setattr(grouped_writes, "_GROUP_SECONDS", 3600.0)
    grouped = _run(geotiff_dir / SCENE, tmp_path / "grouped.gpkg")

    assert per_batch == [4] * (each.written // 4) + ([each.written % 4] if each.written % 4 else [])
    # The first batch is written at once, the rest in groups of at most _GROUP_ROWS records.
    cap = grouped_writes._GROUP_ROWS
    assert calls[0] == 4 and max(calls) <= cap
    assert len(calls) == 1 + -(-(grouped.written - 4) // cap) < len(per_batch)
    assert grouped.written == each.written == sum(calls) > 8
    assert _table(tmp_path / "grouped.gpkg") == _table(tmp_path / "each.gpkg")
    assert_valid_geopackage(tmp_path / "grouped.gpkg")


def test_an_error_still_writes_the_batches_held_back(geotiff_dir, tmp_path, monkeypatch):
    calls = _count_writes(monkeypatch)
    monkeypatch.setattr(grouped_writes, "_GROUP_SECONDS", 3600.0)
    seen = []

    def process(batch, prepared):
        seen.append(batch)
        if len(seen) == 4:
            raise RuntimeError("the model step failed")
        return ChipRecords([chip_record(chip) for chip in batch])

    out = tmp_path / "o.gpkg"
    with pytest.raises(RuntimeError, match="the model step failed"):
        _run(geotiff_dir / SCENE, out, process)
    assert calls == [4, 8]  # the first batch at once, the next two when the run stopped
    assert [row[1] for row in _table(out)] == [chip.chip_id for batch in seen[:3] for chip in batch]
    with closing(sqlite3.connect(out)) as db:
        assert db.execute("SELECT status, written FROM runs").fetchone() == ("interrupted", 12)


def test_objects_are_written_before_their_chips_in_the_same_group(geotiff_dir, tmp_path,
                                                                  monkeypatch):
    layers = []
    real = GeoPackageWriter.write

    def write(self, rows, geometries, layer=None):
        layers.append((layer, len(rows)))
        real(self, rows, geometries, layer)

    monkeypatch.setattr(GeoPackageWriter, "write", write)
    monkeypatch.setattr(grouped_writes, "_GROUP_SECONDS", 3600.0)  # one group: the end's
    summary = refer_scene(
        one_scene(geotiff_dir / "solaris/sample_geotiff.tif", TilingOptions(256)),
        RunOptions(tmp_path / "o.gpkg", progress=ProgressMode.NONE), ModelRun(ReferModels),
        ReferSettings(ObjectSource.FOOTPRINTS,
                      str(geotiff_dir.parent / "vector/solaris/geotiff_labels.geojson")),
    )
    assert summary.written == 43 and summary.counts["objects_skipped"] == 0
    # The first batch at once, the rest at the end; each group's objects before its chips.
    assert [layer for layer, _ in layers] == ["objects", "chips"] * 2
    assert sum(n for layer, n in layers if layer == "chips") == summary.total

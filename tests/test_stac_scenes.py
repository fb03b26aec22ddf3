"""Scenes from local STAC: ItemCollection, Item and Catalog forms, the asset chosen, errors."""

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyogrio
import pystac
import pytest
import rasterio
import shapely

from geovlm.errors import InputError
from geovlm.output.fields import FieldType
from geovlm.output.geopackage import GeoPackageWriter
from geovlm.output.runs import RunRecord
from geovlm.scenes.entry import SceneEntry
from geovlm.scenes.stac import read_stac_scenes
from tests.stac_fixtures import EVENT_ITEMS, stac_item


def _expected(folder: Path) -> list[SceneEntry]:
    return [SceneEntry(str(folder / name), item_id, {"datetime": when})
            for item_id, name, when in EVENT_ITEMS]


def test_item_collection_gives_one_scene_per_item_that_opens(stac_items_file, stac_event):
    scenes = read_stac_scenes(stac_items_file)
    assert scenes == _expected(stac_event)
    assert scenes[0].fields["datetime"].isoformat() == "2020-08-31T17:23:05+00:00"
    crs = []
    for scene in scenes:
        with rasterio.open(scene.path) as src:
            crs.append(src.crs.to_epsg())
    assert crs == [26914, 3857, 4326]


def test_catalog_and_single_item_resolve_hrefs_against_their_files(
    stac_catalog_file, stac_event
):
    assert read_stac_scenes(stac_catalog_file) == _expected(stac_event)
    item_file = stac_catalog_file.parent / "naip-2020" / "naip-2020.json"
    assert read_stac_scenes(item_file) == _expected(stac_event)[:1]


def _save(tmp_path: Path, items: list[pystac.Item]) -> Path:
    path = tmp_path / "items.json"
    path.write_text(json.dumps(pystac.ItemCollection(items).to_dict()))
    return path


def _item(item_id: str, raster: Path, **assets: tuple[str, list[str]]) -> pystac.Item:
    """An item whose assets (key: media type and roles) replace the fixture's ``visual``."""
    item = stac_item(item_id, raster, datetime(2024, 1, 2, tzinfo=UTC), "./x.tif")
    item.assets.clear()
    for key, (media_type, roles) in assets.items():
        item.add_asset(key, pystac.Asset(f"./{key}.tif", media_type=media_type, roles=roles))
    return item


@pytest.mark.parametrize(("asset", "chosen"), [
    (None, "analytic"),  # no "visual": the first GeoTIFF with role data or visual
    ("thumbnail", "thumbnail"),
])
def test_asset_choice(tmp_path, stac_event, asset, chosen):
    item = _item("a", stac_event / "cogeo.tif",
                 thumbnail=("image/png", ["thumbnail"]),
                 mask=(pystac.MediaType.COG, ["cloud"]),
                 preview=("image/jpeg", ["visual"]),
                 analytic=(pystac.MediaType.GEOTIFF, ["data"]))
    (scene,) = read_stac_scenes(_save(tmp_path, [item]), asset)
    assert scene.path == str(tmp_path / f"{chosen}.tif")


def test_remote_hrefs_become_gdal_names_and_times_utc(tmp_path, stac_event):
    cogeo = stac_event / "cogeo.tif"
    plus_two = timezone(timedelta(hours=2))
    web = stac_item("web", cogeo, datetime(2024, 5, 1, 12, 0, tzinfo=plus_two),
                    "https://example.com/event/web.tif")
    span = stac_item("span", cogeo, None, "s3://bucket/span.tif",
                     start_datetime="2024-05-01T00:00:00Z", end_datetime="2024-05-02T00:00:00Z")
    moved = stac_item("moved", cogeo, datetime(2024, 5, 3, tzinfo=UTC), "./moved.tif")
    moved.set_self_href("https://example.com/items/moved.json")  # as a STAC API's items say
    scenes = read_stac_scenes(_save(tmp_path, [web, span, moved]))
    assert [scene.path for scene in scenes] == [
        "/vsicurl/https://example.com/event/web.tif", "/vsis3/bucket/span.tif",
        str(tmp_path / "moved.tif")]  # relative hrefs start from the saved collection
    assert [scene.fields["datetime"].isoformat() for scene in scenes[:2]] == [
        "2024-05-01T10:00:00+00:00", "2024-05-01T00:00:00+00:00"]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("make", "message"), [
    (lambda tmp, raster: _write(tmp, "{not json"), "is not JSON"),
    (lambda tmp, raster: _write(tmp, "[]"), "is not a STAC object"),
    (lambda tmp, raster: _write(tmp, '{"type": "Polygon", "coordinates": []}'),
     "is not a STAC ItemCollection, Item, Catalog or Collection"),
    (lambda tmp, raster: _write(tmp, json.dumps(
        {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}}]})),
     "cannot be read as STAC"),
    (lambda tmp, raster: _save(tmp, []), "holds no item"),
    (lambda tmp, raster: _save(tmp, [stac_item("a", raster, datetime(2024, 1, 1), "./a.tif"),
                                     stac_item("a", raster, datetime(2024, 1, 2), "./b.tif")]),
     "STAC item id a appears twice"),
    (lambda tmp, raster: _save(tmp, [_item("a", raster, thumb=("image/png", ["thumbnail"]))]),
     "STAC item a has no visual asset nor a GeoTIFF with role visual or data (its assets:"
     " thumb)"),
    (lambda tmp, raster: tmp / "missing.json", "Cannot read STAC file"),
])
def test_bad_stac_refused_in_one_sentence(tmp_path, stac_event, make, message):
    with pytest.raises(InputError) as raised:
        read_stac_scenes(make(tmp_path, stac_event / "cogeo.tif"))
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_named_asset_the_item_lacks_is_refused(stac_items_file):
    with pytest.raises(InputError, match=r"STAC item naip-2020 has no asset 'pan' \(its assets:"
                                         r" visual\); choose one with --stac-asset\."):
        read_stac_scenes(stac_items_file, "pan")


def test_a_catalog_with_a_missing_item_file_is_refused(stac_catalog_file, tmp_path):
    catalog = json.loads(stac_catalog_file.read_text())
    catalog["links"].append({"rel": "item", "href": "./gone/gone.json"})
    path = stac_catalog_file.parent / "broken_catalog.json"
    path.write_text(json.dumps(catalog))
    with pytest.raises(InputError, match=r"cannot be read as STAC .*gone\.json"):
        read_stac_scenes(path)


def test_datetime_fields_are_geopackage_datetimes_in_utc(tmp_path):
    out = tmp_path / "times.gpkg"
    fields = {"chip_id": FieldType.STRING, "datetime": FieldType.DATETIME}
    run = RunRecord("test", {})
    with GeoPackageWriter(out, layer="chips", fields=fields, crs=rasterio.CRS.from_epsg(4326),
                          run=run, style_qml="") as writer:
        writer.begin()
        writer.write([{"chip_id": "a", "datetime": "2020-08-31T19:23:05+02:00"},
                      {"chip_id": "b", "datetime": None},
                      {"chip_id": "c", "datetime": datetime(2021, 6, 1, 10, tzinfo=UTC)}],
                     [shapely.box(0, 0, 1, 1)] * 3)
    assert pyogrio.read_info(out, layer="chips")["dtypes"].tolist() == [
        "object", "datetime64[ms]"]
    times = pyogrio.read_dataframe(out, layer="chips")["datetime"]
    assert times[0] == pd.Timestamp("2020-08-31T17:23:05Z")
    assert times[2] == pd.Timestamp("2021-06-01T10:00Z")
    assert times.isna().tolist() == [False, True, False]
    with closing(sqlite3.connect(out)) as db:  # GeoPackage 1.2's form, milliseconds included
        stored = [row[0] for row in db.execute("SELECT datetime FROM chips ORDER BY fid")]
    assert stored == ["2020-08-31T17:23:05.000Z", None, "2021-06-01T10:00:00.000Z"]

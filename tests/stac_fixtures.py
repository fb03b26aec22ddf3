"""A small event as local STAC: real rasters in three CRSs, as an ItemCollection and a Catalog."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pystac
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

from tests.test_event_scenes import _warped

#: The event's items: id, raster (relative to the event folder), acquisition time.
EVENT_ITEMS = (
    ("naip-2020", "naip.tif", datetime(2020, 8, 31, 17, 23, 5, tzinfo=UTC)),
    ("cogeo-3857", "cogeo.tif", datetime(2021, 6, 1, 10, 0, tzinfo=UTC)),
    ("cogeo-4326", "cogeo_4326.tif", datetime(2021, 6, 2, 9, 30, tzinfo=UTC)),
)


def stac_item(item_id: str, raster: Path, when: datetime | None, href: str,
              **properties: object) -> pystac.Item:
    """An item of `raster` with one ``visual`` COG asset at `href` and its bounds in EPSG:4326."""
    with rasterio.open(raster) as src:
        bounds = transform_bounds(src.crs, CRS.from_epsg(4326), *src.bounds, densify_pts=21)
    item = pystac.Item(item_id, mapping(box(*bounds)), list(bounds), when, dict(properties))
    item.add_asset("visual", pystac.Asset(href, media_type=pystac.MediaType.COG,
                                          roles=["visual"]))
    return item


@pytest.fixture(scope="session")
def stac_event(tmp_path_factory: pytest.TempPathFactory, geotiff_dir: Path) -> Path:
    """A folder of the event's rasters (links to the shared data, and one warped copy)."""
    folder = tmp_path_factory.mktemp("stac_event")
    cogeo = geotiff_dir / "rasterio" / "cogeo.tif"
    (folder / "naip.tif").symlink_to(geotiff_dir / "opengeos" / "m_4709963_se_14_1_20200831.tif")
    (folder / "cogeo.tif").symlink_to(cogeo)
    _warped(cogeo, folder / "cogeo_4326.tif", CRS.from_epsg(4326))
    return folder


def event_items(folder: Path) -> list[pystac.Item]:
    """The event's items, their asset hrefs relative to `folder`."""
    return [stac_item(item_id, folder / name, when, f"./{name}")
            for item_id, name, when in EVENT_ITEMS]


@pytest.fixture(scope="session")
def stac_items_file(stac_event: Path) -> Path:
    """The event as a STAC ItemCollection beside its rasters (``items.json``)."""
    path = stac_event / "items.json"
    pystac.ItemCollection(event_items(stac_event)).save_object(dest_href=str(path))
    return path


@pytest.fixture(scope="session")
def stac_catalog_file(stac_event: Path) -> Path:
    """The event as a self-contained STAC Catalog in ``catalog/`` (items in sub-folders)."""
    root = stac_event / "catalog"
    catalog = pystac.Catalog("event", "A small event in three CRSs.")
    for item in event_items(stac_event):
        item.assets["visual"].href = f"../../{item.assets['visual'].href[2:]}"
        catalog.add_item(item)
    catalog.normalize_hrefs(str(root))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"

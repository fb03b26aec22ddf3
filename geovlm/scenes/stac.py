"""The scenes of a local STAC file: one asset of each item, named by the item's id.

``geovlm classify --stac FILE`` takes a STAC ItemCollection (a GeoJSON FeatureCollection of
items, as a STAC API search returns), a single Item, or a Catalog or Collection whose items are
found by walking its links (with pystac). Each item gives one scene: its chosen asset's href
made absolute (relative hrefs are taken from the file that holds them; ``http(s)``, ``s3`` and
``gs`` hrefs become GDAL's ``/vsicurl/``, ``/vsis3/`` and ``/vsigs/`` names), named in the
output by the item's id and carrying its acquisition time (``datetime``, else
``start_datetime``) in UTC, a field of type `FieldType.DATETIME`. Everything is checked here,
before any model loads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pystac
from pystac.utils import is_absolute_href, make_absolute_href

from geovlm.errors import InputError, first_line
from geovlm.scenes.entry import SceneEntry

__all__ = ["DEFAULT_ASSET", "gdal_name", "read_stac_scenes"]

#: The asset taken when ``--stac-asset`` is not given and the item has it (Maxar Open Data,
#: Sentinel-2 L2A and most imagery catalogs name their RGB COG so).
DEFAULT_ASSET = "visual"

#: Roles of an asset that may stand in for ``visual`` when an item has none.
_IMAGE_ROLES = frozenset({"visual", "data"})

#: GDAL's names for files behind URLs of these schemes.
_GDAL_PREFIXES = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/"}

#: What pystac raises on JSON that is not the STAC object it claims to be, or a missing link.
_MALFORMED = (pystac.STACError, pystac.STACTypeError, KeyError, TypeError, ValueError, OSError)


def gdal_name(href: str) -> str:
    """The name rasterio opens for an absolute href: a local path, or a ``/vsi`` URL.

    Examples
    --------
    >>> gdal_name("https://example.com/a/visual.tif")
    '/vsicurl/https://example.com/a/visual.tif'
    >>> gdal_name("s3://bucket/a/visual.tif")
    '/vsis3/bucket/a/visual.tif'
    >>> gdal_name("file:///data/a.tif")
    '/data/a.tif'
    """
    scheme, sep, rest = href.partition("://")
    if not sep or href.startswith("/vsi"):
        return href
    if scheme == "file":
        return rest
    prefix = _GDAL_PREFIXES.get(scheme.lower())
    if prefix is None:
        return href
    return prefix + (href if prefix == "/vsicurl/" else rest)


def _is_geotiff(asset: pystac.Asset) -> bool:
    parts = [part.strip().lower() for part in (asset.media_type or "").split(";")]
    return parts[0] == "image/tiff" and "application=geotiff" in parts


def _chosen_asset(item: pystac.Item, key: str | None) -> pystac.Asset:
    keys = ", ".join(item.assets) or "none"
    if key is not None:
        if key not in item.assets:
            raise InputError(
                f"STAC item {item.id} has no asset {key!r} (its assets: {keys});"
                " choose one with --stac-asset."
            )
        return item.assets[key]
    if DEFAULT_ASSET in item.assets:
        return item.assets[DEFAULT_ASSET]
    for asset in item.assets.values():
        if _IMAGE_ROLES & set(asset.roles or ()) and _is_geotiff(asset):
            return asset
    raise InputError(
        f"STAC item {item.id} has no visual asset nor a GeoTIFF with role visual or data"
        f" (its assets: {keys}); choose one with --stac-asset."
    )


def _acquired(item: pystac.Item) -> datetime:
    """The item's time in UTC (pystac refuses an item with neither time; naive is UTC)."""
    moment = item.datetime or item.common_metadata.start_datetime
    assert moment is not None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _scene(item: pystac.Item, base: str, asset_key: str | None) -> SceneEntry:
    href = _chosen_asset(item, asset_key).href
    if not is_absolute_href(href):
        href = make_absolute_href(href, base)
    return SceneEntry(gdal_name(href), item.id, {"datetime": _acquired(item)})


def _items(document: dict[str, object], source: Path) -> Iterator[tuple[pystac.Item, str]]:
    """Each item and the file its relative hrefs start from (an ItemCollection's own)."""
    kind = document.get("type")
    if kind == "FeatureCollection":  # its items' self links, if any, may point elsewhere
        for item in pystac.ItemCollection.from_dict(document):
            yield item, str(source)
    elif kind == "Feature":
        yield pystac.Item.from_dict(document), str(source)
    elif kind in ("Catalog", "Collection"):
        reader = pystac.Collection if kind == "Collection" else pystac.Catalog
        for item in reader.from_file(str(source)).get_items(recursive=True):
            yield item, item.get_self_href() or str(source)
    else:
        raise InputError(
            f"{source} is not a STAC ItemCollection, Item, Catalog or Collection (its type is"
            f" {kind!r}); pass a STAC file to --stac."
        )


def _read(source: Path) -> dict[str, object]:
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(
            f"Cannot read STAC file {source} ({exc.strerror}); check the path."
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"STAC file {source} is not JSON ({exc}); pass a STAC JSON file."
        ) from exc
    if not isinstance(document, dict):
        raise InputError(f"{source} is not a STAC object (a JSON object); pass a STAC file.")
    return document


def _check_unique(items: Sequence[tuple[pystac.Item, str]], source: Path) -> None:
    seen: set[str] = set()
    for item, _ in items:
        if item.id in seen:
            raise InputError(
                f"STAC item id {item.id} appears twice in {source}; item ids name the scenes"
                " of the output, so each must be unique."
            )
        seen.add(item.id)


def read_stac_scenes(path: str | Path, asset: str | None = None) -> list[SceneEntry]:
    """The scenes of a local STAC file, one per item, in the file's order.

    Parameters
    ----------
    path
        A STAC ItemCollection (FeatureCollection), Item, Catalog or Collection JSON file.
    asset
        The asset key to read of every item (``--stac-asset``); None: ``visual`` where the
        item has it, else its first GeoTIFF asset whose roles include ``visual`` or ``data``.

    Returns
    -------
    list[SceneEntry]
        Per item: the asset's GDAL name, the item id as key, and field ``datetime`` (a
        `datetime` in UTC).

    Raises
    ------
    InputError
        The file is unreadable, not JSON or not STAC, holds no item, repeats an item id, or an
        item lacks the asset.
    """
    source = Path(path).absolute()
    document = _read(source)
    try:
        items = list(_items(document, source))
    except _MALFORMED as exc:
        raise InputError(
            f"{source} cannot be read as STAC ({type(exc).__name__}: {first_line(exc)});"
            " check it and the files it links with stac-validator."
        ) from exc
    if not items:
        raise InputError(f"STAC file {source} holds no item; pass a file with imagery items.")
    _check_unique(items, source)
    return [_scene(item, base, asset) for item, base in items]

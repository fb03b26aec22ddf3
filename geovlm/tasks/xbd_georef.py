"""The ``xbd georef`` task: georeferenced GeoTIFFs and a buildings GeoPackage from an xBD folder.

Every tile's transform comes from its own label's building vertices (pre- and post-disaster
labels each have their own), fitted by `geovlm.sources.georef.AffineFit`. A tile without buildings
has no control points and is skipped with a warning. Everything is read and fitted before the first
file is written; each GeoTIFF is written under a temporary name and renamed when complete, and
the GeoPackage, written last the same way, marks a finished output.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
from PIL import Image, UnidentifiedImageError

from geovlm.errors import GeoreferenceError, OutputError, XbdError
from geovlm.events.progress import ProgressMode, ProgressReporter
from geovlm.sources.georef import AffineFit
from geovlm.sources.xbd import Phase, XbdTile, read_xbd

__all__ = [
    "BUILDINGS_LAYER",
    "GEOPACKAGE",
    "IMAGES",
    "RESIDUAL_WARNING_PX",
    "TILES_LAYER",
    "GeorefSummary",
    "GeorefTile",
    "fit_tile",
    "georeference_xbd",
]

logger = logging.getLogger(__name__)

#: The output's GeoPackage, its two layers and the GeoTIFFs' subfolder.
GEOPACKAGE = "buildings.gpkg"
BUILDINGS_LAYER = "buildings"
TILES_LAYER = "tiles"
IMAGES = "images"
#: A tile whose residuals exceed this (RMS, pixels) is warned about: its two sets of polygons
#: disagree (real xBD tiles fit within 0.02 pixels).
RESIDUAL_WARNING_PX = 1.0
_CRS = "EPSG:4326"
#: GeoPackage 1.2, which every QGIS 3.x reads without a warning (as `geovlm.output.geopackage`
#: writes).
_GPKG_OPTIONS = {"VERSION": "1.2"}
_GEOTIFF_PROFILE: dict[str, Any] = {
    "driver": "GTiff",
    "count": 3,
    "dtype": "uint8",
    "crs": _CRS,
    "photometric": "RGB",
    "compress": "deflate",
    "tiled": True,
    "blockxsize": 256,
    "blockysize": 256,
}


@dataclass(frozen=True, slots=True)
class GeorefTile:
    """One georeferenced tile: the xBD tile, its fitted transform and the GeoTIFF written."""

    tile: XbdTile
    fit: AffineFit
    path: Path


@dataclass(frozen=True, slots=True)
class GeorefSummary:
    """What `georeference_xbd` wrote, tile by tile, and which tiles it skipped and why."""

    output: Path
    tiles: tuple[GeorefTile, ...]
    #: (file stem, reason) of each tile left out.
    skipped: tuple[tuple[str, str], ...]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready values (the ``done`` event of ``--progress json``)."""
        return {
            "output": str(self.output),
            "written": len(self.tiles),
            "buildings": sum(len(done.tile.buildings) for done in self.tiles),
            "skipped": [stem for stem, _ in self.skipped],
            "max_rms_px": max(done.fit.rms_px for done in self.tiles),
            "max_px": max(done.fit.max_px for done in self.tiles),
            "seconds": round(self.seconds, 3),
        }


def fit_tile(tile: XbdTile) -> AffineFit:
    """Fit the pixel -> longitude/latitude transform of one tile to its building vertices.

    Parameters
    ----------
    tile
        A tile read by `geovlm.sources.xbd.read_xbd`.

    Returns
    -------
    AffineFit
        The transform (a GDAL geotransform in EPSG:4326) and its residuals in pixels.

    Raises
    ------
    GeoreferenceError
        The tile has no buildings, too few distinct vertices or vertices on one line.
    """
    if not tile.buildings:
        raise GeoreferenceError(
            f"{tile.label} lists no buildings, so nothing ties {tile.image.name} to the ground;"
            " an xBD tile needs building polygons to be georeferenced."
        )
    return AffineFit.from_points(*tile.control_points(), source=str(tile.label))


def georeference_xbd(
    folder: str | Path,
    output: str | Path,
    *,
    phase: Phase | str | None = None,
    progress: ProgressMode = ProgressMode.AUTO,
    overwrite: bool = False,
) -> GeorefSummary:
    """Write every tile of an xBD folder as a GeoTIFF, and all buildings into one GeoPackage.

    Parameters
    ----------
    folder
        The xBD folder (``images/`` and ``labels/``).
    output
        The output folder: ``images/<stem>.tif`` (EPSG:4326, RGB, deflate, tiled) and
        ``buildings.gpkg`` with layers ``buildings`` and ``tiles``.
    phase
        ``"pre"`` or ``"post"`` for one phase only; None for both.
    progress
        How progress is reported (tiles written).
    overwrite
        Replace an earlier output in the folder instead of refusing.

    Returns
    -------
    GeorefSummary
        The tiles written with their residuals, and the tiles skipped.

    Raises
    ------
    XbdError
        The folder or a label is bad (see `geovlm.sources.xbd.read_xbd`), or an image is unreadable
        or not the size its label states.
    GeoreferenceError
        No tile could be georeferenced.
    OutputError
        The output holds an earlier output (without `overwrite`) or cannot be written.
    """
    start = time.perf_counter()
    output = Path(output)
    _check_output(output, overwrite)
    fitted, skipped = _fit_all(read_xbd(folder, phase))
    if not fitted:
        raise GeoreferenceError(
            f"no tile of {folder} can be georeferenced, the first because {skipped[0][1]}"
        )
    for tile, _ in fitted:
        _check_image_size(tile)
    images = output / IMAGES
    try:
        images.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create {images} ({exc}); choose another output.") from exc
    if overwrite:
        _clear(output)
    with ProgressReporter(progress, len(fitted), "tiles") as reporter:
        written = []
        for tile, fit in fitted:
            written.append(GeorefTile(tile, fit, _write_geotiff(tile, fit, images)))
            reporter.advance()
        _write_geopackage(written, output)
        summary = GeorefSummary(
            output, tuple(written), tuple(skipped), time.perf_counter() - start
        )
        reporter.finish(**summary.as_dict())
    return summary


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output} is a file; give a folder for the output.")
    earlier = (output / GEOPACKAGE).exists() or any((output / IMAGES).glob("*.tif"))
    if earlier and not overwrite:
        raise OutputError(
            f"{output} already holds georeferenced xBD tiles; pass --overwrite to replace them,"
            " or choose another folder."
        )


def _fit_all(
    tiles: Sequence[XbdTile],
) -> tuple[list[tuple[XbdTile, AffineFit]], list[tuple[str, str]]]:
    fitted, skipped = [], []
    for tile in tiles:
        try:
            fit = fit_tile(tile)
        except GeoreferenceError as exc:
            logger.warning("skipped %s: %s", tile.stem, exc)
            skipped.append((tile.stem, str(exc)))
            continue
        if fit.rms_px > RESIDUAL_WARNING_PX:
            logger.warning(
                "%s: its pixel and lon/lat polygons disagree by %.2f pixels RMS (max %.2f);"
                " its GeoTIFF is placed only that well", tile.stem, fit.rms_px, fit.max_px,
            )
        fitted.append((tile, fit))
    return fitted, skipped


def _open_image(tile: XbdTile) -> Image.Image:
    try:
        return Image.open(tile.image)
    except (UnidentifiedImageError, OSError) as exc:
        raise XbdError(
            f"{tile.image} is not a readable image ({exc}); replace it with the original xBD"
            " image."
        ) from exc


def _check_image_size(tile: XbdTile) -> None:
    """Refuse an image whose size differs from its label's (its pixel polygons would not fit)."""
    with _open_image(tile) as image:
        size = image.size
    if size != (tile.width, tile.height):
        raise XbdError(
            f"{tile.image} is {size[0]}x{size[1]} pixels but {tile.label.name} describes"
            f" {tile.width}x{tile.height}; use the image the label was made for."
        )


def _write_geotiff(tile: XbdTile, fit: AffineFit, folder: Path) -> Path:
    with _open_image(tile) as image:
        try:
            pixels = np.moveaxis(np.asarray(image.convert("RGB")), -1, 0)
        except OSError as exc:
            raise XbdError(
                f"{tile.image} is damaged ({exc}); replace it with the original xBD image."
            ) from exc
    path = folder / f"{tile.stem}.tif"
    partial = path.with_name(path.name + ".partial")
    profile = {**_GEOTIFF_PROFILE, "width": tile.width, "height": tile.height,
               "transform": fit.transform}
    try:
        with rasterio.open(partial, "w", **profile) as dataset:
            dataset.write(pixels)
        os.replace(partial, path)
    except (OSError, rasterio.errors.RasterioError) as exc:
        partial.unlink(missing_ok=True)
        raise OutputError(f"Cannot write {path} ({exc}); choose another output.") from exc
    return path


def _write_geopackage(written: Sequence[GeorefTile], output: Path) -> None:
    buildings = gpd.GeoDataFrame(
        [
            {
                "tile": done.tile.name,
                "phase": done.tile.phase.value,
                "uid": building.uid,
                "damage": None if building.damage is None else building.damage.value,
                "disaster": done.tile.disaster,
                "disaster_type": done.tile.disaster_type.value,
                "geometry": building.lonlat,
            }
            for done in written
            for building in done.tile.buildings
        ],
        crs=_CRS,
    )
    tiles = gpd.GeoDataFrame(
        [
            {
                "tile": done.tile.name,
                "phase": done.tile.phase.value,
                "image": done.path.relative_to(output).as_posix(),
                "disaster": done.tile.disaster,
                "disaster_type": done.tile.disaster_type.value,
                "sensor": done.tile.sensor,
                "gsd": done.tile.gsd,
                "capture_date": done.tile.capture_date,
                "buildings": len(done.tile.buildings),
                "points": done.fit.points,
                "rms_px": done.fit.rms_px,
                "max_px": done.fit.max_px,
                "geometry": done.fit.footprint(done.tile.width, done.tile.height),
            }
            for done in written
        ],
        crs=_CRS,
    )
    path = output / GEOPACKAGE
    partial = output / f"{GEOPACKAGE}.partial.gpkg"
    partial.unlink(missing_ok=True)
    try:
        pyogrio.write_dataframe(buildings, partial, layer=BUILDINGS_LAYER, driver="GPKG",
                                dataset_options=_GPKG_OPTIONS)
        pyogrio.write_dataframe(tiles, partial, layer=TILES_LAYER, driver="GPKG")
        os.replace(partial, path)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
        raise OutputError(f"Cannot write {path} ({exc}); choose another output.") from exc
    finally:
        partial.unlink(missing_ok=True)


def _clear(output: Path) -> None:
    """Remove an earlier output's files (``--overwrite``), once the new one is ready to write."""
    (output / GEOPACKAGE).unlink(missing_ok=True)
    for path in (output / IMAGES).glob("*.tif"):
        path.unlink()

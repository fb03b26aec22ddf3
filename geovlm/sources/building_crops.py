"""Buildings of a scene as work items: a crop around each footprint, after and before.

`BuildingCrops` is the `geovlm.pipeline.work_items.ItemSource` of per-building tasks
(``geovlm damage``): one item per footprint, its id the object id, its crop the square of
`geovlm.sources.crops.crop_bounds` (the footprint's bounding box widened by a margin given in
metres, converted to the scene CRS's units by the scene's measured ground resolution) resampled
to `CROP_PIXELS` a side. An xBD tile as ``geovlm xbd georef`` writes it (longitude/latitude, its
label's pixel grid) is cut as the building-damage training set cuts its PNG: the whole-pixel box
of `geovlm.sources.crops.pixel_box` around the label's pixel outline, the margin divided by the
tile's measured pixel size (`geovlm.sources.xbd_scale.pixel_metres`), black beyond the tile,
resized bilinearly. The post crop is read through the scene's own grid; with a pre scene,
the same ground square is read through the pre scene's grid (its own CRS and resolution: the
square's outline is carried into it, read with a margin and warped with
``rasterio.warp.reproject`` onto the post crop's grid), so the two need not align pixel for
pixel. Items are sorted by the post scene's read tiles, row after row, and every read goes
through a `geovlm.sources.block_reads.BlockCache`, so neighbouring buildings share decoded
blocks and no crop opens a file. `Footprints` carry the outlines as WKB, so the run's opener
(``functools.partial(BuildingCrops, footprints=..., options=...)``) pickles to Ray's workers.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from collections.abc import Container, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from PIL import Image
from pyproj import Transformer
from rasterio.warp import transform_bounds
from shapely.geometry import Polygon

from geovlm.errors import InputError, ParameterError, check_share
from geovlm.scenes.scene import SceneInfo, open_scene
from geovlm.sources.crop_reads import CropRaster, PixelBox, north_up
from geovlm.sources.crops import CROP_PIXELS, DEFAULT_MARGIN_M, Bounds, crop_bounds, pixel_box
from geovlm.sources.footprints import log_left_out
from geovlm.sources.outlines import SourcePolygons, polygon_parts, vector_polygons, xbd_polygons
from geovlm.sources.xbd import XbdTile
from geovlm.sources.xbd_scale import pixel_metres

__all__ = ["BuildingCrop", "BuildingCrops", "CropOptions", "Footprints"]

#: Below this many source pixels across a median crop, buildings are a few pixels wide.
_FEW_PIXELS = 16


@dataclass(frozen=True, slots=True)
class CropOptions:
    """How buildings are cut; validated on construction.

    Attributes
    ----------
    margin_m
        Context around a footprint's bounding box, on each side, in metres.
    pixels
        Side of the crops the model sees.
    min_valid
        Buildings whose post crop holds less valid data than this share are left out; a pre
        crop under it is not shown (the building is graded from its post crop).
    nodata
        A fill value to treat as invalid in both scenes, for scenes that do not declare one.
    bands
        1-based bands used as RGB (or grey) in both scenes; None for 1,2,3 (grey for one).
    pre
        The pre-disaster scene, or None for post crops alone.
    """

    margin_m: float = DEFAULT_MARGIN_M
    pixels: int = CROP_PIXELS
    min_valid: float = 0.5
    nodata: float | None = None
    bands: tuple[int, ...] | None = None
    pre: str | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.margin_m) and self.margin_m >= 0):
            raise ParameterError(f"--margin {self.margin_m} must be 0 or more metres.")
        check_share("--min-valid", self.min_valid)

    def as_dict(self) -> dict[str, object]:
        """The options as recorded with the run."""
        return {"margin_m": self.margin_m, "pixels": self.pixels, "min_valid": self.min_valid,
                "nodata": self.nodata, "bands": list(self.bands) if self.bands else None,
                "pre": self.pre}


@dataclass(frozen=True, slots=True)
class Footprints:
    """Buildings over one scene: ids and outlines in its CRS, as WKB so that they pickle.

    Build with `from_vector` or `from_xbd`; `counts` says what was read, repaired and left out.
    From an xBD label, `pixel_bounds` are each building's bounds in its tile's pixels and
    `pixel_m` the tile's measured pixel size (both None for other footprints).
    """

    ids: tuple[str, ...]
    wkb: tuple[bytes, ...]
    source: str
    counts: Mapping[str, int] = field(default_factory=dict)
    pixel_bounds: tuple[Bounds, ...] | None = None
    pixel_m: float | None = None

    @classmethod
    def from_vector(cls, path: str | os.PathLike[str], scene: SceneInfo,
                    layer: str | None = None) -> Footprints:
        """The polygons of any GDAL vector layer, in any CRS, that lie on `scene`.

        Raises
        ------
        InputError
            As `geovlm.sources.outlines.check_vector`, or no footprint lies on the scene.
        """
        return cls._on_scene(vector_polygons(path, scene.crs, layer), scene,
                             "check that they cover the scene (and that their CRS is declared"
                             " correctly)")

    @classmethod
    def from_xbd(cls, label: str | os.PathLike[str], scene: SceneInfo) -> Footprints:
        """The buildings of an xBD label that lie on `scene` (its georeferenced tile).

        Raises
        ------
        InputError
            The label is missing or no building lies on the scene.
        XbdError
            The label is malformed.
        """
        found = cls._on_scene(xbd_polygons(label, scene.path, scene.crs), scene,
                              "pass that tile's own label (labels/<the same name>.json), as"
                              " `geovlm xbd georef` placed it")
        tile = XbdTile.from_label(Path(label), scene.path)
        # xBD's outlines are single polygons: a footprint's id is its building's uid.
        pixels = {building.uid: building.pixels.bounds for building in tile.buildings}
        return dataclasses.replace(found, pixel_m=pixel_metres(tile),
                                   pixel_bounds=tuple(pixels[i] for i in found.ids))

    @classmethod
    def _on_scene(cls, found: SourcePolygons, scene: SceneInfo, fix: str) -> Footprints:
        parts = polygon_parts(found.ids, found.geometries, found.damages)
        parts.check_polygonal(found.source)
        outline = _scene_outline(scene)
        kept = [(object_id, polygon) for object_id, polygon, _ in parts.parts
                if outline.contains(polygon.centroid)]
        if not kept:
            raise InputError(
                f"none of the {len(found.ids)} footprints of {found.source} lies on"
                f" {scene.path}; {fix}."
            )
        counts = {"read": len(found.ids), "buildings": len(kept), "repaired": parts.repaired,
                  "not_polygonal": parts.not_polygonal,
                  "outside": len(parts.parts) - len(kept) + parts.off_crs}
        log_left_out(found.source, scene.path, parts.repaired, parts.not_polygonal,
                     counts["outside"])
        ids = [object_id for object_id, _ in kept]
        if len(set(ids)) != len(ids):
            raise InputError(f"{found.source} repeats feature ids; give each footprint its own.")
        return cls(tuple(ids), tuple(shapely.to_wkb([p for _, p in kept])), found.source, counts)

    def polygons(self) -> np.ndarray:
        """The outlines, as an array of shapely polygons in the scene's CRS."""
        return shapely.from_wkb(np.array(self.wkb, dtype=object))


@dataclass(frozen=True, slots=True)
class BuildingCrop:
    """One building's work item: its outline and its crops, after and (optionally) before.

    Attributes
    ----------
    item_id
        The object id (the feature id, ``.<part>`` for a part, or the xBD uid).
    footprint
        The building's outline in the post scene's CRS (the record's geometry).
    bounds
        The crop's square in the post scene's CRS.
    post
        The post crop, RGB, `CropOptions.pixels` a side.
    valid_fraction
        Share of the post crop's pixels that hold data.
    pre, pre_valid_fraction
        The pre crop on the same grid and its valid share, or None without a pre scene; a pre
        crop holding less valid data than ``min_valid`` (e.g. off the pre scene) is None, its
        share kept, and the building is graded from its post crop alone.
    """

    item_id: str
    footprint: Polygon
    bounds: Bounds
    post: Image.Image
    valid_fraction: float
    pre: Image.Image | None = None
    pre_valid_fraction: float | None = None


def _scene_outline(info: SceneInfo) -> Polygon:
    corners = [(0, 0), (info.width, 0), (info.width, info.height), (0, info.height)]
    return Polygon([info.transform @ corner for corner in corners])


class BuildingCrops:
    """The buildings of a scene as work items (see the module's description).

    Parameters
    ----------
    scene
        The post-disaster scene, any raster rasterio opens, in a projected CRS (or an xBD
        tile georeferenced in longitude/latitude, with `Footprints.from_xbd`).
    footprints
        The buildings over it (`Footprints.from_vector` or `from_xbd`).
    options
        Margin, crop size, ``--min-valid``, nodata, bands and the pre scene.

    Raises
    ------
    InputError
        A scene is missing, unreadable or not georeferenced, the post scene's CRS is
        geographic (other than an xBD tile's), or the pre scene does not overlap it.
    """

    def __init__(self, scene: str | Path, footprints: Footprints,
                 options: CropOptions | None = None) -> None:
        self.options = options or CropOptions()
        self.footprints = footprints
        self.info: SceneInfo = open_scene(scene, self.options.bands)
        # An xBD tile in longitude/latitude is cut in its own pixels, as the training set is.
        tile_pixels = self.info.crs.is_geographic and footprints.pixel_m is not None
        if self.info.crs.is_geographic and not tile_pixels:
            raise InputError(
                f"{self.info.path} is in a geographic CRS ({self.info.crs}), whose degrees"
                " cannot hold a square crop in metres; warp it to a projected CRS first, e.g."
                " `gdalwarp -t_srs EPSG:32618 IN OUT` (its UTM zone)."
            )
        pre = open_scene(self.options.pre, self.options.bands) if self.options.pre else None
        if pre is not None:
            _check_overlap(self.info, pre)
        transform = self.info.transform
        units_x = math.hypot(transform.a, transform.d) / self.info.resolution_m[0]
        units_y = math.hypot(transform.b, transform.e) / self.info.resolution_m[1]
        margin = self.options.margin_m * (units_x + units_y) / 2
        polygons = footprints.polygons()
        #: Whole-pixel boxes of an xBD tile, by building id (empty for other scenes).
        self._pixel_boxes: dict[str, PixelBox] = {}
        if tile_pixels:
            self._pixel_boxes = self._tile_boxes()
            boxes = [_box_bounds(self._pixel_boxes[i], transform) for i in footprints.ids]
        else:
            boxes = [crop_bounds(tuple(b), margin) for b in shapely.bounds(polygons)]
        self._post = CropRaster(self.info, self.options.nodata)
        self._pre = CropRaster(pre, self.options.nodata) if pre is not None else None
        self._to_pre = (Transformer.from_crs(self.info.crs, pre.crs, always_xy=True)
                        if pre is not None else None)
        self._to_post = Transformer.from_crs(self.info.crs, self.info.crs, always_xy=True)
        centres = np.array([((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in boxes])
        cols, rows = ~transform @ (centres[:, 0], centres[:, 1])
        tile_h, _ = self._post.cache.tile
        order = np.lexsort((cols, np.floor(rows / tile_h)))
        self._items = [(footprints.ids[i], polygons[i], boxes[i]) for i in order]
        sides = np.array([box[2] - box[0] for box in boxes]) / math.hypot(transform.a,
                                                                            transform.d)
        self._median_side_px = float(np.median(sides))
        # GDAL handles and the block caches must not be used by two threads at once (Ray's
        # actors read two rows of one scene together): one crop at a time.
        self._reading = threading.Lock()
        #: Buildings left out so far because their post crop held too little data.
        self.skipped_invalid = 0

    def __enter__(self) -> BuildingCrops:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        """Close both scenes."""
        self._post.close()
        if self._pre is not None:
            self._pre.close()

    def item_ids(self) -> list[str]:
        """Every building's id, in reading order (the post scene's tiles, row after row)."""
        return [object_id for object_id, _, _ in self._items]

    def items(self, skip: Container[str] = frozenset()) -> Generator[BuildingCrop, None, None]:
        """Yield the buildings whose post crop reaches ``min_valid``, in reading order."""
        for object_id, polygon, bounds in self._items:
            if object_id in skip:
                continue
            crop = self.crop(object_id, polygon, bounds)
            if crop.valid_fraction < self.options.min_valid:
                self.skipped_invalid += 1
            else:
                yield crop

    def crop(self, object_id: str, polygon: Polygon, bounds: Bounds) -> BuildingCrop:
        """Read one building's crops (post, and pre when given); safe from several threads."""
        with self._reading:
            return self._crop(object_id, polygon, bounds)

    def _tile_boxes(self) -> dict[str, PixelBox]:
        """Each building's box in the tile's pixels: `pixel_box` of its label's outline."""
        pixel_m, bounds = self.footprints.pixel_m, self.footprints.pixel_bounds
        assert pixel_m is not None and bounds is not None
        margin_px = self.options.margin_m / pixel_m
        return {object_id: pixel_box(b, margin_px)
                for object_id, b in zip(self.footprints.ids, bounds, strict=True)}

    def _crop(self, object_id: str, polygon: Polygon, bounds: Bounds) -> BuildingCrop:
        pixels = self.options.pixels
        box = self._pixel_boxes.get(object_id)
        if box is not None:
            return self._tile_crop(object_id, polygon, bounds, box)
        if north_up(self.info.transform):
            post, valid = self._post.resized(bounds, pixels)
        else:
            post, valid = self._post.warped(bounds, pixels, self.info.crs, self._to_post)
        if self._pre is None or self._to_pre is None:
            return BuildingCrop(object_id, polygon, bounds, post, valid)
        pre, pre_valid = self._pre.warped(bounds, pixels, self.info.crs, self._to_pre)
        shown = pre if pre_valid >= self.options.min_valid else None
        return BuildingCrop(object_id, polygon, bounds, post, valid, shown, pre_valid)

    def _tile_crop(self, object_id: str, polygon: Polygon, bounds: Bounds,
                   box: PixelBox) -> BuildingCrop:
        """An xBD tile's crops: the box in its grid, and in the pre tile's where it lands."""
        pixels = self.options.pixels
        post, valid = self._post.pixel_box(box, pixels)
        if self._pre is None or self._to_pre is None:
            return BuildingCrop(object_id, polygon, bounds, post, valid)
        # The box's corners carried into the pre tile's own grid (xBD's pre and post tiles
        # share one, up to their labels' fits).
        xs, ys = _corners(box, self.info.transform)
        cols, rows = ~self._pre.info.transform @ self._to_pre.transform(xs, ys)
        pre_box = (round(float(np.mean(cols[[0, 2]]))), round(float(np.mean(rows[[0, 1]]))),
                   round(float(np.mean(cols[[1, 3]]))), round(float(np.mean(rows[[2, 3]]))))
        pre, pre_valid = self._pre.pixel_box(pre_box, pixels)
        shown = pre if pre_valid >= self.options.min_valid else None
        return BuildingCrop(object_id, polygon, bounds, post, valid, shown, pre_valid)

    def signature(self) -> dict[str, object]:
        """What the crops add to a run's signature: the options and the footprints' source."""
        return {"crops": self.options.as_dict(), "footprints": self.footprints.source}

    def scale_warning(self) -> str | None:
        """Why the scene is too coarse for its buildings' crops, or None."""
        if self._median_side_px >= _FEW_PIXELS:
            return None
        return (f"a median building crop spans {self._median_side_px:.0f} pixels of"
                f" {self.info.path} ({self.info.resolution_m[0]:.1f} m pixels), so the model"
                " sees buildings a few pixels wide; use finer imagery or a larger --margin")


def _box_bounds(box: PixelBox, transform: Affine) -> Bounds:
    """A pixel box's extent in the scene's CRS."""
    xs, ys = _corners(box, transform)
    return (float(np.min(xs)), float(np.min(ys)), float(np.max(xs)), float(np.max(ys)))


def _corners(box: PixelBox, transform: Affine) -> tuple[np.ndarray, np.ndarray]:
    """A box's upper-left, upper-right, lower-left and lower-right corners in the CRS."""
    x0, y0, x1, y1 = box
    points = [transform @ corner for corner in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
    return np.array([x for x, _ in points]), np.array([y for _, y in points])


def _check_overlap(post: SceneInfo, pre: SceneInfo) -> None:
    """Refuse a pre scene whose extent misses the post scene's."""
    west, south, east, north = transform_bounds(
        post.crs, pre.crs, *_scene_outline(post).bounds, densify_pts=21)
    pre_west, pre_south, pre_east, pre_north = _scene_outline(pre).bounds
    if west >= pre_east or east <= pre_west or south >= pre_north or north <= pre_south:
        raise InputError(
            f"the pre scene {pre.path} does not overlap the post scene {post.path}; give the"
            " same place before the disaster (check both scenes' CRS)."
        )

"""Cut a georeferenced scene into model-sized RGB chips with windowed, bounded-memory reads.

The grid is laid out in source pixels; edge chips are shifted inward so every chip is full size,
and a scene smaller than one chip gives one padded chip whose padding counts as invalid. Pixels
are read by `geovlm.scenes.reader.SceneReader`: a small thread pool, a bounded number of chips
ahead of the consumer, so memory does not grow with the scene.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Container, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rasterio.windows import Window
from shapely.geometry import Polygon

from geovlm.errors import ParameterError, check_share
from geovlm.scenes.reader import SceneReader
from geovlm.scenes.scene import SceneInfo, open_scene

__all__ = [
    "MAX_CHIP_SIZE", "Chip", "SceneTiler", "TilingOptions", "cell_footprints", "chip_offsets",
    "iter_chips",
]

logger = logging.getLogger(__name__)

#: Largest chip edge in pixels; bigger chips exceed every supported model's image budget.
MAX_CHIP_SIZE = 4096
#: Smallest chip edge in pixels.
MIN_CHIP_SIZE = 16
#: Beyond this many times the scene's own resolution, --gsd upsampling only shows a model blur.
MAX_UPSAMPLING = 4.0


@dataclass(frozen=True, slots=True)
class TilingOptions:
    """How a scene is cut into chips; validated on construction.

    Parameters
    ----------
    size
        Chip edge in output pixels.
    overlap
        Pixels (in output pixels) shared by neighbouring chips; must be smaller than `size`.
    bands
        1-based band indexes to use as RGB (three) or grey (one); None picks 1,2,3 or grey.
    min_valid
        Chips whose valid fraction is below this are skipped.
    nodata
        A fill value to treat as invalid, for scenes that use one without declaring it.
    gsd
        Target ground sampling distance in metres per pixel; None keeps the native resolution.
    """

    size: int = 512
    overlap: int = 0
    bands: tuple[int, ...] | None = None
    min_valid: float = 0.5
    nodata: float | None = None
    gsd: float | None = None

    def __post_init__(self) -> None:
        if not MIN_CHIP_SIZE <= self.size <= MAX_CHIP_SIZE:
            raise ParameterError(
                f"Chip size {self.size} is outside the allowed {MIN_CHIP_SIZE}..{MAX_CHIP_SIZE}"
                " pixels; pick a size in that range."
            )
        if not 0 <= self.overlap < self.size:
            raise ParameterError(
                f"Overlap {self.overlap} must be at least 0 and smaller than the chip size"
                f" {self.size}."
            )
        check_share("--min-valid", self.min_valid)
        if self.gsd is not None and not (self.gsd > 0 and math.isfinite(self.gsd)):
            raise ParameterError(f"--gsd {self.gsd} must be a positive number of metres.")
        if self.bands is not None and len(self.bands) not in (1, 3):
            raise ParameterError(
                f"--bands takes one (grey) or three (RGB) band numbers, not {len(self.bands)}."
            )

    def as_dict(self) -> dict[str, object]:
        """The options as plain JSON-ready values, for the run record.

        Returns
        -------
        dict
            Field name to value, bands as a list.
        """
        return {
            "size": self.size,
            "overlap": self.overlap,
            "bands": list(self.bands) if self.bands else None,
            "min_valid": self.min_valid,
            "nodata": self.nodata,
            "gsd": self.gsd,
        }


@dataclass(frozen=True, slots=True)
class Chip:
    """One model-sized piece of a scene, its pixels and where it lies on the ground.

    Attributes
    ----------
    chip_id
        Stable id from the grid position, so a re-run can skip finished chips.
    row, col
        Grid position (0-based).
    window
        The source pixels read, in the scene's pixel space (before any resampling).
    transform
        Affine transform of the chip's own pixel grid (``size`` by ``size`` pixels).
    crs
        The scene's coordinate reference system.
    footprint
        The chip's outline in scene coordinates, from its four transformed corners.
    valid_fraction
        Share of the chip's pixels that hold data (not nodata, masked or padding).
    image
        The pixels as an RGB uint8 image.
    """

    chip_id: str
    row: int
    col: int
    window: Window
    transform: Affine
    crs: CRS
    footprint: Polygon
    valid_fraction: float
    image: Image.Image

    @property
    def item_id(self) -> str:
        """The chip's id as a work item of the pipeline (`chip_id`)."""
        return self.chip_id

    @staticmethod
    def make_id(row: int, col: int) -> str:
        """Return the id of the chip at a grid position.

        Examples
        --------
        >>> Chip.make_id(3, 12)
        'r0003_c0012'
        """
        return f"r{row:04d}_c{col:04d}"


def chip_offsets(extent: int, chip: int, step: int) -> list[int]:
    """Start offsets of chips along one axis.

    Chips start every `step` pixels; the last is shifted inward to end exactly at `extent`, so
    no chip reads past the edge. An extent no longer than one chip gives the single offset 0.

    Parameters
    ----------
    extent
        Length of the axis in pixels.
    chip
        Chip length in pixels.
    step
        Distance between chip starts (chip minus overlap).

    Returns
    -------
    list of int
        Increasing offsets.

    Examples
    --------
    >>> chip_offsets(1000, 512, 512)
    [0, 488]
    >>> chip_offsets(300, 512, 512)
    [0]
    """
    if extent <= chip:
        return [0]
    offsets = list(range(0, extent - chip + 1, step))
    if offsets[-1] != extent - chip:
        offsets.append(extent - chip)
    return offsets


@dataclass(frozen=True, slots=True)
class _Cell:
    """A grid cell: its position and source window, before any pixel is read."""

    row: int
    col: int
    window: Window

    @property
    def chip_id(self) -> str:
        return Chip.make_id(self.row, self.col)


class SceneTiler:
    """Reads a scene chip by chip; use as a context manager.

    Parameters
    ----------
    scene
        Any path or URL rasterio opens (GeoTIFF, COG, VRT, ``/vsicurl/``).
    options
        The tiling options.
    workers
        Reader threads; None uses one per CPU core.

    Raises
    ------
    InputError
        The scene is missing, unreadable or not georeferenced.
    ParameterError
        An option does not fit the scene (e.g. a band it does not have).
    """

    def __init__(
        self, scene: str | Path, options: TilingOptions | None = None, workers: int | None = None
    ) -> None:
        self.options = options or TilingOptions()
        self.info: SceneInfo = open_scene(scene, self.options.bands)
        self.reader = SceneReader(self.info, self.options.nodata, workers)
        scale_x, scale_y = self._source_scale()
        src_w = max(1, round(self.options.size * scale_x))
        src_h = max(1, round(self.options.size * scale_y))
        step_x = max(1, round((self.options.size - self.options.overlap) * scale_x))
        step_y = max(1, round((self.options.size - self.options.overlap) * scale_y))
        self._src_shape = (src_h, src_w)
        self.cells: list[_Cell] = [
            _Cell(r, c, Window(x, y, min(src_w, self.info.width), min(src_h, self.info.height)))
            for r, y in enumerate(chip_offsets(self.info.height, src_h, step_y))
            for c, x in enumerate(chip_offsets(self.info.width, src_w, step_x))
        ]
        #: Chips skipped so far because their valid fraction was under ``min_valid``.
        self.skipped_invalid = 0

    def __enter__(self) -> SceneTiler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.cells)

    def close(self) -> None:
        """Stop the reader threads, then close their dataset handles (see `SceneReader.close`)."""
        self.reader.close()

    def item_ids(self) -> list[str]:
        """Every chip's id, in grid order, without reading any pixel."""
        return [cell.chip_id for cell in self.cells]

    def items(self, skip: Container[str] = frozenset()) -> Generator[Chip, None, None]:
        """The valid chips as the pipeline's work items (`chips`)."""
        return self.chips(skip)

    def signature(self) -> dict[str, object]:
        """What the grid adds to a run's signature: the tiling options."""
        return {"tiling": self.options.as_dict()}

    def scale_warning(self) -> str | None:
        """Why the chosen ground distance does not suit the scene, or None when it does.

        Two cases: chips upsampled beyond `MAX_UPSAMPLING` (a model's coarse training resolution
        on a coarser scene shows it only blur), and a whole scene too small for one chip, which
        gives one chip, mostly padding, that ``--min-valid`` then skips: a run that writes nothing.
        """
        info, tiling = self.info, self.options
        res_x, res_y = info.resolution_m
        native = min(res_x, res_y)
        if tiling.gsd is not None and native / tiling.gsd > MAX_UPSAMPLING:
            return (f"the scene's pixels are {native:.1f} m but chips are resampled to"
                    f" {tiling.gsd:.2f} m, so they show {native / tiling.gsd:.0f}x upsampled"
                    " blur; pass a coarser --gsd (or --native-gsd to classify)")
        chip_m = tiling.size * (tiling.gsd if tiling.gsd is not None else native)
        covered = min(1.0, info.width * res_x / chip_m) * min(1.0, info.height * res_y / chip_m)
        if covered < tiling.min_valid:
            return (f"{info.path} covers {info.width * res_x:.0f} x {info.height * res_y:.0f} m,"
                    f" {100 * covered:.0f}% of one {tiling.size} px chip of {chip_m:.0f} m, so"
                    f" --min-valid {tiling.min_valid:g} skips it; pass --native-gsd (classify),"
                    " a smaller --gsd or --size, or a lower --min-valid")
        return None

    def chips(self, skip: Container[str] = frozenset()) -> Generator[Chip, None, None]:
        """Yield the valid chips in grid order, reading ahead on the thread pool.

        Parameters
        ----------
        skip
            Chip ids not to read at all (already done in an earlier run).

        Yields
        ------
        Chip
            Each chip whose valid fraction reaches ``min_valid``.

        Raises
        ------
        InputError
            A block of the scene cannot be read (truncated or corrupt file).
        """
        todo = (cell for cell in self.cells if cell.chip_id not in skip)
        for chip in self.reader.read_ahead(todo, self._read_chip):
            if chip is None:
                self.skipped_invalid += 1
            else:
                yield chip

    def _source_scale(self) -> tuple[float, float]:
        """Source pixels per output pixel along x and y (1 without a target GSD)."""
        if self.options.gsd is None:
            return 1.0, 1.0
        res_x, res_y = self.info.resolution_m
        return self.options.gsd / res_x, self.options.gsd / res_y

    def _read_chip(self, cell: _Cell) -> Chip | None:
        size = self.options.size
        src_h, src_w = self._src_shape
        # A scene smaller than one chip fills only the top-left part; the rest is padding.
        out_h = min(size, max(1, round(cell.window.height * size / src_h)))
        out_w = min(size, max(1, round(cell.window.width * size / src_w)))
        read = self.reader.read_window(cell.window, (out_h, out_w), size, self.options.min_valid)
        if read is None:
            return None
        transform = self.info.transform @ Affine.translation(
            cell.window.col_off, cell.window.row_off
        ) @ Affine.scale(src_w / size, src_h / size)
        corners = [transform @ xy for xy in ((0, 0), (size, 0), (size, size), (0, size))]
        return Chip(
            chip_id=cell.chip_id,
            row=cell.row,
            col=cell.col,
            window=cell.window,
            transform=transform,
            crs=self.info.crs,
            footprint=Polygon(corners),
            valid_fraction=read.valid_fraction,
            image=read.image,
        )


def cell_footprints(tiler: SceneTiler) -> dict[str, Polygon]:
    """Return every grid cell's outline in scene coordinates, without reading any pixel.

    Parameters
    ----------
    tiler
        The opened scene and its grid.

    Returns
    -------
    dict of str to Polygon
        Chip id to the outline of the source window it reads.
    """
    transform = tiler.info.transform
    outlines = {}
    for cell in tiler.cells:
        x, y, w, h = cell.window.col_off, cell.window.row_off, cell.window.width, cell.window.height
        corners = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
        outlines[cell.chip_id] = Polygon([transform @ corner for corner in corners])
    return outlines


def iter_chips(
    scene: str | Path,
    size: int = 512,
    overlap: int = 0,
    *,
    bands: tuple[int, ...] | None = None,
    min_valid: float = 0.5,
    nodata: float | None = None,
    gsd: float | None = None,
) -> Iterator[Chip]:
    """Yield the valid chips of a scene in grid order.

    Parameters
    ----------
    scene
        Any path or URL rasterio opens.
    size, overlap, bands, min_valid, nodata, gsd
        See `TilingOptions`.

    Yields
    ------
    Chip
        Chips whose valid fraction reaches `min_valid`.

    Examples
    --------
    >>> chips = iter_chips("../shared/data/geotiff/rasterio/cogeo.tif", size=512)
    >>> [c.chip_id for c in chips]
    ['r0000_c0000', 'r0000_c0001', 'r0001_c0000', 'r0001_c0001']
    """
    options = TilingOptions(size, overlap, bands, min_valid, nodata, gsd)
    with SceneTiler(scene, options) as tiler:
        yield from tiler.chips()

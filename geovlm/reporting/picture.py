"""The report's map: the grades over the scene, the areas outlined with their counts, as a PNG.

Footprints are drawn as polygons up to `MAX_POLYGONS` buildings and as dots beyond, where a
one-page map could not show their shapes anyway. No web tiles: the imagery, when found, is the
run's own scene.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import shapely

from geovlm.reporting.backdrop import Backdrop
from geovlm.reporting.layers import CATEGORIES, CATEGORY_COLOURS
from geovlm.reporting.tally import AreaCounts

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["COLOURS", "MAX_POLYGONS", "draw_map"]

#: Draw footprints as polygons up to this many buildings, as dots beyond.
MAX_POLYGONS = 5000
#: Label each area with its counts up to this many areas.
_MAX_LABELS = 300

#: Colour per category as a hex string (`CATEGORY_COLOURS`).
COLOURS: dict[str, str] = {
    name: "#{:02x}{:02x}{:02x}".format(*rgb) for name, rgb in CATEGORY_COLOURS.items()
}


def draw_map(
    footprints: np.ndarray,
    damage: np.ndarray,
    counts: AreaCounts,
    backdrops: Sequence[Backdrop] = (),
) -> bytes:
    """Draw the buildings by grade over the scene, the areas outlined and counted.

    Parameters
    ----------
    footprints
        Building polygons in the areas' CRS.
    damage
        Each building's category, one of `CATEGORIES`.
    counts
        The areas and their counts (labels: the area's name and its building total).
    backdrops
        The scene(s) to draw under everything.

    Returns
    -------
    bytes
        The PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Polygon

    figure = Figure(figsize=(8.0, 8.0), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.set_facecolor("#f4f4f4")
    for backdrop in backdrops:
        axes.imshow(backdrop.rgba, extent=backdrop.extent, alpha=0.75, interpolation="bilinear")
    colours = np.array([COLOURS[str(name)] for name in damage])
    if len(footprints) <= MAX_POLYGONS:
        patches = [Polygon(np.asarray(part.exterior.coords)[:, :2], closed=True)
                   for geometry in footprints for part in _parts(geometry)]
        faces = [colour for geometry, colour in zip(footprints, colours, strict=True)
                 for _ in _parts(geometry)]
        axes.add_collection(PatchCollection(patches, facecolors=faces, edgecolors="#222222",
                                            linewidths=0.3))
    else:
        centres = shapely.get_coordinates(shapely.point_on_surface(footprints))
        axes.scatter(centres[:, 0], centres[:, 1], c=colours, s=3, linewidths=0)
    _outline(axes, counts)
    legend = [Patch(facecolor=COLOURS[name], edgecolor="#222222",
                    label=f"{name} ({int(total)})")
              for name, total in zip(CATEGORIES, counts.totals, strict=True)]
    figure.legend(handles=legend, loc="outside lower center", ncols=len(legend),
                  frameon=False, fontsize=8)
    axes.set_aspect("equal")
    axes.ticklabel_format(useOffset=False, style="plain")
    axes.tick_params(labelsize=7)
    axes.set_xlabel(f"metres, {counts.areas.crs.name}", fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _parts(geometry: shapely.Geometry) -> list[shapely.Polygon]:
    return [part for part in shapely.get_parts(geometry) if isinstance(part, shapely.Polygon)]


def _outline(axes: Axes, counts: AreaCounts) -> None:
    """Draw each area's outline, and its name and total at its centre."""
    for geometry in counts.areas.geometries:
        for part in _parts(geometry):
            x, y = np.asarray(part.exterior.coords)[:, :2].T
            axes.plot(x, y, color="#1f1f7a", linewidth=0.8)
    if len(counts.areas.names) > _MAX_LABELS:
        return
    rows = counts.rows()
    for geometry, row in zip(counts.areas.geometries, rows, strict=True):
        centre = shapely.point_on_surface(geometry)
        axes.annotate(f"{row['name']}\n{row['total']}", (centre.x, centre.y), ha="center",
                      va="center", fontsize=7, color="#1f1f7a",
                      bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.7,
                            "lw": 0})

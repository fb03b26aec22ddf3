"""The crop around one building: a square on its bounding box, widened by a context margin.

Every per-building step (``geovlm damage``, the building-damage training set, its evaluation)
cuts the same square, so a model sees at inference what it saw in training: centred on the
footprint's bounding box, its side the box's longer side plus a margin on each side, in the
units of the coordinates (metres on a projected scene; pixels on an xBD tile, with the margin
converted by its measured pixel size, `geovlm.sources.xbd_scale.pixel_metres`, and the box
rounded to whole pixels, `pixel_box`).
"""

from __future__ import annotations

__all__ = ["CROP_PIXELS", "DEFAULT_MARGIN_M", "crop_bounds", "pixel_box"]

#: Context around a footprint's bounding box, on each side, in metres.
DEFAULT_MARGIN_M = 10.0

#: The side of a crop as the model sees it, in pixels (a multiple of Qwen3-VL's 32 px).
CROP_PIXELS = 224

Bounds = tuple[float, float, float, float]


def crop_bounds(bounds: Bounds, margin: float) -> Bounds:
    """Return the square crop ``(xmin, ymin, xmax, ymax)`` around a footprint's bounds.

    Parameters
    ----------
    bounds
        The footprint's ``(xmin, ymin, xmax, ymax)``.
    margin
        Added on each side of the longer side, in the same units; at least 0.

    Examples
    --------
    >>> crop_bounds((0, 0, 20, 10), 5)
    (-5.0, -10.0, 25.0, 20.0)
    """
    if margin < 0:
        raise ValueError(f"the crop margin must be 0 or more, not {margin}")
    xmin, ymin, xmax, ymax = bounds
    half = max(xmax - xmin, ymax - ymin) / 2 + margin
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    return (float(cx - half), float(cy - half), float(cx + half), float(cy + half))


def pixel_box(bounds: Bounds, margin_px: float) -> tuple[int, int, int, int]:
    """Return `crop_bounds` rounded to whole pixels, as PIL's ``crop`` takes it.

    The crop of an xBD tile, in its pixel grid: the building-damage training set and
    ``geovlm damage --xbd-labels`` cut the same box.

    Examples
    --------
    >>> pixel_box((10, 10, 30, 20), 4.2)
    (6, 1, 34, 29)
    """
    xmin, ymin, xmax, ymax = crop_bounds(bounds, margin_px)
    return (round(xmin), round(ymin), round(xmax), round(ymax))

"""Write chips as small georeferenced GeoTIFFs, e.g. to inspect what a model was shown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from geovlm.errors import OutputError
from geovlm.scenes.tiling import Chip

__all__ = ["write_chip_geotiff"]


def write_chip_geotiff(chip: Chip, folder: str | Path) -> Path:
    """Save a chip's RGB pixels as ``<folder>/<chip_id>.tif`` with its transform and CRS.

    Parameters
    ----------
    chip
        The chip to save.
    folder
        An existing or creatable folder.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    OutputError
        The folder cannot be created or written.
    """
    folder = Path(folder)
    path = folder / f"{chip.chip_id}.tif"
    pixels = np.moveaxis(np.asarray(chip.image), -1, 0)
    profile = {
        "driver": "GTiff",
        "width": chip.image.width,
        "height": chip.image.height,
        "count": 3,
        "dtype": "uint8",
        "crs": chip.crs,
        "transform": chip.transform,
        "compress": "deflate",
        "photometric": "RGB",
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", **profile) as dataset:
            dataset.write(pixels)
    except (OSError, rasterio.errors.RasterioError) as exc:
        raise OutputError(
            f"Cannot write chip files to {folder} ({exc}); choose another folder."
        ) from exc
    return path

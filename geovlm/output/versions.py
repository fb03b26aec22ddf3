"""Versions of the libraries a run depends on, recorded so results can be traced and reproduced."""

from __future__ import annotations

from importlib import metadata

__all__ = ["ML_PACKAGES", "library_versions"]

_CORE = ("geovlm", "rasterio", "pyogrio", "numpy", "shapely")
#: The libraries a command that runs a model also relies on.
ML_PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate")


def library_versions(packages: tuple[str, ...] = _CORE) -> dict[str, str]:
    """Installed versions of `packages` (missing ones are left out), plus GDAL's.

    Parameters
    ----------
    packages
        Distribution names to look up.

    Returns
    -------
    dict
        Package name to version string.
    """
    import rasterio

    found = {"gdal": rasterio.__gdal_version__}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found

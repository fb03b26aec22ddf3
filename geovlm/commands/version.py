"""``geovlm version``: what the engine is made of, for the QGIS plugin's check and bug reports."""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata
from typing import Any

import click

from geovlm import __version__
from geovlm.events.protocol import PROTOCOL

__all__ = ["engine_report", "version"]

#: Libraries whose versions are reported (looked up in the metadata, not imported).
_LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "rasterio", "numpy")


def engine_report() -> dict[str, Any]:
    """The engine's versions and devices; imports torch (2-6 s) but loads no model.

    Returns
    -------
    dict
        ``geovlm``, ``protocol`` (of ``--progress json``), ``python``, ``executable``,
        ``platform``, ``libraries`` (name to version, None if missing) and ``cuda``
        (``available``, torch's CUDA ``version`` and the ``devices``' names).
    """
    libraries: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = None
    cuda: dict[str, Any] = {"available": False, "version": None, "devices": []}
    if libraries["torch"]:
        import torch

        cuda["version"] = torch.version.cuda
        if torch.cuda.is_available():
            cuda["available"] = True
            cuda["devices"] = [
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            ]
    return {
        "geovlm": __version__,
        "protocol": PROTOCOL,
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "libraries": libraries,
        "cuda": cuda,
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object (for the QGIS plugin).")
def version(as_json: bool) -> None:
    """Show the versions of geovlm, Python, torch and transformers, and whether CUDA works.

    Imports torch to ask for CUDA (a few seconds) but loads no model. ``geovlm --version``
    prints geovlm's version alone, at once.
    """
    report = engine_report()
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"geovlm {report['geovlm']} (event protocol {report['protocol']})")
    click.echo(f"python {report['python']} ({report['executable']})")
    for name, found in report["libraries"].items():
        click.echo(f"{name} {found or 'not installed'}")
    cuda = report["cuda"]
    devices = ", ".join(cuda["devices"]) or "no device"
    click.echo(f"cuda {'available: ' + devices if cuda['available'] else 'not available'}"
               f" (torch built for CUDA {cuda['version'] or 'none'})")

"""``geovlm models``: the model presets, where each comes from, and what is available offline."""

from __future__ import annotations

import json
from typing import Any

import click

from geovlm.models.presets import DEFAULT_MODEL

__all__ = ["models"]


@click.command()
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per preset, in a list (for the QGIS plugin).")
def models(as_json: bool) -> None:
    """List the model presets, the file each comes from, and what is available offline.

    Site presets (in GEOVLM_PRESETS, else the platform config folder) replace shipped ones of
    the same name.
    """
    from geovlm.models.preset_files import find_preset_files
    from geovlm.models.presets import ModelPreset, availability

    listed: list[dict[str, Any]] = []
    for found in find_preset_files():
        preset = ModelPreset.from_yaml(found.path)
        listed.append({
            "name": preset.name,
            "default": preset.name == DEFAULT_MODEL,
            "description": preset.description,
            "model": preset.model_id,
            "adapter": preset.adapter_id,
            "images": preset.supports_images,
            "chip_size": preset.chip_size,
            "gsd": preset.gsd,
            "offline": {
                "model": availability(preset.model_id),
                "adapter": availability(preset.adapter_id) if preset.adapter_id else None,
            },
            "file": str(found.path),
            "origin": found.origin.value,
            "replaces": [str(path) for path in found.replaces],
        })
    if as_json:
        click.echo(json.dumps(listed, indent=1))
        return
    for entry in listed:
        offline = entry["offline"]
        marks = [f"model {'ok' if offline['model'] else 'missing'}"]
        if entry["adapter"]:
            marks.append(f"adapter {'ok' if offline['adapter'] else 'missing'}")
        star = " (default)" if entry["default"] else ""
        click.echo(f"{entry['name']}{star}: {entry['description']}")
        click.echo(f"    model    {entry['model']}")
        if entry["adapter"]:
            click.echo(f"    adapter  {entry['adapter']}")
        kind = "images" if entry["images"] else "text only"
        gsd = f"{entry['gsd']} m" if entry["gsd"] else "native"
        click.echo(f"    {kind}, chip {entry['chip_size']} px, gsd {gsd}")
        click.echo(f"    offline: {', '.join(marks)}")
        replaces = f", replaces {', '.join(entry['replaces'])}" if entry["replaces"] else ""
        click.echo(f"    file     {entry['file']} ({entry['origin']}{replaces})")

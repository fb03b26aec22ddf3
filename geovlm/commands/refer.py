"""``geovlm refer``: a referring expression per object of a scene, on its polygon."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import click

from geovlm.options import output_options
from geovlm.progress import ProgressMode
from geovlm.prompts import Language

if TYPE_CHECKING:
    from geovlm.backends.base import Backend
    from geovlm.models import ModelPreset
    from geovlm.tasks.refer import ReferModels

__all__ = ["refer"]

#: The vision-language model --detect uses when --caption-model is not given.
DETECT_MODEL = "vqwen3-4b"


def _loader(
    preset: ModelPreset, quantize: str | None, device: str | None, batch_size: int, option: str
) -> Backend:
    """Load one preset's model (after checking its weights are there), quietly."""
    from geovlm.backends.devices import check_device_name
    from geovlm.hub import HubWeights, check_downloads

    if device is not None:
        check_device_name(device)
    weights = [HubWeights(preset.model_id, option)]
    if preset.adapter_id:
        weights.append(HubWeights(preset.adapter_id, option))
    check_downloads(*weights)

    from transformers.utils import logging as transformers_logging

    from geovlm.backends.hf import HFBackend

    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
    return HFBackend.load(
        preset.model_id, adapter=preset.adapter_id, quantize=quantize or preset.quantize.value,
        template=preset.template, image_max_pixels=preset.image_max_pixels, device=device,
        batch_size=batch_size,
    )


@click.command()
@click.argument("scene", type=str)
@output_options
@click.option("--footprints", type=click.Path(dir_okay=False), default=None, metavar="VECTOR",
              help="Objects from any vector layer GDAL reads, in any CRS (a 'damage' field is"
                   " read as xBD damage grades).")
@click.option("--xbd-labels", type=click.Path(dir_okay=False), default=None, metavar="JSON",
              help="Objects from the xBD label of SCENE (its georeferenced tile).")
@click.option("--detect", is_flag=True,
              help="Objects located by the vision-language model (--caption-model, default"
                   f" {DETECT_MODEL}).")
@click.option("--rewrite-model", default=None, metavar="PRESET|PATH",
              help="A text model that rewrites each rule-based expression (e.g. gemma-aerial);"
                   " a rewrite that drops a fact is rejected.")
@click.option("--caption-model", default=None, metavar="PRESET|PATH",
              help="A vision-language model that captions each chip (and locates objects for"
                   " --detect).")
@click.option("--language", type=click.Choice([lang.value for lang in Language]), default="en",
              show_default=True, help="Language of the expressions and captions.")
@click.option("--quantize", type=click.Choice(["auto", "4bit", "8bit", "none"]), default=None,
              help="Weights of the models; default: each preset's.")
@click.option("--device", default=None, help="A torch device such as cuda:0 or cpu.")
@click.option("--size", type=click.IntRange(min=16), default=512, show_default=True,
              help="Chip edge in pixels: the frame of each expression.")
@click.option("--overlap", type=click.IntRange(min=0), default=0, show_default=True,
              help="Pixels shared by neighbouring chips.")
@click.option("--min-valid", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Skip chips (and their objects) whose share of valid pixels is lower.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Chips per model call.")
def refer(
    scene: str,
    output: str,
    overwrite: bool,
    progress: str,
    quiet: bool,
    footprints: str | None,
    xbd_labels: str | None,
    detect: bool,
    rewrite_model: str | None,
    caption_model: str | None,
    language: str,
    quantize: str | None,
    device: str | None,
    size: int,
    overlap: int,
    min_valid: float,
    batch_size: int,
) -> None:
    """Describe every object of SCENE with a referring expression, into layer ``objects``.

    Each object belongs to the chip holding its centroid; its expression ("the destroyed
    building in the north-west corner") picks it out among that chip's objects, in map
    directions, or the object is flagged ambiguous. Give exactly one of --footprints,
    --xbd-labels and --detect.
    """
    from geovlm.models import resolve_model
    from geovlm.tasks.refer import ObjectSource, ReferModels, ReferSettings, refer_scene
    from geovlm.tiling import TilingOptions

    chosen = [name for name, given in (("--footprints", footprints),
                                       ("--xbd-labels", xbd_labels), ("--detect", detect))
              if given]
    if len(chosen) != 1:
        raise click.UsageError(
            "give exactly one of --footprints, --xbd-labels and --detect"
            f"{' (got ' + ', '.join(chosen) + ')' if chosen else ''}."
        )
    source = (ObjectSource.FOOTPRINTS if footprints else
              ObjectSource.XBD if xbd_labels else ObjectSource.DETECT)
    rewrite = resolve_model(rewrite_model) if rewrite_model else None
    vision_name = caption_model or (DETECT_MODEL if detect else None)
    vision = resolve_model(vision_name) if vision_name else None
    if vision is not None and not vision.supports_images:
        raise click.BadParameter(f"{vision.name} reads text only; give a vision-language model.",
                                 param_hint="--caption-model")

    def load_models() -> ReferModels:
        return ReferModels(
            rewrite=_loader(rewrite, quantize, device, batch_size, "--rewrite-model")
            if rewrite else None,
            vision=_loader(vision, quantize, device, batch_size, "--caption-model")
            if vision else None,
        )

    summary = refer_scene(
        scene, output,
        settings=ReferSettings(source, footprints or xbd_labels, Language(language)),
        tiling=TilingOptions(size, overlap, None, min_valid),
        load_models=load_models,
        run_parameters={
            "rewrite_model": rewrite.model_id if rewrite else None,
            "rewrite_adapter": rewrite.adapter_id if rewrite else None,
            "caption_model": vision.model_id if vision else None,
            "caption_adapter": vision.adapter_id if vision else None,
            "quantize": quantize,
        },
        batch_size=batch_size,
        progress=ProgressMode.NONE if quiet else ProgressMode(progress),
        overwrite=overwrite,
    )
    if quiet or ProgressMode(progress) is ProgressMode.JSON:
        return
    facts = summary.as_dict()
    rewrites = (f", {facts['rewrites_kept']} rewrites kept, {facts['rewrites_rejected']} rejected"
                if rewrite else "")
    click.echo(
        f"Wrote {facts['written']} objects ({facts['unambiguous']} unambiguous{rewrites}) of"
        f" {facts['chips']} chips to {facts['output']} ({facts['already_done']} already done,"
        f" {facts['source'].get('outside', 0)} outside the scene, {facts['objects_skipped']} on"
        f" chips under --min-valid, {facts['seconds']:.1f} s).",
        err=True,
    )

"""``geovlm refer``: a referring expression per object of a scene, on its polygon."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from geovlm.commands.options import (
    device_options,
    endpoint_options,
    output_options,
    remote_endpoint,
    run_settings,
    tiling_options,
)
from geovlm.events.progress import ProgressMode
from geovlm.labels.prompts import Language

if TYPE_CHECKING:
    from geovlm.backends.base import ModelRun
    from geovlm.tasks.refer import ReferModels

__all__ = ["refer"]

#: The vision-language model --detect uses when --caption-model is not given: the base model of
#: this preset without its adapter, Qwen3-VL-8B-Instruct, which answers grounding prompts with
#: boxes in Qwen3-VL's 0-1000 coordinates (`geovlm.refer.grounding`).
DETECT_PRESET = "xview2-qwen3vl"


@click.command()
@click.argument("scene", type=str)
@output_options
@click.option("--footprints", type=click.Path(dir_okay=False), default=None, metavar="VECTOR",
              help="Objects from any vector layer GDAL reads, in any CRS (a 'damage' field is"
                   " read as xBD damage grades).")
@click.option("--footprints-layer", default=None, metavar="NAME",
              help="The layer of --footprints; default: its first polygon layer.")
@click.option("--xbd-labels", type=click.Path(dir_okay=False), default=None, metavar="JSON",
              help="Objects from the xBD label of SCENE (its georeferenced tile).")
@click.option("--detect", is_flag=True,
              help="Objects located by the vision-language model: --caption-model, by default"
                   " Qwen/Qwen3-VL-8B-Instruct (a model that answers Qwen3-VL's grounding"
                   " boxes).")
@click.option("--rewrite-model", default=None, metavar="PRESET|PATH",
              help="A text model that rewrites each rule-based expression (e.g. gemma-aerial);"
                   " a rewrite that drops a fact is rejected. With --backend openai: its id on"
                   " --endpoint.")
@click.option("--caption-model", default=None, metavar="PRESET|PATH",
              help="A vision-language model that captions each chip; with --detect it also"
                   " locates the objects, so it must answer Qwen3-VL's grounding boxes. Default:"
                   " none (no captions), or Qwen/Qwen3-VL-8B-Instruct with --detect. With"
                   " --backend openai: its id on --endpoint (with --detect, default: the first"
                   " the endpoint lists).")
@click.option("--context", "context", type=click.Choice(["chip", "scene"]), default="chip",
              show_default=True,
              help="Among which objects each expression is unique: its chip's (field 'context'"
                   " names the chip), or the whole scene's, a part of the scene first (\"in the"
                   " north-western part of the image, ...\"; --footprints or --xbd-labels).")
@click.option("--language", type=click.Choice([lang.value for lang in Language]), default="en",
              show_default=True, help="Language of the expressions and captions.")
@device_options
@endpoint_options
@tiling_options(default_size=512)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Chips per call of the vision model, and per round of rewrites.")
@click.option("--rewrite-batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Rule texts per call of the rewrite model (short text prompts batch well).")
def refer(
    scene: str,
    output: str,
    overwrite: bool,
    progress: str,
    quiet: bool,
    footprints: str | None,
    footprints_layer: str | None,
    xbd_labels: str | None,
    detect: bool,
    rewrite_model: str | None,
    caption_model: str | None,
    context: str,
    language: str,
    quantize: str | None,
    device: str | None,
    backend: str,
    endpoint: str | None,
    api_key: str | None,
    concurrency: int,
    size: int,
    overlap: int,
    bands: tuple[int, ...] | None,
    min_valid: float,
    nodata: float | None,
    gsd: float | None,
    batch_size: int,
    rewrite_batch_size: int,
) -> None:
    """Describe every object of SCENE with a referring expression, into layer ``objects``.

    Each object belongs to the chip holding its centroid; its expression ("the destroyed
    building in the north-west corner") picks it out among that chip's objects, in map
    directions, or the object is flagged ambiguous. Give exactly one of --footprints,
    --xbd-labels and --detect. A chip (--size pixels, after any --gsd) is the frame of its
    objects' expressions; objects on chips skipped under --min-valid are left out.

    With --context chip the same text may label objects of different chips (on the six real
    xBD tiles 34 of 133 objects share their text with another of their tile); field 'context'
    names the chip. With --context scene each expression picks its object out among all of the
    scene's and starts with a part of the scene (on those tiles all 133 are unique).
    """
    from geovlm.pipeline.run_scenes import one_scene
    from geovlm.scenes.tiling import TilingOptions
    from geovlm.tasks.refer import (
        SCENE_NEEDS_OBJECTS,
        ObjectSource,
        ReferContext,
        ReferSettings,
        refer_scene,
    )

    chosen = [name for name, given in (("--footprints", footprints),
                                       ("--xbd-labels", xbd_labels), ("--detect", detect))
              if given]
    if len(chosen) != 1:
        raise click.UsageError(
            "give exactly one of --footprints, --xbd-labels and --detect"
            f"{' (got ' + ', '.join(chosen) + ')' if chosen else ''}."
        )
    if footprints_layer is not None and footprints is None:
        raise click.UsageError("--footprints-layer names a layer of --footprints; give both.")
    if detect and context == "scene":
        raise click.UsageError(SCENE_NEEDS_OBJECTS)
    source = (ObjectSource.FOOTPRINTS if footprints else
              ObjectSource.XBD if xbd_labels else ObjectSource.DETECT)
    server = remote_endpoint(backend, endpoint)
    models = (_remote_models(server, api_key, concurrency, rewrite_model, caption_model, detect)
              if server is not None else
              _local_models(rewrite_model, caption_model, detect, quantize, device, batch_size,
                            rewrite_batch_size))
    tiling = TilingOptions(size, overlap, bands, min_valid, nodata, gsd)
    summary = refer_scene(
        one_scene(scene, tiling),
        run_settings(output, progress, quiet, overwrite, batch_size=batch_size),
        models,
        ReferSettings(source, footprints or xbd_labels, Language(language), footprints_layer,
                      rewrite_batch_size=rewrite_batch_size, context=ReferContext(context)),
    )
    if quiet or ProgressMode(progress) is ProgressMode.JSON:
        return
    facts = summary.as_dict()
    rewrites = (f", {facts['rewrites_kept']} rewrites kept, {facts['rewrites_rejected']} rejected"
                if rewrite_model else "")
    click.echo(
        f"Wrote {facts['written']} objects ({facts['unambiguous']} unambiguous{rewrites}) of"
        f" {facts['total']} chips to {facts['output']} ({facts['already_done']} already done,"
        f" {facts['source'].get('outside', 0)} outside the scene, {facts['objects_skipped']} on"
        f" chips under --min-valid, {facts['seconds']:.1f} s).",
        err=True,
    )


def _local_models(
    rewrite_model: str | None, caption_model: str | None, detect: bool, quantize: str | None,
    device: str | None, batch_size: int, rewrite_batch_size: int,
) -> ModelRun[ReferModels]:
    """The in-process models asked for, resolved now and loaded once the checks passed."""
    from geovlm.backends.base import ModelRun
    from geovlm.backends.choice import ModelChoice
    from geovlm.tasks.refer import ReferModels

    rewrite = (ModelChoice.resolve(rewrite_model, quantize=quantize, device=device,
                                   batch_size=rewrite_batch_size, option="--rewrite-model")
               if rewrite_model else None)
    vision_name = caption_model or (DETECT_PRESET if detect else None)
    vision = (ModelChoice.resolve(vision_name, no_adapter=caption_model is None,
                                  quantize=quantize, device=device, batch_size=batch_size,
                                  option="--caption-model")
              if vision_name else None)
    if vision is not None and not vision.preset.supports_images:
        raise click.BadParameter(f"{vision.preset.name} reads text only; give a vision-language"
                                 " model.", param_hint="--caption-model")

    def load_models() -> ReferModels:
        return ReferModels(rewrite=rewrite.load_backend() if rewrite else None,
                           vision=vision.load_backend() if vision else None)

    return ModelRun(load_models, {
        "rewrite_model": rewrite.run_parameters() if rewrite else None,
        "caption_model": vision.run_parameters() if vision else None,
    })


def _remote_models(
    endpoint: str, api_key: str | None, concurrency: int, rewrite_model: str | None,
    caption_model: str | None, detect: bool,
) -> ModelRun[ReferModels]:
    """Each model's served id on `endpoint`, checked (reachable, key, listed) before any write.

    The rewrite model and the vision model may be two ids of one server (e.g. two LoRA
    modules of vLLM) or the same; each has its own ``concurrency`` bound, and refer calls one
    at a time.
    """
    from geovlm.backends.base import ModelRun
    from geovlm.backends.openai import OpenAIBackend
    from geovlm.tasks.refer import ReferModels

    def connect(served_model: str | None) -> OpenAIBackend:
        return OpenAIBackend.connect(endpoint, api_key=api_key, method=None,
                                     served_model=served_model, concurrency=concurrency)

    rewrite = connect(rewrite_model) if rewrite_model else None
    vision = connect(caption_model) if caption_model or detect else None
    models = ReferModels(rewrite=rewrite, vision=vision)
    return ModelRun(lambda: models, {
        "rewrite_model": rewrite.run_record() if rewrite else None,
        "caption_model": vision.run_record() if vision else None,
    })

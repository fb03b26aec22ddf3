"""``geovlm damage``: a damage grade per building footprint of a post-disaster scene."""

from __future__ import annotations

import contextlib

import click

from geovlm.commands.options import (
    engine_options,
    model_options,
    output_options,
    parse_bands,
    ray_engine,
    remote_options,
    remote_server,
    run_settings,
)
from geovlm.errors import ParameterError
from geovlm.events.progress import ProgressMode
from geovlm.labels.prompts import Language
from geovlm.sources.crops import DEFAULT_MARGIN_M

__all__ = ["damage"]


@click.command()
@click.argument("post", type=str)
@output_options
@click.option("--footprints", type=click.Path(dir_okay=False), default=None, metavar="VECTOR",
              help="Building outlines from any vector layer GDAL reads, in any CRS.")
@click.option("--footprints-layer", default=None, metavar="NAME",
              help="The layer of --footprints; default: its first polygon layer.")
@click.option("--xbd-labels", type=click.Path(dir_okay=False), default=None, metavar="JSON",
              help="Buildings from the xBD label of POST (its georeferenced tile).")
@click.option("--pre", default=None, metavar="SCENE",
              help="The same place before the disaster (any CRS and resolution): each"
                   " building's pre crop covers the same ground as its post crop.")
@click.option("--margin", type=float, default=DEFAULT_MARGIN_M, show_default=True,
              metavar="METRES", help="Context around each footprint's bounding box, per side.")
@click.option("--min-valid", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Leave out buildings whose post crop holds less valid (not nodata) data;"
                   " a pre crop under it is not shown (graded from the post crop alone).")
@click.option("--nodata", type=float, default=None,
              help="Treat this value as nodata, for scenes that fill without declaring it.")
@click.option("--bands", callback=parse_bands, metavar="R[,G,B]",
              help="1-based bands to use as RGB (or one band as grey); default 1,2,3.")
@model_options
@remote_options
@click.option("--language", type=click.Choice([lang.value for lang in Language]), default="en",
              show_default=True, help="Language of the question and the grades' answers.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Buildings per model call.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Below this probability of the best grade the damage is 'uncertain'.")
@click.option("--no-calibration", is_flag=True,
              help="Ignore the preset's damage calibration (score mode's raw probabilities).")
@engine_options
def damage(
    post: str,
    output: str,
    overwrite: bool,
    progress: str,
    quiet: bool,
    footprints: str | None,
    footprints_layer: str | None,
    xbd_labels: str | None,
    pre: str | None,
    margin: float,
    min_valid: float,
    nodata: float | None,
    bands: tuple[int, ...] | None,
    model: str,
    adapter: str | None,
    no_adapter: bool,
    quantize: str | None,
    device: str | None,
    backend: str,
    endpoint: str | None,
    api_key: str | None,
    served_model: str | None,
    remote_method: str,
    concurrency: int,
    language: str,
    batch_size: int,
    min_confidence: float,
    no_calibration: bool,
    engine: str,
    ray_address: str | None,
    ray_actors: int | None,
    ray_gpus: float | None,
) -> None:
    """Grade the damage of every building of POST into layer ``buildings`` of a GeoPackage.

    Each building (from --footprints or --xbd-labels) is cut as a square crop around its
    outline, --margin metres of context on each side, and the model gives a probability for
    each of no-damage, minor-damage, major-damage and destroyed; below --min-confidence the
    damage is 'uncertain'. With --pre the same ground is cut from the pre-disaster scene,
    read through its own grid, and the model is shown both crops (pre first) in one prompt; a
    building whose pre crop falls under --min-valid is graded from its post crop alone (field
    ``images``). Every answer form of a grade counts, and the preset's damage calibration is
    applied when it has one (unless --no-calibration). The layer (the footprints as polygons,
    field ``damage``) feeds `geovlm refer SCENE --footprints OUT.gpkg`. A killed run resumes
    building by building.
    """
    from geovlm.backends.choice import ModelChoice
    from geovlm.labels.grade_forms import DAMAGE_GRADES
    from geovlm.models.presets import ModelFamily
    from geovlm.pipeline.run_scenes import building_scene
    from geovlm.scenes.scene import open_scene
    from geovlm.sources.building_crops import CropOptions, Footprints
    from geovlm.tasks.damage import DamageSettings, damage_buildings

    if (footprints is None) == (xbd_labels is None):
        raise click.UsageError("give exactly one of --footprints and --xbd-labels.")
    if footprints_layer is not None and footprints is None:
        raise click.UsageError("--footprints-layer names a layer of --footprints; give both.")
    options = CropOptions(margin, min_valid=min_valid, nodata=nodata, bands=bands, pre=pre)
    chip_engine = ray_engine(engine, ray_address, ray_actors, ray_gpus,
                             cpu_only=backend == "openai" or device == "cpu")
    info = open_scene(post, bands)
    buildings = (Footprints.from_vector(footprints, info, footprints_layer)
                 if footprints is not None else Footprints.from_xbd(str(xbd_labels), info))
    scenes = building_scene(post, buildings, options)
    choice = ModelChoice.resolve(model, adapter=adapter, no_adapter=no_adapter,
                                 quantize=quantize, device=device, batch_size=batch_size,
                                 use_calibration=not no_calibration)
    if pre is not None and choice.preset.family is ModelFamily.LLAVA:
        raise ParameterError(
            f"{choice.preset.name} reads one image per prompt, so it cannot compare a pre and"
            " a post crop: drop --pre, or choose a Qwen-VL model (e.g. xview2-qwen3vl)."
        )
    server = remote_server(backend, endpoint, api_key, served_model=served_model,
                           method=remote_method, concurrency=concurrency)
    model_run = (choice.local_run(DAMAGE_GRADES) if server is None
                 else choice.remote_run(server, language, reconnect=chip_engine is not None,
                                        labels=DAMAGE_GRADES))
    settings = DamageSettings(Language(language), min_confidence,
                              choice.preset.damage_answers, model_run.calibration)
    run = run_settings(output, progress, quiet, overwrite, batch_size=batch_size,
                       engine=chip_engine)
    with chip_engine or contextlib.nullcontext():
        summary = damage_buildings(scenes, run, model_run, settings).as_dict()
    if quiet or ProgressMode(progress) is ProgressMode.JSON:
        return
    left_out = summary["footprints"].get("outside", 0)
    post_only = f", {summary['post_only']} without a valid pre crop" if pre else ""
    grades = ", ".join(f"{count} {grade}" for grade, count in summary["grades"].items())
    click.echo(
        f"Wrote {summary['written']} buildings to {summary['output']}"
        f" ({summary['already_done']} already done, {summary['skipped_invalid']} under"
        f" --min-valid, {left_out} outside the scene{post_only}, {summary['seconds']:.1f} s)."
        f" In the layer: {grades}.",
        err=True,
    )

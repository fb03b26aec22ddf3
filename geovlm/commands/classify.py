"""``geovlm classify``: the disaster type of every chip of one scene, many, or a STAC event."""

from __future__ import annotations

import contextlib

import click

from geovlm.commands.options import (
    choose_gsd,
    engine_options,
    model_options,
    output_options,
    ray_engine,
    remote_options,
    remote_server,
    run_settings,
    tiling_options,
)
from geovlm.commands.tile import report_chips
from geovlm.errors import ParameterError
from geovlm.labels.prompts import Language

__all__ = ["classify"]


@click.command()
@click.argument("scenes", nargs=-1, type=str, metavar="[SCENE]...")
@output_options
@model_options
@remote_options
@click.option("--language", type=click.Choice([lang.value for lang in Language]), default="en",
              show_default=True, help="Language of the question and answers.")
@click.option("--mode", type=click.Choice(["score", "generate"]), default="score",
              show_default=True,
              help="score: a probability for every label over all its answer forms;"
                   " generate: free text, parsed.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Chips per model call.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Below this probability the label is 'uncertain'.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=24, show_default=True,
              help="Longest answer in generate mode.")
@tiling_options(default_size=None)
@click.option("--native-gsd", is_flag=True,
              help="Keep the scene's resolution instead of the preset's training resolution.")
@click.option("--no-calibration", is_flag=True,
              help="Ignore the preset's calibration (score mode's raw probabilities).")
@click.option("--dst-crs", default=None, metavar="CRS",
              help="CRS of the layer of several scenes (e.g. EPSG:32614)."
                   "  [default: the scenes' CRS, else EPSG:4326]")
@click.option("--stac", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Take the scenes from a local STAC ItemCollection, Item, Catalog or"
                   " Collection (one per item, named by its id, dated) instead of SCENE.")
@click.option("--stac-asset", default=None, metavar="KEY",
              help="The asset of every STAC item to read."
                   "  [default: visual, else the first GeoTIFF with role visual or data]")
@engine_options
def classify(
    scenes: tuple[str, ...],
    output: str,
    overwrite: bool,
    progress: str,
    quiet: bool,
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
    mode: str,
    batch_size: int,
    min_confidence: float,
    max_new_tokens: int,
    size: int | None,
    overlap: int,
    bands: tuple[int, ...] | None,
    min_valid: float,
    nodata: float | None,
    gsd: float | None,
    native_gsd: bool,
    no_calibration: bool,
    dst_crs: str | None,
    stac: str | None,
    stac_asset: str | None,
    engine: str,
    ray_address: str | None,
    ray_actors: int | None,
    ray_gpus: float | None,
) -> None:
    """Classify the disaster type of every chip of SCENE into layer ``chips`` of a GeoPackage.

    Several scenes (rasters, folders, globs, text files of paths) make one run with one model
    load and one layer, with fields ``scene`` and ``scene_chip_id``; scenes that fail to open
    are skipped with a warning. With --stac the scenes are a STAC file's items instead: ``scene``
    is the item id, and a ``datetime`` field holds each item's acquisition time.

    Chip size and ground sampling distance default to the model preset's, so chips cover the
    ground extent the model was trained on. Score mode compares every answer form the preset
    lists (its ``answers:``) and writes each chip's label, the runner-up and their probabilities.
    With --backend openai the chips go to a server (geovlm serve, vLLM); the preset still gives
    the answer forms and the calibration. With --engine ray the model works on the actors of a
    Ray cluster, which read the chips themselves; this process writes.
    """
    from geovlm.backends.choice import ModelChoice
    from geovlm.pipeline.run_scenes import one_scene, survey_scenes
    from geovlm.scenes.entry import scene_entries
    from geovlm.scenes.listing import expand_scenes, single_scene
    from geovlm.scenes.stac import read_stac_scenes
    from geovlm.scenes.tiling import TilingOptions
    from geovlm.tasks.classify import ClassifyMode, ClassifySettings, classify_scenes

    if stac is not None and scenes:
        raise ParameterError("Pass scenes as SCENE arguments or --stac, not both.")
    if stac is None and not scenes:
        raise ParameterError("No scene given; pass one or more SCENE arguments or --stac FILE.")
    if stac_asset is not None and stac is None:
        raise ParameterError("--stac-asset names the asset of STAC items; pass --stac FILE too.")
    chip_engine = ray_engine(engine, ray_address, ray_actors, ray_gpus,
                             cpu_only=backend == "openai" or device == "cpu")
    if stac is not None:
        single, event = None, read_stac_scenes(stac, stac_asset)
    else:
        single = single_scene(scenes) if dst_crs is None else None
        event = [] if single is not None else scene_entries(expand_scenes(scenes))

    choice = ModelChoice.resolve(
        model, adapter=adapter, no_adapter=no_adapter, quantize=quantize, device=device,
        batch_size=batch_size, use_calibration=not no_calibration,
    )
    preset = choice.preset
    server = remote_server(backend, endpoint, api_key, served_model=served_model,
                           method=remote_method, concurrency=concurrency)
    # Ray's actors connect for themselves: an open client does not travel.
    model_run = (choice.local_run() if server is None
                 else choice.remote_run(server, language, reconnect=chip_engine is not None))
    tiling = TilingOptions(size or preset.chip_size, overlap, bands, min_valid, nodata,
                           choose_gsd(gsd, native_gsd, preset.gsd))
    # None: each item's visual asset, else its first visual or data GeoTIFF.
    listed_by = {"stac_asset": stac_asset} if stac is not None else {}
    run_scenes = (one_scene(single, tiling) if single is not None
                  else survey_scenes(event, tiling, dst_crs, listed_by))
    settings = ClassifySettings(Language(language), ClassifyMode(mode), min_confidence,
                                max_new_tokens, preset.answers, model_run.calibration)
    run = run_settings(output, progress, quiet, overwrite, batch_size=batch_size,
                       engine=chip_engine)
    with chip_engine or contextlib.nullcontext():
        summary = classify_scenes(run_scenes, run, model_run, settings)
    report_chips(summary.as_dict(), progress, quiet)

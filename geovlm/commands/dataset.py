"""``geovlm dataset``: training sets from xBD, corrected maps or labelled vectors; inspect one.

Every builder writes the same folder (`geovlm.datasets.format`): images, LLaMA-Factory sharegpt
records for train and test, ``dataset_info.json`` and a manifest. Split, language and answer-form
options are declared once here and shared by the three sources.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import click

from geovlm.commands.options import choose_gsd, compose_options, run_options, tiling_options
from geovlm.datasets.splits import SplitBy
from geovlm.events.progress import ProgressMode
from geovlm.labels.prompts import Language
from geovlm.models.presets import DEFAULT_MODEL
from geovlm.sources.crops import DEFAULT_MARGIN_M

if TYPE_CHECKING:
    from geovlm.datasets import SplitRule, TrainingSet
    from geovlm.models.presets import ModelPreset

__all__ = ["dataset"]


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _parse_languages(
    ctx: click.Context | None, param: click.Parameter | None, value: str
) -> tuple[Language, ...]:
    """Parse ``--languages en,ja`` into languages, refusing unknown ones."""
    try:
        languages = tuple(dict.fromkeys(Language(name) for name in _names(value)))
    except ValueError as exc:
        raise click.BadParameter(f"{exc} (comma-separated, e.g. en,ja,zh).") from None
    if not languages:
        raise click.BadParameter("give at least one language, e.g. en.")
    return languages


def _parse_tasks(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    """Parse ``--tasks disaster,damage``, refusing unknown tasks."""
    from geovlm.datasets import Task

    try:
        tasks = tuple(dict.fromkeys(Task(name).value for name in _names(value)))
    except ValueError as exc:
        raise click.BadParameter(
            f"{exc} (comma-separated, e.g. disaster,damage,building-damage)."
        ) from None
    if not tasks:
        raise click.BadParameter("give at least one task, e.g. disaster.")
    return tasks


#: Options every builder shares: output, languages, answer forms, split, progress.
_set_options = compose_options(
    click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
                 metavar="DS", help="Dataset folder to write (refused if it exists)."),
    click.option("--languages", default="en,ja,zh", show_default=True,
                 callback=_parse_languages, metavar="LANG[,LANG]",
                 help="Question languages: one sample per image and language."),
    click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True, metavar="PRESET|DIR",
                 help="The preset (or `geovlm train` output folder) whose answer forms the"
                      " answers take."),
    click.option("--split", type=click.Choice([by.value for by in SplitBy]), default="tile",
                 show_default=True,
                 help="Keep whole tiles (or chip blocks) or whole events on one side."),
    click.option("--test-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.2,
                 show_default=True, help="Share of tiles (or events) drawn for test."),
    click.option("--holdout", metavar="NAME[,NAME]", default=None,
                 help="Tiles (or events with --split event) to test on, instead of a draw."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split."),
    run_options("Replace an existing dataset folder."),
)

#: Options of the sources that cut a scene into chips: the split unit and the event name.
_scene_options = compose_options(
    click.option("--block", type=click.IntRange(min=1), default=4, show_default=True,
                 help="Chips per side of a split unit: a tile split holds whole blocks out."),
    click.option("--event", default=None, metavar="NAME",
                 help="The event the scene shows (for --split event); default: its file name."),
)


def _rule(split: str, test_fraction: float, holdout: str | None, seed: int) -> SplitRule:
    from geovlm.datasets import SplitRule

    return SplitRule(SplitBy(split), test_fraction, seed, _names(holdout))


def _preset(model: str) -> ModelPreset:
    """The preset `model` names, refusing a name that is no preset, hub id or folder.

    The builders load no model, so a mistyped preset name would otherwise pass silently and
    the set would take the default answer forms and chip size.
    """
    from pathlib import Path

    from geovlm.errors import ParameterError
    from geovlm.models.preset_files import find_preset_files
    from geovlm.models.presets import resolve_model

    known = sorted(found.name for found in find_preset_files())
    if model not in known and "/" not in model and not Path(model).expanduser().is_dir():
        raise ParameterError(
            f"--model {model} names no preset: choose one of {', '.join(known)} (see `geovlm"
            " models`), a model folder written by `geovlm train`, or a hub id."
        )
    return resolve_model(model)


def _progress(progress: str, quiet: bool) -> ProgressMode:
    return ProgressMode.NONE if quiet else ProgressMode(progress)


def _report(data: TrainingSet, quiet: bool) -> None:
    """The closing line: samples per split, and what was held out."""
    if quiet:
        return
    manifest = data.manifest
    train, test = manifest["train"], manifest["test"]
    by = manifest["split"]["by"]
    if by == "event":
        held = f"events held out: {', '.join(test['events']) or 'none'}"
    else:
        tiles = sorted({sample.tile for sample in data.test})
        shown = ", ".join(tiles[:5]) + (f" and {len(tiles) - 5} more" if len(tiles) > 5 else "")
        held = f"tiles held out: {shown or 'none'}"
    click.echo(
        f"Wrote {train['samples'] + test['samples']} samples to {data.root}: train"
        f" {train['samples']} ({train['tiles']} tiles), test {test['samples']}"
        f" ({test['tiles']} tiles); {held}.",
        err=True,
    )


@click.group()
def dataset() -> None:
    """Build training sets (images plus LLaMA-Factory sharegpt records) and inspect them.

    Splits never cut through a tile: whole tiles (or blocks of chips) or whole events go to
    test, drawn with --seed and recorded in the set's manifest.
    """


@dataset.command("from-xbd")
@click.argument("xbd_dir", type=str)
@_set_options
@click.option("--tasks", default="disaster", show_default=True, callback=_parse_tasks,
              metavar="TASK[,TASK]",
              help="disaster: the disaster type of each tile; damage: the worst building damage"
                   " of each chip; building-damage: the grade of each graded building.")
@click.option("--damage-chip", type=click.IntRange(min=16), default=512, show_default=True,
              help="Chip edge in pixels for the damage task (512: 2 x 2 per 1024 tile).")
@click.option("--building-images", type=click.Choice(["pre-post", "post"]), default="pre-post",
              show_default=True,
              help="building-damage: the pre and post crops (two images), or the post crop alone.")
@click.option("--margin", "margin_m", type=click.FloatRange(min=0), default=DEFAULT_MARGIN_M,
              show_default=True, metavar="METRES",
              help="building-damage: context around each footprint's box, in metres.")
def from_xbd(xbd_dir: str, output: str, languages: tuple[Language, ...], model: str, split: str,
             test_fraction: float, holdout: str | None, seed: int, overwrite: bool,
             progress: str, quiet: bool, tasks: tuple[str, ...], damage_chip: int,
             building_images: str, margin_m: float) -> None:
    """Questions about the post-disaster tiles of XBD_DIR (a folder with images/ and labels/).

    The disaster answers are the preset's training forms; the damage questions are geovlm's own
    wording (xBD has no text). building-damage asks one question per graded building with the
    crops of its pre and post images (un-classified ones are left out and counted). Tiles are
    xBD tile names, events xBD's disasters: the buildings of a tile stay on one side.
    """
    from geovlm.datasets import Task
    from geovlm.datasets.buildings import BuildingImages
    from geovlm.datasets.from_xbd import build_from_xbd

    data = build_from_xbd(
        xbd_dir, output, verbalizer=_preset(model).answers, languages=languages,
        tasks=tuple(Task(task) for task in tasks),
        split_rule=_rule(split, test_fraction, holdout, seed), damage_chip=damage_chip,
        building_images=BuildingImages(building_images), margin_m=margin_m,
        overwrite=overwrite, progress=_progress(progress, quiet),
    )
    _report(data, quiet)


@dataset.command("from-map")
@click.argument("classified", type=str, metavar="CLASSIFIED.gpkg")
@click.option("--scene", default=None, metavar="SCENE",
              help="The classified scene, if it moved since classify; default: the recorded path.")
@_set_options
@_scene_options
def from_map(classified: str, scene: str | None, output: str, languages: tuple[Language, ...],
             model: str, split: str, test_fraction: float, holdout: str | None, seed: int,
             overwrite: bool, progress: str, quiet: bool, block: int, event: str | None) -> None:
    """Train on the chips left in a corrected `geovlm classify` GeoPackage, as labelled.

    Fix wrong labels in QGIS's attribute table and delete chips you do not trust; chips
    labelled empty or 'uncertain' are left out. Pixels are re-read from the scene with the
    classify run's tiling, so every chip trains as classify saw it.
    """
    from geovlm.datasets.from_map import build_from_map

    data = build_from_map(
        classified, output, scene=scene, verbalizer=_preset(model).answers, languages=languages,
        split_rule=_rule(split, test_fraction, holdout, seed), block=block, event=event,
        overwrite=overwrite, progress=_progress(progress, quiet),
    )
    _report(data, quiet)


@dataset.command("from-vector")
@click.argument("scene", type=str)
@click.option("--labels", "labels_path", required=True, metavar="VECTOR",
              help="A polygon layer GDAL reads (GeoPackage, Shapefile, GeoJSON), any CRS.")
@click.option("--field", required=True, metavar="NAME",
              help="The field naming each polygon's disaster type.")
@click.option("--layer", default=None, metavar="NAME",
              help="The layer of VECTOR; default: its first polygon layer.")
@click.option("--min-cover", type=click.FloatRange(0, 1, min_open=True), default=0.5,
              show_default=True,
              help="Least share of a chip one label's polygons must cover for it to be used.")
@_set_options
@_scene_options
@tiling_options(default_size=None)
@click.option("--native-gsd", is_flag=True,
              help="Keep the scene's resolution instead of the preset's training resolution.")
def from_vector(scene: str, labels_path: str, field: str, layer: str | None, min_cover: float,
                output: str, languages: tuple[Language, ...], model: str, split: str,
                test_fraction: float, holdout: str | None, seed: int, overwrite: bool,
                progress: str, quiet: bool, block: int, event: str | None, size: int | None,
                overlap: int, bands: tuple[int, ...] | None, min_valid: float,
                nodata: float | None, gsd: float | None, native_gsd: bool) -> None:
    """Label the chips of SCENE with the polygons of a vector layer that cover them.

    Chips are cut as `geovlm classify` cuts them with the same preset and options (chip size
    and GSD default to the preset's), so the set trains on what classify will see.
    """
    from geovlm.datasets.from_vector import build_from_vector
    from geovlm.scenes.tiling import TilingOptions

    preset = _preset(model)
    tiling = TilingOptions(size or preset.chip_size, overlap, bands, min_valid, nodata,
                           choose_gsd(gsd, native_gsd, preset.gsd))
    data = build_from_vector(
        scene, labels_path, field, output, verbalizer=preset.answers, tiling=tiling,
        min_cover=min_cover, layer=layer, languages=languages,
        split_rule=_rule(split, test_fraction, holdout, seed), block=block, event=event,
        overwrite=overwrite, progress=_progress(progress, quiet),
    )
    _report(data, quiet)


@dataset.command("info")
@click.argument("ds", type=str, metavar="DS")
def info(ds: str) -> None:
    """Print what a dataset holds: its source and split, and samples per split, label, language."""
    from geovlm.datasets import read_dataset

    data = read_dataset(ds)
    manifest = data.manifest
    rule = manifest["split"]
    click.echo(f"{data.root}: from {manifest['source']}, tasks {', '.join(manifest['tasks'])}")
    click.echo(f"split by {rule['by']}, test fraction {rule['test_fraction']}, seed {rule['seed']}"
               + (f", held out {', '.join(rule['holdout'])}" if rule["holdout"] else ""))
    for name, samples in (("train", data.train), ("test", data.test)):
        counts = manifest[name]
        click.echo(f"{name}: {len(samples)} samples, {counts['tiles']} tiles, events"
                   f" {', '.join(counts['events']) or 'none'}")
        for kind, counter in (
            ("label", Counter(sample.label for sample in samples)),
            ("language", Counter(sample.language.value for sample in samples)),
        ):
            listed = ", ".join(f"{key} {n}" for key, n in sorted(counter.items()))
            click.echo(f"    per {kind}: {listed or 'none'}")
    for what, count in manifest.get("left_out", {}).items():
        click.echo(f"left out: {count} {what}")

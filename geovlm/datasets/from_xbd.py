"""A training set from an xBD folder: disaster-type questions per tile, damage questions per chip.

Only post-disaster images are used (the pre-disaster image shows no disaster). The disaster
task asks the seed adapter's question about the whole tile in each language, answered with the
label's training form in the preset's verbalizer; the PNG is copied as it is (the model's
processor downscales it to ``image_max_pixels``, as LLaMA-Factory did for the seed adapter).
The damage task cuts the post image into ``damage_chip`` pixel chips and asks geovlm's own
damage question about each (`geovlm.datasets.damage`). The building-damage task asks the grade
of every graded building, with its pre and post crops or the post crop alone
(`geovlm.datasets.buildings`). Every sample's tile is the xBD tile name and its event xBD's
``disaster``, so no tile (or event), and no building of a tile, straddles train and test.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from geovlm.datasets.buildings import BuildingImages, BuildingSamples
from geovlm.datasets.damage import chip_damage, damage_answer, damage_question
from geovlm.datasets.disaster import disaster_samples, verbalizer_record
from geovlm.datasets.format import DatasetWriter, TrainingSet, read_dataset
from geovlm.datasets.samples import Sample, Task
from geovlm.datasets.splits import SplitBy, SplitRule
from geovlm.errors import ParameterError, XbdError
from geovlm.events.progress import ProgressMode, ProgressReporter
from geovlm.labels.prompts import Language
from geovlm.labels.verbalizer import Verbalizer
from geovlm.scenes.tiling import MIN_CHIP_SIZE, chip_offsets
from geovlm.sources.crops import DEFAULT_MARGIN_M
from geovlm.sources.xbd import Phase, XbdTile, read_xbd

__all__ = ["AMBIGUOUS_CHIPS", "build_from_xbd"]

#: The manifest's ``left_out`` key of damage chips that neither a grade nor "no buildings" fits.
AMBIGUOUS_CHIPS = "damage chips with buildings cut by their edge or un-classified"
#: The tasks that cut the post image, so decode it.
_CROPPING = frozenset({Task.DAMAGE, Task.BUILDING_DAMAGE})


def _read_png(path: Path, *, decode: bool) -> Image.Image | None:
    """Check a tile's PNG whole: decode it (returned, to crop) or check its chunks (to copy)."""
    try:
        with Image.open(path) as image:
            if not decode:
                image.verify()
                return None
            image.load()
            return image
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise XbdError(
            f"{path} is no readable image ({exc}); replace it with the original xBD PNG."
        ) from None


def _damage_samples(
    writer: DatasetWriter, tile: XbdTile, image: Image.Image, chip: int,
    languages: tuple[Language, ...],
) -> tuple[list[Sample], int]:
    """The damage questions of one post image's chips, and how many chips were ambiguous."""
    width, height = image.size
    size = min(chip, width, height)
    buildings = [(building.pixels, building.damage and building.damage.value)
                 for building in tile.buildings]
    samples: list[Sample] = []
    ambiguous = 0
    for row, y in enumerate(chip_offsets(height, size, size)):
        for col, x in enumerate(chip_offsets(width, size, size)):
            level = chip_damage(buildings, (x, y, x + size, y + size))
            if level is None:
                ambiguous += 1
                continue
            path = writer.add_image(f"{tile.stem}_r{row}_c{col}",
                                    image.crop((x, y, x + size, y + size)))
            samples.extend(
                Sample(path, damage_question(language), damage_answer(level, language),
                       level.value, language, Task.DAMAGE, tile.name, tile.disaster)
                for language in languages
            )
    return samples, ambiguous


def _pre_image(post: XbdTile) -> Image.Image:
    """The decoded pre-disaster image of a post tile (same folder, same pixel grid)."""
    path = post.image.with_name(f"{post.name}_{Phase.PRE.value}_disaster.png")
    if not path.is_file():
        raise XbdError(f"{post.image} has no pre-disaster image {path}: restore it, or pass"
                       " --building-images post.")
    image = _read_png(path, decode=True)
    assert image is not None
    return image


def build_from_xbd(
    xbd_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    verbalizer: Verbalizer,
    languages: tuple[Language, ...] = tuple(Language),
    tasks: Collection[Task] = (Task.DISASTER,),
    split_rule: SplitRule,
    damage_chip: int = 512,
    building_images: BuildingImages = BuildingImages.PRE_POST,
    margin_m: float = DEFAULT_MARGIN_M,
    overwrite: bool = False,
    progress: ProgressMode = ProgressMode.AUTO,
) -> TrainingSet:
    """Build a training set from the post-disaster tiles of an xBD folder.

    Parameters
    ----------
    xbd_dir
        A folder with xBD's ``images/`` and ``labels/`` (e.g. the dataset's ``train/``).
    out
        The dataset folder to write.
    verbalizer
        The answer forms of the disaster task (the preset's ``answers``); each answer is the
        label's first form.
    languages
        Question languages; one sample per image (or chip) and language.
    tasks
        `Task.DISASTER` (one question per tile), `Task.DAMAGE` (one per chip),
        `Task.BUILDING_DAMAGE` (one per graded building), or several.
    split_rule
        How tiles or events are divided between train and test.
    damage_chip
        Edge in pixels of the damage task's chips (512 cuts a 1024 tile into 2 x 2).
    building_images
        The building-damage task's crops: pre and post (two images), or post alone.
    margin_m
        The building-damage task's context around each footprint, in metres.
    overwrite
        Replace an existing dataset folder.
    progress
        How progress is reported.

    Returns
    -------
    TrainingSet
        The written set, read back.

    Raises
    ------
    XbdError
        The folder is no xBD folder, or a label or image is missing or malformed.
    ParameterError
        No task is asked, `damage_chip` is too small or `margin_m` negative.
    OutputError
        `out` exists and `overwrite` is False.
    DatasetError
        The split cannot be made (e.g. ``--holdout`` names an unknown event).
    """
    tasks = frozenset(Task(task) for task in tasks)
    if not tasks:
        raise ParameterError(
            "no task asked: pass --tasks disaster, damage, building-damage or several."
        )
    if damage_chip < MIN_CHIP_SIZE:
        raise ParameterError(f"--damage-chip {damage_chip} must be at least {MIN_CHIP_SIZE} px.")
    if margin_m < 0:
        raise ParameterError(f"--margin {margin_m} must be 0 m or more.")
    buildings = (BuildingSamples(BuildingImages(building_images), languages, margin_m)
                 if Task.BUILDING_DAMAGE in tasks else None)
    parameters = {
        "xbd": str(Path(xbd_dir).resolve()),
        "tasks": sorted(task.value for task in tasks),
        "damage_chip": damage_chip if Task.DAMAGE in tasks else None,
        "building_images": buildings and buildings.images.value,
        "margin_m": buildings and buildings.margin_m,
        "answers": verbalizer_record(verbalizer, languages),
    }
    writer = DatasetWriter(Path(out), "xbd", split_rule, parameters, overwrite=overwrite)
    tiles = read_xbd(Path(xbd_dir), Phase.POST)
    # A split that cannot be made (one event, an unknown --holdout) is refused before any copy.
    split_rule.test_units([
        tile.disaster if split_rule.by is SplitBy.EVENT else tile.name for tile in tiles
    ])
    with writer, ProgressReporter(progress, len(tiles), "tiles") as reporter:
        for tile in tiles:
            image = _read_png(tile.image, decode=bool(tasks & _CROPPING))
            if Task.DISASTER in tasks:
                path = writer.add_image(tile.stem, tile.image)
                writer.extend(disaster_samples(
                    path, tile.disaster_type, languages=languages, verbalizer=verbalizer,
                    tile=tile.name, event=tile.disaster,
                ))
            if image is not None and buildings is not None:
                pre = _pre_image(tile) if buildings.images.with_pre else None
                buildings.add_tile(writer, tile, image, pre)
            if image is not None and Task.DAMAGE in tasks:
                samples, skipped = _damage_samples(writer, tile, image, damage_chip, languages)
                writer.extend(samples)
                writer.leave_out(AMBIGUOUS_CHIPS, skipped)
            reporter.advance()
        reporter.finish(tiles=len(tiles))
    return read_dataset(out)

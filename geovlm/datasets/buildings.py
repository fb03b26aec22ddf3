"""The building-damage task of an xBD tile pair: one sample per graded building, pre and post crops.

Each building is cut as every per-building step cuts it (`geovlm.sources.crops.crop_bounds`):
a square on its pixel bounding box widened by ``margin_m`` metres on each side, converted to
pixels by the tile's measured pixel size (`geovlm.sources.xbd_scale.pixel_metres`), padded with
black where it leaves the tile and resized to `CROP_PIXELS`. xBD's pre and post images of a
tile share one pixel grid, so the same box cuts both. The question is
`geovlm.labels.building_damage.building_question` (two images, the pre crop first, or the post
crop alone) and the answer the grade's training sentence (`grade_answer`). ``un-classified``
buildings have no grade to teach and are left out (counted in the manifest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from geovlm.datasets.format import DatasetWriter
from geovlm.datasets.samples import Sample, Task
from geovlm.enums import CheckedEnum
from geovlm.labels.building_damage import GRADES, building_question, grade_answer
from geovlm.labels.prompts import Language
from geovlm.sources.crops import CROP_PIXELS, DEFAULT_MARGIN_M, pixel_box
from geovlm.sources.xbd import XbdTile
from geovlm.sources.xbd_scale import pixel_metres

__all__ = ["UNGRADED", "BuildingImages", "BuildingSamples"]

Bounds = tuple[float, float, float, float]

#: The manifest's ``left_out`` key of buildings without a grade.
UNGRADED = "un-classified buildings"


class BuildingImages(CheckedEnum):
    """Which crops a building-damage question shows: pre and post, or post alone.

    Examples
    --------
    >>> BuildingImages("post").with_pre
    False
    """

    PRE_POST = "pre-post"
    POST = "post"

    @property
    def with_pre(self) -> bool:
        """Whether the pre-disaster crop comes first in the prompt."""
        return self is BuildingImages.PRE_POST


@dataclass(frozen=True, slots=True)
class BuildingSamples:
    """Makes the building-damage samples of xBD tiles, writing their crops into a dataset.

    Attributes
    ----------
    images
        Pre and post crops, or post alone.
    languages
        One sample per building and language.
    margin_m
        Context around each footprint's bounding box, in metres.
    """

    images: BuildingImages = BuildingImages.PRE_POST
    languages: Sequence[Language] = tuple(Language)
    margin_m: float = DEFAULT_MARGIN_M

    def add_tile(
        self, writer: DatasetWriter, post: XbdTile, post_image: Image.Image,
        pre_image: Image.Image | None,
    ) -> None:
        """Add one sample per graded building of a tile pair (and count the ungraded).

        Parameters
        ----------
        writer
            The open dataset.
        post
            The post-disaster tile, with the buildings' grades.
        post_image, pre_image
            Its decoded image and the pre-disaster one (None when `images` is post alone).
        """
        margin_px = self.margin_m / pixel_metres(post)
        for building in post.buildings:
            grade = building.damage
            if grade is None or grade not in GRADES:
                writer.leave_out(UNGRADED)
                continue
            box = pixel_box(building.pixels.bounds, margin_px)
            name = f"{post.name}_{building.uid}"
            paths = [writer.add_image(f"{name}_post", _crop(post_image, box))]
            if pre_image is not None:
                paths.insert(0, writer.add_image(f"{name}_pre", _crop(pre_image, box)))
            writer.extend(
                Sample(paths[0], building_question(language, with_pre=self.images.with_pre),
                       grade_answer(grade, language), grade.value,
                       language, Task.BUILDING_DAMAGE, post.name, post.disaster,
                       more_images=tuple(paths[1:]), building=building.uid)
                for language in self.languages
            )


def _crop(image: Image.Image, box: Bounds) -> Image.Image:
    """The box of `image` (black beyond its edges), resized to the model's crop size."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return rgb.crop(box).resize((CROP_PIXELS, CROP_PIXELS), Image.Resampling.BILINEAR)

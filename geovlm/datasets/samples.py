r"""One training sample: images with a question and its answer, as a sharegpt record.

`Sample.to_record` and `Sample.from_record` are the one place LLaMA-Factory's multimodal sharegpt
record is spelled: the user turn is ``"<image>\n"`` once per image, then the question, and
``images`` the list of their paths in the same order (LLaMA-Factory's multi-image rule: as many
``<image>`` as images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from geovlm.enums import CheckedEnum
from geovlm.errors import DatasetError
from geovlm.labels.prompts import Language

__all__ = ["IMAGE_TOKEN", "Sample", "Split", "Task"]

#: LLaMA-Factory's image placeholder in a user turn.
IMAGE_TOKEN = "<image>"
#: What precedes the question once per image (the chat template puts a newline after an image).
_IMAGES_PREFIX = f"{IMAGE_TOKEN}\n"


class Split(CheckedEnum):
    """Which part of a dataset a sample belongs to."""

    TRAIN = "train"
    TEST = "test"


class Task(CheckedEnum):
    """What a sample asks: an image's disaster type, the damage within it, or one building's."""

    DISASTER = "disaster"
    DAMAGE = "damage"
    #: The grade of the building in the centre of a crop (pre and post crops, or post alone).
    BUILDING_DAMAGE = "building-damage"


@dataclass(frozen=True, slots=True)
class Sample:
    """One question about one image (or several), its answer, and where the images came from.

    Attributes
    ----------
    image
        The (first) picture's path relative to the dataset folder, e.g. ``images/t1.png``.
    question, answer
        The user's question (no chat markup, no ``<image>``) and the assistant's reply.
    label
        The class the answer names (a `geovlm.labels.prompts.DisasterLabel` value for the disaster
        task), kept so evaluation never parses answers.
    language, task
        The question's language and kind.
    tile
        The unit a tile split keeps whole (an xBD tile, or a scene); chips of one tile never
        straddle train and test.
    event
        The disaster (xBD's ``disaster``, or the analyst's name for a scene's event); an event
        split holds whole events out.
    more_images
        The pictures after the first, in prompt order (a building's post crop after its pre
        crop); empty for one-image questions.
    building
        The building asked about (xBD's ``uid``) in a building-damage sample, so that its
        grade can be put back into the tile (the xView2 rasters); empty otherwise.
    """

    image: str
    question: str
    answer: str
    label: str
    language: Language
    task: Task
    tile: str
    event: str
    more_images: tuple[str, ...] = ()
    building: str = ""

    @property
    def images(self) -> tuple[str, ...]:
        """Every picture of the question, in prompt order."""
        return (self.image, *self.more_images)

    def to_record(self) -> dict[str, Any]:
        """Return the sharegpt record LLaMA-Factory reads, with geovlm's fields beside it."""
        return {
            "messages": [
                {"role": "user", "content": _IMAGES_PREFIX * len(self.images) + self.question},
                {"role": "assistant", "content": self.answer},
            ],
            "images": list(self.images),
            "geovlm": {
                "label": self.label,
                "language": self.language.value,
                "task": self.task.value,
                "tile": self.tile,
                "event": self.event,
                **({"building": self.building} if self.building else {}),
            },
        }

    @classmethod
    def from_record(cls, record: Any, where: str) -> Sample:
        """Read a record written by `to_record`.

        Parameters
        ----------
        record
            One element of ``train.json`` or ``test.json``.
        where
            Names the record in errors, e.g. ``"DS/train.json record 3"``.

        Returns
        -------
        Sample

        Raises
        ------
        DatasetError
            If the record breaks LLaMA-Factory's rules or lacks geovlm's fields.
        """
        def broken(reason: str) -> DatasetError:
            return DatasetError(f"{where} {reason}: rebuild the dataset with `geovlm dataset`.")

        try:
            user, assistant = record["messages"]
            images = record["images"]
            meta = record["geovlm"]
            question = str(user["content"])
            roles = (user["role"], assistant["role"])
            paths = [str(path) for path in images] if isinstance(images, list) else []
            sample = cls(
                image=paths[0] if paths else "",
                question=_after_images(question, len(paths)),
                answer=str(assistant["content"]),
                label=str(meta["label"]),
                language=Language(meta["language"]),
                task=Task(meta["task"]),
                tile=str(meta["tile"]),
                event=str(meta["event"]),
                more_images=tuple(paths[1:]),
                building=str(meta.get("building", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise broken(f"is not a geovlm sharegpt record ({type(exc).__name__}: {exc})") from None
        if not isinstance(images, list) or not images:
            raise broken("must have 'images' as a list of one path or more")
        if roles != ("user", "assistant"):
            raise broken(f"has turns {roles}, not user then assistant")
        if question.count(IMAGE_TOKEN) != len(images):
            raise broken(f"has {question.count(IMAGE_TOKEN)} {IMAGE_TOKEN} for {len(images)}"
                         f" image{'s' if len(images) > 1 else ''}")
        if IMAGE_TOKEN in sample.question:
            raise broken(f"must put every {IMAGE_TOKEN} before the question, one per line")
        return sample


def _after_images(content: str, count: int) -> str:
    """The question after the first ``count`` leading ``<image>`` (each with or without newline)."""
    for _ in range(count):
        content = content.lstrip("\n").removeprefix(IMAGE_TOKEN)
    return content.lstrip("\n")

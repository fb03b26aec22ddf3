r"""One training sample: an image with a question and its answer, as a sharegpt record.

`Sample.to_record` and `Sample.from_record` are the one place LLaMA-Factory's multimodal sharegpt
record is spelled: the user turn is ``"<image>\n" + question``, ``images`` a list.
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


class Split(CheckedEnum):
    """Which part of a dataset a sample belongs to."""

    TRAIN = "train"
    TEST = "test"


class Task(CheckedEnum):
    """What a sample asks: the disaster type of an image, or the damage within it."""

    DISASTER = "disaster"
    DAMAGE = "damage"


@dataclass(frozen=True, slots=True)
class Sample:
    """One question about one image, its answer, and where the image came from.

    Attributes
    ----------
    image
        The picture's path relative to the dataset folder, e.g. ``images/t1.png``.
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
    """

    image: str
    question: str
    answer: str
    label: str
    language: Language
    task: Task
    tile: str
    event: str

    def to_record(self) -> dict[str, Any]:
        """Return the sharegpt record LLaMA-Factory reads, with geovlm's fields beside it."""
        return {
            "messages": [
                {"role": "user", "content": f"{IMAGE_TOKEN}\n{self.question}"},
                {"role": "assistant", "content": self.answer},
            ],
            "images": [self.image],
            "geovlm": {
                "label": self.label,
                "language": self.language.value,
                "task": self.task.value,
                "tile": self.tile,
                "event": self.event,
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
            sample = cls(
                image=str(images[0]) if isinstance(images, list) and images else "",
                question=question.replace(IMAGE_TOKEN, "", 1).lstrip("\n"),
                answer=str(assistant["content"]),
                label=str(meta["label"]),
                language=Language(meta["language"]),
                task=Task(meta["task"]),
                tile=str(meta["tile"]),
                event=str(meta["event"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise broken(f"is not a geovlm sharegpt record ({type(exc).__name__}: {exc})") from None
        if not isinstance(images, list) or len(images) != 1:
            raise broken("must have 'images' as a list of one path")
        if roles != ("user", "assistant"):
            raise broken(f"has turns {roles}, not user then assistant")
        if question.count(IMAGE_TOKEN) != len(images):
            raise broken(f"has {question.count(IMAGE_TOKEN)} {IMAGE_TOKEN} for {len(images)} image")
        return sample

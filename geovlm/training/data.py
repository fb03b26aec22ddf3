"""Training sequences from dataset samples, rendered and tokenized exactly as at inference.

A sequence is the prompt (`geovlm.backends.chat.ChatFormat.render` with the sample's images,
one placeholder each in order, through the processor's own call,
`geovlm.backends.encoding.processor_inputs`) followed by the answer's tokens and the end-of-turn
token (`geovlm.backends.encoding.answer_ids`): the very tokens `HFBackend.score` later scores.
Loss falls on the answer and end-of-turn tokens only; every other label is -100. `Collator`
pads on the right and concatenates the images' pixels, so one batch may mix samples of one
image (a chip) and of two (a building's pre and post crops).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from geovlm.backends.chat import ChatFormat, PromptTemplate
from geovlm.backends.encoding import answer_ids, image_size_kwargs, processor_inputs
from geovlm.datasets.format import TrainingSet
from geovlm.datasets.samples import Sample
from geovlm.errors import DatasetError, ParameterError

__all__ = ["IGNORE_INDEX", "Collator", "SequenceBuilder", "SupervisedDataset"]

#: The label of tokens that carry no loss (the prompt, the image, padding).
IGNORE_INDEX = -100
#: Per-token keys, padded on the right with these values; other keys are concatenated.
_PADDING = {"input_ids": None, "labels": IGNORE_INDEX, "attention_mask": 0, "mm_token_type_ids": 0}


@dataclass(frozen=True)
class SequenceBuilder:
    """Builds one training sequence from a question, its images and its answer.

    Attributes
    ----------
    processor
        The model's processor.
    chat
        How prompts are rendered (the same `ChatFormat` inference uses).
    size_kwargs
        The processor's image-size arguments (`image_size_kwargs`).
    end_of_turn
        The id of the token that closes the assistant's turn.
    cutoff_len
        The longest sequence; longer answers are cut (the prompt never is).
    """

    processor: Any
    chat: ChatFormat
    size_kwargs: dict[str, Any]
    end_of_turn: int
    cutoff_len: int

    @classmethod
    def for_processor(
        cls, processor: Any, template: str | None, image_max_pixels: int | None, cutoff_len: int
    ) -> SequenceBuilder:
        """Set up the rendering and tokenization a model's inference uses.

        Parameters
        ----------
        processor
            The model's processor.
        template
            A named chat format (``qwen3_vl_nothink``) or None for the model's own.
        image_max_pixels
            Cap on each image's pixels, or None.
        cutoff_len
            The longest sequence in tokens.

        Returns
        -------
        SequenceBuilder

        Raises
        ------
        ParameterError
            If the template does not fit the model's tokenizer, or the pixel cap is not positive.
        """
        tokenizer = getattr(processor, "tokenizer", processor)
        chosen = PromptTemplate(template) if template is not None else None
        chat = ChatFormat(processor, tokenizer, chosen)
        end = chat.end_of_turn_id()
        if end is None or end == tokenizer.unk_token_id:
            raise ParameterError(
                f"chat template {template!r} does not fit this model's tokenizer: set template"
                " to null to use the model's own."
            )
        return cls(processor, chat, image_size_kwargs(processor, image_max_pixels), end,
                   cutoff_len)

    @property
    def pad_id(self) -> int:
        """The tokenizer's padding id."""
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        return int(tokenizer.pad_token_id)

    def build(
        self, question: str, answer: str, images: Image.Image | Sequence[Image.Image]
    ) -> dict[str, torch.Tensor]:
        """One sequence: prompt and images, then answer and end of turn, with its labels.

        Parameters
        ----------
        question
            The user's question, without chat markup.
        answer
            The assistant's reply.
        images
            The picture the question is about, or its pictures in prompt order.

        Returns
        -------
        dict of str to torch.Tensor
            1-D ``input_ids``, ``labels``, ``attention_mask`` (and ``mm_token_type_ids`` where
            the processor makes them); the pixels and grid as the processor returns them (one
            ``image_grid_thw`` row per image).

        Raises
        ------
        ParameterError
            If the prompt with its image tokens alone reaches ``cutoff_len``.
        """
        pictures = [images] if isinstance(images, Image.Image) else list(images)
        prompt = self.chat.render(question, image=len(pictures))
        rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in pictures]
        encoded = processor_inputs(self.processor, [prompt], rgb, self.size_kwargs)
        prompt_ids = encoded.pop("input_ids")[0]
        encoded.pop("attention_mask", None)
        room = self.cutoff_len - len(prompt_ids)
        if room < 1:
            raise ParameterError(
                f"a prompt with its images is {len(prompt_ids)} tokens, not below cutoff_len"
                f" {self.cutoff_len}: raise cutoff_len or lower image_max_pixels."
            )
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        reply = torch.tensor(answer_ids(tokenizer, answer, self.end_of_turn)[:room])
        sequence = {
            "input_ids": torch.cat([prompt_ids, reply]),
            "labels": torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), reply]),
            "attention_mask": torch.ones(len(prompt_ids) + len(reply), dtype=torch.long),
        }
        if (types := encoded.pop("mm_token_type_ids", None)) is not None:
            sequence["mm_token_type_ids"] = torch.cat([types[0], torch.zeros_like(reply)])
        return {**sequence, **encoded}


class SupervisedDataset(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """A dataset's training samples as sequences, their images read when the sample is drawn.

    Parameters
    ----------
    data
        The dataset folder as read.
    builder
        Renders and tokenizes each sample.
    """

    def __init__(self, data: TrainingSet, builder: SequenceBuilder) -> None:
        if not data.train:
            raise DatasetError(
                f"{data.root} has no training samples: build it with a test fraction below 1."
            )
        self.data = data
        self.builder = builder
        self.samples: tuple[Sample, ...] = data.train

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index]
        images = [_read_image(path) for path in self.data.image_paths(sample)]
        return self.builder.build(sample.question, sample.answer, images)


def _read_image(path: Path) -> Image.Image:
    """A dataset picture, decoded, or a `DatasetError` naming it."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except OSError as exc:
        raise DatasetError(
            f"{path} is not a readable image ({exc}): rebuild the dataset."
        ) from None


@dataclass(frozen=True)
class Collator:
    """Pads sequences on the right and concatenates the images' pixels into one batch.

    Qwen-VL's ``pixel_values`` are flattened patches of all images and ``image_grid_thw`` one
    row per image, so both are concatenated, never stacked.

    Attributes
    ----------
    pad_id
        The token id that pads ``input_ids``.
    """

    pad_id: int

    def __call__(self, features: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Return the batch of ``features`` (each `SequenceBuilder.build`'s output)."""
        longest = max(len(f["input_ids"]) for f in features)
        batch: dict[str, torch.Tensor] = {}
        for key in features[0]:
            if key in _PADDING:
                fill = self.pad_id if _PADDING[key] is None else _PADDING[key]
                batch[key] = torch.stack([
                    torch.nn.functional.pad(f[key], (0, longest - len(f[key])), value=fill)
                    for f in features
                ])
            else:
                batch[key] = torch.cat([f[key] for f in features])
        return batch

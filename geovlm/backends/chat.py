"""Render a user question into a model's chat format, and find the token that ends its turns.

With no named template the model's own chat template (processor or tokenizer) is used. A named
`PromptTemplate` reproduces a training framework's format token for token, e.g. LLaMA-Factory's
``qwen3_vl_nothink``, which puts a newline after the image that Qwen3-VL's own template does not.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["ChatFormat", "PromptTemplate"]

_SENTINEL = "GEOVLMANSWERSENTINEL"


class PromptTemplate(enum.Enum):
    r"""Named chat formats that differ from a model's own chat template.

    Examples
    --------
    >>> print(PromptTemplate("qwen3_vl_nothink").render("Why?", image=True))
    <|im_start|>user
    <|vision_start|><|image_pad|><|vision_end|>
    Why?<|im_end|>
    <|im_start|>assistant
    <BLANKLINE>
    """

    #: LLaMA-Factory's ``qwen3_vl_nothink``: no system turn, no think block, newline after image.
    QWEN3_VL_NOTHINK = "qwen3_vl_nothink"

    @classmethod
    def _missing_(cls, value: object) -> PromptTemplate:
        options = ", ".join(repr(t.value) for t in cls)
        raise ValueError(f"unknown chat template {value!r}: choose one of {options}")

    def render(self, question: str, *, image: bool) -> str:
        """The prompt text for one user turn followed by the assistant's generation prompt.

        Parameters
        ----------
        question
            The user's question.
        image
            Whether one image precedes the question.

        Returns
        -------
        str
            Image placeholders appear once; the processor expands them to the image's tokens.
        """
        picture = "<|vision_start|><|image_pad|><|vision_end|>\n" if image else ""
        return f"<|im_start|>user\n{picture}{question}<|im_end|>\n<|im_start|>assistant\n"

    @property
    def end_of_turn(self) -> str:
        """The special token that closes the assistant's turn."""
        return "<|im_end|>"


@dataclass(frozen=True)
class ChatFormat:
    """How one model's prompts are written: its own chat template or a named `PromptTemplate`.

    Attributes
    ----------
    renderer
        The processor or tokenizer whose ``apply_chat_template`` is used when ``template`` is None.
    tokenizer
        The tokenizer, to find the end-of-turn token's id.
    template
        A named format overriding the model's own, or None.
    """

    renderer: Any
    tokenizer: Any
    template: PromptTemplate | None = None

    def render(self, question: str, *, image: bool) -> str:
        """One user turn (with one image if ``image``) and the assistant's generation prompt.

        Parameters
        ----------
        question
            The user's question, without any chat markup.
        image
            Whether the turn carries one image (placed before the question).

        Returns
        -------
        str
            The prompt text, including any BOS token the template writes: tokenize it with
            ``add_special_tokens=False``.
        """
        if self.template is not None:
            return self.template.render(question, image=image)
        return self.renderer.apply_chat_template(
            [_user(question, image)], add_generation_prompt=True, tokenize=False
        )

    def end_of_turn_id(self) -> int:
        """The id of the token that ends an assistant turn (``<|im_end|>``, ``<end_of_turn>``).

        Read from the template itself: the first special token it writes after an answer, or the
        tokenizer's EOS token if it writes none.

        Returns
        -------
        int
        """
        if self.template is not None:
            return self.tokenizer.convert_tokens_to_ids(self.template.end_of_turn)
        text = self.renderer.apply_chat_template(
            [_user("?", False), {"role": "assistant", "content": _SENTINEL}], tokenize=False
        )
        suffix = text[text.rindex(_SENTINEL) + len(_SENTINEL) :]
        special = set(self.tokenizer.all_special_ids)
        ids = self.tokenizer(suffix, add_special_tokens=False)["input_ids"]
        return next((i for i in ids if i in special), self.tokenizer.eos_token_id)


def _user(question: str, image: bool) -> dict[str, Any]:
    if not image:
        return {"role": "user", "content": question}
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}

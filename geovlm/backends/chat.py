r"""Render a user question into a model's chat format, and find the token that ends its turns.

With no named template the model's own chat template (processor or tokenizer) is used. A named
`PromptTemplate` reproduces a training framework's format token for token, e.g. LLaMA-Factory's
``qwen3_vl_nothink``, which puts a newline after the image that Qwen3-VL's own template does not.
A turn may carry several images (a pre and a post crop): one placeholder each, in order, before
its text, as LLaMA-Factory's ``"<image>\n" * n + question`` renders.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ChatFormat", "ChatTurn", "PromptTemplate"]

_SENTINEL = "GEOVLMANSWERSENTINEL"
#: One image's placeholder in `PromptTemplate` formats (the processor expands it).
_PICTURE = "<|vision_start|><|image_pad|><|vision_end|>\n"


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One message of a conversation: its role, its text and how many images precede it."""

    role: str
    text: str
    #: Images before the text (True: one).
    image: int = 0


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
    >>> PromptTemplate("qwen3_vl_nothink").render("Why?", image=2).count("<|image_pad|>")
    2
    """

    #: LLaMA-Factory's ``qwen3_vl_nothink``: no system turn, no think block, newline after image.
    QWEN3_VL_NOTHINK = "qwen3_vl_nothink"

    @classmethod
    def _missing_(cls, value: object) -> PromptTemplate:
        options = ", ".join(repr(t.value) for t in cls)
        raise ValueError(f"unknown chat template {value!r}: choose one of {options}")

    def render(self, question: str, *, image: int) -> str:
        """The prompt text for one user turn followed by the assistant's generation prompt.

        Parameters
        ----------
        question
            The user's question.
        image
            How many images precede the question (True: one, False: none).

        Returns
        -------
        str
            One placeholder per image, in order; the processor expands each to its tokens.
        """
        pictures = _PICTURE * int(image)
        return f"<|im_start|>user\n{pictures}{question}<|im_end|>\n<|im_start|>assistant\n"

    def render_turns(self, turns: Sequence[ChatTurn], *, add_generation_prompt: bool,
                     continue_final_message: bool) -> str:
        """A whole conversation in this format (see `ChatFormat.render_turns`)."""
        text = "".join(
            f"<|im_start|>{t.role}\n{_PICTURE * int(t.image)}{t.text}<|im_end|>\n"
            for t in turns
        )
        if continue_final_message:
            return text.removesuffix("<|im_end|>\n")
        return text + "<|im_start|>assistant\n" if add_generation_prompt else text

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

    def render(self, question: str, *, image: int) -> str:
        """One user turn (with ``image`` images) and the assistant's generation prompt.

        Parameters
        ----------
        question
            The user's question, without any chat markup.
        image
            How many images the turn carries (True: one), placed in order before the question.

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

    def render_turns(self, turns: Sequence[ChatTurn], *, add_generation_prompt: bool = True,
                     continue_final_message: bool = False) -> str:
        """A whole conversation, as vLLM renders a chat request's messages.

        Parameters
        ----------
        turns
            The messages (system, user, assistant), images as placeholders.
        add_generation_prompt
            Whether to open the assistant's next turn after the last message.
        continue_final_message
            Whether to leave the last message (the assistant's) open, without its end of turn,
            so that its tokens are a prefix of the answer (vLLM's prefill).

        Returns
        -------
        str
            The prompt text; tokenize it with ``add_special_tokens=False``.
        """
        if self.template is not None:
            return self.template.render_turns(
                turns, add_generation_prompt=add_generation_prompt,
                continue_final_message=continue_final_message,
            )
        messages = [_user(t.text, t.image) if t.image else {"role": t.role, "content": t.text}
                    for t in turns]
        return self.renderer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message, tokenize=False,
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


def _user(question: str, images: int) -> dict[str, Any]:
    if not images:
        return {"role": "user", "content": question}
    pictures: list[dict[str, str]] = [{"type": "image"} for _ in range(int(images))]
    return {"role": "user", "content": [*pictures, {"type": "text", "text": question}]}

"""Request bodies of the server's endpoints and the parsing of OpenAI chat messages.

Chat completions follow OpenAI's format; ``structured_outputs: {"choice": [...]}``,
``prompt_logprobs``, ``add_generation_prompt`` and ``continue_final_message`` are vLLM's
extensions (vLLM 0.12 removed the older ``guided_choice``). `ClassifyRequest` is geovlm's own,
documented in ``docs/serve.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from geovlm.backends.chat import ChatTurn
from geovlm.errors import InputError
from geovlm.labels.prompts import Language

__all__ = ["ChatRequest", "ClassifyRequest", "Conversation", "RequestRejected", "conversation"]


class RequestRejected(InputError):
    """A request the server cannot answer as asked (400 with the reason)."""


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``: OpenAI's fields the server uses, others ignored."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    n: int = 1
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    structured_outputs: dict[str, Any] | None = None
    #: vLLM's extensions: the log-probability of every prompt token (with this many
    #: alternatives), and how the messages are rendered (see ``docs/serve.md``).
    prompt_logprobs: int | None = Field(default=None, ge=0, le=20)
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    echo: bool = False


class ClassifyRequest(BaseModel):
    """``POST /v1/classify``: chips as base64 images and the language of the question."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    images: list[str] = Field(min_length=1)
    language: Language = Language.EN
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    #: False returns score mode's raw probabilities (the preset's calibration not applied).
    calibration: bool = True
    #: True adds the answer forms and each chip's probability per form.
    forms: bool = False


@dataclass(frozen=True, slots=True)
class Conversation:
    """A chat request's messages as turns, and the URLs of their images, in order."""

    turns: tuple[ChatTurn, ...]
    #: Every image of the conversation, in the order its placeholders are rendered.
    image_urls: tuple[str, ...]


def conversation(messages: list[dict[str, Any]]) -> Conversation:
    """The turns of a chat request: text parts joined by newlines, images in order.

    A user message may carry several images (a pre and a post crop): each becomes one
    placeholder before the message's text, as in-process prompts render them.

    Parameters
    ----------
    messages
        OpenAI chat messages: ``system``, ``user`` and ``assistant`` roles; an image only in a
        user message.

    Returns
    -------
    Conversation

    Raises
    ------
    RequestRejected
        Another role, an unknown part type, or an image outside a user message.
    """
    turns: list[ChatTurn] = []
    images: list[str] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role not in _ROLES:
            raise RequestRejected(f"messages[{index}] has role {role!r}: geovlm serve reads"
                                  " system, user and assistant messages.")
        text, urls = _parts(message.get("content"), f"messages[{index}]")
        if urls and role != "user":
            raise RequestRejected(f"messages[{index}] is a {role} message with an image:"
                                  " send images in user messages.")
        images += urls
        turns.append(ChatTurn(role, text, len(urls)))
    return Conversation(tuple(turns), tuple(images))


#: The message roles a conversation may have.
_ROLES = ("system", "user", "assistant")


def _parts(content: Any, where: str) -> tuple[str, list[str]]:
    """A message's text (parts joined by newlines) and its image URLs."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise RequestRejected(f"{where}: content must be a string or a list of parts.")
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and isinstance(part.get("image_url"), dict | str):
            url = part["image_url"]
            images.append(url.get("url", "") if isinstance(url, dict) else url)
        else:
            raise RequestRejected(
                f"{where}: unsupported content part {kind!r}: use text and image_url."
            )
    return "\n".join(texts), images

"""Request bodies of the server's endpoints and the parsing of OpenAI chat messages.

Chat completions follow OpenAI's format; ``structured_outputs: {"choice": [...]}`` is vLLM's
extension (vLLM 0.12 removed the older ``guided_choice``). `ClassifyRequest` is geovlm's own,
documented in ``docs/serve.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from geovlm.errors import InputError
from geovlm.prompts import Language

__all__ = ["ChatRequest", "ClassifyRequest", "RequestRejected", "UserTurn", "user_turn"]


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
    structured_outputs: dict[str, Any] | None = None


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
class UserTurn:
    """The one user message a chat request carries: its text and its image URL, if any."""

    text: str
    image_url: str | None


def user_turn(messages: list[dict[str, Any]]) -> UserTurn:
    """The user turn of a chat request: text parts joined by newlines, at most one image.

    Parameters
    ----------
    messages
        OpenAI chat messages.

    Returns
    -------
    UserTurn

    Raises
    ------
    RequestRejected
        Not exactly one user message, another role, an unknown part type, or two images.
    """
    if len(messages) != 1 or messages[0].get("role") != "user":
        roles = ", ".join(str(m.get("role")) for m in messages)
        raise RequestRejected(
            f"geovlm serve answers one user message (with at most one image), not: {roles}."
        )
    content = messages[0].get("content")
    if isinstance(content, str):
        return UserTurn(content, None)
    if not isinstance(content, list):
        raise RequestRejected("message content must be a string or a list of parts.")
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
            raise RequestRejected(f"unsupported content part {kind!r}: use text and image_url.")
    if len(images) > 1:
        raise RequestRejected(f"{len(images)} images in one message: send one per request.")
    return UserTurn("\n".join(texts), images[0] if images else None)

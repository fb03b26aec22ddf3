"""Reaching an OpenAI-compatible server: its API base URL, the models it lists, its errors.

Every remote backend starts here (`open_api`): the official ``openai`` client on the base URL,
and the server's `/models` list. A base URL without its ``/v1`` (``http://host:8000``) is the
commonest slip: where it has no API, its ``/v1`` is tried before the user is told, in one
sentence, that neither has one. Client failures after the client's retries become
`EndpointError` (`api_call`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import openai
from openai.types import Model

from geovlm.errors import EndpointError

__all__ = ["ServedWeights", "api_bases", "api_call", "open_api"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ServedWeights:
    """The weights a server says a served model id runs: a base model and any LoRA adapter.

    Read from its `/v1/models` entry: geovlm serve gives ``root`` (the base) and ``adapter``;
    vLLM gives a LoRA module's path or hub id as ``root`` and its base as ``parent``, and a base
    model's as ``root`` alone.
    """

    base: str
    adapter: str | None

    @classmethod
    def from_entry(cls, entry: Any, listed: Sequence[Any] = ()) -> ServedWeights | None:
        """The entry's weights, or None when it does not name them.

        Parameters
        ----------
        entry
            The served model's `/v1/models` entry.
        listed
            All the entries: a vLLM LoRA's ``parent`` is its base's served id, whose ``root``
            names the weights.
        """
        root, parent = getattr(entry, "root", None), getattr(entry, "parent", None)
        if not isinstance(root, str) or not root:
            return None
        if getattr(entry, "owned_by", None) == "geovlm":
            extra = getattr(entry, "model_extra", None) or {}
            if "adapter" not in extra:  # a geovlm serve from before it said
                return None
            adapter = extra["adapter"]
            return cls(root, adapter if isinstance(adapter, str) else None)
        if isinstance(parent, str) and parent:
            base = next((other.root for other in listed
                         if other.id == parent and isinstance(getattr(other, "root", None), str)),
                        parent)
            return cls(base, root)
        return cls(root, None)

    def __str__(self) -> str:
        return self.base if self.adapter is None else f"{self.base} + {self.adapter}"


def api_bases(endpoint: str) -> list[str]:
    """The base URLs tried for `endpoint`: itself, then its ``/v1`` unless it ends so.

    Examples
    --------
    >>> api_bases("http://h:8000/")
    ['http://h:8000/', 'http://h:8000/v1']
    >>> api_bases("http://h:8000/v1")
    ['http://h:8000/v1']
    """
    trimmed = endpoint.rstrip("/")
    return [endpoint] if trimmed.endswith("/v1") else [endpoint, f"{trimmed}/v1"]


def open_api(endpoint: str, *, api_key: str | None, retries: int,
             timeout_s: float) -> tuple[openai.OpenAI, list[Model]]:
    """A client on the endpoint's API and the models it lists, trying its ``/v1`` if need be.

    Parameters
    ----------
    endpoint
        ``--endpoint``: the API's base URL, e.g. ``http://gpu-host:8000/v1``.
    api_key
        Sent as ``Authorization: Bearer``; None for servers without keys.
    retries
        The client's retries of a request on 429, 5xx and lost connections, with backoff.
    timeout_s
        Per-request timeout.

    Returns
    -------
    tuple
        The client, whose ``base_url`` is the one that answered, and the served models.

    Raises
    ------
    EndpointError
        The endpoint does not answer, refuses the key, or neither it nor its ``/v1`` lists
        models.
    """
    bases = api_bases(endpoint)
    for base in bases:
        client = openai.OpenAI(base_url=base, api_key=api_key or "none",
                               max_retries=retries, timeout=timeout_s)
        served = _models(client, base)
        if served is not None:
            if base != endpoint:
                log.info("%s has no OpenAI-compatible API: using %s", endpoint, base)
            return client, served
    guess = "." if len(bases) == 1 else f"; did you mean {bases[1]}?"
    raise EndpointError(f"no OpenAI-compatible API at {endpoint}{guess}")


def _models(client: openai.OpenAI, base: str) -> list[Model] | None:
    """The models `base` lists, or None where it answers 404 or something else than a list."""
    listing = client.with_options(max_retries=1)  # a typo should not wait through retries

    def models() -> object:
        try:
            return listing.get("/models", cast_to=object)
        except openai.NotFoundError:
            return None

    body = api_call(base, models)
    entries = body.get("data") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not all(isinstance(entry, dict) and "id" in entry
                                                for entry in entries):
        return None
    return [Model.construct(**entry) for entry in entries]


def api_call(endpoint: str, request: Callable[[], T]) -> T:
    """Run one client request, its failures (after the client's retries) as `EndpointError`."""
    try:
        return request()
    except openai.AuthenticationError:
        raise EndpointError(f"{endpoint} refused the API key: pass the right --api-key.") from None
    except openai.APIConnectionError:
        raise EndpointError(
            f"{endpoint} did not answer (after retries): check --endpoint and that the server"
            " runs."
        ) from None
    except openai.APIStatusError as exc:
        raise EndpointError(f"{endpoint} answered {exc.status_code}: {exc.message}") from None

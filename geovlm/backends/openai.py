"""A model behind an OpenAI-compatible endpoint (geovlm serve, vLLM) as a `Backend`.

Built on the official ``openai`` client, whose retries (exponential backoff, ``Retry-After``
honoured) cover 429, 503 and lost connections. Chips of a batch are sent concurrently, one
request each, at most ``concurrency`` at a time; the server batches them again.

How answer forms get probabilities (`RemoteMethod`, recorded with the run):

- ``geovlm-classify``: geovlm serve's ``/v1/classify`` scores every form exactly as in-process
  score mode does (full-sequence log-likelihoods), so results equal in-process classify.
- ``chat-logprobs``: chat completions with one token and ``top_logprobs``; a label's mass is
  its forms' distinct first tokens' probability. Needs the forms' first tokens to separate
  the labels (checked on each answer), else
- ``prompt-logprobs``: where first tokens do not separate the labels (the default English
  forms all start with "A"), vLLM's ``prompt_logprobs`` of each form as the final assistant
  message give whole-form log-likelihoods, normalised over the forms as in-process score mode
  does (`geovlm.backends.prompt_logprobs`); one request per chip and form. Else
- ``chat-choice``: chat completions with vLLM's ``structured_outputs: {"choice": forms}``; the
  chosen form gets probability 1 (no model probabilities).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import openai

from geovlm.backends.base import PromptImages, images_of
from geovlm.backends.endpoint import ServedWeights, api_call, open_api
from geovlm.backends.image_url import chip_url
from geovlm.backends.prompt_logprobs import FormSpan, form_spans
from geovlm.enums import CheckedEnum
from geovlm.errors import EndpointError, ParameterError
from geovlm.labels.building_damage import building_question
from geovlm.labels.label_set import DISASTER_TYPES
from geovlm.labels.prompts import Language, question
from geovlm.labels.verbalizer import Verbalizer

__all__ = ["OpenAIBackend", "RemoteBatch", "RemoteMethod", "ServedWeights", "chip_url"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Alternatives asked per token in ``chat-logprobs`` (vLLM's default ceiling).
TOP_LOGPROBS = 20


class RemoteMethod(CheckedEnum):
    """How answer forms are scored remotely (see the module's docstring)."""

    AUTO = "auto"
    GEOVLM_CLASSIFY = "geovlm-classify"
    CHAT_LOGPROBS = "chat-logprobs"
    PROMPT_LOGPROBS = "prompt-logprobs"
    CHAT_CHOICE = "chat-choice"


@dataclass(frozen=True, slots=True)
class RemoteBatch:
    """Chips encoded for the wire (`chip_url`'s data URLs), each with its question.

    A prompt's images (one, or e.g. a pre and a post crop) go as image parts of one message.
    """

    images: tuple[tuple[str, ...], ...] | None
    prompts: tuple[str, ...]


class OpenAIBackend:
    """Score and generate through an OpenAI-compatible server.

    Implements `geovlm.backends.base.Backend`. Build it with `OpenAIBackend.connect`.

    Parameters
    ----------
    client
        The ``openai.OpenAI`` client (its ``max_retries`` are the retries).
    served_model
        The model id sent with every request.
    method
        How forms are scored (not ``auto``); None for a backend that only generates.
    verbalizer
        The forms' labels (``chat-logprobs`` adds first-token mass per label).
    concurrency
        Most requests in flight.
    weights
        What the server says `served_model` runs, or None if it does not say.
    """

    supports_images = True

    def __init__(self, client: openai.OpenAI, served_model: str, method: RemoteMethod | None,
                 verbalizer: Verbalizer, concurrency: int = 8,
                 weights: ServedWeights | None = None) -> None:
        self.client = client
        self.served_model = served_model
        self.weights = weights
        self.method = method
        self.verbalizer = verbalizer
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="geovlm-remote")
        self._spans: dict[Language, dict[str, FormSpan]] = {}
        self._spans_lock = threading.Lock()

    @classmethod
    def connect(cls, endpoint: str, *, api_key: str | None = None,
                method: RemoteMethod | str | None = RemoteMethod.AUTO,
                served_model: str | None = None,
                verbalizer: Verbalizer | None = None, language: Language | str = Language.EN,
                concurrency: int = 8, retries: int = 8,
                timeout_s: float = 120.0) -> OpenAIBackend:
        """Ask the endpoint which model it serves and choose the scoring method.

        Parameters
        ----------
        endpoint
            The API's base URL, e.g. ``http://gpu-host:8000/v1``; where it has no API (a
            404 or no model list at ``/models``), its ``/v1`` is tried (`open_api`).
        api_key
            Sent as ``Authorization: Bearer``; None for servers without keys.
        method
            ``auto``: for geovlm serve ``geovlm-classify`` (disaster types) or
            ``prompt-logprobs`` (other labels, e.g. damage grades, which ``/v1/classify`` does
            not ask), else probed (see `language`); None for a backend that only generates
            (``refer``), which asks nothing more.
        served_model
            The model id to ask (vLLM lists a LoRA module beside its base model); None takes
            the first the endpoint lists.
        verbalizer
            The preset's answer forms of the labels asked (disaster types by default).
        language
            The language asked in (``auto`` probes its forms on non-geovlm endpoints:
            ``chat-logprobs`` where their first tokens separate the labels, else
            ``prompt-logprobs`` where the server gives them, else ``chat-choice``).
        concurrency
            Most requests in flight.
        retries
            Retries of a request on 429, 5xx and lost connections, with backoff.
        timeout_s
            Per-request timeout.

        Returns
        -------
        OpenAIBackend

        Raises
        ------
        EndpointError
            The endpoint does not answer, refuses the key, has no API or serves no model.
        """
        client, served = open_api(endpoint, api_key=api_key, retries=retries,
                                  timeout_s=timeout_s)
        endpoint = str(client.base_url)
        everything = served
        if not served:
            raise EndpointError(f"{endpoint} serves no model: start the server with one.")
        if served_model is not None:
            named = [entry for entry in served if entry.id == served_model]
            if not named:
                listed = ", ".join(entry.id for entry in served)
                raise EndpointError(
                    f"{endpoint} does not serve {served_model!r}: pass one of {listed}."
                )
            served = named
        owner = getattr(served[0], "owned_by", None)
        forms = verbalizer or Verbalizer.default()
        chosen = None if method is None else RemoteMethod(method)
        backend = cls(client, served[0].id, chosen, forms, concurrency,
                      ServedWeights.from_entry(served[0], everything))
        if backend.method is RemoteMethod.AUTO:
            backend.method = backend._probe(Language(language)) if owner != "geovlm" else (
                RemoteMethod.GEOVLM_CLASSIFY if forms.labels is DISASTER_TYPES
                else RemoteMethod.PROMPT_LOGPROBS)
        log.info("%s serves %s (%s): scoring with %s", endpoint, served[0].id, owner,
                 "nothing" if backend.method is None else backend.method.value)
        return backend

    def _probe(self, language: Language) -> RemoteMethod:
        """First-token logprobs if they separate the labels, else whole forms, else choice.

        Asked once, without an image: tokenization does not depend on the image.
        """
        answers = [form.text for form in self.verbalizer.forms(language)]
        reply = self._chat((), question(language), max_tokens=1, logprobs=True,
                           top_logprobs=TOP_LOGPROBS)
        if _first_token_mass(reply, answers, self.verbalizer, language) is not None:
            return RemoteMethod.CHAT_LOGPROBS
        try:
            self._form_spans(language, answers)
        except EndpointError as exc:
            log.info("no whole-form scores from the endpoint (%s): structured choice", exc)
            return RemoteMethod.CHAT_CHOICE
        return RemoteMethod.PROMPT_LOGPROBS

    def run_record(self) -> dict[str, Any]:
        """What a run's record says about the endpoint: URL, served model and any method."""
        record = {"backend": "openai", "endpoint": str(self.client.base_url),
                  "served_model": self.served_model,
                  **({"served_weights": str(self.weights)} if self.weights else {})}
        return record if self.method is None else {**record, "method": self.method.value}

    def encode(self, images: Sequence[PromptImages] | None, prompts: Sequence[str]) -> RemoteBatch:
        """Encode the images losslessly (CPU work, done in the pipeline's preparing thread)."""
        if images is not None and len(images) != len(prompts):
            raise ParameterError(f"{len(images)} images for {len(prompts)} prompts: give one each")
        encoded = None if images is None else tuple(
            tuple(chip_url(image) for image in images_of(item)) for item in images
        )
        return RemoteBatch(encoded, tuple(prompts))

    def score_encoded(self, inputs: RemoteBatch, answers: Sequence[str]) -> np.ndarray:
        """Probabilities of `answers` per chip, by the backend's method (rows sum to 1)."""
        if self.method is None:
            raise ParameterError("this remote backend only generates: connect it with a method.")
        if self.method is RemoteMethod.PROMPT_LOGPROBS:
            return self._whole_forms(inputs, list(answers))
        score = {
            RemoteMethod.GEOVLM_CLASSIFY: self._classified,
            RemoteMethod.CHAT_LOGPROBS: self._first_tokens,
            RemoteMethod.CHAT_CHOICE: self._chosen,
        }[self.method]
        rows = self._each(inputs, lambda image, prompt: score(image, prompt, list(answers)))
        return np.array(rows, dtype=np.float64).reshape(len(inputs.prompts), len(answers))

    def generate_encoded(self, inputs: RemoteBatch, max_new_tokens: int = 32) -> list[str]:
        """Each chip's answer by chat completions (greedy)."""
        def ask(image: tuple[str, ...], prompt: str) -> str:
            reply = self._chat(image, prompt, max_tokens=max_new_tokens)
            return (reply.choices[0].message.content or "").strip()

        return self._each(inputs, ask)

    def generate(self, images: Sequence[PromptImages] | None, prompts: Sequence[str],
                 max_new_tokens: int = 32) -> list[str]:
        """Answer each prompt (about the image(s) at the same index, if any)."""
        return self.generate_encoded(self.encode(images, prompts), max_new_tokens)

    def score(self, images: Sequence[PromptImages], prompt: str,
              answers: Sequence[str]) -> np.ndarray:
        """Probability of each candidate answer to the same prompt, for every image (or images)."""
        return self.score_encoded(self.encode(images, [prompt] * len(images)), answers)

    def _each(self, inputs: RemoteBatch, ask: Callable[[tuple[str, ...], str], T]) -> list[T]:
        images = inputs.images or ((),) * len(inputs.prompts)
        return list(self._pool.map(ask, images, inputs.prompts))

    def _chat(self, image: tuple[str, ...] | None, prompt: str,
              after: Sequence[dict[str, Any]] = (), **options: Any) -> Any:
        content: list[dict[str, Any]] = [
            *({"type": "image_url", "image_url": {"url": url}} for url in image or ()),
            {"type": "text", "text": prompt},
        ]
        messages: Any = [{"role": "user", "content": content}, *after]
        return api_call(str(self.client.base_url), lambda: self.client.chat.completions.create(
            model=self.served_model, messages=messages, temperature=0, **options))

    def _classified(self, image: tuple[str, ...], prompt: str, answers: list[str]) -> list[float]:
        if len(image) != 1 or prompt != question(_language(prompt)):
            raise ParameterError("geovlm serve's /v1/classify asks the disaster question about"
                                 " one image: pass --remote-method prompt-logprobs.")
        body = {"model": self.served_model, "images": list(image), "language": _language(prompt),
                "calibration": False, "forms": True}
        reply: Any = api_call(str(self.client.base_url), lambda: self.client.post(
            "/classify", cast_to=object, body=body))
        if [form["text"] for form in reply["forms"]] != answers:
            raise ParameterError(
                "the server scores other answer forms than this preset's: pass the --model"
                " the server runs (or the same preset file)."
            )
        return [float(p) for p in reply["data"][0]["form_probs"]]

    def _first_tokens(self, image: tuple[str, ...], prompt: str,
                      answers: list[str]) -> list[float]:
        reply = self._chat(image, prompt, max_tokens=1, logprobs=True, top_logprobs=TOP_LOGPROBS)
        row = _first_token_mass(reply, answers, self.verbalizer, _language(prompt))
        if row is None:
            raise EndpointError(
                "the first tokens of the answer forms do not separate the labels, or the"
                " endpoint gives no logprobs: use --remote-method chat-choice."
            )
        return row

    def _form_spans(self, language: Language, answers: list[str]) -> dict[str, FormSpan]:
        """The forms' token spans, each found once (`form_spans`)."""
        def ask(messages: Any, **body: Any) -> Any:
            return api_call(str(self.client.base_url), lambda: self.client.chat.completions.create(
                model=self.served_model, messages=messages, max_tokens=1, temperature=0,
                extra_body={"prompt_logprobs": 0, **body}))

        with self._spans_lock:
            known = self._spans.setdefault(language, {})
            if missing := [answer for answer in answers if answer not in known]:
                known.update(form_spans(ask, question(language), missing,
                                        lambda span, texts: list(self._pool.map(span, texts))))
            return {answer: known[answer] for answer in answers}

    def _whole_forms(self, inputs: RemoteBatch, answers: list[str]) -> np.ndarray:
        """Each chip's forms scored whole (one request per chip and form, all concurrent).

        Rows are the softmax of the forms' log-likelihoods, as in-process score mode's.
        """
        language = _language(inputs.prompts[0]) if inputs.prompts else Language.EN
        spans = self._form_spans(language, answers)
        images = inputs.images or ((),) * len(inputs.prompts)
        pairs = [(image, prompt, answer) for image, prompt in zip(images, inputs.prompts,
                                                                  strict=True)
                 for answer in answers]

        def loglik(pair: tuple[tuple[str, ...], str, str]) -> float:
            image, prompt, answer = pair
            reply = self._chat(image, prompt, [{"role": "assistant", "content": answer}],
                               max_tokens=1, extra_body={"prompt_logprobs": 0,
                                                         "add_generation_prompt": False})
            return spans[answer].logprob(reply)

        scores = np.array(list(self._pool.map(loglik, pairs)), dtype=np.float64)
        scores = scores.reshape(len(inputs.prompts), len(answers))
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)

    def _chosen(self, image: tuple[str, ...], prompt: str, answers: list[str]) -> list[float]:
        reply = self._chat(image, prompt, max_tokens=64,
                           extra_body={"structured_outputs": {"choice": answers}})
        text = (reply.choices[0].message.content or "").strip()
        language = _language(prompt)
        if text not in answers:
            label = self.verbalizer.parse(text, language)
            text = next((f.text for f in self.verbalizer.forms(language) if f.label is label
                         and f.text in answers), answers[0])
        return [float(answer == text) for answer in answers]


def _first_token_mass(reply: Any, answers: list[str], verbalizer: Verbalizer,
                      language: Language) -> list[float] | None:
    """Each form's share of its first token's probability, or None if labels share one.

    A form's first token is the longest of the answer's top tokens that starts it; each
    distinct token's probability is counted once, on its first form. Forms whose first token
    is not among the top tokens get 0.
    """
    logprobs = reply.choices[0].logprobs
    if logprobs is None or not logprobs.content:
        return None
    top = {t.token: t.logprob for t in logprobs.content[0].top_logprobs}
    labels = {form.text: form.label for form in verbalizer.forms(language)}
    owner: dict[str, Any] = {}
    row = [0.0] * len(answers)
    for index, answer in enumerate(answers):
        token = max((t for t in top if t.strip() and answer.startswith(t.lstrip())),
                    key=len, default=None)
        if token is None:
            continue
        if token in owner:
            if owner[token] is not labels[answer]:
                return None
            continue
        owner[token] = labels[answer]
        row[index] = math.exp(top[token])
    total = sum(row)
    return [p / total for p in row] if total > 0 else None


def _language(prompt: str) -> Language:
    for language in Language:
        asked = (question(language), building_question(language, with_pre=True),
                 building_question(language, with_pre=False))
        if prompt in asked:
            return language
    raise ParameterError("the remote backend asks the classify and damage questions only.")

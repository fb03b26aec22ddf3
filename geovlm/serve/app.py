"""The FastAPI application: health, models, chat completions and chip classification.

Every model call goes through one `geovlm.serve.batcher.Batcher`, so concurrent requests share
batches. A request waits at most the settings' timeout (504 after it); a client that goes away
cancels its queued items, freeing their places.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from jinja2 import TemplateError

from geovlm.errors import GeovlmError
from geovlm.labels.calibration import Calibration
from geovlm.labels.verbalizer import Verbalizer
from geovlm.serve.batcher import Batcher, QueueFull
from geovlm.serve.engine import (
    Generated,
    GenerateKey,
    Prompt,
    PromptToken,
    ScoreKey,
)
from geovlm.serve.guard import Guard, error_body
from geovlm.serve.images import decode_image
from geovlm.serve.model_process import ModelProcessExited
from geovlm.serve.protocol import (
    ChatRequest,
    ClassifyRequest,
    Conversation,
    RequestRejected,
    conversation,
)
from geovlm.serve.settings import ServeSettings
from geovlm.tasks.classify import ClassifyMode, ClassifySettings, scored_answers

if TYPE_CHECKING:
    from geovlm.backends.chat import ChatFormat
    from geovlm.serve.engine import BatchEngine

__all__ = ["ServedModel", "create_app"]

#: Answer length when a chat request sets none.
DEFAULT_MAX_TOKENS = 64


@dataclass(frozen=True, slots=True)
class ServedModel:
    """The loaded model and what the server says about it.

    Attributes
    ----------
    name
        The id clients send as ``model`` and `/v1/models` lists.
    model_id
        The weights it was loaded from (``root`` in `/v1/models`).
    engine
        The loaded model's batch stages: a `geovlm.serve.model_process.ModelProcess`, or a
        `geovlm.serve.engine.ModelEngine` in this process.
    verbalizer
        The answer forms `/v1/classify` scores (the preset's).
    calibration
        The preset's calibration, or None.
    adapter
        The LoRA adapter on top of `model_id` (``adapter`` in `/v1/models`), or None.
    """

    name: str
    model_id: str
    engine: BatchEngine
    verbalizer: Verbalizer
    calibration: Calibration | None = None
    adapter: str | None = None


class _Refused(Exception):
    """An HTTP refusal with its status and headers."""

    def __init__(self, status: int, message: str, code: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


def create_app(served: ServedModel, settings: ServeSettings) -> Any:
    """Build the application (wrapped in the key and body-size `Guard`).

    Parameters
    ----------
    served
        The model.
    settings
        Limits, key and batching.

    Returns
    -------
    ASGI application
        Run it with uvicorn; ``app.state.batcher`` (on the inner FastAPI app, reachable as
        ``.app``) holds the queue.
    """
    engine = served.engine
    batcher = Batcher(engine.prepare, engine.run, max_batch=settings.max_batch,
                      max_wait_s=settings.max_wait_ms / 1000, max_queue=settings.max_queue)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()

    app = FastAPI(title="geovlm serve", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(_Refused)
    async def refused(_: Request, exc: _Refused) -> JSONResponse:
        kind = "invalid_request_error" if exc.status < 500 else "server_error"
        return JSONResponse(error_body(str(exc), kind, exc.code), exc.status, exc.headers)

    @app.exception_handler(ModelProcessExited)
    async def model_gone(_: Request, exc: ModelProcessExited) -> JSONResponse:
        return JSONResponse(error_body(str(exc), "server_error", "model_exited"), 500)

    @app.exception_handler(GeovlmError)
    async def bad_input(_: Request, exc: GeovlmError) -> JSONResponse:
        return JSONResponse(error_body(str(exc), "invalid_request_error", "bad_input"), 400)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
        return JSONResponse(error_body(message, "invalid_request_error", "invalid_body"), 400)

    @app.get("/healthz")
    async def healthz() -> Any:
        if not engine.alive:
            return JSONResponse({"status": "model process exited", "server": "geovlm",
                                 "model": served.name}, 503)
        return {"status": "ok", "server": "geovlm", "model": served.name,
                "queued": batcher.pending()}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{
            "id": served.name, "object": "model", "created": 0, "owned_by": "geovlm",
            "root": served.model_id, "adapter": served.adapter,
            "capabilities": ["chat", "classify"],
        }]}

    async def results(request: Request, futures: list[Future[Any]]) -> list[Any]:
        return await _results(request, futures, settings.timeout_s)

    def submit(key: ScoreKey | GenerateKey, prompts: Sequence[Prompt]) -> list[Future[Any]]:
        try:
            return batcher.submit(key, prompts)
        except QueueFull:
            raise _Refused(503, "the server's queue is full: retry shortly.", "queue_full",
                           {"Retry-After": "1"}) from None

    def image(data: str, where: str) -> Any:
        if not engine.supports_images:
            raise RequestRejected(f"{served.name} reads text only: send no images.")
        return decode_image(data, settings.max_image_pixels, where)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request) -> Any:
        _check_model(body.model, served.name)
        _check_chat(body)
        response = await completion(body, request)
        if not body.stream:
            return response
        usage = bool((body.stream_options or {}).get("include_usage"))
        return StreamingResponse(_chunks(response, usage), media_type="text/event-stream")

    async def completion(body: ChatRequest, request: Request) -> dict[str, Any]:
        talk = conversation(body.messages)
        if len(talk.image_urls) > settings.max_images:
            raise _Refused(413, f"{len(talk.image_urls)} images over the server's limit of"
                           f" {settings.max_images} per request.", "too_many_images")
        pictures = tuple(image(url, f"image_url[{i}]") for i, url in enumerate(talk.image_urls))
        picture = pictures[0] if len(pictures) == 1 else pictures or None
        prompt = Prompt(_rendered(engine.chat, talk, body), picture)
        choices = (body.structured_outputs or {}).get("choice")
        if choices is not None:
            if (not isinstance(choices, list) or not choices
                    or not all(isinstance(c, str) and c for c in choices)):
                raise RequestRejected("structured_outputs.choice must be a non-empty list of"
                                      " non-empty strings.")
            key = ScoreKey(prompt.text, tuple(choices), picture is not None)
            (row,) = await results(request, submit(key, [prompt]))
            return _chat_response(served.name, _chosen(choices, row, body), prompt_tokens=0)
        top = (body.top_logprobs or 0) if body.logprobs else None
        length = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS
        gkey = GenerateKey(length, top, picture is not None, body.prompt_logprobs)
        (answer,) = await results(request, submit(gkey, [prompt]))
        response = _chat_response(served.name, _generated(answer), answer.prompt_tokens,
                                  answer.completion_tokens, answer.finish_reason)
        if answer.prompt_logprobs is not None:
            response["prompt_logprobs"] = [_prompt_entry(t) for t in answer.prompt_logprobs]
        return response

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest, request: Request) -> dict[str, Any]:
        _check_model(body.model, served.name)
        if len(body.images) > settings.max_images:
            raise _Refused(413, f"{len(body.images)} images over the server's limit of"
                           f" {settings.max_images} per request.", "too_many_images")
        # Decoded off the event loop, which keeps reading other requests meanwhile.
        chips = await asyncio.to_thread(
            lambda: [image(data, f"images[{i}]") for i, data in enumerate(body.images)])
        run = ClassifySettings(
            body.language, ClassifyMode.SCORE, body.min_confidence,
            verbalizer=served.verbalizer,
            calibration=served.calibration if body.calibration else None,
        )
        forms = run.verbalizer.forms(run.language)
        rendered = engine.chat.render(run.prompt, image=True)
        key = ScoreKey(rendered, tuple(form.text for form in forms), True)
        rows = await results(request, submit(key, [Prompt(rendered, chip) for chip in chips]))
        import numpy as np

        form_probs = np.stack(rows)
        data = []
        for index, (answer, row) in enumerate(zip(scored_answers(form_probs, run), form_probs,
                                                  strict=True)):
            entry = {"index": index, **answer, "probs": json.loads(answer["probs"])}
            if body.forms:
                entry["form_probs"] = [float(p) for p in row]
            data.append(entry)
        return {
            "object": "classification", "model": served.name, "language": run.language.value,
            "calibrated": run.calibration is not None,
            **({"forms": [{"label": f.label.value, "text": f.text} for f in forms]}
               if body.forms else {}),
            "data": data,
        }

    return Guard(app, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes)


def _check_chat(body: ChatRequest) -> None:
    """Refuse, as vLLM does or with the reason, what the chat endpoint does not do."""
    if body.n != 1:
        raise RequestRejected("geovlm serve answers with one choice: send n=1.")
    if body.stream and body.prompt_logprobs is not None:
        raise RequestRejected("`prompt_logprobs` are not available when `stream=True`.")
    if "guided_choice" in (body.model_extra or {}):
        raise RequestRejected("guided_choice was removed (as in vLLM 0.12): pass"
                              " structured_outputs={'choice': [...]}.")
    if body.echo:
        raise RequestRejected("geovlm serve does not echo the last message: send echo=false.")
    if body.continue_final_message and body.add_generation_prompt:
        raise RequestRejected("Cannot set both `continue_final_message` and"
                              " `add_generation_prompt` to True (as vLLM): send"
                              " add_generation_prompt=false.")
    if body.continue_final_message and body.messages[-1].get("role") != "assistant":
        raise RequestRejected("continue_final_message continues an assistant message: end the"
                              " messages with one.")
    if body.prompt_logprobs is not None and body.structured_outputs is not None:
        raise RequestRejected("prompt_logprobs are given with generated answers, not with"
                              " structured_outputs: send one of them.")


def _rendered(chat: ChatFormat, talk: Conversation, body: ChatRequest) -> str:
    """The conversation in the model's chat format, as the request asks."""
    try:
        return chat.render_turns(
            talk.turns, add_generation_prompt=body.add_generation_prompt,
            continue_final_message=body.continue_final_message,
        )
    except (ValueError, TemplateError) as exc:
        raise RequestRejected(f"the model's chat template refuses these messages: {exc}") from None


def _check_model(asked: str | None, name: str) -> None:
    if asked not in (None, "", name):
        raise _Refused(404, f"model {asked!r} is not served here; this server serves {name!r}.",
                       "model_not_found")


async def _results(request: Request, futures: list[Future[Any]], timeout: float) -> list[Any]:
    """The futures' results, or cancel them all when the client leaves or time runs out."""
    gathered: asyncio.Future[Any] = asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
    gone: asyncio.Future[Any] = asyncio.ensure_future(_disconnected(request))
    done, _ = await asyncio.wait({gathered, gone}, timeout=timeout,
                                 return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if gathered in done:
        return list(gathered.result())
    for future in futures:
        future.cancel()
    gathered.cancel()
    if gone in done:
        raise _Refused(499, "client closed the request.", "client_closed")
    raise _Refused(504, f"no answer within the server's {timeout:g} s limit: retry later.",
                   "timeout")


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _chosen(choices: list[str], row: Any, body: ChatRequest) -> tuple[str, Any]:
    """The likeliest choice; its log-probability over the choices, if asked."""
    order = sorted(range(len(choices)), key=lambda i: -row[i])
    best = order[0]
    logprobs = None
    if body.logprobs:
        top = order[: body.top_logprobs or 0]
        logprobs = {"content": [_entry(choices[best], math.log(row[best]),
                                       [(choices[i], math.log(row[i])) for i in top])]}
    return choices[best], logprobs


def _generated(answer: Generated) -> tuple[str, Any]:
    if answer.logprobs is None:
        return answer.text, None
    return answer.text, {"content": [_entry(t.token, t.logprob, list(t.top))
                                     for t in answer.logprobs]}


def _prompt_entry(token: PromptToken | None) -> dict[str, Any] | None:
    """One prompt token as vLLM writes it: its id (and the alternatives') -> logprob, rank, text."""
    if token is None:
        return None
    entry = {str(i): {"logprob": lp, "rank": rank + 1, "decoded_token": text}
             for rank, (i, text, lp) in enumerate(token.top)}
    entry[str(token.token_id)] = {"logprob": token.logprob, "rank": token.rank,
                                  "decoded_token": token.text}
    return entry


def _entry(token: str, logprob: float, top: list[tuple[str, float]]) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())}
                             for t, lp in top]}


def _chat_response(name: str, answer: tuple[str, Any], prompt_tokens: int,
                   completion_tokens: int = 1, finish_reason: str = "stop") -> dict[str, Any]:
    text, logprobs = answer
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
        "created": int(time.time()), "model": name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "logprobs": logprobs, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def _chunks(response: dict[str, Any], usage: bool) -> Iterator[str]:
    """A finished chat completion as OpenAI's server-sent stream chunks.

    The answer is complete before the first chunk (batched generation does not stream tokens):
    a role chunk, one content chunk (with its logprobs), a finish chunk, the usage if asked,
    then ``[DONE]``.
    """
    head = {"id": response["id"], "object": "chat.completion.chunk",
            "created": response["created"], "model": response["model"]}
    (choice,) = response["choices"]
    steps = [({"role": "assistant", "content": ""}, None, None),
             ({"content": choice["message"]["content"]}, choice["logprobs"], None),
             ({}, None, choice["finish_reason"])]
    for delta, logprobs, finish in steps:
        chunk = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": logprobs,
                                      "finish_reason": finish}]}
        yield f"data: {json.dumps(chunk)}\n\n"
    if usage:
        yield f"data: {json.dumps({**head, 'choices': [], 'usage': response['usage']})}\n\n"
    yield "data: [DONE]\n\n"

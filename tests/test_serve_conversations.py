"""``geovlm serve``'s chat with vLLM's extensions: conversations, ``prompt_logprobs``, streams."""

from __future__ import annotations

import math

import numpy as np
import openai
import pytest

from geovlm.labels.prompts import question
from tests.serve_fixtures import API_KEY, LiveServer
from tests.test_serve import _chips, _image_message

ANSWER = "A fire disaster occurred in this image."


def _client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=API_KEY, max_retries=0)


def _answered(image, answer: str = ANSWER) -> list[dict]:
    return [*_image_message(image, question("en")), {"role": "assistant", "content": answer}]


def _prompt_logprobs(reply) -> list:
    return reply.model_extra["prompt_logprobs"]


def test_prompt_logprobs_have_vllms_shape(live_server):
    reply = _client(live_server).chat.completions.create(
        model="tiny", messages=_answered(_chips(1, seed=3)[0]), max_tokens=1,
        extra_body={"prompt_logprobs": 2, "add_generation_prompt": False})
    entries = _prompt_logprobs(reply)
    assert len(entries) == reply.usage.prompt_tokens
    assert entries[0] is None
    for entry in entries[1:]:
        assert 2 <= len(entry) <= 3  # the prompt token and the two likeliest, once each
        for token_id, info in entry.items():
            assert int(token_id) >= 0
            assert set(info) == {"logprob", "rank", "decoded_token"}
            assert info["logprob"] <= 0 and info["rank"] >= 1
        best = max(entry.values(), key=lambda info: info["logprob"])
        assert best["rank"] == 1
        assert sum(math.exp(info["logprob"]) for info in entry.values()) <= 1 + 1e-9


def test_prompt_logprobs_score_the_answer_as_in_process(live_server, served_qwen3_vl):
    """Summed over the answer and its end of turn, they are the engine's full-reply scores."""
    chip = _chips(1, seed=4)[0]
    answers = [ANSWER, "Flooding", "Wind disaster"]
    client = _client(live_server)
    opened = client.chat.completions.create(
        model="tiny", messages=_image_message(chip, question("en")), max_tokens=1)
    totals = []
    for answer in answers:
        reply = client.chat.completions.create(
            model="tiny", messages=_answered(chip, answer), max_tokens=1,
            extra_body={"prompt_logprobs": 0, "add_generation_prompt": False})
        entries = _prompt_logprobs(reply)
        scored = len(served_qwen3_vl.engine.backend.answer_ids(answer))
        span = entries[opened.usage.prompt_tokens:][:scored]
        tokens = [next(iter(entry)) for entry in span]
        assert [int(t) for t in tokens] == served_qwen3_vl.engine.backend.answer_ids(answer)
        totals.append(sum(next(iter(entry.values()))["logprob"] for entry in span))
    remote = np.exp(np.array(totals) - max(totals))
    local = served_qwen3_vl.engine.backend.score([chip], question("en"), answers)[0]
    np.testing.assert_allclose(remote / remote.sum(), local, atol=1e-5)


def test_conversations_with_system_and_assistant_turns(live_server):
    client = _client(live_server)
    messages = [{"role": "system", "content": "You label disasters."},
                *_answered(_chips(1, seed=5)[0], "Fire"),
                {"role": "user", "content": "Are you sure?"}]
    reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=3)
    assert isinstance(reply.choices[0].message.content, str)
    shorter = client.chat.completions.create(model="tiny", messages=messages[:2], max_tokens=1)
    assert reply.usage.prompt_tokens > shorter.usage.prompt_tokens
    opened = client.chat.completions.create(
        model="tiny", messages=messages[:3], max_tokens=2,
        extra_body={"add_generation_prompt": False, "continue_final_message": True})
    closed = client.chat.completions.create(
        model="tiny", messages=messages[:3], max_tokens=1,
        extra_body={"add_generation_prompt": False})
    assert closed.usage.prompt_tokens > opened.usage.prompt_tokens > shorter.usage.prompt_tokens


@pytest.mark.parametrize(("messages", "extra", "reason"), [
    ([{"role": "user", "content": "Hi"}], {"continue_final_message": True,
                                           "add_generation_prompt": False}, "assistant message"),
    ([{"role": "assistant", "content": "Fire"}], {"continue_final_message": True},
     "Cannot set both"),
    ([{"role": "tool", "content": "x"}], {}, "role 'tool'"),
    ([{"role": "user", "content": "Hi"}], {"echo": True}, "echo"),
    ([{"role": "user", "content": "Hi"}], {"n": 2}, "one choice"),
    ([{"role": "user", "content": "Hi"}], {"stream": True, "prompt_logprobs": 0},
     "not available when `stream=True`"),
    ([{"role": "user", "content": "Hi"}],
     {"prompt_logprobs": 0, "structured_outputs": {"choice": ["a"]}}, "one of them"),
])
def test_unsupported_conversations_are_400_with_the_reason(live_server, messages, extra, reason):
    with pytest.raises(openai.BadRequestError, match=reason):
        _client(live_server).chat.completions.create(model="tiny", messages=messages,
                                                     extra_body=extra)


def test_an_image_outside_a_user_message_is_400(live_server):
    (user,) = _image_message(_chips(1)[0])
    with pytest.raises(openai.BadRequestError, match="assistant message with an image"):
        _client(live_server).chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"},
                                    {**user, "role": "assistant"}])


def test_named_format_renders_conversations_as_its_single_turns():
    from geovlm.backends.chat import ChatTurn, PromptTemplate

    template = PromptTemplate("qwen3_vl_nothink")
    user = ChatTurn("user", "Why?", image=True)
    opened = template.render_turns([user], add_generation_prompt=True,
                                   continue_final_message=False)
    assert opened == template.render("Why?", image=True)
    answer = ChatTurn("assistant", "Fire")
    closed = template.render_turns([user, answer], add_generation_prompt=False,
                                   continue_final_message=False)
    kept = template.render_turns([user, answer], add_generation_prompt=False,
                                 continue_final_message=True)
    assert kept == opened + "Fire"
    assert closed == kept + template.end_of_turn + "\n"


def test_streaming_chunks_add_up_to_the_answer(live_server):
    client = _client(live_server)
    messages = _image_message(_chips(1, seed=6)[0])
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=4,
                                           logprobs=True, top_logprobs=2)
    chunks = list(client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=4, logprobs=True, top_logprobs=2,
        stream=True, stream_options={"include_usage": True}))
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk.id for chunk in chunks}) == 1
    deltas = [chunk.choices[0] for chunk in chunks if chunk.choices]
    assert deltas[0].delta.role == "assistant"
    assert "".join(d.delta.content or "" for d in deltas) == whole.choices[0].message.content
    assert deltas[-1].finish_reason == whole.choices[0].finish_reason
    streamed = [t.token for d in deltas if d.logprobs for t in d.logprobs.content]
    assert streamed == [t.token for t in whole.choices[0].logprobs.content]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens

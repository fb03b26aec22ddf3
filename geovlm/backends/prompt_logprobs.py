"""Whole answer forms scored remotely from vLLM's ``prompt_logprobs`` of closed conversations.

In-process score mode gives a form ``f`` the log-likelihood of exactly that complete reply: its
tokens and the end-of-turn token after the generation prompt. A vLLM chat request with the form
as a final assistant message, ``add_generation_prompt=false`` and ``prompt_logprobs=0`` returns
the log-probability of every prompt token; the form's score is the sum over the same tokens.

Where those tokens sit is found once per language from the server itself (`form_spans`), by
three text-only renderings whose token ids it returns: the user turn with the generation
prompt, the conversation closed by the form, and the same left open
(``continue_final_message``). The closed conversation's tokens after the generation prompt are
the form's *suffix* (answer, end of turn, whatever the template writes after it); the open one
says how many of them are the answer, so the scored tokens are the answer's and the one after
it. Counting the suffix from the end of each chip's request keeps the image's tokens, which
come before it, out of the arithmetic; each reply's suffix is checked id by id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from geovlm.errors import EndpointError

__all__ = ["FormSpan", "form_spans", "prompt_token_logprobs"]

#: ``ask(messages, **extra_body)`` sends a text-only chat request and returns the reply.
Ask = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class FormSpan:
    """Where one form's scored tokens are at the end of a conversation it closes.

    Attributes
    ----------
    suffix
        Token ids after the generation prompt: the answer, the end of turn and what follows.
    scored
        How many of them are scored (the answer's tokens and the end of turn).
    """

    suffix: tuple[int, ...]
    scored: int

    def logprob(self, reply: Any) -> float:
        """The form's log-likelihood in a reply to the conversation closed by it.

        Raises
        ------
        EndpointError
            The reply has no prompt log-probabilities, or its last tokens are not the suffix.
        """
        ids, logprobs = prompt_token_logprobs(reply)
        start = len(ids) - len(self.suffix)
        if start < 0 or tuple(ids[start:]) != self.suffix:
            raise EndpointError(
                "the server tokenized an answer differently with an image than without: use"
                " --remote-method chat-choice."
            )
        return float(sum(logprobs[start:start + self.scored]))


def prompt_token_logprobs(reply: Any) -> tuple[list[int], list[float]]:
    """The ids and log-probabilities of a reply's prompt tokens after the first.

    Parameters
    ----------
    reply
        A chat completion asked with ``prompt_logprobs=0``: vLLM's top-level
        ``prompt_logprobs`` list holds None for the first token, then one
        ``{token_id: {"logprob", "rank", "decoded_token"}}`` per token.

    Returns
    -------
    ids, logprobs : list
        For prompt tokens 1 .. n-1.

    Raises
    ------
    EndpointError
        The reply has no such list (the server does not give prompt log-probabilities).
    """
    entries = (getattr(reply, "model_extra", None) or {}).get("prompt_logprobs")
    if not isinstance(entries, list) or len(entries) < 2:
        raise EndpointError(
            "the endpoint gives no prompt_logprobs: use --remote-method chat-choice."
        )
    ids: list[int] = []
    logprobs: list[float] = []
    for entry in entries[1:]:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise EndpointError("the endpoint's prompt_logprobs are not one token per position"
                                " (vLLM's shape with prompt_logprobs=0).")
        ((token, info),) = entry.items()
        ids.append(int(token))
        logprobs.append(float(info["logprob"]))
    return ids, logprobs


def form_spans(ask: Ask, question: str, answers: Sequence[str],
               each: Callable[[Callable[[str], FormSpan], Sequence[str]], list[FormSpan]]
               ) -> dict[str, FormSpan]:
    """Find every form's scored tokens from the server's own renderings (see the module).

    Parameters
    ----------
    ask
        Sends a text-only conversation with vLLM's extra body fields, ``prompt_logprobs=0``.
    question
        The user's question.
    answers
        The forms.
    each
        Maps a function over the forms (concurrently, e.g. a thread pool's ``map``).

    Returns
    -------
    dict of str to FormSpan

    Raises
    ------
    EndpointError
        No prompt log-probabilities, or a template that writes an answer after another
        prefix than its generation prompt (its scores would not be in-process scores).
    """
    user = {"role": "user", "content": question}
    opened, _ = prompt_token_logprobs(ask([user], add_generation_prompt=True))

    def span(answer: str) -> FormSpan:
        turns = [user, {"role": "assistant", "content": answer}]
        closed, _ = prompt_token_logprobs(ask(turns, add_generation_prompt=False))
        kept, _ = prompt_token_logprobs(ask(turns, add_generation_prompt=False,
                                            continue_final_message=True))
        if not (len(opened) < len(kept) < len(closed) and closed[:len(opened)] == opened
                and closed[:len(kept)] == kept):
            raise EndpointError(
                f"the server's chat template does not write the answer {answer!r} right after"
                " its generation prompt: use --remote-method chat-choice."
            )
        return FormSpan(tuple(closed[len(opened):]), len(kept) - len(opened) + 1)

    return dict(zip(answers, each(span, answers), strict=True))

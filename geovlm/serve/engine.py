"""The model side of the server: batches of scoring or generation, run on one backend.

`ModelEngine.prepare` and `ModelEngine.run` are the `geovlm.serve.batcher.Batcher`'s two
stages: every payload of a batch shares one key, so one ``encode`` and one model call serve all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from geovlm.backends.base import PromptImages
    from geovlm.backends.chat import ChatFormat
    from geovlm.backends.hf import HFBackend

__all__ = ["BatchEngine", "GenerateKey", "Generated", "ModelEngine", "Prompt", "PromptToken",
           "ScoreKey", "TokenLogprob"]


@dataclass(frozen=True, slots=True)
class ScoreKey:
    """Prompts scored together: one rendered prompt, the same candidate answers, images or not."""

    prompt: str
    answers: tuple[str, ...]
    image: bool


@dataclass(frozen=True, slots=True)
class GenerateKey:
    """Prompts answered together: the same answer length and log-probability request."""

    max_new_tokens: int
    #: Alternatives reported per token, or None when no log-probabilities are asked for.
    top_logprobs: int | None
    image: bool
    #: Alternatives reported per prompt token, or None when the prompt's are not asked for.
    prompt_logprobs: int | None = None


@dataclass(frozen=True, slots=True)
class Prompt:
    """One rendered conversation (`geovlm.backends.chat.ChatFormat`) and its image(s), if any."""

    text: str
    #: One image, or several in the order of the text's placeholders, or None.
    image: PromptImages | None = None


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token, its log-probability and the likeliest alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class PromptToken:
    """One prompt token given the tokens before it: id, log-probability, rank, alternatives.

    ``rank`` is 1 for the likeliest token, as vLLM counts; ``top`` holds (id, text,
    log-probability) of the likeliest tokens.
    """

    token_id: int
    text: str
    logprob: float
    rank: int
    top: tuple[tuple[int, str, float], ...]


@dataclass(frozen=True, slots=True)
class Generated:
    """A generated answer with its token count and, if asked, per-token log-probabilities."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    logprobs: tuple[TokenLogprob, ...] | None
    #: Per prompt token (None for the first, which nothing precedes), if asked for.
    prompt_logprobs: tuple[PromptToken | None, ...] | None = None


class BatchEngine(Protocol):
    """What the server needs of its model: the chat format and a batcher's two stages."""

    supports_images: bool
    chat: ChatFormat

    @property
    def alive(self) -> bool:
        """Whether the model can still answer."""

    def prepare(self, key: ScoreKey | GenerateKey, payloads: list[Prompt]) -> Any:
        """Start one batch (e.g. encode it)."""

    def run(self, key: ScoreKey | GenerateKey, inputs: Any) -> Sequence[Any]:
        """Finish one batch: its results, one per payload."""


class ModelEngine:
    """Runs batches of `ScoreKey` or `GenerateKey` items on one loaded backend.

    Parameters
    ----------
    backend
        The model (generation reads its ``model`` and ``tokenizer``).
    """

    #: In the server's own process, the model lives as long as the server.
    alive = True

    def __init__(self, backend: HFBackend) -> None:
        self.backend = backend
        self.supports_images = backend.supports_images
        self.chat = backend.chat

    def prepare(self, key: ScoreKey | GenerateKey, payloads: list[Prompt]) -> Any:
        """Encode one batch (CPU work, done while the model runs the previous batch).

        Parameters
        ----------
        key
            What the batch does.
        payloads
            The prompts, all fitting `key`.

        Returns
        -------
        object
            The backend's model inputs, for `run`.
        """
        images = [p.image for p in payloads] if key.image else None
        return self.backend.encode_rendered(images, [p.text for p in payloads])  # type: ignore[arg-type]

    def run(self, key: ScoreKey | GenerateKey, inputs: Any) -> Sequence[Any]:
        """Run one prepared batch on the model.

        Parameters
        ----------
        key
            What the batch does.
        inputs
            `prepare`'s result.

        Returns
        -------
        list
            Per prompt: a float64 row of answer probabilities (`ScoreKey`) or a `Generated`.
        """
        if isinstance(key, ScoreKey):
            return list(self.backend.score_encoded(inputs, list(key.answers)))
        return self._generate(inputs, key)

    def _generate(self, inputs: dict[str, Any], key: GenerateKey) -> list[Generated]:
        import torch
        from transformers import GenerationConfig

        model, tokenizer = self.backend.model, self.backend.tokenizer
        eos = self.backend.stop_ids()  # the end of turn too, as in-process generation
        stops = set(eos) | {tokenizer.pad_token_id}
        config = GenerationConfig(
            max_new_tokens=key.max_new_tokens, do_sample=False, eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id,
        )
        with torch.inference_mode():
            out = model.generate(
                **inputs, generation_config=config, return_dict_in_generate=True,
                output_logits=key.top_logprobs is not None,
            )
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        new = out.sequences[:, inputs["input_ids"].shape[1]:].tolist()
        logp = (torch.stack(out.logits, dim=1).double().log_softmax(-1)
                if key.top_logprobs is not None else None)
        prompts = (self._prompt_logprobs(inputs, key.prompt_logprobs)
                   if key.prompt_logprobs is not None else [None] * len(new))
        answers = []
        for row, ids in enumerate(new):
            length = next((i for i, t in enumerate(ids) if t in stops), None)
            kept = ids if length is None else ids[:length]
            tokens = None
            if logp is not None and key.top_logprobs is not None:
                tokens = tuple(
                    self._token(tokenizer, logp[row, step], token, key.top_logprobs)
                    for step, token in enumerate(kept)
                )
            answers.append(Generated(
                text=tokenizer.decode(kept, skip_special_tokens=True).strip(),
                prompt_tokens=int(prompt_tokens[row]),
                completion_tokens=len(kept) + (length is not None),
                finish_reason="length" if length is None else "stop",
                logprobs=tokens,
                prompt_logprobs=prompts[row],
            ))
        return answers

    def _prompt_logprobs(self, inputs: dict[str, Any],
                         top: int) -> list[tuple[PromptToken | None, ...]]:
        """Every real prompt token's log-probability given those before it (one forward).

        Positions are explicit, as in `geovlm.backends.scoring`, so left padding changes
        nothing.
        """
        import torch

        from geovlm.backends.scoring import prefill_positions, rope_index_fn

        model, tokenizer = self.backend.model, self.backend.tokenizer
        positions, _ = prefill_positions(inputs, rope_index_fn(model))
        with torch.inference_mode():
            logits = model(**inputs, position_ids=positions).logits
        rows = []
        for row, (ids, mask) in enumerate(zip(inputs["input_ids"], inputs["attention_mask"],
                                              strict=True)):
            start = int(mask.nonzero()[0])
            logp = logits[row, start:-1].double().log_softmax(-1)
            targets = ids[start + 1:]
            chosen = logp.gather(-1, targets[:, None]).squeeze(-1)
            ranks = (logp > chosen[:, None]).sum(-1) + 1
            values, indices = logp.topk(top) if top else (logp[:, :0], logp[:, :0].long())
            rows.append((None, *(
                PromptToken(
                    token_id=int(token), text=tokenizer.decode([int(token)]),
                    logprob=_finite(float(lp)), rank=int(rank),
                    top=tuple((int(i), tokenizer.decode([int(i)]), _finite(float(v)))
                              for v, i in zip(values[step], indices[step], strict=True)),
                )
                for step, (token, lp, rank) in enumerate(zip(targets, chosen, ranks,
                                                             strict=True))
            )))
        return rows

    @staticmethod
    def _token(tokenizer: Any, logp: Any, token: int, top: int) -> TokenLogprob:
        values, indices = logp.topk(top) if top else (logp[:0], logp[:0].long())
        return TokenLogprob(
            token=tokenizer.decode([token]),
            logprob=_finite(float(logp[token])),
            top=tuple(
                (tokenizer.decode([int(i)]), _finite(float(v)))
                for v, i in zip(values, indices, strict=True)
            ),
        )


def _finite(value: float) -> float:
    """JSON has no -inf: the lowest float stands for a zero probability."""
    return value if math.isfinite(value) else -np.finfo(np.float64).max

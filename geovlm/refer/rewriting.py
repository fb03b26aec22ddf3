"""Rewrite rule-based referring expressions with a text model, keeping only faithful rewrites.

A rewrite is kept where it keeps every fact word of its rule text
(`geovlm.refer.text.keeps_facts`). Prompts go to the model in large batches sorted by
length, so a batch pads little, and each batch may generate only about twice its longest rule
text: a faithful rewrite is about as long as the rule text, and a model that runs on (or a
random one that never ends its turn) stops there instead of at a fixed, generous limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from geovlm.backends.base import Backend
from geovlm.labels.prompts import Language
from geovlm.refer.phrases import Phrase
from geovlm.refer.text import keeps_facts

__all__ = ["rewrite_expressions", "rewrite_prompt", "token_budget"]

_REWRITE = {
    Language.EN: "Rewrite this description of a building seen from above as one natural"
                 " referring expression. Keep every direction, size and damage word.\n{text}",
    Language.JA: "上空から見た建物についての次の説明を、自然な指示表現1つに書き換えてください。"
                 "方角・大きさ・被害の語はすべて残してください。\n{text}",
    Language.ZH: "把下面这段对俯视建筑的描述改写成一个自然的指称表达。"
                 "保留所有方位、大小和受损的词语。\n{text}",
}
#: Characters per token, on the low side (so budgets err long): English subwords hold about
#: four characters, a Japanese or Chinese token often one.
_CHARS_PER_TOKEN = {Language.EN: 4, Language.JA: 1, Language.ZH: 1}
#: Tokens allowed beyond twice the rule text's (punctuation, an article, the end of turn).
_SLACK_TOKENS = 8


def rewrite_prompt(text: str, language: Language) -> str:
    """The request to rewrite one rule-based expression, in its language.

    Examples
    --------
    >>> rewrite_prompt("the only building", Language.EN).splitlines()[-1]
    'the only building'
    """
    return _REWRITE[language].format(text=text)


def token_budget(text: str, language: Language, cap: int) -> int:
    """New tokens allowed to rewrite `text`: about twice its own tokens and a few, at most `cap`.

    Parameters
    ----------
    text
        The rule text.
    language
        Its language (which decides how many characters a token holds).
    cap
        The most tokens ever allowed.

    Returns
    -------
    int

    Examples
    --------
    >>> token_budget("the destroyed building in the north-west corner", Language.EN, 48)
    32
    >>> token_budget("位于西北角的被摧毁的建筑", Language.ZH, 48)
    32
    """
    tokens = math.ceil(len(text) / _CHARS_PER_TOKEN[language])
    return min(cap, 2 * tokens + _SLACK_TOKENS)


def rewrite_expressions(
    backend: Backend,
    texts: Sequence[str],
    phrases: Sequence[Phrase],
    language: Language,
    *,
    batch_size: int = 64,
    max_new_tokens: int = 48,
) -> list[str | None]:
    """Rewrite rule texts with a text model; a rewrite that drops a fact is refused.

    Parameters
    ----------
    backend
        The text model.
    texts
        Rule texts (`geovlm.refer.text.render` of `phrases`).
    phrases
        The structured expressions, whose facts a rewrite must keep.
    language
        The language of texts and rewrites.
    batch_size
        Prompts per model call; they are sorted by length first.
    max_new_tokens
        The most new tokens of any rewrite (each batch gets `token_budget` of its longest text).

    Returns
    -------
    list of str or None
        Each text's rewrite with its white space folded, or None where it was empty or dropped a
        fact, in input order.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    rewrites: list[str | None] = [None] * len(texts)
    for start in range(0, len(order), batch_size):
        part = order[start : start + batch_size]
        limit = max(token_budget(texts[i], language, max_new_tokens) for i in part)
        prompts = [rewrite_prompt(texts[i], language) for i in part]
        for i, answer in zip(part, backend.generate(None, prompts, limit), strict=True):
            text = " ".join(answer.split())
            if text and keeps_facts(text, phrases[i], language):
                rewrites[i] = text
    return rewrites

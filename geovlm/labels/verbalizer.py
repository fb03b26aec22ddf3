"""Verbalizers: the answer forms each label may take, and label probabilities over all of them.

A fine-tuned model names one label in several ways: the seed adapter answers "Fire disaster",
"Flood disaster" or "Flooding" as readily as its training sentence "A flooding disaster occurred
in this image.". Scoring one guessed sentence per label under-counts a label whose favourite
form was not guessed. A `Verbalizer` lists every form of every label per language; the model
scores all forms of a language in one pass, and a label's probability is the normalised
log-sum-exp of its forms' full-sequence log-likelihoods ``l_f``::

    P(label) = exp(logsumexp(l_f for f of label)) / sum(exp(l_f) for every f)
             = sum(softmax(l)_f for f of label)

so `label_probabilities` sums the softmax over all forms per label. The labels are a
`geovlm.labels.label_set.LabelSet`: disaster types by default (built-in forms
`geovlm.labels.prompts.answer_forms`, replaced label by label by a preset's ``answers:`` table),
or damage grades (`geovlm.labels.grade_forms.DAMAGE_GRADES`, a preset's ``damage_answers:``).
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from geovlm.labels.label_set import DISASTER_TYPES, LabelSet
from geovlm.labels.prompts import Language

__all__ = ["AnswerForm", "Verbalizer", "label_probabilities"]

#: Stripped before a generated answer is compared with the forms verbatim.
_PADDING = string.whitespace + string.punctuation + "。、「」『』"


@dataclass(frozen=True, slots=True)
class AnswerForm:
    """One way of naming a label in one language, scored as the model's full reply."""

    language: Language
    #: A member of the verbalizer's label set (`DisasterLabel`, `Damage`, ...).
    label: Any
    text: str


@dataclass(frozen=True, slots=True)
class Verbalizer:
    """Every label's answer forms in every language, over one `LabelSet`.

    Every label has at least one form per language, and within a language each form names one
    label only (else its probability would count for two).

    Examples
    --------
    >>> verbalizer = Verbalizer.default()
    >>> [form.text for form in verbalizer.forms("en")][:3]
    ['A fire disaster occurred in this image.', 'Fire disaster', 'Fire']
    >>> verbalizer.parse("Flooding.", "en")
    <DisasterLabel.FLOOD: 'flood'>
    """

    #: The forms, grouped by language and then by label in the label set's order.
    entries: tuple[AnswerForm, ...]
    #: What the forms name.
    labels: LabelSet = DISASTER_TYPES

    def __post_init__(self) -> None:
        key = self.labels.key
        for language in Language:
            seen: dict[str, Enum] = {}
            for form in self.forms(language):
                if form.label not in self.labels.labels:
                    raise ValueError(f"{key}.{language.value}: {form.label!r} is no label here")
                if form.text in seen:
                    raise ValueError(
                        f"{key}.{language.value} lists {form.text!r} under"
                        f" {_both(seen[form.text], form.label)}; keep each form under one label"
                    )
                seen[form.text] = form.label
            if missing := [lb.value for lb in self.labels.labels if lb not in seen.values()]:
                raise ValueError(
                    f"{key}.{language.value} has no forms for {', '.join(missing)}; add some"
                )

    @classmethod
    def default(cls, labels: LabelSet = DISASTER_TYPES) -> Verbalizer:
        """Return the built-in verbalizer of a label set: its default forms of every label.

        Parameters
        ----------
        labels
            Disaster types (`geovlm.labels.prompts.answer_forms`) unless told otherwise.

        Returns
        -------
        Verbalizer
        """
        return cls(tuple(
            AnswerForm(language, label, text)
            for language in Language
            for label in labels.labels
            for text in labels.default_forms(label, language)
        ), labels)

    @classmethod
    def from_mapping(
        cls, mapping: Any, base: Verbalizer | None = None, labels: LabelSet | None = None
    ) -> Verbalizer:
        """Return `base` with some labels' forms replaced, as a preset's ``answers:`` gives them.

        Parameters
        ----------
        mapping
            ``{language: {label: [form, ...]}}`` as read from YAML, e.g.
            ``{"en": {"fire": ["Fire disaster", "Wildfire"]}}``. Each listed label's forms
            replace its forms in `base`; other labels and languages keep theirs.
        base
            The forms to start from; `default` of ``labels`` when None.
        labels
            The label set (and so the key named in messages); ``base``'s, else disaster types.

        Returns
        -------
        Verbalizer

        Raises
        ------
        ValueError
            With one clause naming the bad entry: not a mapping, an unknown language or label,
            a label given twice, an empty list, a blank or non-string form, or a form listed
            under two labels of one language.

        Examples
        --------
        >>> custom = Verbalizer.from_mapping({"en": {"fire": ["Wildfire"]}})
        >>> [form.text for form in custom.forms("en")][:2]
        ['Wildfire', 'A flooding disaster occurred in this image.']
        """
        if base is None:
            base = cls.default(DISASTER_TYPES if labels is None else labels)
        labels = base.labels
        key = labels.key
        if not isinstance(mapping, Mapping):
            raise ValueError(
                f"{key} must map languages to labels to lists of forms, not {mapping!r}"
            )
        replaced: dict[tuple[Language, Enum], tuple[str, ...]] = {}
        languages: set[Language] = set()
        for language_key, table in mapping.items():
            language = _checked(Language, language_key, key)
            if language in languages:
                raise ValueError(f"{key} gives language {language.value} twice; merge them")
            languages.add(language)
            where = f"{key}.{language.value}"
            if not isinstance(table, Mapping):
                raise ValueError(f"{where} must map labels to lists of forms, not {table!r}")
            for label_key, texts in table.items():
                label = _checked(labels.label, label_key, where)
                if (language, label) in replaced:
                    raise ValueError(f"{where} gives label {label.value} twice; merge them")
                replaced[language, label] = _texts(texts, f"{where}.{label.value}")
        entries = [
            AnswerForm(language, label, text)
            for language in Language
            for label in labels.labels
            for text in replaced.get(
                (language, label), tuple(f.text for f in base.forms(language) if f.label is label)
            )
        ]
        return cls(tuple(entries), labels)

    def forms(self, language: Language | str) -> tuple[AnswerForm, ...]:
        """Return one language's forms, flattened, each carrying its label.

        Parameters
        ----------
        language
            ``"en"``, ``"ja"`` or ``"zh"``.

        Returns
        -------
        tuple of AnswerForm
            In the label set's order: the candidates a scorer compares in one pass.
        """
        language = Language(language)
        return tuple(form for form in self.entries if form.language is language)

    def table(self, language: Language | str) -> dict[str, list[str]]:
        """Return one language's forms as plain data, e.g. to record them with a run.

        Parameters
        ----------
        language
            ``"en"``, ``"ja"`` or ``"zh"``.

        Returns
        -------
        dict of str to list of str
            Label value -> its forms, in the label set's order (JSON-ready).
        """
        table: dict[str, list[str]] = {value: [] for value in self.labels.values()}
        for form in self.forms(language):
            table[form.label.value].append(form.text)
        return table

    def parse(self, text: str, language: Language | str) -> Any:
        """Return the label a generated answer names: a form of `language`, else the set's parser.

        A form matches whatever the case, width (NFKC) and surrounding spaces or punctuation, so
        every configured form parses back to its label, even one the word parser does not know.

        Parameters
        ----------
        text
            The model's answer.
        language
            The language asked in.

        Returns
        -------
        label or None
            As the label set's ``parse`` (`geovlm.labels.prompts.parse_label` for disaster
            types) for text that is none of the forms.
        """
        key = _normalized(text)
        for form in self.forms(language):
            if _normalized(form.text) == key:
                return form.label
        return self.labels.parse(text)

    def probabilities(self, form_probs: np.ndarray, language: Language | str) -> np.ndarray:
        """Return `label_probabilities` of one language's forms over this verbalizer's labels.

        Parameters
        ----------
        form_probs
            ``(..., F)`` scores of `forms` of ``language``, in that order.
        language
            The language the forms were scored in.

        Returns
        -------
        numpy.ndarray
            ``(..., len(labels.labels))`` float64.
        """
        return label_probabilities(form_probs, self.forms(language), self.labels)


def label_probabilities(
    form_probs: np.ndarray, forms: Sequence[AnswerForm], labels: LabelSet = DISASTER_TYPES
) -> np.ndarray:
    """Sum the forms' probabilities per label: the normalised log-sum-exp over each label's forms.

    Parameters
    ----------
    form_probs
        ``(..., F)``: each row the softmax of the ``F`` forms' log-likelihoods, as
        `geovlm.backends.base.Backend.score_encoded` returns it for the forms' texts.
    forms
        The ``F`` forms, in column order (`Verbalizer.forms`).
    labels
        The label set the forms name (its order is the output's).

    Returns
    -------
    numpy.ndarray
        ``(..., K)`` float64 in the label set's order (``K = 6`` disaster types); rows sum as
        the input's rows do.

    Examples
    --------
    >>> forms = Verbalizer.default().forms("zh")
    >>> probs = np.full(len(forms), 1 / len(forms))
    >>> label_probabilities(probs, forms).round(3).tolist()
    [0.167, 0.167, 0.167, 0.167, 0.167, 0.167]
    """
    order = list(labels.labels)
    membership = np.zeros((len(forms), len(order)))
    membership[np.arange(len(forms)), [order.index(form.label) for form in forms]] = 1.0
    return np.asarray(form_probs, dtype=np.float64) @ membership


def _checked(kind: Any, key: object, where: str) -> Any:
    try:
        return kind(str(key))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _texts(value: object, where: str) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(text, str) and text.strip() for text in value)
    ):
        raise ValueError(f"{where} must be a non-empty list of non-blank strings, not {value!r}")
    if len(set(value)) < len(value):
        raise ValueError(f"{where} lists a form twice; keep one of each")
    return tuple(value)


def _both(first: Enum, second: Enum) -> str:
    return f"{first.value} twice" if first is second else f"both {first.value} and {second.value}"


def _normalized(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().strip(_PADDING)

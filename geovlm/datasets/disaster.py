"""The disaster-type question: samples in a preset's answer forms, and labels typed by people.

The question is `geovlm.labels.prompts.question` (the seed adapter's training question) and the
answer the label's first form in the verbalizer (its training sentence), so a set built for a preset
teaches exactly the forms its classifier scores. Labels from a map or a vector layer are words
an analyst typed or QGIS kept: `read_label` accepts a label's name in any case (``Flood``,
``flooding``) or any answer form the verbalizer knows (``Flood disaster``, ``洪水``), and
`is_unlabelled` tells the values that mean "no label" (empty, or classify's ``uncertain``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from geovlm.datasets.samples import Sample, Task
from geovlm.labels.prompts import DisasterLabel, Language, question
from geovlm.labels.verbalizer import Verbalizer

__all__ = [
    "disaster_samples", "is_unlabelled", "read_label", "training_answer", "verbalizer_record",
]

#: Values that leave a chip out: nothing typed, or classify's label for an unsure chip.
_UNLABELLED = frozenset({"", "uncertain"})


def training_answer(verbalizer: Verbalizer, label: DisasterLabel, language: Language) -> str:
    """Return the answer a sample teaches: the label's first form in `language`.

    Examples
    --------
    >>> training_answer(Verbalizer.default(), DisasterLabel.FLOOD, Language.EN)
    'A flooding disaster occurred in this image.'
    """
    return next(form.text for form in verbalizer.forms(language) if form.label is label)


def disaster_samples(
    image: str,
    label: DisasterLabel,
    *,
    languages: Iterable[Language],
    verbalizer: Verbalizer,
    tile: str,
    event: str,
) -> list[Sample]:
    """Return one disaster-type question about `image` per language.

    Parameters
    ----------
    image
        The picture's path inside the dataset (`DatasetWriter.add_image`'s result).
    label
        The disaster type the picture shows.
    languages
        The question languages.
    verbalizer
        Whose first form per label is the answer.
    tile, event
        The split units (see `Sample`).

    Returns
    -------
    list of Sample
    """
    return [
        Sample(image, question(language), training_answer(verbalizer, label, language),
               label.value, language, Task.DISASTER, tile, event)
        for language in languages
    ]


def is_unlabelled(value: Any) -> bool:
    """Tell whether a label value means "no label": None, NaN, blank or ``uncertain``.

    Examples
    --------
    >>> is_unlabelled(" Uncertain "), is_unlabelled(None), is_unlabelled("fire")
    (True, True, False)
    """
    if value is None or (isinstance(value, float) and value != value):
        return True
    return str(value).strip().casefold() in _UNLABELLED


def read_label(value: Any, verbalizer: Verbalizer) -> DisasterLabel | None:
    """Return the disaster type a typed value names, or None when it names none.

    Parameters
    ----------
    value
        A label value: a `DisasterLabel` name in any case (xBD's ``flooding`` too), or any
        answer form of `verbalizer` in any language, or a word `geovlm.labels.prompts.parse_label`
        knows (``wildfire``, ``台風``).
    verbalizer
        The answer forms that count as names.

    Returns
    -------
    DisasterLabel or None

    Examples
    --------
    >>> read_label("Flood disaster", Verbalizer.default())
    <DisasterLabel.FLOOD: 'flood'>
    >>> read_label("landslide", Verbalizer.default()) is None
    True
    """
    text = str(value).strip()
    try:
        return DisasterLabel(text)
    except ValueError:
        pass
    found = {verbalizer.parse(text, language) for language in Language} - {None}
    return found.pop() if len(found) == 1 else None


def verbalizer_record(verbalizer: Verbalizer, languages: Iterable[Language]) -> dict[str, Any]:
    """Return the answer forms per language as JSON-ready data, for a dataset's manifest.

    Parameters
    ----------
    verbalizer
        The answer forms a set was built with.
    languages
        The set's languages.

    Returns
    -------
    dict
        ``{language: {label: [form, ...]}}``, the shape of a preset's ``answers:``.
    """
    tables: Mapping[str, Any] = {lang.value: verbalizer.table(lang) for lang in languages}
    return dict(tables)

"""Label sets: what a verbalizer names and a calibration corrects, so one code path scores each.

Disaster types (six, per chip) and damage grades (four, per building) are both a closed set of
labels with built-in answer forms per language and a key under which a preset overrides them.
`geovlm.labels.verbalizer.Verbalizer` and `geovlm.labels.calibration.Calibration` take a
`LabelSet` instead of assuming `DisasterLabel`; `DISASTER_TYPES` is their default, and
`geovlm.labels.grade_forms.DAMAGE_GRADES` the damage grades.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from geovlm.enums import CheckedEnum
from geovlm.labels.prompts import DisasterLabel, Language, answer_forms, parse_label

__all__ = ["DISASTER_TYPES", "LabelSet"]


@dataclass(frozen=True, slots=True)
class LabelSet:
    """A closed set of labels, their built-in answer forms and where a preset overrides them.

    Examples
    --------
    >>> DISASTER_TYPES.values()[:2]
    ('fire', 'flood')
    >>> DISASTER_TYPES.label("flooding")
    <DisasterLabel.FLOOD: 'flood'>
    """

    #: The preset key whose table replaces the built-in forms (``answers``, ``damage_answers``).
    key: str
    #: The preset key of the labels' calibration (``calibration``, ``damage_calibration``).
    calibration_key: str
    #: The labels, in the column order of every probability array over them.
    labels: tuple[CheckedEnum, ...]
    #: The built-in forms of one label in one language, its training answer first.
    default_forms: Callable[[CheckedEnum, Language], tuple[str, ...]]
    #: The label a free-text answer names when it is none of the forms, or None.
    parse: Callable[[str], CheckedEnum | None]

    def label(self, value: object) -> CheckedEnum:
        """Return the label a value spells.

        Raises
        ------
        ValueError
            The value names none of the labels; the message lists them.
        """
        kind = type(self.labels[0])
        member = kind(str(value))
        if member not in self.labels:
            raise ValueError(
                f"{member.value!r} is not one of the labels: {', '.join(self.values())}"
            )
        return member

    def values(self) -> tuple[str, ...]:
        """Return the labels' values, in order (the column names of their probabilities)."""
        return tuple(str(label.value) for label in self.labels)


def _disaster_forms(label: CheckedEnum, language: Language) -> tuple[str, ...]:
    return answer_forms(DisasterLabel(label), language)


#: The six disaster types asked per chip, with `geovlm.labels.prompts.answer_forms`.
DISASTER_TYPES = LabelSet(
    "answers", "calibration", tuple(DisasterLabel), _disaster_forms, parse_label
)

"""Damage-grade probabilities of buildings, each asked with its (pre, post) crops or post alone.

A building is one prompt: `geovlm.labels.building_damage.building_question` with two images
(the pre-disaster crop first) or the post crop alone. Every answer form of the four grades
(`geovlm.labels.grade_forms`, or a preset's ``damage_answers:``) is scored in one pass and a
grade's probability is the sum of its forms' (`geovlm.labels.verbalizer.label_probabilities`),
then calibrated when a damage calibration is given. `GradeScorer.encode` (CPU, safe on a
preparing thread) and `GradeScorer.probabilities` (the model) are split so that a task encodes
batch k+1 while batch k is scored; `grade_probabilities` does both for one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geovlm.backends.base import Backend, PromptImages, images_of
from geovlm.errors import ParameterError
from geovlm.labels.building_damage import building_question
from geovlm.labels.calibration import Calibration
from geovlm.labels.grade_forms import DAMAGE_GRADES
from geovlm.labels.prompts import Language
from geovlm.labels.verbalizer import Verbalizer

__all__ = ["GradeScorer", "grade_probabilities"]


def _damage_forms() -> Verbalizer:
    return Verbalizer.default(DAMAGE_GRADES)


@dataclass(frozen=True, slots=True)
class GradeScorer:
    """What every building of a run is asked in one language, and how its answers are scored.

    Examples
    --------
    >>> scorer = GradeScorer("en")
    >>> scorer.answers[:3]
    ('No damage.', 'No damage', 'Undamaged')
    >>> scorer.prompt(with_pre=False)
    'What is the damage grade of the building in the centre of this image?'
    """

    #: The language asked and answered in (``en``, ``ja``, ``zh``).
    language: Language | str = Language.EN
    #: The grades' answer forms: the preset's ``damage_answers`` (`ModelPreset.damage_answers`).
    verbalizer: Verbalizer = field(default_factory=_damage_forms)
    #: Applied to the grade probabilities (a preset's ``damage_calibration:``), or None.
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "language", Language(self.language))
        if self.verbalizer.labels is not DAMAGE_GRADES:
            raise ParameterError("the grade scorer needs damage-grade answer forms: give the"
                                 " preset's damage_answers")
        if self.calibration is not None and self.calibration.labels is not DAMAGE_GRADES:
            raise ParameterError(
                "this calibration corrects disaster types, not damage grades: give the preset's"
                " damage_calibration"
            )

    @property
    def answers(self) -> tuple[str, ...]:
        """The forms scored, in column order of `GradeScorer.probabilities`' input."""
        return tuple(form.text for form in self.verbalizer.forms(self.language))

    def prompt(self, *, with_pre: bool) -> str:
        """The question for a building shown with its pre crop (two images) or post alone."""
        return building_question(self.language, with_pre=with_pre)

    def encode(self, backend: Backend, images: Sequence[PromptImages]) -> Any:
        """Encode one batch of buildings (CPU work: safe on a preparing thread).

        Parameters
        ----------
        backend
            The model.
        images
            Per building, ``(pre, post)`` crops or the post crop alone (a 1-tuple or an image);
            a batch may mix both.

        Returns
        -------
        object
            For `probabilities`.

        Raises
        ------
        ParameterError
            A building has no image or more than two, or the model reads one image and a
            building has two.
        """
        prompts = []
        for item in images:
            count = len(images_of(item))
            if count not in (1, 2):
                raise ParameterError(
                    f"a building comes with {count} images: give (pre, post) crops or post alone"
                )
            prompts.append(self.prompt(with_pre=count == 2))
        return backend.encode(images, prompts)

    def probabilities(self, backend: Backend, encoded: Any) -> np.ndarray:
        """Grade probabilities of an encoded batch, calibrated when a calibration is given.

        Returns
        -------
        numpy.ndarray
            ``(n, 4)`` float64 in `geovlm.labels.building_damage.GRADES` order, rows summing
            to 1.
        """
        form_probs = backend.score_encoded(encoded, self.answers)
        grades = self.verbalizer.probabilities(form_probs, self.language)
        return grades if self.calibration is None else self.calibration.apply(grades)


def grade_probabilities(
    backend: Backend,
    images: Sequence[PromptImages],
    language: Language | str = Language.EN,
    *,
    verbalizer: Verbalizer | None = None,
    calibration: Calibration | None = None,
) -> np.ndarray:
    """Damage-grade probabilities of a batch of buildings (encode, then score, in one call).

    Parameters
    ----------
    backend
        The model.
    images
        Per building, ``(pre, post)`` crops or the post crop alone.
    language
        The language asked in.
    verbalizer
        The grades' answer forms (a preset's ``damage_answers``); the built-in ones if None.
    calibration
        A damage calibration (a preset's ``damage_calibration``), or None.

    Returns
    -------
    numpy.ndarray
        ``(len(images), 4)`` float64 over `geovlm.labels.building_damage.GRADES`, rows
        summing to 1.

    Raises
    ------
    ParameterError
        As `GradeScorer.encode`.
    """
    scorer = GradeScorer(language, verbalizer or _damage_forms(), calibration)
    if not images:
        return np.empty((0, len(DAMAGE_GRADES.labels)))
    return scorer.probabilities(backend, scorer.encode(backend, images))

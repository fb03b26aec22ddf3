"""Label probabilities as a layer records them: the best label or ``uncertain``, the runner-up.

``geovlm classify`` (disaster type per chip) and ``geovlm damage`` (grade per building) write the
same four fields and the probabilities as JSON; the best label gives way to `UNCERTAIN` below
the run's ``--min-confidence``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["UNCERTAIN", "ranked_fields"]

#: The label of a chip or building whose best probability is under the run's --min-confidence.
UNCERTAIN = "uncertain"


def ranked_fields(row: np.ndarray, names: Sequence[str], min_confidence: float,
                  field: str) -> dict[str, Any]:
    """Return the record fields of one row of probabilities over `names`.

    Parameters
    ----------
    row
        The probabilities, in the order of `names`.
    names
        The labels' values.
    min_confidence
        Below this best probability, `field` is `UNCERTAIN`.
    field
        The field holding the best label (``label``, ``damage``).

    Returns
    -------
    dict
        `field`, ``confidence``, ``runner_up``, ``runner_up_confidence`` and ``probs`` (JSON).

    Examples
    --------
    >>> fields = ranked_fields(np.array([0.1, 0.6, 0.3]), ["a", "b", "c"], 0.5, "label")
    >>> fields["label"], fields["runner_up"], fields["probs"]
    ('b', 'c', '{"a": 0.1, "b": 0.6, "c": 0.3}')
    >>> ranked_fields(np.array([0.4, 0.35, 0.25]), ["a", "b", "c"], 0.5, "label")["label"]
    'uncertain'
    """
    best, second = np.argsort(-row, kind="stable")[:2]
    confidence = float(row[best])
    return {
        field: names[best] if confidence >= min_confidence else UNCERTAIN,
        "confidence": round(confidence, 6),
        "runner_up": names[second],
        "runner_up_confidence": round(float(row[second]), 6),
        "probs": json.dumps({name: round(float(p), 6) for name, p in zip(names, row, strict=True)}),
    }

"""Building damage grades: xBD's joint damage scale, as its labels spell it."""

from __future__ import annotations

from geovlm.enums import CheckedEnum

__all__ = ["Damage"]


class Damage(CheckedEnum):
    """xBD's damage grade of one building (``properties.subtype`` of post-disaster labels).

    Examples
    --------
    >>> Damage("major-damage")
    <Damage.MAJOR_DAMAGE: 'major-damage'>
    """

    NO_DAMAGE = "no-damage"
    MINOR_DAMAGE = "minor-damage"
    MAJOR_DAMAGE = "major-damage"
    DESTROYED = "destroyed"
    UN_CLASSIFIED = "un-classified"

"""The base of geovlm's option enums: case-insensitive lookup and errors that list the choices."""

from __future__ import annotations

from enum import StrEnum
from typing import Self

__all__ = ["CheckedEnum"]


class CheckedEnum(StrEnum):
    """A string enum whose lookup ignores case and spaces and whose errors list the options.

    Subclasses may map other spellings to values by overriding `_canonical`.

    Examples
    --------
    >>> class Colour(CheckedEnum):
    ...     RED = "red"
    ...     BLUE = "blue"
    >>> Colour(" Red ")
    <Colour.RED: 'red'>
    >>> Colour("green")
    Traceback (most recent call last):
    ...
    ValueError: unknown colour 'green'; choose one of: red, blue
    """

    @classmethod
    def _canonical(cls, key: str) -> str:
        """The value a lower-cased spelling stands for (itself unless a subclass knows better)."""
        return key

    @classmethod
    def _missing_(cls, value: object) -> Self:
        key = cls._canonical(str(value).strip().lower())
        for member in cls:
            if member.value == key:
                return member
        options = ", ".join(member.value for member in cls)
        raise ValueError(f"unknown {cls._label()} {value!r}; choose one of: {options}")

    @classmethod
    def _label(cls) -> str:
        """The enum's name in words, e.g. ``DisasterLabel`` -> ``disaster label``."""
        return "".join(f" {c.lower()}" if c.isupper() else c for c in cls.__name__).strip()

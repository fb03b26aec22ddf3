"""HTML tables for the report pages (``geovlm eval``'s and ``geovlm report``'s), written once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

__all__ = ["html_table"]


def html_table(header: Sequence[str], rows: Iterable[Sequence[object]], *, digits: int = 2,
               raw: bool = False) -> str:
    """Return a ``<table>`` with a header row.

    Parameters
    ----------
    header
        The column names (escaped).
    rows
        The cells: None shows as a dash, a float with `digits` decimals.
    digits
        Decimals of float cells.
    raw
        The cells are HTML already (e.g. a colour swatch before a name): not escaped.

    Examples
    --------
    >>> html_table(["grade", "share"], [["<b>", 0.5], ["x", None]])
    '<table><tr><th>grade</th><th>share</th></tr><tr><td>&lt;b&gt;</td><td>0.50</td></tr><tr><td>x</td><td>–</td></tr></table>'
    """
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(value, digits, raw)}</td>" for value in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: object, digits: int, raw: bool) -> str:
    if value is None:
        return "–"
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return text if raw else escape(text)

"""QGIS styles (QML) stored with each layer so QGIS draws results coloured the moment they open."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping

__all__ = [
    "DAMAGE_COLOURS", "GRADE_COLOURS", "LABEL_COLOURS", "categorized_style", "outline_style",
    "with_labels",
]

#: Fill colour per disaster label (and ``uncertain``), as RGB.
LABEL_COLOURS: dict[str, tuple[int, int, int]] = {
    "fire": (215, 48, 31),
    "flood": (33, 113, 181),
    "wind": (106, 81, 163),
    "earthquake": (140, 81, 10),
    "tsunami": (65, 182, 196),
    "volcano": (253, 141, 60),
    "uncertain": (189, 189, 189),
}

#: Fill colour per xBD damage grade, green to red, as RGB.
DAMAGE_COLOURS: dict[str, tuple[int, int, int]] = {
    "no-damage": (26, 150, 65),
    "minor-damage": (253, 174, 97),
    "major-damage": (244, 109, 67),
    "destroyed": (215, 25, 28),
    "un-classified": (189, 189, 189),
}

#: Fill colour per predicted building damage: the four grades, then ``uncertain`` grey.
GRADE_COLOURS: dict[str, tuple[int, int, int]] = {
    **{grade: DAMAGE_COLOURS[grade]
       for grade in ("no-damage", "minor-damage", "major-damage", "destroyed")},
    "uncertain": LABEL_COLOURS["uncertain"],
}

_QML_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"


def _colour(rgb: tuple[int, int, int], alpha: int = 255) -> str:
    return ",".join(str(v) for v in (*rgb, alpha))


def _fill_symbol(name: str, fill: str, outline: str, opacity: float) -> ET.Element:
    """A simple-fill symbol, with its properties in both QML spellings QGIS 3.x reads."""
    symbol = ET.Element(
        "symbol",
        {"name": name, "type": "fill", "alpha": str(opacity), "clip_to_extent": "1",
         "force_rhr": "0"},
    )
    layer = ET.SubElement(
        symbol, "layer", {"class": "SimpleFill", "enabled": "1", "pass": "0", "locked": "0"}
    )
    props = {
        "color": fill,
        "outline_color": outline,
        "outline_style": "solid",
        "outline_width": "0.4",
        "outline_width_unit": "MM",
        "style": "solid" if not fill.endswith(",0") else "no",
        "joinstyle": "miter",
    }
    options = ET.SubElement(layer, "Option", {"type": "Map"})
    for key, value in props.items():
        ET.SubElement(options, "Option", {"name": key, "type": "QString", "value": value})
    for key, value in props.items():
        ET.SubElement(layer, "prop", {"k": key, "v": value})
    return symbol


def _document(renderer: ET.Element) -> str:
    root = ET.Element("qgis", {"version": "3.22.16", "styleCategories": "Symbology"})
    root.append(renderer)
    ET.SubElement(root, "layerOpacity").text = "1"
    ET.indent(root)
    return _QML_DOCTYPE + ET.tostring(root, encoding="unicode")


def outline_style(rgb: tuple[int, int, int] = (255, 215, 0)) -> str:
    """A style drawing every feature as an unfilled outline (for chip grids).

    Parameters
    ----------
    rgb
        Outline colour.

    Returns
    -------
    str
        The QML document.
    """
    renderer = ET.Element(
        "renderer-v2",
        {"type": "singleSymbol", "forceraster": "0", "symbollevels": "0", "enableorderby": "0"},
    )
    symbols = ET.SubElement(renderer, "symbols")
    symbols.append(_fill_symbol("0", _colour((0, 0, 0), 0), _colour(rgb), 1.0))
    return _document(renderer)


def categorized_style(
    attribute: str, colours: Mapping[str, tuple[int, int, int]] = LABEL_COLOURS
) -> str:
    """A style colouring features by the value of one attribute.

    Parameters
    ----------
    attribute
        The field whose values pick the colour.
    colours
        Colour per value, in legend order.

    Returns
    -------
    str
        The QML document.
    """
    renderer = ET.Element(
        "renderer-v2",
        {"type": "categorizedSymbol", "attr": attribute, "forceraster": "0",
         "symbollevels": "0", "enableorderby": "0"},
    )
    categories = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    for index, (value, rgb) in enumerate(colours.items()):
        ET.SubElement(
            categories,
            "category",
            {"render": "true", "value": value, "type": "string", "label": value,
             "symbol": str(index)},
        )
        symbols.append(_fill_symbol(str(index), _colour(rgb), _colour((35, 35, 35)), 0.6))
    return _document(renderer)


def with_labels(qml: str, field: str) -> str:
    """A style with each feature labelled by the text of one field, drawn over its centre.

    Parameters
    ----------
    qml
        A QML document from this module.
    field
        The field whose text labels the features.

    Returns
    -------
    str
        The QML document with labels enabled.
    """
    root = ET.fromstring(qml.removeprefix(_QML_DOCTYPE))
    root.set("styleCategories", "Symbology|Labeling")
    root.set("labelsEnabled", "1")
    labeling = ET.SubElement(root, "labeling", {"type": "simple"})
    settings = ET.SubElement(labeling, "settings", {"calloutType": "simple"})
    ET.SubElement(settings, "text-style", {
        "fieldName": field, "isExpression": "0", "fontSize": "8", "fontSizeUnit": "Point",
        "textColor": "0,0,0,255", "multilineAlign": "3",
    })
    ET.SubElement(settings, "text-format", {"wrapChar": "", "autoWrapLength": "24"})
    ET.SubElement(settings, "placement", {"placement": "1", "centroidInside": "1"})
    ET.SubElement(settings, "rendering", {"drawLabels": "1", "obstacle": "1"})
    ET.indent(root)
    return _QML_DOCTYPE + ET.tostring(root, encoding="unicode")

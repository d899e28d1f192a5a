"""Building SVG markup with every text and attribute value escaped.

Nothing here concatenates a caller's text into markup unescaped: element names and attribute
names are this package's own constants, attribute values and text go through
:func:`markupsafe.escape`. Attributes are SVG presentation attributes (``fill``, ``stroke``,
``font-size``), never ``style=``: the app's Content-Security-Policy (``style-src 'self'``) would
drop inline styles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal

from markupsafe import Markup, escape

_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9:_-]*$")

AttrValue = str | int | float | Decimal | None

#: Colours of the charts: ink and muted text on white pass WCAG AA (4.5:1) for small text.
INK = "#1b1f24"
MUTED = "#4a525c"
GUIDE = "#8a929c"
LINE = "#0b5cad"
WHITE = "#ffffff"


def number(value: float | Decimal) -> str:
    """A coordinate with at most two decimals and no trailing zeros ("12.5", "40")."""
    text = f"{float(value):.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _attrs(attrs: dict[str, AttrValue]) -> Markup:
    parts = []
    for name, value in attrs.items():
        if value is None:
            continue
        name = name.rstrip("_").replace("_", "-")
        if not _NAME.match(name):
            raise ValueError(f"not an attribute name: {name!r}")
        shown = number(value) if isinstance(value, float | Decimal) else str(value)
        parts.append(Markup(' {}="{}"').format(name, shown))
    return Markup("").join(parts)


def element(tag: str, *children: Markup | str, **attrs: AttrValue) -> Markup:
    """``<tag attrs>children</tag>``; a ``str`` child is text and is escaped, a ``Markup``
    child is markup this module built. Attribute names: ``font_size`` → ``font-size``,
    ``class_`` → ``class``. Every name is checked against ``_NAME`` and every value escaped
    (``Markup.format`` escapes what it is given)."""
    if not _NAME.match(tag):
        raise ValueError(f"not an element name: {tag!r}")
    if not children:
        return Markup("<{}{}/>").format(tag, _attrs(attrs))
    inner = Markup("").join(escape(child) for child in children)
    return Markup("<{}{}>{}</{}>").format(tag, _attrs(attrs), inner, tag)


def group(children: Iterable[Markup], **attrs: AttrValue) -> Markup:
    return element("g", *children, **attrs) if attrs else Markup("").join(children)


def text(content: str, x: float, y: float, **attrs: AttrValue) -> Markup:
    attrs.setdefault("fill", INK)
    return element("text", content, x=float(x), y=float(y), **attrs)


def document(
    *,
    chart_id: str,
    width: int,
    height: int,
    title: str,
    desc: str,
    body: Iterable[Markup],
    class_: str = "chart",
) -> Markup:
    """An accessible inline SVG: ``role="img"`` named by its ``<title>`` and described by its
    ``<desc>`` (both translated by the caller); scales with its container through viewBox."""
    if not _NAME.match(chart_id):
        raise ValueError(f"not an id: {chart_id!r}")
    return element(
        "svg",
        element("title", title, id=f"{chart_id}-title"),
        element("desc", desc, id=f"{chart_id}-desc"),
        *body,
        xmlns="http://www.w3.org/2000/svg",
        id=chart_id,
        class_=class_,
        role="img",
        aria_labelledby=f"{chart_id}-title",
        aria_describedby=f"{chart_id}-desc",
        viewBox=f"0 0 {width} {height}",
        width=width,
        height=height,
        font_family="DejaVu Sans, sans-serif",
    )

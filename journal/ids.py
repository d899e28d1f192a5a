"""Ids that arrive in URLs and form fields: bounded, so that a number no row can carry answers
404 or 400, never a database error.

Row ids are INTEGER columns: PostgreSQL refuses to compare one with a number past 2^31 - 1
("integer out of range") and SQLite cannot bind one past 2^63 - 1, so a larger id is refused
before any query. The few BIGINT ids (the access log's) pass ``maximum=BIG_ID_MAX``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import abort
from flask_babel import gettext as _
from werkzeug.routing import Map
from werkzeug.routing.converters import IntegerConverter
from wtforms import IntegerField

ROW_ID_MAX = 2**31 - 1  # INTEGER columns
BIG_ID_MAX = 2**63 - 1  # BIGINT columns
_DIGITS = re.compile(r"[0-9]{1,19}")


def digits_at_most(limit: int) -> str:
    """A regular expression for the decimal numbers 0..limit (no sign, no leading zeros)."""
    text = str(limit)
    shorter = f"0|[1-9][0-9]{{0,{len(text) - 2}}}" if len(text) > 1 else "0"
    # As long as the limit: equal to it up to some digit, then a smaller digit, then any.
    same_length = []
    for i, digit in enumerate(text):
        low = "1" if i == 0 else "0"
        if int(digit) > int(low):
            rest = len(text) - i - 1
            same_length.append(f"{text[:i]}[{low}-{int(digit) - 1}][0-9]{{{rest}}}")
    same_length.append(text)
    return "(?:" + "|".join([shorter, *same_length]) + ")"


class IdConverter(IntegerConverter):
    """The app's ``int`` URL converter: ASCII digits up to ``ROW_ID_MAX``; anything else is
    no match, so 404 (``create_app`` installs it before any route is added). The bound is in
    the regular expression itself: werkzeug checks a rule's methods before its converters, so
    a value refused only by ``to_python`` answers 405 where a GET and a POST view share a
    path."""

    regex = digits_at_most(ROW_ID_MAX)

    def __init__(
        self,
        map: Map,
        fixed_digits: int = 0,
        min: int | None = None,
        max: int | None = ROW_ID_MAX,
        signed: bool = False,
    ) -> None:
        super().__init__(map, fixed_digits, min, max, signed)


def parse_id(text: object, *, minimum: int = 0, maximum: int = ROW_ID_MAX) -> int:
    """The integer in a form or query field: plain ASCII digits in [minimum, maximum].

    Raises ``ValueError`` for anything else (a sign, spaces, other scripts' digits, ``1_000``).
    """
    if not isinstance(text, str) or not _DIGITS.fullmatch(text):
        raise ValueError("not a number")
    value = int(text)
    if not minimum <= value <= maximum:
        raise ValueError("out of range")
    return value


def id_arg(
    values: Mapping[str, Any], name: str, *, minimum: int = 0, maximum: int = ROW_ID_MAX
) -> int | None:
    """A request field holding an id: None when it is missing or empty, 400 when it is not an
    id (nothing has been read or written by then)."""
    text = values.get(name)
    if text is None or text == "":
        return None
    try:
        return parse_id(text, minimum=minimum, maximum=maximum)
    except ValueError:
        abort(400, description=_("A number in this request is not valid: %(name)s.", name=name))


class IdField(IntegerField):
    """A form field holding a row id: anything but an id in range is a validation error."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist or valuelist[0] == "":
            self.data = None
            return
        try:
            self.data = parse_id(valuelist[0], minimum=1)
        except ValueError as exc:
            self.data = None
            raise ValueError(self.gettext("Not a valid integer value.")) from exc

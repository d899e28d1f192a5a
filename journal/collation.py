"""One pupil order everywhere: the alphabet of the class's language of instruction.

Kazakh and Russian Cyrillic are sorted by the CLDR rules through ICU (PyICU), so that names
beginning with Ә, Ғ, Қ, Ө, Ұ, Ү, І sort where a Kazakh reader looks for them (Ә after А, Ғ after
Г, ...) instead of after Я as code points would put them. PostgreSQL sorts the same way with its
ICU collations ``kk-x-icu`` and ``ru-x-icu`` (:data:`SQL_COLLATIONS`), where sorting happens in SQL.
Class names use numeric ordering too: 7А, 7Ә, 7Б, ..., 10А.

Pure functions of plain values; no database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any, TypeVar

import icu

LANGUAGES = ("kk", "ru")
SQL_COLLATIONS = {"kk": "kk-x-icu", "ru": "ru-x-icu"}
_T = TypeVar("_T")


def language_of(value: str | None) -> str:
    """A supported language of instruction; anything else sorts as Kazakh."""
    return value if value in LANGUAGES else "kk"


@lru_cache(maxsize=8)
def _collator(language: str, numeric: bool) -> Any:
    collator = icu.Collator.createInstance(icu.Locale(language_of(language)))
    if numeric:
        collator.setAttribute(icu.UCollAttribute.NUMERIC_COLLATION, icu.UCollAttributeValue.ON)
    return collator


def sort_key(language: str, text: str, *, numeric: bool = False) -> bytes:
    """The ICU sort key of ``text`` in ``language`` (bytes compare in collation order)."""
    key: bytes = _collator(language, numeric).getSortKey(text)
    return key


def name_key(
    language: str, last_name: str, first_name: str, patronymic: str | None, ident: int
) -> tuple[bytes, bytes, bytes, int]:
    """Surname, then first name, then patronymic, then the row id (two namesakes keep one
    stable order)."""
    return (
        sort_key(language, last_name),
        sort_key(language, first_name),
        sort_key(language, patronymic or ""),
        ident,
    )


def in_pupil_order(
    language: str, items: Iterable[_T], names: Callable[[_T], Sequence[Any]]
) -> list[_T]:
    """``items`` in the class's pupil order; ``names(item)`` gives (last name, first name,
    patronymic, id)."""

    def key(item: _T) -> tuple[bytes, bytes, bytes, int]:
        last, first, patronymic, ident = names(item)
        return name_key(language, last, first, patronymic, ident)

    return sorted(items, key=key)


def class_key(name: str, grade_level: int = 0) -> tuple[int, bytes]:
    """Classes by grade, then by letter in Kazakh alphabetical order: 7А, 7Ә, 7Б."""
    return (grade_level, sort_key("kk", name, numeric=True))

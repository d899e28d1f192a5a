"""The pupils of a class over some days, in the one order every page and printout uses.

The order is the alphabet of the class's language of instruction (``journal.collation``); a
pupil's № is their place in that list for the period shown (a term, the year), the same on the
grid, on paper, in the portal and in the class summary.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from .collation import SQL_COLLATIONS, in_pupil_order, language_of
from .models import ClassGroup, Enrollment, Student


@dataclass(frozen=True)
class Pupil:
    id: int
    last_name: str
    first_name: str
    patronymic: str | None
    periods: tuple[tuple[dt.date, dt.date | None], ...]  # enrolled from, to

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.last_name, self.first_name, self.patronymic) if p)

    def enrolled_on(self, day: dt.date) -> bool:
        return any(start <= day and (end is None or day <= end) for start, end in self.periods)


def class_pupils(
    session: Session, class_group: ClassGroup, first: dt.date, last: dt.date
) -> list[Pupil]:
    """Pupils enrolled in the class at any time between ``first`` and ``last``, in order."""
    periods: dict[int, list[tuple[dt.date, dt.date | None]]] = {}
    names: dict[int, tuple[str, str, str | None]] = {}
    for row in session.execute(
        select(
            Enrollment.student_id,
            Enrollment.starts_on,
            Enrollment.ends_on,
            Student.last_name,
            Student.first_name,
            Student.patronymic,
        )
        .join(Student, Student.id == Enrollment.student_id)
        .where(
            Enrollment.class_group_id == class_group.id,
            Enrollment.starts_on <= last,
            (Enrollment.ends_on.is_(None)) | (Enrollment.ends_on >= first),
        )
    ):
        periods.setdefault(row.student_id, []).append((row.starts_on, row.ends_on))
        names[row.student_id] = (row.last_name, row.first_name, row.patronymic)
    pupils = [
        Pupil(sid, *names[sid], tuple(sorted(spans)))  # type: ignore[arg-type]
        for sid, spans in periods.items()
    ]
    return in_pupil_order(
        class_group.language,
        pupils,
        lambda p: (p.last_name, p.first_name, p.patronymic, p.id),
    )


def student_order(language: str, students: list[Student]) -> list[Student]:
    return in_pupil_order(
        language, students, lambda s: (s.last_name, s.first_name, s.patronymic, s.id)
    )


def sql_collation(session: Session, language: str) -> str | None:
    """PostgreSQL's ICU collation for the language, where sorting happens in SQL (None on
    SQLite, which has no ICU: sort in Python there)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    return SQL_COLLATIONS[language_of(language)]

"""What each cell of a journal holds now.

A cell ("att:<lesson>:<student>", "FO:<lesson>:<student>", "topic:<lesson>", ...) collects every
entry written for it. Its heads are the entries no correction supersedes: one head is the
cell's value, a void correction empties it, and two heads (two devices offline, two corrections)
are a conflict for a person to resolve. Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .grading import TermWork
from .models import Entry, Supersession


@dataclass(frozen=True)
class EntryView:
    entry_id: str
    seq: int
    kind: str
    cell: str
    lesson_id: int | None
    student_id: int | None
    author_id: int | None
    received_at: dt.datetime
    payload: Mapping[str, Any]

    @property
    def value(self) -> Any:
        """The value this entry gives its cell; None for a void correction."""
        if self.kind == "topic" or self.payload.get("corrects") == "topic":
            if self.payload.get("value") == "void":
                return None
            return {
                "topic": self.payload.get("topic", ""),
                "homework": self.payload.get("homework", ""),
            }
        value = self.payload.get("value")
        return None if value == "void" else value

    @property
    def component(self) -> str | None:
        return self.payload.get("component")


@dataclass
class Cell:
    key: str
    history: list[EntryView] = field(default_factory=list)  # in log order
    heads: list[EntryView] = field(default_factory=list)

    @property
    def conflict(self) -> bool:
        return len(self.heads) > 1

    @property
    def value(self) -> Any:
        """The cell's value, or None when it is empty, voided or in conflict."""
        return self.heads[0].value if len(self.heads) == 1 else None


def read_cells(
    session: Session,
    log_id: int,
    *,
    lesson_ids: Iterable[int] | None = None,
    student_ids: Iterable[int] | None = None,
    kinds: Iterable[str] | None = None,
    until_seq: int | None = None,
) -> dict[str, Cell]:
    """Every cell of a log (optionally of some lessons or students), with its heads.

    ``until_seq`` reads the log as it was with that many leaves (a closed term's checkpoint).
    """
    query = (
        select(
            Entry.entry_id,
            Entry.seq,
            Entry.kind,
            Entry.cell,
            Entry.lesson_id,
            Entry.student_id,
            Entry.author_id,
            Entry.received_at,
            Entry.leaf,
        )
        .where(Entry.log_id == log_id, Entry.cell.is_not(None))
        .order_by(Entry.seq)
    )
    if lesson_ids is not None:
        query = query.where(Entry.lesson_id.in_(list(lesson_ids)))
    if student_ids is not None:
        query = query.where(Entry.student_id.in_(list(student_ids)))
    if kinds is not None:
        query = query.where(Entry.kind.in_(list(kinds)))
    supersessions = (
        select(Supersession.superseded_entry_id)
        .join(Entry, Entry.entry_id == Supersession.correction_entry_id)
        .where(Supersession.log_id == log_id)
    )
    if until_seq is not None:
        query = query.where(Entry.seq < until_seq)
        supersessions = supersessions.where(Entry.seq < until_seq)
    superseded = set(session.scalars(supersessions))
    cells: dict[str, Cell] = {}
    for row in session.execute(query):
        view = EntryView(
            entry_id=row.entry_id,
            seq=row.seq,
            kind=row.kind,
            cell=row.cell,
            lesson_id=row.lesson_id,
            student_id=row.student_id,
            author_id=row.author_id,
            received_at=row.received_at,
            payload=json.loads(row.leaf)["payload"],
        )
        cell = cells.setdefault(row.cell, Cell(row.cell))
        cell.history.append(view)
        if row.entry_id not in superseded:
            cell.heads.append(view)
    return cells


def cell_key(kind: str, lesson_id: int, student_id: int | None = None) -> str:
    """The key of a cell: ``kind`` is "att", "topic" or a grade component (FO, SOR, SOCh, mark)."""
    if kind == "topic":
        return f"topic:{lesson_id}"
    return f"{kind}:{lesson_id}:{student_id}"


def cell_values(cells: Mapping[str, Cell]) -> dict[str, Any]:
    """Each cell's value: None where it is empty, voided or in conflict."""
    return {key: cell.value for key, cell in cells.items()}


GRADED_COMPONENTS = ("FO", "SOR", "SOCh", "mark")


def term_works(
    values: Mapping[str, Any], student_ids: Iterable[int], lesson_ids: Iterable[int]
) -> dict[int, TermWork]:
    """Each student's graded work over some lessons, as the grading rules take it, from the
    cells' values (``cell_values``; the grid passes the values of its heads). One pass over
    the values, in lesson order, whatever the number of students."""
    position = {lesson_id: index for index, lesson_id in enumerate(lesson_ids)}
    found: dict[int, list[tuple[int, int, Any]]] = {student_id: [] for student_id in student_ids}
    for key, value in values.items():
        if not isinstance(value, dict):
            continue  # empty, voided, in conflict, or not a grade
        component, _, rest = key.partition(":")
        if component not in GRADED_COMPONENTS:
            continue
        lesson, _, student = rest.partition(":")
        work = found.get(int(student)) if student.isdigit() else None
        if work is not None and lesson.isdigit() and int(lesson) in position:
            work.append((position[int(lesson)], GRADED_COMPONENTS.index(component), value))
    return {student_id: _term_work(sorted(work)) for student_id, work in found.items()}


def _term_work(values: list[tuple[int, int, Any]]) -> TermWork:
    fo: list[int] = []
    sor: list[tuple[int, int]] = []
    soch: tuple[int, int] | None = None
    marks: list[int] = []
    for _lesson, component, value in values:
        if component == 0:
            fo.append(value["score"])
        elif component == 1:
            sor.append((value["points"], value["max"]))
        elif component == 2:
            soch = (value["points"], value["max"])  # the term's last SOCh counts
        else:
            marks.append(value["mark"])
    return TermWork(fo=tuple(fo), sor=tuple(sor), soch=soch, marks=tuple(marks))

"""The class × subject × term grid: its frame (who may open it, lessons, pupils), its cells
(the heads of the journal's entries) and its term column, and the JSON the grid's ES modules
start from. Nothing here writes but the journal's log row on first opening."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, request, url_for
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from auth import policy
from auth.models import User

from ..cells import read_cells
from ..db import utcnow
from ..grading import GradingRule
from ..models import (
    ClassGroup,
    Entry,
    Lesson,
    Log,
    Subject,
    Supersession,
    Term,
)
from ..pupils import class_pupils
from ..school_time import school_today
from ..services import ensure_journal_log
from ..year.results import DECISION, SEALED_TERM, TermBook
from .frame import GRID_FRAME
from .strings import attendance_labels

# -- the grid ----------------------------------------------------------------------------------


class GridUnavailable(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class GridLesson:
    id: int
    date: dt.date
    period: int


@dataclass(frozen=True)
class GridStudent:
    id: int
    name: str
    periods: tuple[tuple[dt.date, dt.date | None], ...]  # enrolled from, to

    def enrolled_on(self, day: dt.date) -> bool:
        return any(start <= day and (end is None or day <= end) for start, end in self.periods)


# (layer, text, state) for one layer's value in one cell; state is "synced" or "conflict".
CellPart = tuple[str, str, str]
LAYER_ORDER = {"att": 0, "FO": 1, "SOR": 2, "SOCh": 3, "mark": 4}
GRADE_LAYERS = ("FO", "SOR", "SOCh")


@dataclass
class Grid:
    class_group: ClassGroup
    subject: Subject
    term: Term
    log: Log
    lessons: list[GridLesson]
    students: list[GridStudent]
    cursor: int
    created_log: bool = False
    last_leaf: bytes = b""  # the hash of the log's last leaf when the grid was opened
    # cell -> [(entry_id, seq, value)], in log order; more than one head is a conflict.
    heads: dict[str, list[tuple[str, int, Any]]] = field(default_factory=dict)
    superseded: list[str] = field(default_factory=list)
    superseded_seqs: list[int] = field(default_factory=list)  # the seq of each, in order
    # For each student, for each lesson: None when not enrolled that day, else the cell's parts.
    rows: list[list[tuple[CellPart, ...] | None]] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    # The class teacher (or an admin) reading a subject they do not teach: nothing is written.
    viewing: bool = False
    # The assessment plan of this class × subject × term: (СОЧ planned, number of СОР).
    plan: tuple[bool, int] = (False, 0)
    school_today: dt.date = dt.date.min
    time_zone: str = "Asia/Almaty"
    # The lessons' and pupils' text shape (``frame``): changes whenever they do.
    shape: tuple[str, str] = ("", "")

    @property
    def closed(self) -> bool:
        return self.term.closed_at is not None

    @property
    def readonly(self) -> bool:
        return self.closed or self.viewing

    @property
    def frame_key(self) -> tuple[Any, ...]:
        """Everything the page body depends on but the teacher, the language, the rule, the
        app version and the log's entries; read in one statement (``frame.GRID_FRAME``),
        without the lessons and pupils themselves (their shape stands for them)."""
        return (
            self.class_group.id,
            self.class_group.name,
            self.class_group.grade_level,
            self.class_group.language,
            self.subject.id,
            self.subject.name,
            self.subject.graded,
            self.term.id,
            self.term.kind,
            self.term.number,
            self.term.starts_on,
            self.term.ends_on,
            self.closed,
            self.readonly,
            self.viewing,
            self.plan,
            self.school_today,
            self.time_zone,
            self.log.id,
            self.log.origin,
            self.shape,
        )

    @property
    def fingerprint(self) -> tuple[Any, ...]:
        """Everything the rendered page body depends on but the teacher, the language, the rule
        and the app version, read before the entries.
        The log is append-only, so its size and last leaf stand for all its entries and
        supersessions (the leaf also tells a log restored from a backup and grown again)."""
        return (
            self.class_group.id,
            self.class_group.name,
            self.class_group.grade_level,
            self.subject.id,
            self.subject.name,
            self.subject.graded,
            self.term.id,
            self.term.kind,
            self.term.number,
            self.term.ends_on,
            self.readonly,
            self.viewing,
            self.plan,
            self.school_today,
            self.log.id,
            self.cursor,
            self.last_leaf,
            tuple(self.lessons),
            tuple(self.students),
        )


def head_value(payload: dict[str, Any]) -> Any:
    """What a head says about its cell: a mark, a grade value, a topic, or None for void."""
    kind = payload["kind"]
    if kind == "correction":
        if payload.get("value") == "void":
            return None
        kind = payload["corrects"]
    if kind == "topic":
        return {"topic": payload.get("topic", ""), "homework": payload.get("homework", "")}
    return payload.get("value")


def head_text(layer: str, value: Any, attendance: dict[str, str]) -> str:
    if value is None:
        return ""
    if layer == "att":
        return attendance.get(value, value)
    if layer == "topic":
        return str(value.get("topic", ""))
    if "score" in value:
        return str(value["score"])
    if "points" in value:
        return f"{value['points']}/{value['max']}"
    return str(value.get("mark", ""))


_HEAD_VALUES: dict[bytes, Any] = {}
HEAD_VALUE_CACHE_SIZE = 200_000


def head_values(session: Session, wanted: dict[str, bytes]) -> dict[str, Any]:
    """The values of the heads ``{entry_id: leaf_hash}``; reads only leaves not seen before."""
    values = {}
    missing = []
    for entry_id, leaf_hash in wanted.items():
        if leaf_hash in _HEAD_VALUES:
            values[entry_id] = _HEAD_VALUES[leaf_hash]
        else:
            missing.append(entry_id)
    if missing:
        if len(_HEAD_VALUES) + len(missing) > HEAD_VALUE_CACHE_SIZE:
            _HEAD_VALUES.clear()
        for chunk in range(0, len(missing), 1000):
            for entry_id, leaf_hash, leaf in session.execute(
                select(Entry.entry_id, Entry.leaf_hash, Entry.leaf).where(
                    Entry.entry_id.in_(missing[chunk : chunk + 1000])
                )
            ):
                # Our own stored leaf: plain json suffices, the strict parser guarded its way in.
                value = head_value(json.loads(leaf)["payload"])
                _HEAD_VALUES[bytes(leaf_hash)] = values[entry_id] = value
    return values


GRID_LESSONS = (
    select(Lesson.id, Lesson.date, Lesson.period)
    .where(
        Lesson.class_group_id == bindparam("class_id"),
        Lesson.subject_id == bindparam("subject_id"),
        Lesson.date >= bindparam("first"),
        Lesson.date <= bindparam("last"),
    )
    .order_by(Lesson.date, Lesson.period)
)


def load_grid(session: Session, user: User, class_id: int, subject_id: int, term_id: int) -> Grid:
    """The grid of one class × subject × term for a teacher assigned to it, with its cells."""
    grid = open_grid(session, user, class_id, subject_id, term_id)
    fill_grid(session, grid)
    return grid


def open_grid(
    session: Session,
    user: User,
    class_id: int,
    subject_id: int,
    term_id: int,
    *,
    today: dt.date | None = None,
    details: bool = True,
    frame: tuple[Any, ...] | None = None,
) -> Grid:
    """The grid's frame (access checked, the log's size) without its cells: one query, enough
    to know whether a rendered copy is still current; with ``details``, also its lessons and
    pupils (else ``open_details`` reads them).

    The assigned teacher writes; whoever reads the whole class (its class teacher, the
    school's admin) opens it read-only. ``frame``: the columns of ``GRID_FRAME`` for this
    user and grid when already read (with the session, ``GRID_FRAME_WITH_SESSION``), all None
    when there is no such grid."""
    if frame is None:
        found = session.execute(
            GRID_FRAME,
            {
                "user_id": user.id,
                "class_id": class_id,
                "subject_id": subject_id,
                "term_id": term_id,
            },
        ).first()
        frame = tuple(found) if found is not None else None
    if frame is None or frame[0] is None:
        raise GridUnavailable(404)
    (class_group, subject, term, log, size, last_leaf, is_assigned, time_zone, soch, sor) = frame[
        :10
    ]
    lessons_shape, pupils_shape = frame[10:12]
    if (
        subject.school_id != class_group.school_id
        or term.school_year_id != class_group.school_year_id
        or term.kind != ("half" if subject.by_half_year else "quarter")
    ):
        raise GridUnavailable(404)
    writes = policy.can_write_journal(user, class_group, subject, assigned=is_assigned)
    policy.require(
        writes or policy.can_read_class_grids(user, class_group), "not this class and subject"
    )
    created_log = log is None
    if log is None:
        log = ensure_journal_log(session, class_group)
    # The cursor is the size read before the entries (here, with the log row): anything
    # appended later comes with the first pull.
    cursor = size or 0
    grid = Grid(class_group, subject, term, log, [], [], cursor, created_log)
    grid.last_leaf = bytes(last_leaf) if last_leaf is not None else b""
    grid.viewing = not writes
    grid.plan = (bool(soch), sor) if sor is not None else (False, 0)
    grid.time_zone = time_zone
    grid.shape = (lessons_shape or "", pupils_shape or "")
    grid.school_today = school_today(time_zone, utcnow()) if today is None else today
    if details:
        open_details(session, grid)
    return grid


def open_details(session: Session, grid: Grid) -> None:
    """The grid's lessons and pupils, in order."""
    term = grid.term
    grid.lessons = [
        GridLesson(row.id, row.date, row.period)
        for row in session.execute(
            GRID_LESSONS,
            {
                "class_id": grid.class_group.id,
                "subject_id": grid.subject.id,
                "first": term.starts_on,
                "last": term.ends_on,
            },
        )
    ]
    grid.students = [
        GridStudent(pupil.id, pupil.full_name, pupil.periods)
        for pupil in class_pupils(session, grid.class_group, term.starts_on, term.ends_on)
    ]


def fill_grid(session: Session, grid: Grid) -> None:
    """Read the heads of the grid's lessons (up to its cursor) and lay out its cells."""
    superseded_by_correction = (
        select(Supersession.correction_entry_id)
        .where(
            Supersession.log_id == grid.log.id,
            Supersession.superseded_entry_id == Entry.entry_id,
        )
        .exists()
    )
    rows = session.execute(
        select(
            Entry.entry_id,
            Entry.seq,
            Entry.cell,
            Entry.leaf_hash,
            superseded_by_correction.label("superseded"),
        )
        .where(
            Entry.log_id == grid.log.id,
            Entry.seq < grid.cursor,
            Entry.lesson_id.in_([lesson.id for lesson in grid.lessons]),
            Entry.cell.is_not(None),
        )
        .order_by(Entry.seq)
    ).all()
    live: list[tuple[str, int, str, bytes]] = []
    for entry_id, seq, cell, leaf_hash, is_superseded in rows:
        if is_superseded:
            grid.superseded.append(entry_id)
            grid.superseded_seqs.append(seq)
        else:
            live.append((entry_id, seq, cell, leaf_hash))
    values = head_values(session, {entry_id: leaf_hash for entry_id, _s, _c, leaf_hash in live})
    for entry_id, seq, cell, _hash in live:
        grid.heads.setdefault(cell, []).append((entry_id, seq, values[entry_id]))
    grid.rows, grid.topics = grid_cells(grid)


@dataclass(frozen=True)
class TermGradeCell:
    """One pupil's term result on the grid: sealed, confirmed or computed from the grid's heads."""

    student_id: int
    percent: str
    grade: str  # a whole grade, or ""
    result: str  # "pass" / "fail", or ""
    code: str  # what the column shows: a grade, pass/fail, a status, "incomplete" or ""
    confirmed: bool  # the log holds a term_grade entry for it (or it is sealed)
    sealed: bool
    stale: bool  # confirmed, but the marks now give another result
    now: str  # what the marks give now, when stale
    now_percent: str
    confirmation: str  # the confirmation's entry id ("" when none)
    incomplete: tuple[str, ...]


def term_column(session: Session, grid: Grid, rule: GradingRule) -> list[TermGradeCell]:
    """Per pupil, the term result from the grid's own heads (up to its cursor), the teacher's
    confirmation and the sealed record, with the assessment plan and the admin's decisions."""
    values = {cell: heads[0][2] if len(heads) == 1 else None for cell, heads in grid.heads.items()}
    student_ids = [student.id for student in grid.students]

    cells = read_cells(
        session,
        grid.log.id,
        student_ids=student_ids,
        kinds=["term_grade", SEALED_TERM, DECISION],
        until_seq=grid.cursor,
    )
    book = TermBook(session, grid.class_group, grid.log, grid.term, values=values, cells=cells)
    column = []
    for student_id, outcome in book.outcomes(grid.subject, student_ids).items():
        computed = outcome.computed
        column.append(
            TermGradeCell(
                student_id=student_id,
                percent=outcome.percent,
                grade="" if outcome.grade is None else str(outcome.grade),
                result=outcome.result or "",
                code=outcome.code,
                confirmed=outcome.how in ("confirmed", "sealed"),
                sealed=outcome.sealed,
                stale=outcome.stale,
                now=computed.code if computed is not None else "",
                now_percent=computed.percent if computed is not None else "",
                confirmation=outcome.confirmation or "",
                incomplete=(computed or outcome).incomplete,
            )
        )
    return column


@dataclass(frozen=True)
class YearColumn:
    """The year results offered on the grid of a year's last term, once every term of the
    subject's kind is closed and until the year is: what the teacher confirms."""

    rule: GradingRule
    cells: list[tuple[int, str, bool]]  # (student id, result code, confirmed)


def year_column(session: Session, grid: Grid) -> YearColumn | None:
    from ..models import SchoolYear
    from ..year.results import YearBook, year_terms

    year = session.get_one(SchoolYear, grid.class_group.school_year_id)
    terms = year_terms(session, year, grid.term.kind)
    if (
        year.closed_at is not None
        or not grid.subject.graded
        or not terms
        or terms[-1].id != grid.term.id
        or any(t.closed_at is None for t in terms)
    ):
        return None
    book = YearBook(session, grid.class_group, grid.log, student_ids=[s.id for s in grid.students])
    cells = []
    for student in grid.students:
        outcome = book.outcome(grid.subject, student.id)
        if outcome is not None:
            cells.append((student.id, outcome.code, outcome.how == "confirmed"))
    return YearColumn(book.rule(grid.subject), cells)


def heads_text(
    layer: str, cell_heads: list[tuple[str, int, Any]], attendance: dict[str, str]
) -> str:
    if len(cell_heads) == 1:
        return head_text(layer, cell_heads[0][2], attendance)
    return " | ".join(head_text(layer, head[2], attendance) for head in cell_heads)


def student_row(
    grid: Grid, index: int, attendance: dict[str, str]
) -> list[tuple[CellPart, ...] | None]:
    """One student's cells from the heads, as ``grid_cells`` lays them (a new entry re-lays
    only its student's row)."""
    student = grid.students[index]
    always = len(student.periods) == 1 and student.enrolled_on(grid.term.starts_on)
    always = always and student.enrolled_on(grid.term.ends_on)
    layers = LAYER_ORDER if grid.subject.graded else {"att": 0}
    heads = grid.heads
    row: list[tuple[CellPart, ...] | None] = []
    for lesson in grid.lessons:
        if not always and not student.enrolled_on(lesson.date):
            row.append(None)
            continue
        parts = []
        for layer in layers:  # in LAYER_ORDER
            cell_heads = heads.get(f"{layer}:{lesson.id}:{student.id}")
            if cell_heads:
                state = "conflict" if len(cell_heads) > 1 else "synced"
                parts.append((layer, heads_text(layer, cell_heads, attendance), state))
        row.append(tuple(parts))
    return row


def lesson_topic(grid: Grid, index: int, attendance: dict[str, str]) -> str:
    cell_heads = grid.heads.get(f"topic:{grid.lessons[index].id}")
    return heads_text("topic", cell_heads, attendance) if cell_heads else ""


def grid_cells(grid: Grid) -> tuple[list[list[tuple[CellPart, ...] | None]], list[str]]:
    """The table's cells from the heads: per student and lesson, and each lesson's topic."""
    attendance = attendance_labels()
    graded = grid.subject.graded
    column = {lesson.id: index for index, lesson in enumerate(grid.lessons)}
    line = {student.id: index for index, student in enumerate(grid.students)}
    parts: dict[tuple[int, int], list[tuple[int, CellPart]]] = {}
    topics = [""] * len(grid.lessons)
    for cell, cell_heads in grid.heads.items():
        layer, lesson_id, *student = cell.split(":")
        texts = heads_text(layer, cell_heads, attendance)
        if layer == "topic":
            if int(lesson_id) in column:
                topics[column[int(lesson_id)]] = texts
            continue
        if layer not in LAYER_ORDER or (layer != "att" and not graded) or not student:
            continue
        place = (line.get(int(student[0]), -1), column.get(int(lesson_id), -1))
        if -1 not in place:
            state = "conflict" if len(cell_heads) > 1 else "synced"
            parts.setdefault(place, []).append((LAYER_ORDER[layer], (layer, texts, state)))
    rows: list[list[tuple[CellPart, ...] | None]] = []
    days = [lesson.date for lesson in grid.lessons]
    for i, student in enumerate(grid.students):
        always = len(student.periods) == 1 and student.enrolled_on(grid.term.starts_on)
        always = always and student.enrolled_on(grid.term.ends_on)
        row: list[tuple[CellPart, ...] | None] = []
        for j, day in enumerate(days):
            if not always and not student.enrolled_on(day):
                row.append(None)
            else:
                found = parts.get((i, j))
                row.append(tuple(part for _order, part in sorted(found)) if found else ())
        rows.append(row)
    return rows, topics


def grid_state(grid: Grid, user: User, *, with_heads: bool = True) -> dict[str, Any]:
    """The JSON the grid's ES modules start from (also kept in the offline copy of the page);
    without the heads, which ``pages`` encodes cell by cell."""
    return {
        "journal": grid.log.origin,
        "author": user.id,
        "subject": grid.subject.id,
        "graded": grid.subject.graded,
        "readonly": grid.readonly,
        # The device refuses marks for a lesson after the school's today on its own clock.
        "timeZone": grid.time_zone,
        "lessons": [[lesson.id, lesson.date.isoformat(), lesson.period] for lesson in grid.lessons],
        "students": [
            [
                student.id,
                student.name,
                [[start.isoformat(), end.isoformat() if end else None] for start, end in spans],
            ]
            for student in grid.students
            for spans in [student.periods]
        ],
        "heads": (
            {cell: [list(head) for head in heads] for cell, heads in grid.heads.items()}
            if with_heads
            else {}
        ),
        "superseded": grid.superseded,
        "cursor": grid.cursor,
        "attendance": attendance_labels(),
        "urls": grid_urls(),
    }


def grid_urls() -> dict[str, str]:
    """Where the grid's ES modules send and fetch (the same for every grid but the login's
    return path; the rest is built once per app and root)."""
    kept = current_app.extensions.setdefault("journal.grid_urls", {})
    fixed = kept.get(request.script_root)
    if fixed is None:
        fixed = kept[request.script_root] = {
            "entries": url_for("sync.upload"),
            "pull": url_for("sync.pull"),
            "session": url_for("sync.session_info"),
            "devices": "/api/devices",
            "secondFactor": url_for("auth.second_factor"),
            "serviceWorker": url_for("teacher.service_worker"),
        }
    return {**fixed, "login": url_for("auth.login", next=request.path)}

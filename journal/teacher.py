"""The teacher's pages: the class × subject × term grid that works offline, and the import of
an exported outbox file (the USB stick carried to the room with internet).

The grid page is rendered on the server from the journal's heads (entries no correction has
superseded) and carries the same state as JSON for the ES modules in ``static/grid``; those
sign every change on the device, keep it in an IndexedDB outbox and sync it (``journal.sync``).
A service worker served at ``/sw.js`` (scope ``/``) keeps the app shell and the week's grids.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    render_template,
    request,
    url_for,
)
from flask_babel import get_locale, lazy_gettext
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from markupsafe import Markup
from sqlalchemy import bindparam, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.exceptions import RequestEntityTooLarge

from auth import policy
from auth.access import (
    PREFETCH_HEADER,
    current_user,
    fully_authenticated,
    personal_data,
    public,
    roles_required,
    target_school,
)
from auth.models import User

from .cells import (
    confirmed_term_grade,
    read_cells,
    rule_for_subject,
    term_grade,
    term_grade_key,
    term_works,
)
from .db import db, utcnow
from .grading import GradingRule
from .ledger import entry as ledger_entry
from .models import (
    ClassGroup,
    Enrollment,
    Entry,
    Lesson,
    Log,
    Student,
    Subject,
    Supersession,
    TeachingAssignment,
    Term,
)
from .services import ensure_journal_log
from .sync import UPLOADER_ROLES, BatchOutcome, upload_batch

bp = Blueprint("teacher", __name__)

EXPORT_FORMAT = "class-journal/unsynced-entries"
IMPORT_MAX_BYTES = 8 * 1024 * 1024
GRADE_LAYERS = ("FO", "SOR", "SOCh")
ATTENDANCE_LABELS = {
    "absent": lazy_gettext("abs."),
    "late": lazy_gettext("late"),
    "sick": lazy_gettext("sick"),
    "excused": lazy_gettext("exc."),
}
STATIC_DIR = Path(__file__).resolve().parent / "static"
SHELL_FILES = (
    "journal.css",
    "grid/grid.css",
    "grid/grid.js",
    "grid/cells.js",
    "grid/jcs.js",
    "grid/keys.js",
    "grid/store.js",
    "grid/outbox.js",
    "grid/sync.js",
    "grid/offline.js",
    "grid/send-waiting.js",  # on "My classes", which is kept for work offline too
)


def translated(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Memoize a dict of UI strings per language: the grid asks for dozens on every page."""
    by_locale: dict[str, dict[str, Any]] = {}

    def strings() -> dict[str, Any]:
        locale = str(get_locale())
        if locale not in by_locale:
            by_locale[locale] = build()
        return by_locale[locale]

    return strings


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
    # For each student, for each lesson: None when not enrolled that day, else the cell's parts.
    rows: list[list[tuple[CellPart, ...] | None]] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)

    @property
    def readonly(self) -> bool:
        return self.term.closed_at is not None

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


@translated
def attendance_labels() -> dict[str, str]:
    return {value: str(label) for value, label in ATTENDANCE_LABELS.items()}


# Head values by leaf hash. A leaf never changes, so its value is computed once per process
# (content-addressed: nothing can go stale); bounded by clearing when full.
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


# Built once: the grid is opened far more often than anything else, and building a statement
# costs about as much as running it.
GRID_FRAME = (
    select(
        ClassGroup,
        Subject,
        Term,
        Log,
        Log.size,
        select(Entry.leaf_hash)
        .where(Entry.log_id == Log.id, Entry.seq == Log.size - 1)
        .scalar_subquery()
        .label("last_leaf"),
        policy.assignment_exists(
            bindparam("user_id"), bindparam("class_id"), bindparam("subject_id")
        ).label("assigned"),
    )
    .select_from(ClassGroup)
    .join(Subject, Subject.id == bindparam("subject_id"))
    .join(Term, Term.id == bindparam("term_id"))
    .outerjoin(Log, Log.class_group_id == ClassGroup.id)
    .where(ClassGroup.id == bindparam("class_id"))
)
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
GRID_ENROLMENTS = (
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
        Enrollment.class_group_id == bindparam("class_id"),
        Enrollment.starts_on <= bindparam("last"),
        (Enrollment.ends_on.is_(None)) | (Enrollment.ends_on >= bindparam("first")),
    )
)


def load_grid(session: Session, user: User, class_id: int, subject_id: int, term_id: int) -> Grid:
    """The grid of one class × subject × term for a teacher assigned to it, with its cells."""
    grid = open_grid(session, user, class_id, subject_id, term_id)
    fill_grid(session, grid)
    return grid


def open_grid(session: Session, user: User, class_id: int, subject_id: int, term_id: int) -> Grid:
    """The grid's frame (access checked, lessons, students, the log's size) without its cells:
    a few small queries, enough to know whether a rendered copy is still current."""
    found = session.execute(
        GRID_FRAME,
        {"user_id": user.id, "class_id": class_id, "subject_id": subject_id, "term_id": term_id},
    ).first()
    if found is None:
        raise GridUnavailable(404)
    class_group, subject, term, log, size, last_leaf, is_assigned = found
    if (
        subject.school_id != class_group.school_id
        or term.school_year_id != class_group.school_year_id
        or term.kind != ("half" if subject.by_half_year else "quarter")
    ):
        raise GridUnavailable(404)
    policy.require(
        policy.can_write_journal(user, class_group, subject, assigned=is_assigned),
        "not this class and subject",
    )
    created_log = log is None
    if log is None:
        log = ensure_journal_log(session, class_group)
    # The cursor is the size read before the entries (here, with the log row): anything
    # appended later comes with the first pull.
    cursor = size or 0

    lessons = [
        GridLesson(row.id, row.date, row.period)
        for row in session.execute(
            GRID_LESSONS,
            {
                "class_id": class_id,
                "subject_id": subject_id,
                "first": term.starts_on,
                "last": term.ends_on,
            },
        )
    ]
    periods: dict[int, list[tuple[dt.date, dt.date | None]]] = {}
    names: dict[int, str] = {}
    for row in session.execute(
        GRID_ENROLMENTS, {"class_id": class_id, "first": term.starts_on, "last": term.ends_on}
    ):
        periods.setdefault(row.student_id, []).append((row.starts_on, row.ends_on))
        names[row.student_id] = " ".join(
            part for part in (row.last_name, row.first_name, row.patronymic) if part
        )
    students = sorted(
        (GridStudent(sid, names[sid], tuple(sorted(spans))) for sid, spans in periods.items()),
        key=lambda s: (s.name.casefold(), s.id),
    )

    grid = Grid(class_group, subject, term, log, lessons, students, cursor, created_log)
    grid.last_leaf = bytes(last_leaf) if last_leaf is not None else b""
    return grid


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
        else:
            live.append((entry_id, seq, cell, leaf_hash))
    values = head_values(session, {entry_id: leaf_hash for entry_id, _s, _c, leaf_hash in live})
    for entry_id, seq, cell, _hash in live:
        grid.heads.setdefault(cell, []).append((entry_id, seq, values[entry_id]))
    grid.rows, grid.topics = grid_cells(grid)


@dataclass(frozen=True)
class TermGradeCell:
    """One student's term grade on the grid: the computed (or confirmed) values."""

    student_id: int
    percent: str
    grade: str
    confirmed: bool


def term_column(session: Session, grid: Grid, rule: GradingRule) -> list[TermGradeCell]:
    """Per student, the term grade by ``rule`` from the grid's own heads (or the confirmed one)
    and whether the teacher has confirmed it as a signed term_grade entry."""
    values = {cell: heads[0][2] if len(heads) == 1 else None for cell, heads in grid.heads.items()}
    lesson_ids = [lesson.id for lesson in grid.lessons]
    student_ids = [student.id for student in grid.students]
    confirmed = read_cells(session, grid.log.id, student_ids=student_ids, kinds=["term_grade"])
    works = term_works(values, student_ids, lesson_ids)
    cells = []
    for student_id in student_ids:
        cell = confirmed.get(term_grade_key(grid.subject.id, grid.term.id, student_id))
        percent, grade = term_grade(rule, works[student_id], confirmed_term_grade(cell))
        signed = cell is not None and bool(cell.heads)
        cells.append(TermGradeCell(student_id, percent, grade, signed))
    return cells


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
        if len(cell_heads) == 1:
            texts = head_text(layer, cell_heads[0][2], attendance)
        else:
            texts = " | ".join(head_text(layer, head[2], attendance) for head in cell_heads)
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


def grid_state(grid: Grid, user: User) -> dict[str, Any]:
    """The JSON the grid's ES modules start from (also kept in the offline copy of the page)."""
    return {
        "journal": grid.log.origin,
        "author": user.id,
        "subject": grid.subject.id,
        "graded": grid.subject.graded,
        "readonly": grid.readonly,
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
        "heads": {cell: [list(head) for head in heads] for cell, heads in grid.heads.items()},
        "superseded": grid.superseded,
        "cursor": grid.cursor,
        "attendance": attendance_labels(),
        "urls": {
            "entries": url_for("sync.upload"),
            "pull": url_for("sync.pull"),
            "session": url_for("sync.session_info"),
            "devices": "/api/devices",
            "login": url_for("auth.login", next=request.path),
            "secondFactor": url_for("auth.second_factor"),
            "serviceWorker": url_for("teacher.service_worker"),
        },
    }


@translated
def layer_names() -> dict[str, str]:
    return {
        "att": _("Attendance"),
        "FO": _("FO"),
        "SOR": _("SOR"),
        "SOCh": _("SOCh"),
        "topic": _("Topic"),
    }


@translated
def status_names() -> dict[str, str]:
    return {
        "accepted": _("accepted"),
        "duplicate": _("already stored"),
        "conflict": _("conflict"),
        "rejected": _("rejected"),
        "quarantined": _("held: unknown or revoked device key"),
    }


@translated
def grid_strings() -> dict[str, Any]:
    """The grid's messages, translated on the server (the page keeps them offline)."""
    return {
        "layers": layer_names(),
        "topic": _("Topic"),
        "states": {
            "synced": _("saved on the server"),
            "pending": _("waiting to be sent"),
            "quarantined": _("held by the server: this device's key is not enrolled"),
        },
        "net": {
            "idle": _("Online: everything is sent"),
            "syncing": _("Sending…"),
            "offline": _("Offline: your changes are kept on this device"),
            "retrying": _("The server cannot be reached; trying again in {seconds} s"),
            "signed-out": _("Signed out: sign in again to send your changes"),
        },
        "conflictHelp": _(
            "Two values were written for this cell on different devices. Type the right value "
            "and give a reason: it replaces both."
        ),
        "refused": _("{value}: not stored ({status}): {message}"),
        "discard": _("Discard"),
        "attKeys": _("Attendance: 1 absent, 2 late, 3 sick, 4 excused."),
        "foRange": _("FO is a whole number from 1 to 10."),
        "pointsFormat": _("Type points/max, e.g. 7/10 (the max is remembered per lesson)."),
        "pointsRange": _("Points must be from 0 to the max, and the max from 1 to 100."),
        "readonly": _("This term is closed: nothing can be written."),
        "noKey": _("This device has no signing key yet."),
        "noKeyReason": _("This browser cannot make a signing key: {reason}"),
        "notEnrolled": _("The student is not in the class on that day."),
        "tooLong": _("The entry is too long."),
        "keyEnrolled": _("the device key is enrolled"),
        "keyRevoked": _("this device's key was revoked: new entries are held by the server"),
        "keyNotEnrolled": _(
            "this device's key is not enrolled yet: entries are held by the server until it is"
        ),
        "keyNeedsSecondFactor": _("confirm your second factor to enrol this device"),
        "gaps": _("The server has not received this device's entries number {seqs}."),
        "nothingToExport": _("There are no unsynced entries to export."),
        "exported": _("{n} unsynced entries exported. Import the file where there is network."),
        "termConfirmed": _("confirmed"),
        "termNothing": _("Every computed term grade is already confirmed."),
        "termQueued": _("{n} term grades signed and queued for sending."),
        "offlineReady": _("Ready to work offline"),
        "persisted": _("Storage: kept by the browser"),
        "notPersisted": _("Storage: the browser may clear it when space runs low"),
    }


# -- what the teacher works on -----------------------------------------------------------------


@dataclass(frozen=True)
class GridLink:
    class_group: ClassGroup
    subject: Subject
    term: Term
    current: bool

    @property
    def url(self) -> str:
        return url_for(
            "teacher.grid",
            class_id=self.class_group.id,
            subject_id=self.subject.id,
            term_id=self.term.id,
        )


def grid_links(session: Session, user: User, today: dt.date) -> list[GridLink]:
    """Every term grid of every class × subject the teacher is assigned to."""
    links = []
    rows = session.execute(
        select(ClassGroup, Subject)
        .join(TeachingAssignment, TeachingAssignment.class_group_id == ClassGroup.id)
        .join(Subject, Subject.id == TeachingAssignment.subject_id)
        .where(TeachingAssignment.user_id == user.id)
        .order_by(ClassGroup.name, Subject.name)
    ).all()
    for class_group, subject in rows:
        kind = "half" if subject.by_half_year else "quarter"
        terms = session.scalars(
            select(Term)
            .where(Term.school_year_id == class_group.school_year_id, Term.kind == kind)
            .order_by(Term.starts_on)
        )
        links.extend(GridLink(class_group, subject, t, t.covers(today)) for t in terms)
    return links


def week_grid_urls(session: Session, user: User, today: dt.date) -> list[str]:
    """Grids that hold the teacher's lessons this week: what to keep for a day without network."""
    monday = today - dt.timedelta(days=today.weekday())
    urls = []
    for link in grid_links(session, user, today):
        has_lessons = session.scalar(
            select(Lesson.id)
            .where(
                Lesson.class_group_id == link.class_group.id,
                Lesson.subject_id == link.subject.id,
                Lesson.date >= max(monday, link.term.starts_on),
                Lesson.date <= min(monday + dt.timedelta(days=6), link.term.ends_on),
            )
            .limit(1)
        )
        if has_lessons is not None:
            urls.append(link.url)
    return urls


# -- the offline app shell ---------------------------------------------------------------------


@cache
def static_version(*extra: str) -> str:
    """Changes whenever a file of the app shell changes: a new service worker then installs."""
    digest = hashlib.sha256()
    template = Path(__file__).resolve().parent / "templates" / "teacher" / "sw.js"
    for path in [*(STATIC_DIR / name for name in SHELL_FILES), template]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for value in extra:
        digest.update(value.encode())
    return digest.hexdigest()[:16]


def app_version() -> str:
    return static_version(str(current_app.config.get("OFFLINE_APP_VERSION", "")))


# -- whose pages the service worker may keep ----------------------------------------------------

# The service worker keeps the teacher's pages (children's names and grades) for work without
# network. It may keep and show them only for the person signed in, and must drop them when the
# session ends, however it ends (signing out, expiry, "sign out everywhere", a reset), or when
# someone else signs in. The session cookie is HttpOnly, so this companion cookie tells the
# worker who that is: an opaque value per user, present exactly while someone is fully signed in
# (password and second factor), kept in step with the session on every answer.
PAGES_OWNER_COOKIE = "journal_pages_owner"


def pages_owner(user: User) -> str:
    """The opaque name of ``user``'s kept pages (not their id, so the cookie says nothing)."""
    key = current_app.secret_key
    key_bytes = key.encode() if isinstance(key, str) else bytes(key or b"")
    message = f"class-journal/pages-owner\n{user.id}".encode()
    return hmac.new(key_bytes, message, hashlib.sha256).hexdigest()[:32]


@bp.after_app_request
def keep_pages_owner_in_step(response: Response) -> Response:
    if request.endpoint == "static":
        return response
    try:
        user = current_user() if fully_authenticated() else None
    except SQLAlchemyError:  # a request whose database session failed: leave it as it is
        return response
    owner = pages_owner(user) if user is not None else None
    if request.cookies.get(PAGES_OWNER_COOKIE) == owner:
        return response
    secure = bool(current_app.config.get("SESSION_COOKIE_SECURE"))
    if owner is None:
        response.delete_cookie(PAGES_OWNER_COOKIE, path="/", secure=secure, samesite="Lax")
    else:
        response.set_cookie(
            PAGES_OWNER_COOKIE,
            owner,
            max_age=current_app.permanent_session_lifetime,
            path="/",
            secure=secure,
            httponly=False,  # read by the service worker (Cookie Store API)
            samesite="Lax",
        )
    return response


# -- import ------------------------------------------------------------------------------------


class ImportForm(FlaskForm):
    file = FileField("file", validators=[FileRequired()])


class ImportRefused(ValueError):
    pass


def read_export(data: bytes) -> list[Any]:
    """The entries of an export file made by the grid's "export unsynced entries"."""
    try:
        document = ledger_entry.parse_json(data, max_bytes=IMPORT_MAX_BYTES)
    except ledger_entry.PayloadError as exc:
        raise ImportRefused(_("The file is not a readable export: %(reason)s", reason=exc)) from exc
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise ImportRefused(_("This file is not an export of unsynced journal entries."))
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise ImportRefused(_("The export holds no list of entries."))
    return entries


# -- views -------------------------------------------------------------------------------------


@bp.get("/teacher/")
@roles_required(*UPLOADER_ROLES)
def index() -> Any:
    user = current_user()
    assert user is not None
    links = grid_links(db.session, user, utcnow().date())
    return render_template("teacher/index.html", links=links)


class RenderedGrids:
    """The last rendered tables and states, by everything they depend on (``Grid.fingerprint``,
    the teacher, the language): a grid opened again with no new entry is not rebuilt. Nothing
    goes stale, since a new entry changes the log's size; least recently used go first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.items: OrderedDict[tuple[Any, ...], Markup] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> Markup | None:
        with self.lock:
            found = self.items.get(key)
            if found is not None:
                self.items.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], body: Markup) -> None:
        with self.lock:
            self.items[key] = body
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


def rendered_grids() -> RenderedGrids:
    """This app's rendered grids: about 200 KiB each for a full class, so 64 keep a busy
    teacher's week in some MiB per worker."""
    return current_app.extensions.setdefault("journal.rendered_grids", RenderedGrids(64))


@bp.get("/teacher/grid/<int:class_id>/<int:subject_id>/<int:term_id>")
@roles_required(*UPLOADER_ROLES)
@personal_data("class_group", "class_id")
def grid(class_id: int, subject_id: int, term_id: int) -> Any:
    user = current_user()
    assert user is not None
    try:
        loaded = open_grid(db.session, user, class_id, subject_id, term_id)
    except GridUnavailable as refused:
        abort(refused.status)
    if loaded.created_log:
        db.session.commit()
    target_school(loaded.class_group.school_id)
    rule = rule_for_subject(loaded.subject, loaded.class_group, loaded.term.ends_on)
    version = app_version()
    key = (user.id, str(get_locale()), rule.rule_id, rule.version, version, loaded.fingerprint)
    body = rendered_grids().get(key)
    if body is None:
        fill_grid(db.session, loaded)
        # The output of an autoescaping template is safe HTML already.
        body = Markup(  # noqa: S704
            render_template(
                "teacher/grid_body.html",
                grid=loaded,
                rule=rule,
                term_cells=term_column(db.session, loaded, rule),
                state=grid_state(loaded, user),
                strings=grid_strings(),
                layers=("att", *GRADE_LAYERS) if loaded.subject.graded else ("att",),
                layer_names=layer_names(),
                app_version=version,
            )
        )
        rendered_grids().put(key, body)
    return render_template("teacher/grid.html", grid=loaded, body=body)


@bp.get("/teacher/offline.json")
@roles_required(*UPLOADER_ROLES)
def offline_manifest() -> Response:
    """What the service worker keeps for a day without network: the week's grids."""
    user = current_user()
    assert user is not None
    urls = [url_for("teacher.index"), *week_grid_urls(db.session, user, utcnow().date())]
    return Response(
        json.dumps({"version": app_version(), "pages": urls}), mimetype="application/json"
    )


@bp.get("/sw.js")
@public
def service_worker() -> Response:
    """The service worker, served from the root so that its scope covers every page."""
    shell = [url_for("static", filename=name) for name in SHELL_FILES]
    body = render_template(
        "teacher/sw.js",
        version=app_version(),
        shell=shell,
        manifest=url_for("teacher.offline_manifest"),
        login=url_for("auth.login"),
        logout=url_for("auth.logout"),
        owner_cookie=PAGES_OWNER_COOKIE,
        prefetch_header=PREFETCH_HEADER,
        offline_page=render_template("teacher/offline.html"),
        signed_out_offline_page=render_template("teacher/signed_out_offline.html"),
    )
    response = Response(body, mimetype="text/javascript")
    response.headers["Service-Worker-Allowed"] = "/"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.route("/teacher/import", methods=["GET", "POST"])
@roles_required(*UPLOADER_ROLES)
def import_file() -> Any:
    """Upload an export of unsynced entries; each entry gets the same result as in a sync."""
    form = ImportForm()
    outcome: BatchOutcome | None = None
    error = None
    if form.validate_on_submit():
        upload = form.file.data
        try:
            data = upload.stream.read(IMPORT_MAX_BYTES + 1)
        finally:
            upload.close()
        try:
            if len(data) > IMPORT_MAX_BYTES:
                raise ImportRefused(file_too_large_message())
            entries = read_export(data)
            limit = current_app.config["SYNC_MAX_BATCH"]
            if len(entries) > limit:  # as many as one sync batch, no more
                raise ImportRefused(
                    _(
                        "The file holds %(count)d entries; at most %(limit)d are imported at "
                        "once. Export from the grid again: it saves them in smaller parts.",
                        count=len(entries),
                        limit=limit,
                    )
                )
        except ImportRefused as refused:
            error = str(refused)
        else:
            user = current_user()
            assert user is not None
            outcome = upload_batch(
                db.session,
                user,
                entries,
                quarantine_quota=current_app.config["SYNC_QUARANTINE_DAILY_QUOTA"],
            )
            db.session.commit()
    elif form.is_submitted():
        error = _("Choose the exported file first.")
    return render_import(form, outcome, error, 400 if error else 200)


def render_import(
    form: ImportForm, outcome: BatchOutcome | None, error: str | None, status: int
) -> Any:
    return (
        render_template(
            "teacher/import.html",
            form=form,
            outcome=outcome,
            error=error,
            limit_mb=IMPORT_MAX_BYTES // (1024 * 1024),
            status_names=status_names(),
        ),
        status,
    )


def file_too_large_message() -> str:
    return _(
        "The file is larger than %(limit)d MB. Export from the grid again in smaller parts.",
        limit=IMPORT_MAX_BYTES // (1024 * 1024),
    )


@bp.errorhandler(RequestEntityTooLarge)
def too_large(_exc: RequestEntityTooLarge) -> Any:
    if request.path == url_for("teacher.import_file"):
        return render_import(ImportForm(formdata=None), None, file_too_large_message(), 413)
    return _exc

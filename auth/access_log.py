"""The access log as a school administrator reads it: filtered by person, pupil and date, each
row said in words ("Opened: class journal" — "7Ә Қазақ тілі, quarter 1"), at the school's local
time, from which browser. Rows are written by ``auth.services.record_access``.

Reading only: nothing here writes. Names and classes are looked up in a few queries per page,
not one per row.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from journal.ids import BIG_ID_MAX, parse_id
from journal.models import ClassGroup, Enrollment, Lesson, Log, School, Student, Subject, Term
from journal.school_time import local_time, zone

from .browsers import device_name
from .models import AccessLogEntry, DeviceKey, User

PAGE_SIZE = 100
# The dates a filter may name: the journal has no rows before, and nothing is written after.
EARLIEST = dt.date(2000, 1, 1)
LATEST = dt.date(2100, 12, 31)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class BadFilter(ValueError):
    """A filter value that is not one: ``field`` names it (the view explains it, answers 400)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


@dataclass(frozen=True)
class LogFilter:
    person: int | None = None  # the actor's user id
    pupil: int | None = None  # a student id: rows about them and their classes' journals
    since: dt.date | None = None  # first day shown, on the school's clock
    until: dt.date | None = None  # last day shown
    before: int | None = None  # paging: rows older than this id

    def query_args(self, **changes: Any) -> dict[str, str]:
        """The filter as query-string values (for the "older" link)."""
        values = {
            "person": self.person,
            "pupil": self.pupil,
            "from": self.since.isoformat() if self.since else None,
            "to": self.until.isoformat() if self.until else None,
            "before": self.before,
            **changes,
        }
        return {name: str(value) for name, value in values.items() if value is not None}


def _id(args: Mapping[str, Any], name: str, maximum: int = 2**31 - 1) -> int | None:
    text = args.get(name)
    if text is None or text == "":
        return None
    try:
        return parse_id(text, minimum=1, maximum=maximum)
    except ValueError:
        raise BadFilter(name) from None


def _date(args: Mapping[str, Any], name: str) -> dt.date | None:
    text = args.get(name)
    if text is None or text == "":
        return None
    if not isinstance(text, str) or not _DATE.fullmatch(text):
        raise BadFilter(name)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise BadFilter(name) from None
    if not EARLIEST <= day <= LATEST:
        raise BadFilter(name)
    return day


def parse_filter(session: Session, school_id: int, args: Mapping[str, Any]) -> LogFilter:
    """The filter in a request's query string. Raises ``BadFilter`` for a value that is not a
    number or a date, a date out of range or after the end date, or a person or pupil of
    another school (or of none): all before any row is read."""
    found = LogFilter(
        person=_id(args, "person"),
        pupil=_id(args, "pupil"),
        since=_date(args, "from"),
        until=_date(args, "to"),
        before=_id(args, "before", BIG_ID_MAX),
    )
    if found.since and found.until and found.since > found.until:
        raise BadFilter("to")
    if found.person is not None:
        person = session.get(User, found.person)
        if person is None or person.school_id != school_id:
            raise BadFilter("person")
    if found.pupil is not None:
        pupil = session.get(Student, found.pupil)
        if pupil is None or pupil.school_id != school_id:
            raise BadFilter("pupil")
    return found


def _day_start(day: dt.date, time_zone: str) -> dt.datetime:
    """The UTC moment the school's day begins."""
    return dt.datetime.combine(day, dt.time(0), tzinfo=zone(time_zone)).astimezone(dt.UTC)


def _pupil_condition(session: Session, student_id: int) -> Any:
    """Rows about the pupil, and rows about the journals of every class they were in (a
    class's grid shows each of its pupils)."""
    class_ids = list(
        session.scalars(
            select(Enrollment.class_group_id).where(Enrollment.student_id == student_id)
        )
    )
    logs = session.execute(
        select(Log.id, Log.origin).where(Log.class_group_id.in_(class_ids))
    ).all()
    journals = [str(log_id) for log_id, _origin in logs] + [origin for _log_id, origin in logs]
    conditions = [
        and_(AccessLogEntry.target_type == "student", AccessLogEntry.target_id == str(student_id))
    ]
    if class_ids:
        conditions.append(
            and_(
                AccessLogEntry.target_type == "class_group",
                AccessLogEntry.target_id.in_([str(i) for i in class_ids]),
            )
        )
    if journals:
        conditions.append(
            and_(AccessLogEntry.target_type == "journal", AccessLogEntry.target_id.in_(journals))
        )
    return or_(*conditions)


def log_rows(
    session: Session, school_id: int, found: LogFilter, time_zone: str, limit: int = PAGE_SIZE
) -> list[AccessLogEntry]:
    """The school's rows that pass the filter, newest first, ``limit`` at most."""
    query = select(AccessLogEntry).where(AccessLogEntry.school_id == school_id)
    if found.person is not None:
        query = query.where(AccessLogEntry.actor_id == found.person)
    if found.pupil is not None:
        query = query.where(_pupil_condition(session, found.pupil))
    if found.since is not None:
        query = query.where(AccessLogEntry.at >= _day_start(found.since, time_zone))
    if found.until is not None:
        next_day = found.until + dt.timedelta(days=1)
        query = query.where(AccessLogEntry.at < _day_start(next_day, time_zone))
    if found.before is not None:
        query = query.where(AccessLogEntry.id < found.before)
    return list(session.scalars(query.order_by(AccessLogEntry.id.desc()).limit(limit)))


def people_of(session: Session, school_id: int) -> list[User]:
    """Whom the person filter offers: the school's accounts."""
    return list(
        session.scalars(
            select(User).where(User.school_id == school_id).order_by(User.full_name, User.id)
        )
    )


def pupils_of(session: Session, school_id: int) -> list[Student]:
    return list(
        session.scalars(
            select(Student)
            .where(Student.school_id == school_id)
            .order_by(Student.last_name, Student.first_name, Student.id)
        )
    )


# -- in words ------------------------------------------------------------------------------------

# Pages with personal data (``auth.access.personal_data``), by endpoint, and the sync API's
# pull: what the person saw, as a noun.
PAGES = {
    "teacher.grid": _l("class journal"),
    "sync.pull": _l("class journal entries (synchronisation)"),
    "setup.students": _l("class list of pupils"),
    "portal.index": _l("list of their children"),
    "portal.api_students": _l("list of their children"),
    "auth.children": _l("list of their children"),
    "portal.student": _l("grades and attendance of a pupil"),
    "portal.api_student": _l("grades and attendance of a pupil"),
    "auth.child_record": _l("grades and attendance of a pupil"),
    "auth.api_child_record": _l("grades and attendance of a pupil"),
    "portal.entry": _l("an entry with its proof"),
    "portal.api_proof": _l("an entry with its proof"),
    "portal.download_proof": _l("download of an entry's proof"),
    "portal.download_entry": _l("download of an entry's proof"),
    "portal.download_vkey": _l("download of the school's public key"),
    "auth.admin_invitations": _l("invitations (the school's list of pupils)"),
    "auth.access_log": _l("access log"),
}

# Everything else the log records, by action.
ACTIONS = {
    "user.create": _l("Created a staff account"),
    "user.set_roles": _l("Changed the roles of an account"),
    "user.lock": _l("Locked an account"),
    "user.unlock": _l("Unlocked an account"),
    "user.letter.welcome": _l("Printed a welcome letter"),
    "user.letter.reset": _l("Printed a letter to set a new password"),
    "user.password_set": _l("Set their password with a letter's code"),
    "user.reset.request.password": _l("Asked for a password reset"),
    "user.reset.request.second_factor": _l("Asked for a second-factor reset"),
    "user.reset.request.both": _l("Asked for a reset of the password and the second factor"),
    "user.reset.approve.password": _l("Approved a password reset"),
    "user.reset.approve.second_factor": _l("Approved a second-factor reset"),
    "user.reset.approve.both": _l("Approved a reset of the password and the second factor"),
    "user.reset.cancel": _l("Cancelled an account reset"),
    "user.sessions.end_all": _l("Signed out everywhere"),
    "invitation.create.parent": _l("Printed an invitation for a parent"),
    "invitation.create.student": _l("Printed an invitation for a pupil"),
    "invitation.redeem.parent": _l("Joined as a parent with an invitation"),
    "invitation.redeem.student": _l("Joined as a pupil with an invitation"),
    "device_key.enrol": _l("Enrolled a device"),
    "device_key.enrol.after_reset": _l("Enrolled a device after an account reset"),
    "device_key.rename": _l("Renamed a device"),
    "device_key.revoke": _l("Revoked a device"),
    "device_key.revoke.reset": _l("A device was revoked by an account reset"),
    "close_term": _l("Closed a quarter"),
    "approve_late_correction": _l("Approved a late correction"),
    "export_journal": _l("Printed a class journal (PDF)"),
    "export_ledger": _l("Printed a summary ledger (PDF)"),
    "archive.verify_upload": _l("Verified an uploaded package or printout"),
    "check.upload": _l("Someone checked a printout on the public check page"),
    "registrar_search": _l("Searched the archive for a former pupil"),
    "issue_duplicate": _l("Issued a duplicate-certificate extract"),
    "transfer_code.issue": _l("Issued a transfer code"),
    "transfer_code.redeemed": _l("Another school admitted the pupil with a transfer code"),
    "admit.lookup_iin": _l("Looked up an IIN to admit a pupil"),
    "admit.lookup_iin_with_code": _l("Looked up an IIN with a transfer code"),
    "admit.student": _l("Admitted a pupil"),
}


def action_words(action: str) -> str:
    """What was done, in words: "Opened: class journal", "Asked for a password reset"."""
    kind, _sep, endpoint = action.partition(":")
    if endpoint and kind in ("view", "prefetch", "denied"):
        page = str(PAGES.get(endpoint, _l("a page with personal data")))
        if kind == "view":
            return _("Opened: %(page)s", page=page)
        if kind == "prefetch":
            return _("Fetched in the background for work offline, not opened: %(page)s", page=page)
        return _("Refused: %(page)s", page=page)
    words = ACTIONS.get(action)
    return str(words) if words is not None else _("Another action")


def term_words(term: Term) -> str:
    if term.kind == "half":
        return _("half-year %(n)d", n=term.number)
    return _("quarter %(n)d", n=term.number)


@dataclass(frozen=True)
class LogLine:
    id: int
    at: dt.datetime  # on the school's clock
    who: str | None  # None: a command run on the server
    username: str | None
    what: str
    record: str
    device: str | None  # "Chrome on Android"
    ip: str | None
    code: str  # the stored action, for whoever needs it exactly
    prefetch: bool


def _ints(values: Iterable[str | None]) -> set[int]:
    found = set()
    for value in values:
        try:
            found.add(parse_id(value or "", maximum=2**31 - 1))
        except ValueError:
            continue
    return found


def _detail(row: AccessLogEntry) -> dict[str, Any]:
    try:
        value = json.loads(row.detail) if row.detail else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class _Names:
    """The rows' targets, looked up once per kind."""

    def __init__(self, session: Session, rows: list[AccessLogEntry]) -> None:
        def ids(kind: str) -> set[int]:
            return _ints(row.target_id for row in rows if row.target_type == kind)

        details = [_detail(row) for row in rows]
        cells = [
            parts
            for row in rows
            if row.target_type == "cell"
            for parts in [(row.target_id or "").split(":")]
            if len(parts) in (2, 3)
        ]
        lesson_ids = _ints(parts[1] for parts in cells)
        lessons = self._by_id(session, Lesson, lesson_ids)
        student_ids = ids("student") | _ints(parts[2] for parts in cells if len(parts) == 3)
        self.students = self._by_id(session, Student, student_ids)
        self.users = self._by_id(
            session, User, ids("user") | {row.actor_id for row in rows if row.actor_id}
        )
        self.lessons = lessons
        term_ids = ids("term") | _ints(str(d.get("term_id", "")) for d in details)
        self.terms = self._by_id(session, Term, term_ids)
        self.subjects = self._by_id(
            session,
            Subject,
            _ints(str(d.get("subject_id", "")) for d in details)
            | {lesson.subject_id for lesson in lessons.values()},
        )
        journal_targets = [row.target_id or "" for row in rows if row.target_type == "journal"]
        self.logs_by_id = self._by_id(session, Log, _ints(journal_targets))
        origins = [t for t in journal_targets if not t.isdigit()]
        self.logs_by_origin = (
            {log.origin: log for log in session.scalars(select(Log).where(Log.origin.in_(origins)))}
            if origins
            else {}
        )
        class_ids = (
            ids("class_group")
            | {log.class_group_id for log in self.logs_by_id.values() if log.class_group_id}
            | {log.class_group_id for log in self.logs_by_origin.values() if log.class_group_id}
            | {lesson.class_group_id for lesson in lessons.values()}
        )
        self.classes = self._by_id(session, ClassGroup, class_ids)
        self.schools = self._by_id(session, School, ids("school"))
        kids = [row.target_id for row in rows if row.target_type == "device_key" and row.target_id]
        self.devices = (
            {
                key.kid: key
                for key in session.scalars(select(DeviceKey).where(DeviceKey.kid.in_(kids)))
            }
            if kids
            else {}
        )
        owners = {key.user_id for key in self.devices.values()} - set(self.users)
        self.users.update(self._by_id(session, User, owners))

    @staticmethod
    def _by_id(session: Session, model: Any, ids: set[int]) -> dict[int, Any]:
        if not ids:
            return {}
        return {row.id: row for row in session.scalars(select(model).where(model.id.in_(ids)))}

    def class_name(self, class_id: int | None) -> str:
        group = self.classes.get(class_id) if class_id is not None else None
        return group.name if group is not None else ""

    def journal(self, class_id: int | None, detail: dict[str, Any]) -> str:
        """A class, with the grid's subject and term when the row has them: "7Ә Қазақ тілі,
        quarter 1"."""
        text = self.class_name(class_id)
        subject = self.subjects.get(detail.get("subject_id"))  # type: ignore[arg-type]
        if subject is not None:
            text = f"{text} {subject.name}"
        term = self.terms.get(detail.get("term_id"))  # type: ignore[arg-type]
        if term is not None:
            text = f"{text}, {term_words(term)}"
        return text

    def record(self, row: AccessLogEntry) -> str:
        """The record an action concerned, in words (names are data: shown as written)."""
        kind, target = row.target_type, row.target_id or ""
        ident = next(iter(_ints([target])), None)
        if kind == "student":
            student = self.students.get(ident) if ident is not None else None
            return student.full_name if student is not None else _("a pupil no longer on record")
        if kind == "class_group":
            return self.journal(ident, _detail(row))
        if kind == "journal":
            log = self.logs_by_id.get(ident) if ident is not None else None
            log = log or self.logs_by_origin.get(target)
            return self.class_name(log.class_group_id) if log is not None else ""
        if kind == "user":
            user = self.users.get(ident) if ident is not None else None
            return user.full_name if user is not None else ""
        if kind == "device_key":
            key = self.devices.get(target)
            if key is None:
                return ""
            owner = self.users.get(key.user_id)
            name = key.label or _("unnamed device")
            return f"{name} ({owner.full_name})" if owner is not None else name
        if kind == "term":
            term = self.terms.get(ident) if ident is not None else None
            return term_words(term) if term is not None else ""
        if kind == "school":
            school = self.schools.get(ident) if ident is not None else None
            return school.name if school is not None else ""
        if kind == "cell":
            return self.cell(target)
        if kind == "iin":
            return _("an IIN (kept only as a keyed hash)")
        if kind == "name":
            return _("a name and date of birth (kept only as a keyed hash)")
        if kind == "upload":
            return _("an uploaded file")
        return ""

    def cell(self, key: str) -> str:
        """A grid cell as class, subject, lesson date and pupil: "7Ә Математика 16.11.2026,
        Өмірзақ Іңкәр"."""
        parts = key.split(":")
        lesson = self.lessons.get(next(iter(_ints(parts[1:2])), -1))
        if lesson is None:
            return ""
        subject = self.subjects.get(lesson.subject_id)
        text = " ".join(
            part
            for part in (
                self.class_name(lesson.class_group_id),
                subject.name if subject is not None else "",
                lesson.date.strftime("%d.%m.%Y"),
            )
            if part
        )
        student = self.students.get(next(iter(_ints(parts[2:3])), -1))
        return f"{text}, {student.full_name}" if student is not None else text


def describe(session: Session, rows: list[AccessLogEntry], time_zone: str) -> list[LogLine]:
    """The rows in words, at the school's local time."""
    names = _Names(session, rows)
    lines = []
    for row in rows:
        actor = names.users.get(row.actor_id) if row.actor_id is not None else None
        lines.append(
            LogLine(
                id=row.id,
                at=local_time(row.at, time_zone),
                who=actor.full_name if actor is not None else None,
                username=actor.username if actor is not None else None,
                what=action_words(row.action),
                record=names.record(row),
                device=device_name(row.user_agent),
                ip=row.ip,
                code=row.action,
                prefetch=row.action.startswith("prefetch:"),
            )
        )
    return lines

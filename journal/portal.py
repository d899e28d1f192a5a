"""The parent and student portal: a child's own grades, attendance and term grades, each entry
with a downloadable inclusion proof (C2SP tlog-proof) and how to check it.

A parent or student reads only the children their role grants name (``RoleGrant.student_id``;
``auth.policy.can_read_student`` decides), in the pages and in the JSON API under
``/api/portal/``; every look is written to the access log (``auth.access.personal_data``).
A proof holds the entry itself, hashes and the school's signed checkpoint: nothing about any
other student.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    url_for,
)
from flask_babel import format_decimal
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from auth import policy
from auth.access import current_user, login_required, personal_data
from auth.models import User

from .charts.pages import portal_charts
from .clock import today_at
from .db import db
from .keys import load_log_key
from .ledger import entry as ledger_entry
from .ledger.tlogproof import FILE_EXTENSION, format_tlog_proof, make_tlog_proof
from .models import (
    ClassGroup,
    Enrollment,
    Entry,
    Lesson,
    Log,
    School,
    Student,
    Subject,
    Supersession,
    Term,
)
from .pupils import class_pupils
from .services import cut_checkpoint, latest_checkpoint, leaf_hashes
from .setup import N_
from .year.closing import class_subjects
from .year.results import (
    SEALED_TERM,
    SEALED_YEAR,
    Outcome,
    TermBook,
    enrolled_in_term,
    outcome_of_payload,
)
from .year.rules import rule_id_for, term_kind_of
from .year.views import result_label, term_name

SHOWN_KINDS = ("grade", "attendance", "correction", "sealed_term_grade", "sealed_year_grade")
COMPONENT_LABELS = {"FO": N_("FO"), "SOR": N_("SOR"), "SOCh": N_("SOCh"), "mark": N_("Mark")}
ATTENDANCE_LABELS = {
    "absent": N_("Absent"),
    "late": N_("Late"),
    "sick": N_("Sick"),
    "excused": N_("Excused absence"),
}


# -- what the portal shows ---------------------------------------------------------------------


@dataclass(frozen=True)
class ShownEntry:
    """One entry as a parent sees it; ``entry_id`` names the entry the proof is for."""

    entry_id: str
    kind: str  # grade, attendance, term_grade, year_grade
    subject_id: int | None
    date: dt.date | None
    component: str | None = None
    value: dict[str, Any] | str | None = None
    term_id: int | None = None
    grade: int | None = None
    percent: str | None = None
    corrected: bool = False
    reason: str | None = None
    code: str = ""  # a sealed result: a grade, "pass", "exempt", ... (see journal.year.results)


@dataclass
class StudentRecord:
    student: Student
    school: School
    classes: list[tuple[ClassGroup, Enrollment]]
    subjects: dict[int, Subject]
    terms: list[Term]
    grades: list[ShownEntry] = field(default_factory=list)
    attendance: list[ShownEntry] = field(default_factory=list)
    term_grades: list[ShownEntry] = field(default_factory=list)  # sealed at closing
    year_grades: list[ShownEntry] = field(default_factory=list)
    # (subject id, term id) -> the running percent of a term still open: provisional.
    provisional: dict[tuple[int, int], Outcome] = field(default_factory=dict)
    # (class name, the pupil's № in it), as on the grid and the printouts.
    numbers: list[tuple[str, int]] = field(default_factory=list)

    def term_of(self, item: ShownEntry) -> Term | None:
        if item.term_id is not None:
            return next((t for t in self.terms if t.id == item.term_id), None)
        if item.date is None:
            return None
        return next((t for t in self.terms if t.kind == "quarter" and t.covers(item.date)), None)


def student_record(session: Session, student: Student) -> StudentRecord:
    """The student's current grades and attendance: corrections applied, voided entries gone."""
    school = session.get_one(School, student.school_id)
    classes = [
        (class_group, enrollment)
        for class_group, enrollment in session.execute(
            select(ClassGroup, Enrollment)
            .join(Enrollment, Enrollment.class_group_id == ClassGroup.id)
            .where(Enrollment.student_id == student.id)
            .order_by(Enrollment.starts_on)
        )
    ]
    year_ids = {c.school_year_id for c, _e in classes}
    terms = list(
        session.scalars(
            select(Term).where(Term.school_year_id.in_(year_ids)).order_by(Term.starts_on)
        )
    )
    subjects = {
        s.id: s for s in session.scalars(select(Subject).where(Subject.school_id == school.id))
    }
    rows = session.execute(
        select(Entry.entry_id, Entry.seq, Entry.leaf, Lesson.date, Lesson.subject_id)
        .join(Log, Log.id == Entry.log_id)
        .outerjoin(Lesson, Lesson.id == Entry.lesson_id)
        .where(
            Entry.student_id == student.id,
            Entry.kind.in_(SHOWN_KINDS),
            Log.kind == "journal",  # the school ledger's records are not a child's marks
        )
        .order_by(Entry.log_id, Entry.seq)
    ).all()
    superseded = set(
        session.scalars(
            select(Supersession.superseded_entry_id).where(
                Supersession.superseded_entry_id.in_([r.entry_id for r in rows])
            )
        )
    )
    record = StudentRecord(student, school, classes, subjects, terms)
    for row in rows:
        if row.entry_id in superseded:
            continue
        payload = ledger_entry.parse_leaf(row.leaf).payload
        kind = str(payload["kind"])
        if kind in (SEALED_TERM, SEALED_YEAR):
            sealed = outcome_of_payload(student.id, payload, "sealed")
            term = payload.get("term")
            item = ShownEntry(
                entry_id=row.entry_id,
                kind="term_grade" if kind == SEALED_TERM else "year_grade",
                subject_id=int(payload["subject"]["id"]),  # type: ignore[index]
                date=None,
                term_id=int(term["id"]) if isinstance(term, dict) else None,
                grade=sealed.grade,
                percent=sealed.percent or None,
                code=sealed.code,
            )
            (record.term_grades if kind == SEALED_TERM else record.year_grades).append(item)
            continue
        corrected = kind == "correction"
        shown_kind = str(payload["corrects"]) if corrected else kind
        value = payload.get("value")
        if value == "void" or shown_kind not in ("grade", "attendance"):
            continue
        item = ShownEntry(
            entry_id=row.entry_id,
            kind=shown_kind,
            subject_id=row.subject_id,
            date=row.date,
            component=payload.get("component"),  # type: ignore[arg-type]
            value=value,  # type: ignore[arg-type]
            corrected=corrected,
            reason=payload.get("reason") if corrected else None,  # type: ignore[arg-type]
        )
        (record.grades if shown_kind == "grade" else record.attendance).append(item)
    _provisional(session, record)
    for items in (record.grades, record.attendance):
        items.sort(key=lambda i: (i.date or dt.date.min, i.entry_id))
    return record


def _provisional(session: Session, record: StudentRecord) -> None:
    """The running percent of each subject in each open term of the pupil's classes, and the
    pupil's № in each class (the same as on the grid and the printouts)."""
    sealed = {(i.subject_id, i.term_id) for i in record.term_grades}
    for class_group, enrollment in record.classes:
        log = session.scalar(select(Log).where(Log.class_group_id == class_group.id))
        year_terms = [t for t in record.terms if t.school_year_id == class_group.school_year_id]
        if year_terms:
            pupils = class_pupils(
                session,
                class_group,
                min(t.starts_on for t in year_terms),
                max(t.ends_on for t in year_terms),
            )
            number = next((n for n, p in enumerate(pupils, 1) if p.id == record.student.id), None)
            if number is not None:
                record.numbers.append((class_group.name, number))
        if log is None:
            continue
        for term in year_terms:
            if term.closed_at is not None or not enrolled_in_term(
                [(enrollment.starts_on, enrollment.ends_on)], term
            ):
                continue
            book = TermBook(session, class_group, log, term, student_ids=[record.student.id])
            for subject in class_subjects(session, class_group):
                if term_kind_of(subject) != term.kind or (subject.id, term.id) in sealed:
                    continue
                if rule_id_for(subject, class_group) == "kz-no-grades":
                    continue
                outcome = book.computed(subject, record.student.id)
                if outcome.percent or outcome.code:
                    record.provisional[(subject.id, term.id)] = outcome


def value_text(item: ShownEntry) -> str:
    """The value as a parent reads it, in the page's language."""
    if item.kind == "attendance":
        return _(ATTENDANCE_LABELS.get(str(item.value), str(item.value)))
    if item.kind in ("term_grade", "year_grade"):
        return result_label(item.code) or "—"
    value = item.value if isinstance(item.value, dict) else {}
    if item.component == "FO":
        return str(value.get("score"))
    if item.component == "mark":
        return str(value.get("mark"))
    return f"{value.get('points')}/{value.get('max')}"


def percent_text(percent: str | None) -> str:
    if not percent:
        return ""
    try:
        return format_decimal(Decimal(percent), format="#,##0.##") + " %"
    except InvalidOperation:
        return ""


def term_label(term: Term | None) -> str:
    if term is None:
        return _("Outside the terms")
    return term_name(term)


def entry_json(record: StudentRecord, item: ShownEntry) -> dict[str, Any]:
    subject = record.subjects.get(item.subject_id or 0)
    term = record.term_of(item)
    data: dict[str, Any] = {
        "entry_id": item.entry_id,
        "kind": item.kind,
        "subject": {"id": subject.id, "name": subject.name} if subject else None,
        "term": term.id if term else None,
        "proof": url_for("portal.api_proof", student_id=record.student.id, entry_id=item.entry_id),
    }
    if item.date is not None:
        data["date"] = item.date.isoformat()
    if item.kind == "grade":
        data.update(component=item.component, value=item.value)
    elif item.kind == "attendance":
        data["value"] = item.value
    else:
        data.update(grade=item.grade, percent=item.percent, result=item.code, sealed=True)
    if item.corrected:
        data.update(corrected=True, reason=item.reason)
    return data


# -- proofs ------------------------------------------------------------------------------------


class ProofNotReady(Exception):
    """No signed checkpoint covers the entry yet and none can be cut here."""


@dataclass(frozen=True)
class EntryProof:
    entry: Entry
    log: Log
    leaf: bytes  # the exact bytes hashed into the tree: one line of entries.jsonl
    proof: str  # the .tlog-proof text
    checkpoint_size: int
    vkey: str


def entry_proof(session: Session, entry: Entry, keys_dir: str) -> EntryProof:
    """An inclusion proof of ``entry`` against the latest checkpoint that covers it.

    When the entry arrived after the last checkpoint, a new checkpoint is cut (the school signs
    checkpoints at least daily anyway; a parent need not wait for tomorrow's).
    """
    log = session.get_one(Log, entry.log_id)
    school = session.get_one(School, log.school_id)
    if not school.log_vkey:
        raise ProofNotReady("the school has no published log key")
    checkpoint = latest_checkpoint(session, log)
    if checkpoint is None or checkpoint.size <= entry.seq:
        try:
            log_key = load_log_key(keys_dir, school.domain)
        except LookupError as exc:
            raise ProofNotReady(str(exc)) from None
        from archive.timestamps import TimestampError

        try:
            checkpoint = cut_checkpoint(session, log, log_key)
        except TimestampError as exc:  # a TSA is configured: no checkpoint goes out without it
            raise ProofNotReady(f"the timestamp authority did not answer: {exc}") from None
    hashes = leaf_hashes(session, log, checkpoint.size)
    proof = make_tlog_proof(hashes, entry.seq, checkpoint.note)
    return EntryProof(
        entry, log, entry.leaf, format_tlog_proof(proof), checkpoint.size, school.log_vkey
    )


# -- views -------------------------------------------------------------------------------------

bp = Blueprint("portal", __name__)


def signed_in() -> User:
    user = current_user()
    assert user is not None
    return user


def readable_student(student_id: int) -> Student:
    """The student, if the signed-in user may read them (403 and an access-log row if not)."""
    policy.require(policy.can_read_student(signed_in(), student_id), "not your child")
    return db.session.get_one(Student, student_id)


def readable_entry(student: Student, entry_id: str) -> Entry:
    entry = db.session.scalar(
        select(Entry)
        .join(Log, Log.id == Entry.log_id)
        .where(Entry.entry_id == entry_id, Entry.student_id == student.id, Log.kind == "journal")
    )
    if entry is None or entry.kind not in SHOWN_KINDS:
        abort(404)
    return entry


def children(user: User) -> list[tuple[Student, str]]:
    """Each readable student with the class they are in now (or were last in)."""
    result = []
    for student_id in policy.children_of(user):
        student = db.session.get_one(Student, student_id)
        class_name = db.session.scalar(
            select(ClassGroup.name)
            .join(Enrollment, Enrollment.class_group_id == ClassGroup.id)
            .where(Enrollment.student_id == student_id)
            .order_by(Enrollment.starts_on.desc())
        )
        result.append((student, class_name or ""))
    return result


@bp.get("/portal/")
@login_required
@personal_data("student_list")
def index() -> Any:
    kids = children(signed_in())
    if len(kids) == 1:
        return redirect(url_for(".student", student_id=kids[0][0].id))
    return render_template("portal/index.html", children=kids)


@bp.get("/portal/students/<int:student_id>")
@login_required
@personal_data("student", "student_id")
def student(student_id: int) -> Any:
    record = student_record(db.session, readable_student(student_id))
    db.session.commit()  # nothing of ours changed; ends the read transaction
    sections = []
    for term in [t for t in record.terms if t.kind == "quarter"] + [None]:
        grades = [g for g in record.grades if record.term_of(g) == term]
        absences = [a for a in record.attendance if record.term_of(a) == term]
        if term is None and not grades and not absences:
            continue
        by_subject: dict[int | None, list[ShownEntry]] = {}
        for grade in grades:
            by_subject.setdefault(grade.subject_id, []).append(grade)
        sections.append((term, by_subject, absences))
    # Open the current quarter, or the latest one with something in it.
    today = today_at(db.session, record.school.id)
    filled = [term for term, by_subject, absences in sections if by_subject or absences]
    current = next((t for t in filled if t is not None and t.covers(today)), None)
    if current is None and filled:
        current = filled[-1]
    return render_template(
        "portal/student.html",
        record=record,
        sections=sections,
        current_term=current,
        term_label=term_label,
        value_text=value_text,
        percent_text=percent_text,
        component_labels=COMPONENT_LABELS,
        progress=portal_charts(db.session, record, current, today),
    )


@bp.get("/portal/students/<int:student_id>/entries/<entry_id>")
@login_required
@personal_data("student", "student_id")
def entry(student_id: int, entry_id: str) -> Any:
    student_row = readable_student(student_id)
    found = readable_entry(student_row, entry_id)
    record = student_record(db.session, student_row)
    item = next(
        (
            i
            for i in [*record.grades, *record.attendance, *record.term_grades, *record.year_grades]
            if i.entry_id == entry_id
        ),
        None,
    )
    try:
        proof = entry_proof(db.session, found, current_app.config["KEYS_DIR"])
    except ProofNotReady:
        proof = None
    db.session.commit()  # keeps a checkpoint cut for this proof
    return render_template(
        "portal/entry.html",
        record=record,
        item=item,
        entry=found,
        proof=proof,
        leaf_text=found.leaf.decode(),
        value_text=value_text,
        term_label=term_label,
        component_labels=COMPONENT_LABELS,
    )


def _download(data: bytes, filename: str, mimetype: str) -> Response:
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get(f"/portal/students/<int:student_id>/entries/<entry_id>{FILE_EXTENSION}")
@login_required
@personal_data("student", "student_id")
def download_proof(student_id: int, entry_id: str) -> Any:
    found = readable_entry(readable_student(student_id), entry_id)
    try:
        proof = entry_proof(db.session, found, current_app.config["KEYS_DIR"])
    except ProofNotReady:
        abort(409)
    db.session.commit()
    return _download(proof.proof.encode(), f"entry-{entry_id}{FILE_EXTENSION}", "text/plain")


@bp.get("/portal/students/<int:student_id>/entries/<entry_id>.json")
@login_required
@personal_data("student", "student_id")
def download_entry(student_id: int, entry_id: str) -> Any:
    found = readable_entry(readable_student(student_id), entry_id)
    return _download(found.leaf + b"\n", f"entry-{entry_id}.json", "application/json")


@bp.get("/portal/students/<int:student_id>/school.vkey")
@login_required
@personal_data("student", "student_id")
def download_vkey(student_id: int) -> Any:
    school = db.session.get_one(School, readable_student(student_id).school_id)
    if not school.log_vkey:
        abort(404)
    return _download((school.log_vkey + "\n").encode(), f"{school.domain}.vkey", "text/plain")


# -- JSON API ----------------------------------------------------------------------------------


@bp.get("/api/portal/students")
@login_required
@personal_data("student_list")
def api_students() -> Any:
    return jsonify(
        students=[
            {
                "id": s.id,
                "name": s.full_name,
                "class": class_name,
                "url": url_for(".api_student", student_id=s.id),
            }
            for s, class_name in children(signed_in())
        ]
    )


@bp.get("/api/portal/students/<int:student_id>")
@login_required
@personal_data("student", "student_id")
def api_student(student_id: int) -> Any:
    record = student_record(db.session, readable_student(student_id))
    db.session.commit()
    return jsonify(
        student={"id": record.student.id, "name": record.student.full_name},
        school={"name": record.school.name, "domain": record.school.domain},
        classes=[
            {
                "name": c.name,
                "from": e.starts_on.isoformat(),
                "until": e.ends_on.isoformat() if e.ends_on else None,
            }
            for c, e in record.classes
        ],
        terms=[
            {
                "id": t.id,
                "kind": t.kind,
                "number": t.number,
                "from": t.starts_on.isoformat(),
                "until": t.ends_on.isoformat(),
            }
            for t in record.terms
        ],
        grades=[entry_json(record, i) for i in record.grades],
        attendance=[entry_json(record, i) for i in record.attendance],
        term_grades=[entry_json(record, i) for i in record.term_grades],
        year_grades=[entry_json(record, i) for i in record.year_grades],
        provisional=[
            {
                "subject": subject_id,
                "term": term_id,
                "percent": outcome.percent or None,
                "result": outcome.code,
                "provisional": True,
            }
            for (subject_id, term_id), outcome in sorted(record.provisional.items())
        ],
        numbers=[{"class": name, "number": number} for name, number in record.numbers],
    )


@bp.get("/api/portal/students/<int:student_id>/entries/<entry_id>/proof")
@login_required
@personal_data("student", "student_id")
def api_proof(student_id: int, entry_id: str) -> Any:
    found = readable_entry(readable_student(student_id), entry_id)
    try:
        proof = entry_proof(db.session, found, current_app.config["KEYS_DIR"])
    except ProofNotReady as exc:
        return jsonify(error="proof_not_ready", message=str(exc)), 409
    db.session.commit()
    return jsonify(
        entry_id=entry_id,
        journal=proof.log.origin,
        leaf=proof.leaf.decode(),
        leaf_index=found.seq,
        checkpoint_size=proof.checkpoint_size,
        tlog_proof=proof.proof,
        vkey=proof.vkey,
    )

"""The database, read into the plain documents that exports/pdf.py renders.

Everything shown in a printout is read from the log as it was at the printout's checkpoint, and
the printout embeds exactly those leaves (or proofs of them), so it proves its own content.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.models import User
from journal.cells import Cell, cell_key, read_cells
from journal.collation import class_key
from journal.db import utcnow
from journal.grading import rule_for
from journal.keys import LogKey
from journal.ledger import audit, merkle, tlogproof
from journal.models import (
    Checkpoint,
    ClassGroup,
    Entry,
    Lesson,
    Log,
    School,
    SchoolYear,
    Student,
    Subject,
    TeachingAssignment,
    Term,
    TermClosure,
)
from journal.pupils import Pupil, class_pupils
from journal.services import (
    append_ledger_record,
    cut_checkpoint,
    device_keys_document,
    ensure_journal_log,
    ensure_ledger_log,
    latest_checkpoint,
    server_keys_document,
)
from journal.year.closing import class_subjects
from journal.year.results import TermBook, YearBook
from journal.year.rules import grading_rules, rule_id_for, term_kind_of

from .documents import (
    JournalDocument,
    LedgerDocument,
    LessonColumn,
    ProofBundle,
    StudentRow,
    SubjectSheet,
    attendance_mark,
    grade_mark,
)


class ExportError(LookupError):
    pass


@dataclass(frozen=True)
class Period:
    """A closed (or, before closing, the latest) checkpoint and the leaves of one term."""

    term: Term
    start: int  # first seq of the period: the previous term's sealing size
    checkpoint: Checkpoint


def quarter(session: Session, class_group: ClassGroup, number: int) -> Term:
    return term_of(session, class_group, "quarter", number)


def term_of(session: Session, class_group: ClassGroup, kind: str, number: int) -> Term:
    term = session.scalar(
        select(Term).where(
            Term.school_year_id == class_group.school_year_id,
            Term.kind == kind,
            Term.number == number,
        )
    )
    if term is None:
        raise ExportError(f"no {'half-year' if kind == 'half' else 'quarter'} {number} this year")
    return term


def period_of(session: Session, log: Log, term: Term) -> Period:
    """The checkpoint that sealed the term (or the latest one while it is open)."""
    closure = session.scalar(
        select(TermClosure).where(TermClosure.term_id == term.id, TermClosure.log_id == log.id)
    )
    if closure is not None:
        checkpoint = session.scalar(
            select(Checkpoint).where(
                Checkpoint.log_id == log.id, Checkpoint.size == closure.checkpoint_size
            )
        )
    else:
        checkpoint = latest_checkpoint(session, log)
    if checkpoint is None:
        raise ExportError(f"{log.origin} has no checkpoint yet")
    earlier = session.scalars(
        select(TermClosure.checkpoint_size)
        .join(Term, Term.id == TermClosure.term_id)
        .where(
            TermClosure.log_id == log.id,
            Term.kind == term.kind,
            Term.school_year_id == term.school_year_id,
            Term.number < term.number,
        )
    ).all()
    start = max(earlier, default=0)
    return Period(term, min(start, checkpoint.size), checkpoint)


def _students(
    session: Session, class_group: ClassGroup, first: dt.date, last: dt.date
) -> list[Pupil]:
    """The class's pupils in those days, in the order (and so with the №) of every page."""
    return class_pupils(session, class_group, first, last)


def _subjects(
    session: Session, class_group: ClassGroup, kind: str | None = None
) -> list[tuple[Subject, str]]:
    """The class's subjects (of one kind of term, when given) with their teachers' names."""
    teachers: dict[int, list[str]] = {}
    for subject_id, teacher in session.execute(
        select(TeachingAssignment.subject_id, User.full_name)
        .join(User, User.id == TeachingAssignment.user_id)
        .where(TeachingAssignment.class_group_id == class_group.id)
        .order_by(User.full_name)
    ):
        teachers.setdefault(subject_id, []).append(teacher)
    return [
        (subject, ", ".join(teachers.get(subject.id, [])))
        for subject in class_subjects(session, class_group)
        if kind is None or term_kind_of(subject) == kind
    ]


def _marks(
    cells: dict[str, Cell], lesson_id: int, student_id: int, language: str = "ru"
) -> tuple[str, ...]:
    marks = []
    attendance = cells.get(cell_key("att", lesson_id, student_id))
    if attendance is not None and isinstance(attendance.value, str):
        marks.append(attendance_mark(attendance.value, language))
    for component in ("FO", "mark", "SOR", "SOCh"):
        cell = cells.get(cell_key(component, lesson_id, student_id))
        if cell is None:
            continue
        if cell.conflict:
            marks.append("?")  # two heads: shown, never silently resolved
        elif isinstance(cell.value, dict):
            marks.append(grade_mark(component, cell.value, language))
    return tuple(marks)


def term_grades(
    session: Session, class_group: ClassGroup, log: Log, term: Term, until_seq: int | None
) -> dict[tuple[int, int], tuple[str, str]]:
    """(subject id, student id) → (percent, result) for one term, as the log holds it at
    ``until_seq``: the sealed result once the term is closed, else the teacher's confirmation,
    else what the rule computes (``journal.year.results``). The result is a grade or a code
    ("pass", "exempt", "incomplete", ...), the same the grid and the portal show."""
    book = TermBook(session, class_group, log, term, until_seq=until_seq)
    students = [p.id for p in _students(session, class_group, term.starts_on, term.ends_on)]
    result: dict[tuple[int, int], tuple[str, str]] = {}
    for subject, _teacher in _subjects(session, class_group, term.kind):
        if rule_id_for(subject, class_group) == "kz-no-grades":
            continue
        for student_id, outcome in book.outcomes(subject, students).items():
            result[(subject.id, student_id)] = (outcome.percent, outcome.code)
    return result


def range_proof(
    session: Session, log: Log, start: int, checkpoint: Checkpoint, vkey: str
) -> ProofBundle:
    """The leaves [start, checkpoint.size) with the compact range before them (audit.py)."""
    rows = session.execute(
        select(Entry.seq, Entry.leaf, Entry.leaf_hash, Entry.device_kid)
        .where(Entry.log_id == log.id, Entry.seq < checkpoint.size)
        .order_by(Entry.seq)
    ).all()
    builder = merkle.TreeBuilder()
    for row in rows[:start]:
        builder.append(row.leaf_hash)
    leaves = [row.leaf for row in rows[start:]]
    kids = {row.device_kid for row in rows[start:] if row.device_kid}
    keys = device_keys_document(session, kids)
    keys.update(server_keys_document(session, log))
    return ProofBundle(
        origin=log.origin,
        tree_size=checkpoint.size,
        root_hash=checkpoint.root_hash,
        checkpoint_note=checkpoint.note,
        vkey=vkey,
        entries_jsonl=b"".join(leaf + b"\n" for leaf in leaves),
        extra_files=(
            (audit.RANGE_FILE, audit.format_range_file(start, builder.hashes).encode()),
            ("device-keys.json", json.dumps(keys, indent=2, sort_keys=True).encode() + b"\n"),
        ),
    )


def journal_document(
    session: Session,
    class_group: ClassGroup,
    quarter_number: int,
    *,
    generated_at: dt.datetime | None = None,
    kind: str = "quarter",
    language: str = "ru",
) -> JournalDocument:
    """The class journal of a quarter (its subjects graded by quarters) or of a half-year (the
    half-year subjects), as of the checkpoint that sealed the term."""
    school = session.get_one(School, class_group.school_id)
    year = session.get_one(SchoolYear, class_group.school_year_id)
    term = term_of(session, class_group, kind, quarter_number)
    log = ensure_journal_log(session, class_group)
    period = period_of(session, log, term)
    cells = read_cells(session, log.id, until_seq=period.checkpoint.size)
    grades = term_grades(session, class_group, log, term, period.checkpoint.size)
    students = _students(session, class_group, term.starts_on, term.ends_on)
    sheets = []
    for subject, teacher in _subjects(session, class_group, term.kind):
        lessons = session.scalars(
            select(Lesson)
            .where(
                Lesson.class_group_id == class_group.id,
                Lesson.subject_id == subject.id,
                Lesson.date >= term.starts_on,
                Lesson.date <= term.ends_on,
            )
            .order_by(Lesson.date, Lesson.period)
        ).all()
        columns = []
        for lesson in lessons:
            topic = cells.get(cell_key("topic", lesson.id))
            value = topic.value if topic is not None else None
            columns.append(
                LessonColumn(
                    date=lesson.date,
                    topic=value["topic"] if isinstance(value, dict) else "",
                    homework=value.get("homework", "") if isinstance(value, dict) else "",
                )
            )
        rows = []
        for student in students:
            percent, grade = grades.get((subject.id, student.id), ("", ""))
            rows.append(
                StudentRow(
                    student_name=student.full_name,
                    cells=tuple(
                        _marks(cells, lesson.id, student.id, language) for lesson in lessons
                    ),
                    term_percent=percent,
                    term_grade=grade,
                )
            )
        sheets.append(
            SubjectSheet(
                subject_name=subject.name,
                teacher_name=teacher,
                lessons=tuple(columns),
                rows=tuple(rows),
            )
        )
    return JournalDocument(
        school_name=school.name,
        class_name=class_group.name,
        school_year=year.name,
        quarter=quarter_number,
        generated_at=generated_at or utcnow(),
        subjects=tuple(sheets),
        proof=range_proof(session, log, period.start, period.checkpoint, _vkey(school)),
        term_kind=term.kind,
        time_zone=school.time_zone,
        class_teacher=_class_teacher(session, class_group),
        students=tuple(student.full_name for student in students),
    )


def _class_teacher(session: Session, class_group: ClassGroup) -> str:
    if class_group.class_teacher_id is None:
        return ""
    teacher = session.get(User, class_group.class_teacher_id)
    return teacher.full_name if teacher is not None else ""


def _vkey(school: School) -> str:
    if not school.log_vkey:
        raise ExportError(f"{school.domain} has no published log key")
    return school.log_vkey


@dataclass(frozen=True)
class StudentYear:
    """One student's year in one class: per subject the sealed term results (quarters, or
    half-years) and the sealed year result ("" where none is sealed yet), and absences in
    lessons and in whole days (of which by illness)."""

    student: Pupil
    grades: dict[str, tuple[str, ...]]
    absences_total: int
    absences_sick: int
    days_total: int = 0
    days_sick: int = 0


def summary_ledger(
    session: Session,
    class_group: ClassGroup,
    *,
    until_seq: int | None = None,
    last_day: dt.date | None = None,
) -> list[StudentYear]:
    """Sealed results only, as the journal holds them at ``until_seq``: a term's column is
    empty until the term is closed, and the year's until the year is (no year grade exists
    before that). Absences count the lessons up to ``last_day`` (the last closed term's end):
    a whole day is a day the pupil missed every lesson of, by illness when every one was."""
    year = session.get_one(SchoolYear, class_group.school_year_id)
    log = ensure_journal_log(session, class_group)
    book = YearBook(session, class_group, log, until_seq=until_seq)
    cells = read_cells(session, log.id, kinds=["attendance", "correction"], until_seq=until_seq)
    students = _students(session, class_group, year.starts_on, year.ends_on)
    subjects = [
        s
        for s, _teacher in _subjects(session, class_group)
        if rule_id_for(s, class_group) != "kz-no-grades"
    ]
    lesson_days = dict(
        session.execute(
            select(Lesson.id, Lesson.date).where(
                Lesson.class_group_id == class_group.id,
                Lesson.date <= (last_day or year.ends_on),
            )
        ).all()
    )
    lessons_per_day: dict[dt.date, int] = {}
    for day in lesson_days.values():
        lessons_per_day[day] = lessons_per_day.get(day, 0) + 1
    absences: dict[int, list[tuple[dt.date, bool]]] = {}
    for cell in cells.values():
        parts = cell.key.split(":")
        # Being late is not an absence.
        if parts[0] != "att" or not isinstance(cell.value, str) or cell.value == "late":
            continue
        day = lesson_days.get(int(parts[1]))
        if day is not None:
            absences.setdefault(int(parts[2]), []).append((day, cell.value == "sick"))
    result = []
    for student in students:
        grades = {}
        for subject in subjects:
            kind = term_kind_of(subject)
            sealed = book.term_outcomes(subject, student.id)
            columns = [o.code if o is not None else "" for o in sealed]
            columns += [""] * ((2 if kind == "half" else 4) - len(columns))
            year_result = book.cells.get(f"sealed:{subject.id}:year:{year.id}:{student.id}")
            year_code = ""
            if year_result is not None and year_result.history:
                payload = year_result.history[0].payload
                for name in ("grade", "result", "status"):
                    if payload.get(name) is not None:
                        year_code = str(payload[name])
                        break
            grades[subject.name] = (*columns, year_code)
        mine = absences.get(student.id, [])
        by_day: dict[dt.date, list[bool]] = {}
        for day, sick in mine:
            by_day.setdefault(day, []).append(sick)
        whole = [sicks for day, sicks in by_day.items() if len(sicks) >= lessons_per_day[day]]
        result.append(
            StudentYear(
                student,
                grades,
                len(mine),
                sum(sick for _day, sick in mine),
                len(whole),
                sum(all(sicks) for sicks in whole),
            )
        )
    return result


def ledger_records(session: Session, class_group: ClassGroup) -> list[Entry]:
    """The summary-ledger records of a class already in the school ledger log."""
    year = session.get_one(SchoolYear, class_group.school_year_id)
    school = session.get_one(School, class_group.school_id)
    log = ensure_ledger_log(session, school)
    prefix = f"ledger:{year.name}:{class_group.id}:"
    return list(
        session.scalars(
            select(Entry)
            .where(
                Entry.log_id == log.id, Entry.kind == "ledger_record", Entry.cell.startswith(prefix)
            )
            .order_by(Entry.seq)
        )
    )


def record_summary_ledger(
    session: Session,
    class_group: ClassGroup,
    log_key: LogKey,
    *,
    iin_hmacs: dict[int, bytes] | None = None,
    now: dt.datetime | None = None,
) -> list[Entry]:
    """Write the year's summary-ledger record of every student to the school ledger log, once.

    These records outlive the journals (25 years): the registrar issues duplicates from them.
    """
    existing = ledger_records(session, class_group)
    if existing:
        return existing
    year = session.get_one(SchoolYear, class_group.school_year_id)
    school = session.get_one(School, class_group.school_id)
    students = {
        s.id: s for s in session.scalars(select(Student).where(Student.school_id == school.id))
    }
    for line in summary_ledger(session, class_group):
        student = students[line.student.id]
        append_ledger_record(
            session,
            school,
            log_key,
            "ledger_record",
            {
                "school_year": year.name,
                "class": {
                    "id": class_group.id,
                    "name": class_group.name,
                    "grade_level": class_group.grade_level,
                },
                "student": {
                    "id": student.id,
                    "last_name": student.last_name,
                    "first_name": student.first_name,
                    "patronymic": student.patronymic,
                    "birth_date": student.birth_date.isoformat(),
                    # A keyed hash: the registrar finds a student by IIN without the IIN stored.
                    "iin_hmac": base64.b64encode(student.iin_hmac).decode()
                    if student.iin_hmac
                    else None,
                },
                # Quarter subjects: four quarters and the year; half-year subjects: two
                # half-years and the year.
                "grades": {name: list(values) for name, values in sorted(line.grades.items())},
                "half_year_subjects": sorted(
                    name for name, values in line.grades.items() if len(values) == 3
                ),
                # Lessons missed (of which by illness), and whole days missed.
                "absences": {
                    "total": line.absences_total,
                    "sick": line.absences_sick,
                    "days": line.days_total,
                    "sick_days": line.days_sick,
                },
                "rule": {
                    "id": "kz-criteria",
                    "version": rule_for(grading_rules(), "kz-criteria", year.ends_on).version,
                },
            },
            now=now,
            student_id=student.id,
            cell=f"ledger:{year.name}:{class_group.id}:{student.id}",
        )
    cut_checkpoint(session, ensure_ledger_log(session, school), log_key, now=now)
    return ledger_records(session, class_group)


def ledger_document(
    session: Session, class_group: ClassGroup, *, generated_at: dt.datetime | None = None
) -> LedgerDocument:
    """The summary ledger (``exports.ledger``: it prints only what its checkpoint proves)."""
    from .ledger import ledger_document as made

    return made(session, class_group, generated_at=generated_at)


def records_proof(session: Session, log: Log, records: Sequence[Entry], vkey: str) -> ProofBundle:
    """Some leaves of a log, each with its C2SP tlog-proof against the latest checkpoint."""
    checkpoint = latest_checkpoint(session, log)
    if checkpoint is None or checkpoint.size <= max(r.seq for r in records):
        raise ExportError(f"no checkpoint of {log.origin} covers these records yet")
    hashes = session.scalars(
        select(Entry.leaf_hash)
        .where(Entry.log_id == log.id, Entry.seq < checkpoint.size)
        .order_by(Entry.seq)
    ).all()
    tree = merkle.MerkleTree(hashes)
    proofs = tuple(
        (
            f"{record.seq}{tlogproof.FILE_EXTENSION}",
            tlogproof.format_tlog_proof(
                tlogproof.make_tlog_proof(tree, record.seq, checkpoint.note)
            ),
        )
        for record in records
    )
    return ProofBundle(
        origin=log.origin,
        tree_size=checkpoint.size,
        root_hash=checkpoint.root_hash,
        checkpoint_note=checkpoint.note,
        vkey=vkey,
        entries_jsonl=b"".join(r.leaf + b"\n" for r in records),
        tlog_proofs=proofs,
    )


def classes_of_year(session: Session, school_year: SchoolYear) -> Iterable[ClassGroup]:
    classes = session.scalars(
        select(ClassGroup).where(ClassGroup.school_year_id == school_year.id)
    ).all()
    return sorted(classes, key=lambda c: class_key(c.name, c.grade_level))

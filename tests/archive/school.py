"""A school whose 2024-2025 year is over: every quarter closed, signed entries in each class.

The archive job needs finished years; ``tests/factories.py`` builds the current one.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from journal.keys import LogKey, create_demo_pdf_signer, create_log_key
from journal.models import (
    ClassGroup,
    Enrollment,
    Lesson,
    Log,
    School,
    SchoolYear,
    Student,
    Subject,
    TeachingAssignment,
    Term,
)
from journal.recording.recorder import Recorder
from journal.services import ensure_journal_log, ensure_ledger_log
from tests.factories import Device, add_device, add_user

YEAR = ("2024-2025", dt.date(2024, 9, 2), dt.date(2025, 5, 25))
QUARTERS = [
    (dt.date(2024, 9, 2), dt.date(2024, 10, 27)),
    (dt.date(2024, 11, 4), dt.date(2024, 12, 28)),
    (dt.date(2025, 1, 8), dt.date(2025, 3, 19)),
    (dt.date(2025, 3, 30), dt.date(2025, 5, 25)),
]


@dataclass
class PastSchool:
    school: School
    year: SchoolYear
    quarters: list[Term]
    classes: list[ClassGroup]
    logs: list[Log]
    log_key: LogKey
    devices: list[Device] = field(default_factory=list)
    subject: Subject | None = None
    students: list[Student] = field(default_factory=list)

    @property
    def ledger(self) -> Log:
        return self.logs[-1]

    def record(
        self, session: Session, class_index: int, term: Term, day: int = 0, device: int = 0
    ) -> None:
        """One more signed grade in a class, on the ``day``-th day of ``term`` (must be open),
        signed by the teacher's ``device``-th device key."""
        group, log = self.classes[class_index], self.logs[class_index]
        signer = self.devices[device]
        lesson = Lesson(
            class_group_id=group.id,
            subject_id=self.subject.id,  # type: ignore[union-attr]
            date=term.starts_on + dt.timedelta(days=day),
            period=1,
        )
        session.add(lesson)
        session.flush()
        payload = {
            "v": 1,
            "entry_id": str(uuid.uuid4()),
            "journal": log.origin,
            "kind": "grade",
            "device_id": signer.kid,
            "device_seq": next(signer.seq),
            "author": signer.user_id,
            "created_at": f"{lesson.date.isoformat()}T09:00:00Z",
            "lesson": lesson.id,
            "student": self.students[class_index].id,
            "component": "FO",
            "value": {"score": 7 + day % 3},
        }
        recorder = Recorder(session, now=dt.datetime.combine(lesson.date, dt.time(10), dt.UTC))
        recorder.record(signer.sign(payload))


_PDF_KEYS: dict[str, bytes] = {}


def _pdf_signer(keys_dir: str, domain: str) -> None:
    """The school's PDF certificate: RSA-3072 takes seconds to make, so one per test process."""
    from journal.keys import pdf_key_paths

    targets = pdf_key_paths(keys_dir, domain)
    if not _PDF_KEYS:
        create_demo_pdf_signer(keys_dir, domain, "Past school")
        _PDF_KEYS.update({p.name[len(domain) :]: p.read_bytes() for p in targets})
        return
    for path in targets:
        path.write_bytes(_PDF_KEYS[path.name[len(domain) :]])


def build_past_school(
    session: Session,
    keys_dir: str,
    *,
    classes: int = 2,
    entries_per_quarter: int = 2,
    close: int = 4,
) -> PastSchool:
    """A school with a finished 2024-2025 year; the first ``close`` quarters are closed."""
    domain = f"past-{uuid.uuid4().hex[:8]}.example.kz"
    log_key = create_log_key(keys_dir, domain)
    _pdf_signer(keys_dir, domain)  # printouts go into every bag
    school = School(name="Өскемен №3 мектеп-лицейі", domain=domain, log_vkey=log_key.vkey)
    session.add(school)
    session.flush()
    year = SchoolYear(school_id=school.id, name=YEAR[0], starts_on=YEAR[1], ends_on=YEAR[2])
    session.add(year)
    session.flush()
    quarters = [
        Term(school_year_id=year.id, kind="quarter", number=n, starts_on=a, ends_on=b)
        for n, (a, b) in enumerate(QUARTERS, 1)
    ]
    session.add_all(quarters)
    subject = Subject(school_id=school.id, name="Қазақ тілі")
    session.add(subject)
    session.flush()
    teacher = add_user(session, school, "teacher")
    device = add_device(session, teacher)
    past = PastSchool(school, year, quarters, [], [], log_key, [device], subject)
    for index in range(classes):
        group = ClassGroup(
            school_id=school.id, school_year_id=year.id, name=f"{5 + index}Ғ", grade_level=5 + index
        )
        session.add(group)
        session.flush()
        session.add(
            TeachingAssignment(user_id=teacher.id, class_group_id=group.id, subject_id=subject.id)
        )
        student = Student(
            school_id=school.id,
            last_name="Құдайберген",
            first_name="Әсел",
            birth_date=dt.date(2014, 3, 8),
        )
        session.add(student)
        session.flush()
        session.add(Enrollment(student_id=student.id, class_group_id=group.id, starts_on=YEAR[1]))
        past.classes.append(group)
        past.logs.append(ensure_journal_log(session, group))
        past.students.append(student)
        for term in quarters:
            for day in range(entries_per_quarter):
                past.record(session, index, term, day)
    for term in quarters[:close]:
        term.closed_at = dt.datetime.combine(
            term.ends_on + dt.timedelta(days=1), dt.time(9), dt.UTC
        )
    past.logs.append(ensure_ledger_log(session, school))
    session.flush()
    return past

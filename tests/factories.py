"""Rows for tests: a small school world and signed entries."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from auth.models import DeviceKey, RoleGrant, User
from journal.keys import LogKey, create_log_key
from journal.ledger import entry as ledger_entry
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
from journal.services import ensure_journal_log, ensure_ledger_log

_counter = itertools.count(1)
Q1 = (dt.date(2026, 9, 1), dt.date(2026, 10, 25))
Q2 = (dt.date(2026, 11, 3), dt.date(2026, 12, 28))
LESSON_DAY = dt.date(2026, 11, 16)
NOW = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)


@dataclass
class Device:
    kid: str
    alg: str
    private_key: Any
    user_id: int
    seq: itertools.count = field(default_factory=itertools.count)

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        sig = ledger_entry.sign_payload(self.private_key, ledger_entry.canonical_json(payload))
        return {
            "payload": payload,
            "alg": self.alg,
            "kid": self.kid,
            "sig": base64.b64encode(sig).decode(),
        }


@dataclass
class World:
    session: Session
    school: School
    year: SchoolYear
    q1: Term
    q2: Term
    class_group: ClassGroup
    subject: Subject
    teacher: User
    device: Device
    student: Student
    lesson: Lesson
    log: Log
    log_key: LogKey

    def payload(self, kind: str = "grade", device: Device | None = None, **fields: Any) -> dict:
        device = device or self.device
        payload: dict[str, Any] = {
            "v": 1,
            "entry_id": str(uuid.uuid4()),
            "journal": self.log.origin,
            "kind": kind,
            "device_id": device.kid,
            "device_seq": next(device.seq),
            "author": device.user_id,
            "created_at": "2026-11-16T09:05:00Z",
        }
        if kind in ("grade", "attendance", "correction"):
            payload.update(lesson=self.lesson.id, student=self.student.id)
        if kind == "grade":
            payload.update(component="FO", value={"score": 8})
        elif kind == "attendance":
            payload.update(value="absent")
        elif kind == "topic":
            payload.update(lesson=self.lesson.id, topic="Теңдеулер жүйесі", homework="§12")
        payload.update(fields)
        return payload

    def signed(self, kind: str = "grade", device: Device | None = None, **fields: Any) -> dict:
        device = device or self.device
        return device.sign(self.payload(kind, device, **fields))

    def add_device(self, user: User | None = None, alg: str = "ed25519") -> Device:
        return add_device(self.session, user or self.teacher, alg)

    def add_student(self, enrolled: bool = True, **fields: Any) -> Student:
        n = next(_counter)
        student = Student(
            school_id=self.school.id,
            last_name=fields.get("last_name", f"Сәрсенбай{n}"),
            first_name=fields.get("first_name", "Әлібек"),
            birth_date=dt.date(2013, 5, 1),
        )
        self.session.add(student)
        self.session.flush()
        if enrolled:
            self.session.add(
                Enrollment(
                    student_id=student.id, class_group_id=self.class_group.id, starts_on=Q1[0]
                )
            )
            self.session.flush()
        return student


def add_device(session: Session, user: User, alg: str = "ed25519") -> Device:
    private_key: Any = (
        Ed25519PrivateKey.generate()
        if alg == "ed25519"
        else ec.generate_private_key(ec.SECP256R1())
    )
    alg_name, raw = ledger_entry.public_key_bytes(private_key.public_key())
    kid = ledger_entry.key_id(alg_name, raw)
    session.add(DeviceKey(kid=kid, user_id=user.id, alg=alg_name, public_key=raw))
    session.flush()
    return Device(kid, alg_name, private_key, user.id)


def add_user(session: Session, school: School, role: str = "teacher", **fields: Any) -> User:
    n = next(_counter)
    user = User(
        school_id=school.id,
        username=fields.get("username", f"user{n}"),
        full_name=fields.get("full_name", f"Қасымова Мөлдір {n}"),
    )
    user.roles.append(RoleGrant(role=role, school_id=school.id))
    session.add(user)
    session.flush()
    return user


def build_world(session: Session, keys_dir: str) -> World:
    n = next(_counter)
    domain = f"school{n}-{uuid.uuid4().hex[:6]}.example.kz"
    log_key = create_log_key(keys_dir, domain)
    school = School(name=f"№{n} мектеп-гимназия", domain=domain, log_vkey=log_key.vkey)
    session.add(school)
    session.flush()
    year = SchoolYear(
        school_id=school.id, name="2026-2027", starts_on=Q1[0], ends_on=dt.date(2027, 5, 25)
    )
    session.add(year)
    session.flush()
    q1 = Term(school_year_id=year.id, kind="quarter", number=1, starts_on=Q1[0], ends_on=Q1[1])
    q2 = Term(school_year_id=year.id, kind="quarter", number=2, starts_on=Q2[0], ends_on=Q2[1])
    session.add_all([q1, q2])
    class_group = ClassGroup(school_id=school.id, school_year_id=year.id, name="7Ә", grade_level=7)
    subject = Subject(school_id=school.id, name="Математика")
    session.add_all([class_group, subject])
    session.flush()
    teacher = add_user(session, school, "teacher")
    session.add(
        TeachingAssignment(user_id=teacher.id, class_group_id=class_group.id, subject_id=subject.id)
    )
    lesson = Lesson(class_group_id=class_group.id, subject_id=subject.id, date=LESSON_DAY, period=2)
    session.add(lesson)
    session.flush()
    log = ensure_journal_log(session, class_group)
    ensure_ledger_log(session, school)
    world = World(
        session,
        school,
        year,
        q1,
        q2,
        class_group,
        subject,
        teacher,
        add_device(session, teacher),
        None,
        lesson,
        log,
        log_key,
    )  # type: ignore[arg-type]
    world.student = world.add_student(last_name="Өмірзақ", first_name="Іңкәр")
    return world


def browser_state(
    session: Session,
    user: User,
    *,
    second_factor: bool = True,
    at: dt.datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """What a signed-in browser's cookie holds: the id of a new server-side session of
    ``user`` (flushed; commit it when another connection must see it), plus ``extra``."""
    from auth.sessions import start_session

    _row, token = start_session(
        session,
        user,
        second_factor_passed=second_factor,
        ip=None,
        user_agent="test browser",
        now=at or dt.datetime.now(dt.UTC),
    )
    return {"sid": token, **extra}


def signed_in_client(app: Any, user: User) -> Any:
    """A test client whose session is signed in as ``user``, second factor passed (the
    session row committed, so that the app sees it on any connection)."""
    from sqlalchemy.orm import object_session

    client = app.test_client()
    session = object_session(user)
    assert session is not None
    state = browser_state(session, user)
    session.commit()
    with client.session_transaction() as flask_session:
        flask_session.update(state)
    return client

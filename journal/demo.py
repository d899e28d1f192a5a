"""A realistic demo school: Kazakh and Russian names, a 2026-2027 year with four quarters, a
timetable, one closed quarter of signed entries from demo device keys, and checkpoints."""

from __future__ import annotations

import base64
import datetime as dt
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyotp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.iin import check_digit, encrypt_iin, iin_lookup_hash
from auth.models import STAFF_ROLES, DeviceKey, RoleGrant, User
from auth.passwords import hash_password

from .clock import today_at
from .db import utcnow
from .keys import LogKey
from .ledger import entry as ledger_entry
from .models import (
    AssessmentPlan,
    ClassGroup,
    Enrollment,
    Holiday,
    Lesson,
    School,
    SchoolYear,
    Student,
    Subject,
    TeachingAssignment,
    Term,
    TimetableSlot,
)
from .recording.recorder import Recorder
from .services import cut_checkpoint, ensure_journal_log, ensure_ledger_log
from .setup.classes import generate_lessons
from .year.closing import close_term

DEMO_DOMAIN = "mektep17.example.kz"
DEMO_PASSWORD = "demo-journal-2026"  # noqa: S105 - printed by `make run`, demo data only

# (first name, last name stem) pairs; the stem takes -ов/-ова or -ұлы/-қызы endings.
BOYS = [
    "Әлібек",
    "Нұрлан",
    "Қанат",
    "Ерлан",
    "Дәулет",
    "Мұхтар",
    "Ілияс",
    "Айбек",
    "Арман",
    "Ғалым",
    "Серік",
    "Бауыржан",
    "Дмитрий",
    "Алексей",
    "Сергей",
    "Иван",
    "Тимур",
    "Олжас",
]
GIRLS = [
    "Әсел",
    "Айгүл",
    "Ұлжан",
    "Іңкәр",
    "Гүлнар",
    "Мөлдір",
    "Жансая",
    "Дана",
    "Аружан",
    "Балнұр",
    "Мария",
    "Анна",
    "Екатерина",
    "Ольга",
    "Томирис",
    "Һадия",
    "Нәзира",
    "Өмірлі",
]
KAZ_SURNAMES = [
    "Сәрсенбай",
    "Өмірзақ",
    "Қасым",
    "Нұрғали",
    "Жұмабай",
    "Әбілқайыр",
    "Үсен",
    "Ғабит",
    "Тұрсын",
    "Бекмұхамбет",
    "Ерғали",
    "Құдайберген",
]
RUS_SURNAMES = ["Иванов", "Петров", "Смирнов", "Кузнецов", "Соколов", "Попов", "Лебедев"]
SUBJECTS = [  # name, graded, lessons per week
    ("Қазақ тілі", True, 4),
    ("Орыс тілі мен әдебиеті", True, 3),
    ("Математика", True, 5),
    ("Информатика", True, 2),
    ("Қазақстан тарихы", True, 2),
    ("Жаратылыстану", True, 3),
    ("Дене шынықтыру", True, 3),
    ("Сынып сағаты", False, 1),
    ("Көркем еңбек", True, 1),
]
# Subjects with one lesson a week are graded by half-years.
HALF_YEAR_SUBJECTS = {"Көркем еңбек"}
CLASS_NAMES = ["7Ә", "7Б", "8А", "8Ә", "9А", "9Б", "5А", "5Ә", "6А", "6Ғ", "10А", "11Ә"]
QUARTERS = [
    (dt.date(2026, 9, 1), dt.date(2026, 10, 25)),
    (dt.date(2026, 11, 3), dt.date(2026, 12, 28)),
    (dt.date(2027, 1, 8), dt.date(2027, 3, 19)),
    (dt.date(2027, 3, 30), dt.date(2027, 5, 25)),
]
HALVES = [(dt.date(2026, 9, 1), dt.date(2026, 12, 28)), (dt.date(2027, 1, 8), dt.date(2027, 5, 25))]
# Kazakhstan's public holidays in the 2026-2027 school year (Labour Code, art. 84, and the law
# on holidays), with the working days off when one falls on a weekend: no lessons on them.
HOLIDAYS = [
    ("Республика күні", dt.date(2026, 10, 25), dt.date(2026, 10, 26)),
    ("Тәуелсіздік күні", dt.date(2026, 12, 16), dt.date(2026, 12, 17)),
    ("Жаңа жыл", dt.date(2027, 1, 1), dt.date(2027, 1, 2)),
    ("Православиелік Рождество", dt.date(2027, 1, 7), dt.date(2027, 1, 7)),
    ("Халықаралық әйелдер күні", dt.date(2027, 3, 8), dt.date(2027, 3, 8)),
    ("Наурыз мейрамы", dt.date(2027, 3, 21), dt.date(2027, 3, 24)),
    ("Қазақстан халқының бірлігі күні", dt.date(2027, 5, 1), dt.date(2027, 5, 1)),
    ("Отан қорғаушы күні", dt.date(2027, 5, 7), dt.date(2027, 5, 7)),
    ("Жеңіс күні", dt.date(2027, 5, 9), dt.date(2027, 5, 10)),
]


@dataclass(frozen=True)
class DemoLogin:
    role: str
    username: str
    password: str
    full_name: str


def demo_logins() -> list[DemoLogin]:
    return [
        DemoLogin("school_admin", "admin", DEMO_PASSWORD, "Жұмабаева Сәуле Қайратқызы"),
        DemoLogin("teacher", "teacher", DEMO_PASSWORD, "Өмірзақов Қанат Серікұлы"),
        DemoLogin("class_teacher", "classteacher", DEMO_PASSWORD, "Иванова Ольга Петровна"),
        DemoLogin("parent", "parent", DEMO_PASSWORD, "Сәрсенбаев Ерлан Нұрланұлы"),
        DemoLogin("student", "student", DEMO_PASSWORD, "Сәрсенбай Әлібек"),
        DemoLogin("registrar", "registrar", DEMO_PASSWORD, "Ғабитова Айгүл Маратқызы"),
        DemoLogin("inspector", "inspector", DEMO_PASSWORD, "Петров Сергей Иванович"),
        DemoLogin("operator", "operator", DEMO_PASSWORD, "Тұрсынов Арман Болатұлы"),
    ]


def enrol_demo_totp(user: User, now: dt.datetime | None = None) -> None:
    """Give a demo staff account a random TOTP secret of its own (others are left alone);
    `flask --app wsgi demo logins` reads it back to print it."""
    if any(grant.role in STAFF_ROLES for grant in user.roles):
        user.totp_secret = pyotp.random_base32()
        user.totp_confirmed_at = now or utcnow()


def demo_second_factor_hint(user: User, now: dt.datetime | None = None) -> str:
    """What `flask demo logins` prints after a staff login: the TOTP key and the code now."""
    if not user.totp_secret or not any(grant.role in STAFF_ROLES for grant in user.roles):
        return ""
    code = pyotp.TOTP(user.totp_secret).at(now or utcnow())
    return f"TOTP key {user.totp_secret} (code now {code}; run `demo logins` again for a new one)"


def _iin(birth: dt.date, female: bool, serial: int) -> str:
    century_gender = (4 if female else 3) if birth.year < 2000 else (6 if female else 5)
    while True:
        first = f"{birth:%y%m%d}{century_gender}{serial % 10000:04d}"
        digit = check_digit(first)
        if digit is not None:
            return first + str(digit)
        serial += 1


def seed_demo(
    session: Session,
    *,
    log_key: LogKey,
    iin_encryption_key: str,
    iin_hmac_key: str,
    students_per_class: int = 25,
    classes: int = 2,
    progress: Callable[[str], None] = lambda _msg: None,
    today: dt.date | None = None,
) -> School | None:
    """Create the demo school; returns None (and changes nothing) when it already exists.

    The first quarter is written and closed; the quarter that holds ``today`` (default: the
    school's today) is written up to yesterday, so a new user sees a quarter under way, and
    one pupil of the first class has missed lessons without excuse this fortnight (the class
    teacher's early warning)."""
    if session.scalar(select(School).where(School.domain == DEMO_DOMAIN)) is not None:
        return None
    rng = random.Random(17)  # noqa: S311 - demo data, reproducible
    school = School(
        name="Алматы қаласының №17 мектеп-гимназиясы", domain=DEMO_DOMAIN, log_vkey=log_key.vkey
    )
    session.add(school)
    session.flush()
    year = SchoolYear(
        school_id=school.id, name="2026-2027", starts_on=QUARTERS[0][0], ends_on=QUARTERS[-1][1]
    )
    session.add(year)
    session.flush()
    terms = [
        Term(school_year_id=year.id, kind="quarter", number=n, starts_on=a, ends_on=b)
        for n, (a, b) in enumerate(QUARTERS, 1)
    ]
    terms += [
        Term(school_year_id=year.id, kind="half", number=n, starts_on=a, ends_on=b)
        for n, (a, b) in enumerate(HALVES, 1)
    ]
    session.add_all(terms)
    session.add_all(
        Holiday(school_year_id=year.id, name=name, starts_on=first, ends_on=last)
        for name, first, last in HOLIDAYS
    )

    users = {}
    for login in demo_logins():
        user = User(
            school_id=school.id,
            username=login.username,
            full_name=login.full_name,
            password_hash=hash_password(DEMO_PASSWORD),  # a salt of its own per account
        )
        user.roles.append(RoleGrant(role=login.role, school_id=school.id))
        if login.role == "class_teacher":
            user.roles.append(RoleGrant(role="teacher", school_id=school.id))
        enrol_demo_totp(user)  # staff need a second factor: `flask demo logins` prints it
        session.add(user)
        users[login.role] = user
    extra_teachers = []
    for name in [
        "Нұрғалиева Гүлнар Әмірқызы",
        "Смирнов Алексей Викторович",
        "Қасымова Мөлдір Ерланқызы",
    ]:
        username = "teacher" + str(len(extra_teachers) + 2)
        user = User(
            school_id=school.id,
            username=username,
            full_name=name,
            password_hash=hash_password(DEMO_PASSWORD),
        )
        user.roles.append(RoleGrant(role="teacher", school_id=school.id))
        enrol_demo_totp(user)
        session.add(user)
        extra_teachers.append(user)
    session.flush()

    subjects = [
        Subject(
            school_id=school.id,
            name=name,
            graded=graded,
            by_half_year=name in HALF_YEAR_SUBJECTS,
        )
        for name, graded, _per_week in SUBJECTS
    ]
    session.add_all(subjects)
    session.flush()
    teachers = [users["teacher"], users["class_teacher"], *extra_teachers]

    progress("classes, students and timetable")
    class_groups = []
    serial = 1
    first_student: Student | None = None
    for index in range(classes):
        name = CLASS_NAMES[index % len(CLASS_NAMES)] + (
            "" if index < len(CLASS_NAMES) else str(index // len(CLASS_NAMES))
        )
        grade_level = int("".join(c for c in name if c.isdigit())[:2])
        class_group = ClassGroup(
            school_id=school.id,
            school_year_id=year.id,
            name=name,
            grade_level=grade_level,
            class_teacher_id=users["class_teacher"].id if index == 0 else None,
            # Б classes are taught in Russian in the demo, the others in Kazakh.
            language="ru" if "Б" in name else "kk",
        )
        session.add(class_group)
        session.flush()
        class_groups.append(class_group)
        ensure_journal_log(session, class_group)
        for number in range(students_per_class):
            female = rng.random() < 0.5
            first = rng.choice(GIRLS if female else BOYS)
            if rng.random() < 0.7:
                last = rng.choice(KAZ_SURNAMES)
                patronymic = rng.choice(BOYS[:12]) + ("қызы" if female else "ұлы")
            else:
                stem = rng.choice(RUS_SURNAMES)
                last = stem + ("а" if female else "")
                patronymic = None
            birth = dt.date(2026 - grade_level - 6, rng.randint(1, 12), rng.randint(1, 28))
            iin = _iin(birth, female, serial)
            serial += 7
            student = Student(
                school_id=school.id,
                last_name=last,
                first_name=first,
                patronymic=patronymic,
                birth_date=birth,
                iin_encrypted=encrypt_iin(iin, iin_encryption_key),
                iin_hmac=iin_lookup_hash(iin, iin_hmac_key),
            )
            if index == 0 and number == 0:
                student.last_name, student.first_name = "Сәрсенбай", "Әлібек"
                first_student = student
            session.add(student)
            session.flush()
            session.add(
                Enrollment(
                    student_id=student.id, class_group_id=class_group.id, starts_on=year.starts_on
                )
            )
        # Timetable: each subject's weekly lessons spread over Monday..Friday, periods 1..7.
        slots = [(weekday, period) for period in range(1, 8) for weekday in range(5)]
        cursor = index  # vary the timetable between classes
        for subject_index, (subject, (_n, _g, per_week)) in enumerate(
            zip(subjects, SUBJECTS, strict=True)
        ):
            teacher = teachers[subject_index % len(teachers)]
            session.add(
                TeachingAssignment(
                    user_id=teacher.id, class_group_id=class_group.id, subject_id=subject.id
                )
            )
            for _ in range(per_week):
                weekday, period = slots[cursor % len(slots)]
                cursor += 1
                session.add(
                    TimetableSlot(
                        class_group_id=class_group.id,
                        subject_id=subject.id,
                        weekday=weekday,
                        period=period,
                    )
                )
        session.flush()
        generate_lessons(session, class_group, terms)
        # The assessment plan: a СОЧ and two СОР in every graded term.
        session.add_all(
            AssessmentPlan(
                class_group_id=class_group.id,
                subject_id=subject.id,
                term_id=term.id,
                soch_planned=True,
                sor_count=2,
            )
            for subject in subjects
            if subject.graded
            for term in terms
            if term.kind == ("half" if subject.by_half_year else "quarter")
        )

    assert first_student is not None
    users["parent"].roles.append(
        RoleGrant(role="parent", school_id=school.id, student_id=first_student.id)
    )
    users["student"].roles.append(
        RoleGrant(role="student", school_id=school.id, student_id=first_student.id)
    )
    # Teacher assignments for the demo teacher login cover every class's mathematics.
    ensure_ledger_log(session, school)
    session.flush()

    progress("signed entries for the first quarter")
    device_keys = {}
    for teacher in teachers:
        private_key = Ed25519PrivateKey.generate()
        alg, raw = ledger_entry.public_key_bytes(private_key.public_key())
        kid = ledger_entry.key_id(alg, raw)
        session.add(
            DeviceKey(kid=kid, user_id=teacher.id, alg=alg, public_key=raw, label="demo device")
        )
        device_keys[teacher.id] = (kid, private_key, [0])
    session.flush()
    q1 = terms[0]
    recorder = Recorder(session, deferred=True)
    for class_group in class_groups:
        _write_quarter(session, recorder, rng, class_group, q1, subjects, device_keys)
    recorder.flush()
    # The admin closes the first quarter: every journal is checkpointed and the closure is
    # recorded in the school ledger log.
    close_term(
        session,
        q1,
        log_key,
        closed_by=users["school_admin"],
        now=dt.datetime.combine(q1.ends_on + dt.timedelta(days=1), dt.time(9), dt.UTC),
    )
    today = today or today_at(session, school.id)
    current = next((t for t in terms[1:4] if t.starts_on < today <= t.ends_on), None)
    if current is not None:
        progress("signed entries for the current quarter, up to yesterday")
        recorder = Recorder(session, deferred=True)
        for number, class_group in enumerate(class_groups):
            _write_quarter(
                session,
                recorder,
                rng,
                class_group,
                current,
                subjects,
                device_keys,
                before=today,
                often_absent=1 if number == 0 else None,
            )
        recorder.flush()
        # As the checkpoint job would have done by now: each journal signed at its size.
        for class_group in class_groups:
            cut_checkpoint(session, ensure_journal_log(session, class_group), log_key)
    return school


TOPICS = [
    "Кіріспе сабақ",
    "Қайталау",
    "Жаңа тақырып: теңдеулер",
    "Практикалық жұмыс",
    "Өзіндік жұмыс",
    "Бөлшектер",
    "Мәтінмен жұмыс",
    "Зертханалық жұмыс",
    "Повторение пройденного",
    "Контрольная работа: разбор ошибок",
]


def _write_quarter(
    session: Session,
    recorder: Recorder,
    rng: random.Random,
    class_group: ClassGroup,
    term: Term,
    subjects: list[Subject],
    device_keys: dict[int, tuple[str, Ed25519PrivateKey, list[int]]],
    *,
    before: dt.date | None = None,
    often_absent: int | None = None,
) -> None:
    """Sign a term's topics, attendance and marks, for the lessons before ``before`` if given.
    The pupil at index ``often_absent`` misses the first lesson of three days in the last two
    weeks before ``before`` without excuse."""
    log = ensure_journal_log(session, class_group)
    students = list(
        session.scalars(
            select(Enrollment.student_id)
            .where(Enrollment.class_group_id == class_group.id)
            .order_by(Enrollment.student_id)
        )
    )
    teacher_of = dict(
        session.execute(
            select(TeachingAssignment.subject_id, TeachingAssignment.user_id).where(
                TeachingAssignment.class_group_id == class_group.id
            )
        ).all()
    )
    subject_by_id = {s.id: s for s in subjects}
    lessons = list(
        session.scalars(
            select(Lesson)
            .where(
                Lesson.class_group_id == class_group.id,
                Lesson.date >= term.starts_on,
                Lesson.date <= term.ends_on,
            )
            .order_by(Lesson.date, Lesson.period)
        )
    )
    by_subject: dict[int, list[Lesson]] = {}
    for lesson in lessons:
        by_subject.setdefault(lesson.subject_id, []).append(lesson)
    truant = None
    if often_absent is not None and len(students) > often_absent:
        truant = students[often_absent]
    truant_lessons: set[int] = set()
    if truant is not None and before is not None:
        first_of_day: dict[dt.date, int] = {}
        for lesson in lessons:
            if before - dt.timedelta(days=13) <= lesson.date < before:
                first_of_day.setdefault(lesson.date, lesson.id)
        truant_lessons = set(list(first_of_day.values())[-3:])

    for subject_id, subject_lessons in by_subject.items():
        subject = subject_by_id[subject_id]
        author = teacher_of[subject_id]
        kid, private_key, counter = device_keys[author]
        sor_lessons = {
            subject_lessons[len(subject_lessons) // 3].id,
            subject_lessons[2 * len(subject_lessons) // 3].id,
        }
        soch_lesson = subject_lessons[-2].id if len(subject_lessons) > 3 else None

        def write(
            fields: dict[str, Any],
            when: dt.datetime,
            kid: str = kid,
            private_key: Ed25519PrivateKey = private_key,
            counter: list[int] = counter,
            author: int = author,
        ) -> None:
            payload = {
                "v": 1,
                "entry_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "journal": log.origin,
                "device_id": kid,
                "device_seq": counter[0],
                "author": author,
                "created_at": ledger_entry.format_timestamp(when),
                **fields,
            }
            counter[0] += 1
            sig = ledger_entry.sign_payload(private_key, ledger_entry.canonical_json(payload))
            recorder.now = when + dt.timedelta(minutes=5)
            recorder.record(
                {
                    "payload": payload,
                    "alg": "ed25519",
                    "kid": kid,
                    "sig": base64.b64encode(sig).decode(),
                }
            )

        for lesson in subject_lessons:
            if before is not None and lesson.date >= before:
                break  # SOR and SOCh lessons were chosen over the whole term, as a plan is
            when = dt.datetime.combine(lesson.date, dt.time(8 + lesson.period), dt.UTC)
            write(
                {
                    "kind": "topic",
                    "lesson": lesson.id,
                    "topic": rng.choice(TOPICS),
                    "homework": f"§{rng.randint(1, 40)}, {rng.randint(1, 12)}-жаттығу",
                },
                when,
            )
            for student_id in students:
                roll = rng.random()
                if student_id == truant and lesson.id in truant_lessons:
                    write(
                        {
                            "kind": "attendance",
                            "lesson": lesson.id,
                            "student": student_id,
                            "value": "absent",
                        },
                        when,
                    )
                    continue
                if roll < 0.04:
                    write(
                        {
                            "kind": "attendance",
                            "lesson": lesson.id,
                            "student": student_id,
                            "value": rng.choice(["absent", "sick", "late", "excused"]),
                        },
                        when,
                    )
                    continue
                if not subject.graded:
                    continue
                if lesson.id in sor_lessons:
                    write(
                        {
                            "kind": "grade",
                            "lesson": lesson.id,
                            "student": student_id,
                            "component": "SOR",
                            "value": {"points": rng.randint(6, 15), "max": 15},
                        },
                        when,
                    )
                elif lesson.id == soch_lesson:
                    write(
                        {
                            "kind": "grade",
                            "lesson": lesson.id,
                            "student": student_id,
                            "component": "SOCh",
                            "value": {"points": rng.randint(12, 30), "max": 30},
                        },
                        when,
                    )
                elif roll < 0.25:
                    write(
                        {
                            "kind": "grade",
                            "lesson": lesson.id,
                            "student": student_id,
                            "component": "FO",
                            "value": {"score": rng.randint(4, 10)},
                        },
                        when,
                    )

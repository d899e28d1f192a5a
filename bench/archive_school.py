"""Benchmark: archive a 1,000-student school year to SeaweedFS.

    .venv/bin/python bench/archive_school.py                # 40 classes x 25 students, a year
    .venv/bin/python bench/archive_school.py --quick        # 4 classes: a smoke run
    .venv/bin/python bench/archive_school.py --no-tsa       # without RFC 3161 timestamps
    .venv/bin/python bench/archive_school.py --full-readback  # each bag read back and verified
    .venv/bin/python bench/archive_school.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

The school's 2024-2025 year is over: four quarters of signed entries (a topic per lesson; per
student 4 % absences, a formative grade in about one lesson of five, two SOR and one SOCh per
subject per quarter: the demo school's mix), each quarter closed with a checkpoint. Building that
data is not timed. The timed part is one ``archive run`` into a fresh SeaweedFS bucket (``weed
mini`` on loopback, a local ``openssl ts`` TSA unless ``--no-tsa``): 5 journal bags per class and
the ledger bag, each built, timestamped, validated, uploaded and checked as the run checks it by
default (``store``: SeaweedFS verified the SHA-256 and MD5 sent with the PUT, and one HEAD of the
pinned version shows size, checksums, COMPLIANCE mode and retain-until equal to the staged tar's),
then sealed. The full read-back of every bag is ``archive audit``'s job and is not timed here;
``--full-readback`` times the run that reads each bag back and verifies it completely instead
(in a worker process, overlapped with the next bag's build).

It prints seconds (and where they went), megabytes stored, and the ratio of the run's total time
to the time of building the same PDFs alone in the same process. PDFs come through the archive's
one hook, ``archive.services.printouts_for`` (the exports layer's signed PDF/A printouts).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import archive.readback as archive_readback
import archive.services as archive_services
from archive.services import ArchiveSettings, run_archive
from archive.storage import S3ObjectLockStorage
from archive.timestamps import HttpTimestampAuthority
from auth.models import DeviceKey, RoleGrant, User
from journal.db import db
from journal.keys import create_demo_pdf_signer, create_log_key
from journal.ledger import entry as ledger_entry
from journal.ledger import merkle
from journal.models import (
    ClassGroup,
    Enrollment,
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
from journal.payloads import check_payload
from journal.services import cut_checkpoint, ensure_journal_log, ensure_ledger_log
from tests.archive.services import start_local_tsa, start_seaweedfs
from tests.conftest import make_app, migrate

YEAR = ("2024-2025", dt.date(2024, 9, 2), dt.date(2025, 5, 25))
QUARTERS = [
    (dt.date(2024, 9, 2), dt.date(2024, 10, 27)),
    (dt.date(2024, 11, 4), dt.date(2024, 12, 28)),
    (dt.date(2025, 1, 8), dt.date(2025, 3, 19)),
    (dt.date(2025, 3, 30), dt.date(2025, 5, 25)),
]
SUBJECTS = [  # name, graded, lessons per week (the demo school's timetable)
    ("Қазақ тілі", True, 4),
    ("Орыс тілі мен әдебиеті", True, 3),
    ("Математика", True, 5),
    ("Информатика", True, 2),
    ("Қазақстан тарихы", True, 2),
    ("Жаратылыстану", True, 3),
    ("Дене шынықтыру", True, 3),
    ("Сынып сағаты", False, 1),
]
NAMES = ["Әсел", "Нұрлан", "Ұлжан", "Іңкәр", "Қанат", "Һадия", "Ғалым", "Өмірлі", "Дана", "Иван"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- synthetic school


class SchoolBuilder:
    """Writes the school with Core inserts: the same leaves the Recorder writes, much faster."""

    def __init__(self, session: Any, keys_dir: str, classes: int, students: int) -> None:
        self.session = session
        self.rng = random.Random(2025)  # noqa: S311 - synthetic data
        domain = f"bench-{secrets.token_hex(4)}.example.kz"
        self.log_key = create_log_key(keys_dir, domain)
        # Bags carry signed printouts: the school needs its PDF key as a real one does.
        create_demo_pdf_signer(keys_dir, domain, "Бенчмарк №1 мектебі")
        self.school = School(name="Бенчмарк №1 мектебі", domain=domain, log_vkey=self.log_key.vkey)
        session.add(self.school)
        session.flush()
        self.year = SchoolYear(
            school_id=self.school.id, name=YEAR[0], starts_on=YEAR[1], ends_on=YEAR[2]
        )
        session.add(self.year)
        session.flush()
        self.terms = [
            Term(school_year_id=self.year.id, kind="quarter", number=n, starts_on=a, ends_on=b)
            for n, (a, b) in enumerate(QUARTERS, 1)
        ]
        session.add_all(self.terms)
        self.subjects = [
            Subject(school_id=self.school.id, name=name, graded=graded)
            for name, graded, _ in SUBJECTS
        ]
        session.add_all(self.subjects)
        session.flush()
        self.teachers: list[tuple[User, str, Ed25519PrivateKey, list[int]]] = []
        for n in range(len(SUBJECTS)):
            user = User(
                school_id=self.school.id, username=f"{domain}-t{n}", full_name=f"Мұғалім {n}"
            )
            user.roles.append(RoleGrant(role="teacher", school_id=self.school.id))
            session.add(user)
            session.flush()
            key = Ed25519PrivateKey.generate()
            alg, raw = ledger_entry.public_key_bytes(key.public_key())
            kid = ledger_entry.key_id(alg, raw)
            session.add(DeviceKey(kid=kid, user_id=user.id, alg=alg, public_key=raw))
            self.teachers.append((user, kid, key, [0]))
        session.flush()
        self.classes: list[tuple[ClassGroup, Log, list[int]]] = []
        for index in range(classes):
            self._add_class(index, students)
        ensure_ledger_log(session, self.school)
        session.flush()

    def _add_class(self, index: int, students: int) -> None:
        session = self.session
        group = ClassGroup(
            school_id=self.school.id,
            school_year_id=self.year.id,
            name=f"{5 + index % 7}-{index}",
            grade_level=5 + index % 7,
        )
        session.add(group)
        session.flush()
        rows = [
            Student(
                school_id=self.school.id,
                last_name=f"{self.rng.choice(NAMES)}ов",
                first_name=self.rng.choice(NAMES),
                birth_date=dt.date(2013, 1 + n % 12, 1 + n % 28),
            )
            for n in range(students)
        ]
        session.add_all(rows)
        session.flush()
        session.add_all(
            Enrollment(student_id=s.id, class_group_id=group.id, starts_on=YEAR[1]) for s in rows
        )
        for subject, (user, *_rest) in zip(self.subjects, self.teachers, strict=True):
            session.add(
                TeachingAssignment(user_id=user.id, class_group_id=group.id, subject_id=subject.id)
            )
        session.flush()
        self.classes.append((group, ensure_journal_log(session, group), [s.id for s in rows]))

    def write_quarter(self, term: Term) -> int:
        """Lessons and entries of one quarter for every class, then close it with a checkpoint."""
        written = 0
        slots = [(weekday, period) for period in range(1, 8) for weekday in range(5)]
        for index, (group, journal, students) in enumerate(self.classes):
            timetable: dict[tuple[int, int], int] = {}
            cursor = index
            for subject_index, (_name, _graded, per_week) in enumerate(SUBJECTS):
                for _ in range(per_week):
                    timetable[slots[cursor % len(slots)]] = subject_index
                    cursor += 1
            lessons = []
            day = term.starts_on
            while day <= term.ends_on:
                for (weekday, period), subject_index in sorted(timetable.items()):
                    if weekday == day.weekday():
                        lessons.append((day, period, subject_index))
                day += dt.timedelta(days=1)
            ids = self.session.scalars(
                sa.insert(Lesson).returning(Lesson.id, sort_by_parameter_order=True),
                [
                    {
                        "class_group_id": group.id,
                        "subject_id": self.subjects[s].id,
                        "date": d,
                        "period": p,
                    }
                    for d, p, s in lessons
                ],
            ).all()
            written += self._entries(journal, students, list(zip(ids, lessons, strict=True)))
        closed_at = dt.datetime.combine(term.ends_on + dt.timedelta(days=1), dt.time(9), dt.UTC)
        term.closed_at = closed_at
        self.session.flush()
        return written

    def _entries(self, journal: Log, students: list[int], lessons: list[tuple[int, Any]]) -> int:
        rng = self.rng
        rows = []
        seq = journal.size
        by_subject: dict[int, list[int]] = {}
        for lesson_id, (_d, _p, s) in lessons:
            by_subject.setdefault(s, []).append(lesson_id)
        special = {}
        for ids in by_subject.values():
            special[ids[len(ids) // 3]] = "SOR"
            special[ids[2 * len(ids) // 3]] = "SOR"
            if len(ids) > 3:
                special[ids[-2]] = "SOCh"

        def add(fields: dict[str, Any], when: dt.datetime, subject_index: int) -> None:
            nonlocal seq
            user, kid, key, counter = self.teachers[subject_index]
            payload = {
                "v": 1,
                "entry_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "journal": journal.origin,
                "device_id": kid,
                "device_seq": counter[0],
                "author": user.id,
                "created_at": ledger_entry.format_timestamp(when),
                **fields,
            }
            counter[0] += 1
            facts = check_payload(payload)
            sig = ledger_entry.sign_payload(key, ledger_entry.canonical_json(payload))
            received = when + dt.timedelta(minutes=5)
            leaf = ledger_entry.leaf_bytes(
                seq, ledger_entry.format_timestamp(received), payload, "ed25519", kid, sig
            )
            rows.append(
                {
                    "log_id": journal.id,
                    "seq": seq,
                    "entry_id": facts.entry_id,
                    "kind": facts.kind,
                    "author_id": user.id,
                    "device_kid": kid,
                    "device_seq": facts.device_seq,
                    "lesson_id": facts.lesson,
                    "student_id": facts.student,
                    "cell": facts.cell,
                    "received_at": received,
                    "leaf": leaf,
                    "leaf_hash": merkle.leaf_hash(leaf),
                }
            )
            seq += 1

        for lesson_id, (day, period, s) in lessons:
            when = dt.datetime.combine(day, dt.time(7 + period), dt.UTC)
            add(
                {"kind": "topic", "lesson": lesson_id, "topic": "Тақырып", "homework": "§1"},
                when,
                s,
            )
            for student in students:
                roll = rng.random()
                if roll < 0.04:
                    value = rng.choice(["absent", "sick", "late", "excused"])
                    add(
                        {
                            "kind": "attendance",
                            "lesson": lesson_id,
                            "student": student,
                            "value": value,
                        },
                        when,
                        s,
                    )
                elif not SUBJECTS[s][1]:
                    continue
                elif special.get(lesson_id) == "SOR":
                    add(
                        {
                            "kind": "grade",
                            "lesson": lesson_id,
                            "student": student,
                            "component": "SOR",
                            "value": {"points": rng.randint(6, 15), "max": 15},
                        },
                        when,
                        s,
                    )
                elif special.get(lesson_id) == "SOCh":
                    add(
                        {
                            "kind": "grade",
                            "lesson": lesson_id,
                            "student": student,
                            "component": "SOCh",
                            "value": {"points": rng.randint(12, 30), "max": 30},
                        },
                        when,
                        s,
                    )
                elif roll < 0.25:
                    add(
                        {
                            "kind": "grade",
                            "lesson": lesson_id,
                            "student": student,
                            "component": "FO",
                            "value": {"score": rng.randint(4, 10)},
                        },
                        when,
                        s,
                    )
        for start in range(0, len(rows), 5000):
            self.session.execute(sa.insert(Entry), rows[start : start + 5000])
        self.session.execute(sa.update(Log).where(Log.id == journal.id).values(size=seq))
        self.session.refresh(journal)
        return len(rows)

    def checkpoint(self, term: Term, timestamper: Any) -> None:
        """Seal the quarter as ``close_term`` does: a checkpoint and a closure per journal (the
        printouts find the quarter's entries through the closure)."""
        for _group, journal, _students in self.classes:
            checkpoint = cut_checkpoint(
                self.session, journal, self.log_key, now=term.closed_at, timestamper=timestamper
            )
            self.session.add(
                TermClosure(
                    term_id=term.id,
                    log_id=journal.id,
                    checkpoint_size=checkpoint.size,
                    closed_at=term.closed_at,
                )
            )
        self.session.flush()


# --------------------------------------------------------------------------- the run


PHASES = (
    "printouts_for", "build_staged_bag", "upload_bag", "confirm_upload", "read_back", "seal_bag"
)  # fmt: skip
# confirm_upload is the default check (a HEAD and a hash of the staged tar). read_back (only with
# --full-readback) is the run's own wait for the stored bytes; the bag's check runs in a worker
# process beside the next bag's build (archive/readback.py), so only its last one adds to the total.
_MODULES = {"read_back": archive_readback}


class PhaseTimer:
    """Wraps the archive's step functions for one run and adds up the time spent in each."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.pdfs = 0
        self.originals = {
            name: getattr(_MODULES.get(name, archive_services), name) for name in PHASES
        }

    def __enter__(self) -> PhaseTimer:
        for name, original in self.originals.items():
            setattr(_MODULES.get(name, archive_services), name, self._timed(name, original))
        return self

    def __exit__(self, *_exc: object) -> None:
        for name, original in self.originals.items():
            setattr(_MODULES.get(name, archive_services), name, original)

    def _timed(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                result = original(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
            if name == "printouts_for":
                self.pdfs += len(result)
            return result

        return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="4 classes (a smoke run)")
    parser.add_argument("--students", type=int, default=25, help="students per class")
    parser.add_argument("--no-tsa", action="store_true", help="no RFC 3161 timestamps")
    parser.add_argument(
        "--full-readback",
        action="store_true",
        help="the run reads each bag back and verifies it completely (archive run --full-readback)",
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server URL: a scratch database is made on it (default: SQLite file)",
    )
    args = parser.parse_args()
    if args.quick:
        args.classes = 4
    work = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    stops: list[Callable[[], None]] = []
    admin = None
    database = None
    try:
        if args.database_url:
            database = f"bench_archive_{secrets.token_hex(4)}"
            admin = sa.create_engine(args.database_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{database}"')
            url = args.database_url.rsplit("/", 1)[0] + "/" + database
        else:
            url = f"sqlite:///{work / 'bench.db'}"
        log(f"starting SeaweedFS{'' if args.no_tsa else ' and a local TSA'} in {work}")
        endpoint, access_key, secret_key, stop = start_seaweedfs(work / "seaweedfs")
        stops.append(stop)
        timestamper, ca = None, None
        if not args.no_tsa:
            tsa_url, ca, _tsa_cert, stop_tsa = start_local_tsa(work / "tsa")
            stops.append(stop_tsa)
            timestamper = HttpTimestampAuthority(tsa_url)
        app = make_app(url, work / "keys", ARCHIVE_STAGING_DIR=str(work / "staging"))
        migrate(app)
        run(app, args, work, endpoint, access_key, secret_key, timestamper, ca)
        app.extensions["journal_db"].engine.dispose()
    finally:
        for stop in reversed(stops):
            stop()
        if admin is not None:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.dispose()
        shutil.rmtree(work, ignore_errors=True)


def run(
    app: Any,
    args: argparse.Namespace,
    work: Path,
    endpoint: str,
    access_key: str,
    secret_key: str,
    timestamper: Any,
    ca: Path | None,
) -> None:
    import boto3
    from botocore.config import Config

    with app.app_context():
        session = db.session
        log(f"writing a {args.classes * args.students}-student school year (not timed)")
        start = time.perf_counter()
        builder = SchoolBuilder(session, app.config["KEYS_DIR"], args.classes, args.students)
        entries = 0
        for term in builder.terms:
            entries += builder.write_quarter(term)
            builder.checkpoint(term, timestamper)
            session.commit()
            log(f"  quarter {term.number}: {entries} entries so far")
        log(f"  built in {time.perf_counter() - start:.1f} s")

        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )
        storage = S3ObjectLockStorage(client, "archive-bench")
        settings = ArchiveSettings(
            storage=storage,
            staging_dir=work / "staging",
            keys_dir=Path(app.config["KEYS_DIR"]),
            timestamper=timestamper,
            tsa_ca_certs=ca,
            full_readback=args.full_readback,
        )
        log("archive run (timed)")
        with PhaseTimer() as phases:
            start, cpu = time.perf_counter(), time.process_time()
            [outcome] = run_archive(session, settings)
            total, total_cpu = time.perf_counter() - start, time.process_time() - cpu
        if outcome.error:
            raise SystemExit(f"archive run failed: {outcome.error}")
        objects = list(storage.list())
        stored = sum(obj.size for obj in objects)

        pdf_alone = None
        if phases.pdfs:
            log("building the same PDFs alone (timed)")
            printouts_for = archive_services.printouts_for
            start, cpu = time.perf_counter(), time.process_time()
            for group, _journal, _students in builder.classes:
                for term in builder.terms:
                    printouts_for(session, group, term)
                printouts_for(session, group, None)  # the year bag's
                printouts_for(session, group, None)  # and the ledger bag's copy
            pdf_alone, pdf_alone_cpu = time.perf_counter() - start, time.process_time() - cpu
        session.rollback()

    print(f"school: {args.classes} classes x {args.students} students, {entries} entries")
    print(f"bags sealed: {len(outcome.sealed)} ({len(objects)} objects in the bucket)")
    print(f"archive run: {total:.1f} s ({total / max(len(outcome.sealed), 1) * 1000:.0f} ms/bag)")
    print(f"stored: {stored / 1e6:.1f} MB")
    seconds = phases.seconds
    build = seconds["build_staged_bag"] - seconds["printouts_for"]
    checks = sorted(set(outcome.checks.values()))
    print(f"check after upload: {', '.join(checks)} (archive/readback.py)")
    print(
        f"  of which: building bags {build:.1f} s, PDFs {seconds['printouts_for']:.1f} s, "
        f"uploading {seconds['upload_bag']:.1f} s, store check {seconds['confirm_upload']:.1f} s, "
        f"reading back {seconds['read_back']:.1f} s (verified in a worker, overlapped), "
        f"sealing {seconds['seal_bag']:.1f} s"
    )
    print(f"printouts in the run: {phases.pdfs} PDFs")
    if pdf_alone:
        # CPU seconds of this process (not SeaweedFS's, the TSA's or a worker's): steadier than
        # wall-clock time on a shared machine, for comparing changes.
        print(
            f"CPU of this process: run {total_cpu:.1f} s, PDFs alone {pdf_alone_cpu:.1f} s "
            f"(ratio {total_cpu / pdf_alone_cpu:.2f})"
        )
        print(f"PDFs alone: {pdf_alone:.1f} s; ratio total / PDFs alone: {total / pdf_alone:.2f}")
    else:
        print(
            "ratio total / PDFs alone: n/a (archive.services.printouts_for made no PDFs: the "
            "exports hook is not wired)"
        )


if __name__ == "__main__":
    main()

"""A live journal for the reliability tests and the load bench: a throwaway PostgreSQL database,
a school seeded with one class × subject per teacher, and gunicorn on a free loopback port.

``LiveJournal`` holds what the server and the in-process app share (database, keys, secret);
``Gunicorn`` starts, SIGKILLs and restarts the server; ``seed_teachers`` makes the accounts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask

from ..conftest import (
    PG_ADMIN_URL,
    TEST_IIN_ENCRYPTION_KEY,
    TEST_IIN_HMAC_KEY,
    Databases,
    make_app,
    migrate,
)

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).parent / "gunicorn"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveJournal:
    """A migrated PostgreSQL database and the in-process app on it (for seeding and checks)."""

    database_url: str
    database_name: str
    work_dir: Path
    secret_key: str
    app: Flask

    @classmethod
    def create(cls, databases: Databases, work_dir: Path) -> LiveJournal:
        url = databases.create("postgresql")
        secret = secrets.token_hex(24)
        app = make_app(url, work_dir / "keys", SECRET_KEY=secret)
        migrate(app)
        return cls(url, sa.make_url(url).database or "", work_dir, secret, app)

    @classmethod
    def on(cls, database_url: str, work_dir: Path) -> LiveJournal:
        """A live journal on a database that exists already (a private cluster's)."""
        secret = secrets.token_hex(24)
        app = make_app(database_url, work_dir / "keys", SECRET_KEY=secret)
        migrate(app)
        return cls(database_url, sa.make_url(database_url).database or "", work_dir, secret, app)

    @property
    def keys_dir(self) -> Path:
        return Path(self.app.config["KEYS_DIR"])

    def environment(self) -> dict[str, str]:
        """The ``JOURNAL_*`` settings gunicorn's ``wsgi:app`` reads (production mode, no
        ``TESTING``: the secrets are real, the session cookie may travel over plain HTTP)."""
        return {
            **os.environ,
            "JOURNAL_INSTANCE": str(self.work_dir / "instance"),
            "JOURNAL_DATABASE_URL": self.database_url,
            "JOURNAL_SECRET_KEY": self.secret_key,
            "JOURNAL_IIN_ENCRYPTION_KEY": TEST_IIN_ENCRYPTION_KEY,
            "JOURNAL_IIN_HMAC_KEY": TEST_IIN_HMAC_KEY,
            "JOURNAL_KEYS_DIR": str(self.keys_dir),
            "JOURNAL_ARCHIVE_LOCAL_ROOT": str(self.work_dir / "archive"),
            "JOURNAL_BACKUP_DIR": str(self.work_dir / "backups"),
            "JOURNAL_SESSION_COOKIE_SECURE": "false",
            "JOURNAL_PUBLIC_URL": "http://127.0.0.1",
        }

    def session_cookie(self, teacher: Teacher) -> str:
        """The cookie of a teacher signed in past the second factor, signed with the app's key
        (what /login and the second-factor form leave in the browser): a new server-side
        session, committed to the journal's database."""
        from auth.models import User
        from journal.db import db
        from tests.factories import browser_state

        with self.app.app_context():
            state = browser_state(db.session, db.session.get_one(User, teacher.user_id))
            db.session.commit()
        serializer = self.app.session_interface.get_signing_serializer(self.app)  # type: ignore[attr-defined]
        return str(serializer.dumps(state))

    def terminate_backends(self, *, wait: float = 0) -> int:
        """Cut every PostgreSQL connection to this database, as a PostgreSQL restart does
        (the shared cluster itself stays up: other tests use it). Returns how many of the
        servers' connections were cut. ``wait``: first wait up to so many seconds for a server
        to hold one (after a cut, a worker connects again only on its next request)."""
        # This process's own idle connections (seeding, cookies) are not a server's.
        self.app.extensions["journal_db"].engine.dispose()
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        others = "FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"
        clients = f"SELECT count(*) {others} AND backend_type = 'client backend'"
        try:
            with admin.connect() as conn:
                deadline = time.monotonic() + wait
                while (
                    time.monotonic() < deadline
                    and not conn.execute(sa.text(clients), {"name": self.database_name}).scalar()
                ):
                    time.sleep(0.02)
                cut = conn.execute(
                    sa.text(f"SELECT backend_type, pg_terminate_backend(pid) {others}"),
                    {"name": self.database_name},
                ).all()
                return sum(1 for backend_type, _ in cut if backend_type == "client backend")
        finally:
            admin.dispose()

    def audit(self, made: Mapping[str, Collection[str]], *, verify: bool = True) -> Audit:
        """Compare each journal's log with the entry ids its clients made (origin -> ids): what
        is missing (lost), stored more than once (doubled) or there unasked (unexpected). Each
        log must be gap-free; with ``verify``, a checkpoint is cut and the whole journal is
        verified (leaves, signatures, tree, every checkpoint and consistency proof)."""
        from journal.db import db
        from journal.keys import load_log_key
        from journal.models import Entry, Log, School
        from journal.services import cut_checkpoint, verify_journal

        result = Audit()
        with self.app.app_context():
            session = db.session
            for origin, wanted in made.items():
                log = session.scalars(sa.select(Log).where(Log.origin == origin)).one()
                rows = session.execute(
                    sa.select(Entry.entry_id, Entry.seq)
                    .where(Entry.log_id == log.id)
                    .order_by(Entry.seq)
                ).all()
                stored = Counter(row.entry_id for row in rows)
                wanted_ids = set(wanted)
                result.entries += len(rows)
                result.lost += len(wanted_ids - stored.keys())
                result.doubled += sum(count - 1 for count in stored.values())
                result.unexpected += len(stored.keys() - wanted_ids)
                if [row.seq for row in rows] != list(range(len(rows))) or log.size != len(rows):
                    result.problems.append(f"{origin}: seqs are not 0..{log.size - 1}")
                if not verify:
                    continue
                school = session.get_one(School, log.school_id)
                checkpoint = cut_checkpoint(
                    session, log, load_log_key(self.keys_dir, school.domain)
                )
                session.commit()
                report = verify_journal(session, log)
                if not report.ok:
                    result.problems.append(report.summary())
                elif report.root != checkpoint.root_hash or (
                    checkpoint.size not in report.checkpoints_checked
                ):
                    result.problems.append(f"{origin}: the root does not match its checkpoint")
                result.verified += 1
        return result

    def dispose(self) -> None:
        self.app.extensions["journal_db"].engine.dispose()


def postgresql_bin_dir() -> Path | None:
    """The server binaries of the newest PostgreSQL installed from Debian's packages."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb in a temporary folder, loopback, a free port)
    that a test may really stop and start: the shared cluster on 5432 serves other tests.
    As root, the server runs as the ``postgres`` user, as Debian's own clusters do.

    Replication: ``create_standby`` makes a streaming standby of it (``pg_basebackup -R``),
    ``require_synchronous_standby`` makes every commit wait until the standby has applied it
    (``synchronous_commit = remote_apply``), ``kill`` is the machine dying (SIGKILL of the
    postmaster and every backend) and ``promote`` turns a standby into the primary."""

    def __init__(self, bin_dir: Path, data_dir: Path, *, port: int | None = None) -> None:
        self.bin_dir = bin_dir
        self.data_dir = data_dir
        self.port = port or free_port()
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/journal"

    def admin_engine(self) -> sa.Engine:
        """An autocommit engine on the cluster's ``postgres`` database (dispose it after use)."""
        return sa.create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
            isolation_level="AUTOCOMMIT",
            poolclass=sa.NullPool,
        )

    def query(self, sql: str, **params: object) -> list[sa.Row[tuple[object, ...]]]:
        engine = self.admin_engine()
        try:
            with engine.connect() as conn:
                result = conn.execute(sa.text(sql), params)
                return list(result.all()) if result.returns_rows else []
        finally:
            engine.dispose()

    def _run(self, *command: str, timeout: float = 120) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run(
            [*prefix, *command], capture_output=True, text=True, timeout=timeout, cwd="/"
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr or done.stdout}")

    def create(self) -> None:
        self.data_dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.data_dir.parent, "postgres", "postgres")
            shutil.chown(self.data_dir, "postgres", "postgres")
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
            "-A", "trust", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        self.start()
        self._run(
            str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
            "-U", "postgres", "journal",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir}"
        self._run(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-o", options,
            "-l", str(self.data_dir / "server.log"), "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a service restart (clients are disconnected, work is flushed);
        ``immediate``: the server dies as in a crash and replays its WAL when it starts."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()
        self.restarts += 1

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError, RuntimeError):
            self.stop("immediate")
        self.kill()  # whatever is left (a stop that failed half-way)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- replication ---------------------------------------------------------------------------

    def create_standby(self, data_dir: Path, *, port: int | None = None) -> PrivatePostgres:
        """A hot standby streaming from this cluster: ``pg_basebackup -R`` (which writes
        ``standby.signal`` and ``primary_conninfo``), started and caught up. Its own
        ``synchronous_standby_names`` is cleared: promoted, it must not wait for a standby it
        does not have yet (``require_synchronous_standby`` on it once it has one)."""
        standby = PrivatePostgres(self.bin_dir, data_dir, port=port)
        data_dir.mkdir(mode=0o700)
        if os.geteuid() == 0:
            shutil.chown(data_dir, "postgres", "postgres")
        self._run(
            str(self.bin_dir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port),
            "-U", "postgres", "-D", str(data_dir), "-R", "-X", "stream", "-c", "fast",
            "--no-sync",
        )  # fmt: skip
        with (data_dir / "postgresql.auto.conf").open("a") as conf:
            conf.write("synchronous_standby_names = ''\n")
        standby.start()
        standby.wait_until(
            "SELECT pg_is_in_recovery() AND EXISTS "
            "(SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')"
        )
        return standby

    def require_synchronous_standby(self, timeout: float = 30) -> None:
        """Every commit from now on waits until a standby has applied it (its reader sees it)."""
        self.query("ALTER SYSTEM SET synchronous_standby_names = '*'")
        self.query("ALTER SYSTEM SET synchronous_commit = 'remote_apply'")
        self.query("SELECT pg_reload_conf()")
        self.wait_until(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync') "
            "AND current_setting('synchronous_commit') = 'remote_apply'",
            timeout,
        )

    def wait_until(self, sql: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.query(sql)[0][0]:
                    return
            except sa.exc.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"not true within {timeout} s: {sql}")
            time.sleep(0.05)

    @contextlib.contextmanager
    def replication_stalled(self) -> Iterator[None]:
        """On a primary: its WAL sender stops (SIGSTOP) for the block, as when the link to the
        standby stalls (stopping the standby's receiver instead would not do: the kernel still
        fills its socket with the WAL). A primary that waits for the standby's apply answers no
        commit meanwhile; one that does not acknowledges commits the standby never gets."""
        pid = int(self.query("SELECT pid FROM pg_stat_replication")[0][0])
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def promote(self) -> None:
        """``pg_ctl promote``: the standby ends recovery and takes writes."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w", "promote")

    def kill(self) -> None:
        """The machine dies: SIGKILL to the postmaster and each of its processes at once
        (backends mid-commit, the WAL sender), no shutdown checkpoint. The shared-memory
        segment the dead postmaster leaves is removed, as a reboot would."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            postmaster = int(lines[0])
        except (OSError, ValueError, IndexError):
            return
        processes = [postmaster, *children_of(postmaster)]
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in processes):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if len(lines) > 6 and len(lines[6].split()) == 2 and shutil.which("ipcrm"):
            # "shm key, shm id": the segment outlives its processes until removed.
            subprocess.run(["ipcrm", "-m", lines[6].split()[1]], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            (self.data_dir / "postmaster.pid").unlink()


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def multi_host_url(*clusters: PrivatePostgres, database: str = "journal") -> str:
    """The URL of the one cluster among these that takes writes (libpq tries the hosts in
    order and keeps the first that is not read-only): what the app is given in production."""
    hosts = "&".join(f"host=127.0.0.1:{cluster.port}" for cluster in clusters)
    return f"postgresql+psycopg://postgres@/{database}?{hosts}&target_session_attrs=read-write"


@dataclass
class Audit:
    """What a journal holds compared with what its clients made."""

    entries: int = 0
    lost: int = 0
    doubled: int = 0
    unexpected: int = 0
    verified: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.doubled or self.unexpected or self.problems)


class Gunicorn:
    """``gunicorn wsgi:app`` on 127.0.0.1 in its own process group, so that a SIGKILL takes the
    master and every worker down at once, as a power cut does."""

    def __init__(
        self,
        journal: LiveJournal,
        *,
        workers: int = 2,
        port: int | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.journal = journal
        self.workers = workers
        self.port = port or free_port()
        # Settings over the journal's own (another machine's instance folder, say).
        self.environment = dict(environment or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = journal.work_dir / f"gunicorn-{self.port}.log"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start gunicorn without waiting for it (``wait_ready`` waits): several servers then
        load the app at the same time."""
        assert self.process is None, "already running"
        self.journal.work_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(GUNICORN),
                    "--workers",
                    str(self.workers),
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--log-level",
                    "warning",
                    "--timeout",
                    "60",
                    "wsgi:app",
                ],
                cwd=ROOT,
                env={**self.journal.environment(), **self.environment},
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.starts += 1

    def wait_ready(self, timeout: float) -> None:
        """Until a worker answers (a signed-out API call answers 401)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}: {self.log()}")
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                connection.request("GET", "/api/sync/session")
                if connection.getresponse().status == 401:
                    return
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
            finally:
                connection.close()
        raise RuntimeError(f"gunicorn did not answer within {timeout} s: {self.log()}")

    def kill(self) -> None:
        """SIGKILL the master and its workers: no clean shutdown, requests die mid-way."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        """A graceful stop (SIGTERM), then SIGKILL if it hangs."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def __enter__(self) -> Gunicorn:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# -- the school -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Teacher:
    """One teacher's account, device key and class × subject, with its lessons and students."""

    user_id: int
    kid: str
    private_key: Ed25519PrivateKey
    origin: str
    class_id: int
    subject_id: int
    term_id: int
    students: tuple[int, ...]
    lessons: tuple[int, ...]

    @property
    def grid_path(self) -> str:
        return f"/teacher/grid/{self.class_id}/{self.subject_id}/{self.term_id}"


def seed_teachers(
    journal: LiveJournal, teachers: int, *, students: int = 30, lessons: int = 40
) -> list[Teacher]:
    """One school and its second quarter; per teacher one class (its own journal) with students
    and lessons of one subject, a teaching assignment and an Ed25519 device key. Committed."""
    from journal.db import db
    from journal.models import ClassGroup, Enrollment, Lesson, Student, Subject, TeachingAssignment
    from journal.services import ensure_journal_log

    from ..factories import add_device, add_user, build_world

    made = []
    with journal.app.app_context():
        session = db.session
        world = build_world(session, str(journal.keys_dir))
        term = world.q2
        days = [
            term.starts_on + dt.timedelta(days=n)
            for n in range((term.ends_on - term.starts_on).days + 1)
        ]
        slots = [(day, period) for day in days if day.weekday() < 5 for period in (1, 3, 4, 6)]
        if lessons > len(slots):
            raise ValueError(f"at most {len(slots)} lessons fit in one quarter")
        for number in range(teachers):
            if number == 0:
                class_group, subject, user = world.class_group, world.subject, world.teacher
            else:
                class_group = ClassGroup(
                    school_id=world.school.id,
                    school_year_id=world.year.id,
                    name=f"{5 + number % 7}Ә-{number}",
                    grade_level=5 + number % 7,
                )
                subject = Subject(school_id=world.school.id, name=f"Математика {number}")
                session.add_all([class_group, subject])
                session.flush()
                user = add_user(session, world.school, "teacher")
                session.add(
                    TeachingAssignment(
                        user_id=user.id, class_group_id=class_group.id, subject_id=subject.id
                    )
                )
            device = add_device(session, user)
            pupils = [
                Student(
                    school_id=world.school.id,
                    last_name=f"Сәрсенбай {number}-{n}",
                    first_name="Әлібек",
                    birth_date=dt.date(2013, 5, 1),
                )
                for n in range(students)
            ]
            session.add_all(pupils)
            session.flush()
            session.add_all(
                Enrollment(student_id=p.id, class_group_id=class_group.id, starts_on=term.starts_on)
                for p in pupils
            )
            taken = {(world.lesson.date, world.lesson.period)} if number == 0 else set()
            new_lessons = [
                Lesson(
                    class_group_id=class_group.id, subject_id=subject.id, date=day, period=period
                )
                for day, period in slots
                if (day, period) not in taken
            ][:lessons]
            session.add_all(new_lessons)
            session.flush()
            made.append(
                Teacher(
                    user_id=user.id,
                    kid=device.kid,
                    private_key=device.private_key,
                    origin=ensure_journal_log(session, class_group).origin,
                    class_id=class_group.id,
                    subject_id=subject.id,
                    term_id=term.id,
                    students=tuple(p.id for p in pupils),
                    lessons=tuple(lesson.id for lesson in new_lessons),
                )
            )
        session.commit()
    return made


def another_device(journal: LiveJournal, teacher: Teacher) -> Teacher:
    """The same teacher's second device (a new enrolled key): it writes the same journal."""
    import dataclasses

    from auth.models import User
    from journal.db import db

    from ..factories import add_device

    with journal.app.app_context():
        device = add_device(db.session, db.session.get_one(User, teacher.user_id))
        db.session.commit()
    return dataclasses.replace(teacher, kid=device.kid, private_key=device.private_key)

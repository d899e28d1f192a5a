"""Load and soak: simulated teachers syncing and reading their grids, over HTTP, for minutes.

    .venv/bin/python bench/load.py [--teachers 200] [--minutes 10] [--workers N] [--quick]

gunicorn (``--workers``, default 2 per core) serves the app from a throwaway PostgreSQL database
on loopback. Each simulated teacher has its own account, Ed25519 device key and class × subject
(30 students, 40 lessons). In a loop with a random think time it signs a few attendance marks
and grades into its outbox and syncs them through POST /api/sync/entries as the grid's sync.js
does (an entry leaves the outbox only when answered accepted or duplicate; network errors, 5xx
and 429 are retried); every few rounds it reads its grid page (/teacher/grid/<class>/<subject>
/<term>). At most ``--connections`` requests are in flight at once (the client's bounded pool).

The run stops by itself at ``--minutes`` or after ``--max-requests`` requests, drains every
outbox, then checks the database: each entry every teacher made must be in its journal exactly
once (lost and doubled must be 0), and every journal must verify against a checkpoint cut now.
Prints throughput, p50/p95/p99 latency per request kind, errors, entries lost or doubled; exits
1 if anything was lost, doubled, refused or failed to verify.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' throwaway databases, server launcher and client

from tests.conftest import Databases  # noqa: E402
from tests.reliability.outbox import Device, Exchange  # noqa: E402
from tests.reliability.servers import Gunicorn, LiveJournal, Teacher, seed_teachers  # noqa: E402

DRAIN_SECONDS = 300


@dataclass
class Figures:
    """Every request's outcome, from all teachers' threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    outcomes: Counter[str] = field(default_factory=Counter)
    requests: int = 0

    def record(self, exchange: Exchange) -> None:
        with self.lock:
            self.requests += 1
            self.latencies[exchange.kind].append(exchange.seconds)
            self.outcomes[outcome_name(exchange.status)] += 1


def outcome_name(status: int | str) -> str:
    if isinstance(status, str):
        return f"network ({status})"
    return "ok" if status < 400 else f"HTTP {status}"


class PooledDevice(Device):
    """A device whose requests wait for a free connection of the shared pool."""

    pool: threading.BoundedSemaphore

    def request(self, kind, method, path, body=None):  # type: ignore[no-untyped-def]
        with self.pool:
            return super().request(kind, method, path, body)


class SimulatedTeacher(threading.Thread):
    """Think, sign a few entries, sync; every few rounds read the grid. Until ``stop``."""

    def __init__(self, device: Device, rng: random.Random, args: argparse.Namespace) -> None:
        super().__init__(daemon=True)
        self.device = device
        self.rng = rng
        self.args = args
        self.stop = threading.Event()
        self.error: BaseException | None = None
        teacher = device.teacher
        self.cells = [
            (kind, lesson, student)
            for lesson in teacher.lessons
            for student in teacher.students
            for kind in ("attendance", "grade")
        ]
        rng.shuffle(self.cells)

    def run(self) -> None:
        try:
            rounds = 0
            # Start at a random moment, so that 200 teachers do not arrive in step.
            self.stop.wait(self.rng.uniform(0, self.args.think))
            while not self.stop.is_set():
                for _ in range(self.rng.randint(1, 2 * self.args.entries - 1)):
                    if self.cells:
                        self.device.make_entry(*self.cells.pop())
                self.device.sync()
                rounds += 1
                if rounds % self.args.grid_every == 0:
                    self.read_grid()
                self.stop.wait(self.rng.expovariate(1 / self.args.think))
        except BaseException as exc:  # noqa: BLE001 - reported at the end
            self.error = exc

    def read_grid(self) -> None:
        # The outcome (a status, or a network error) is in the figures; a person would reload.
        with contextlib.suppress(OSError, http.client.HTTPException):
            self.device.read_grid()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def report(
    args: argparse.Namespace,
    figures: Figures,
    teachers: list[SimulatedTeacher],
    elapsed: float,
    audit_line: str,
) -> str:
    devices = [t.device for t in teachers]
    made = sum(len(d.made) for d in devices)
    stored = sum(len(d.stored) for d in devices)
    refused = sum(len(d.refused) for d in devices)
    lines = [
        f"load: {len(teachers)} teachers for {elapsed / 60:.1f} min, gunicorn {args.workers} "
        f"workers, PostgreSQL, loopback; client pool of {args.connections} connections; think "
        f"time {args.think:g} s, {args.entries} entries per sync on average, grid every "
        f"{args.grid_every} syncs",
        f"  requests:   {figures.requests:,} ({figures.requests / elapsed:,.1f}/s): "
        + ", ".join(f"{kind} {len(v):,}" for kind, v in sorted(figures.latencies.items())),
        f"  entries:    {made:,} made, {stored:,} stored ({stored / elapsed:,.1f}/s), "
        f"{refused} refused",
        "  latency ms      p50      p95      p99      max",
    ]
    for kind, values in sorted(figures.latencies.items()):
        cells = [percentile(values, f) * 1000 for f in (0.5, 0.95, 0.99)] + [max(values) * 1000]
        lines.append(f"    {kind:<10}" + "".join(f"{c:9.1f}" for c in cells))
    errors = {k: v for k, v in figures.outcomes.items() if k != "ok"}
    lines.append(
        "  errors:     "
        + (", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) if errors else "none")
        + f" (retried: {sum(d.retries for d in devices)})"
    )
    lines.append(audit_line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teachers", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--connections", type=int, default=32, help="client pool size")
    parser.add_argument("--think", type=float, default=5.0, help="mean seconds between syncs")
    parser.add_argument("--entries", type=int, default=4, help="mean entries per sync")
    parser.add_argument("--grid-every", type=int, default=5, help="read the grid every N syncs")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="20 teachers for 30 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.teachers, args.minutes = 20, 0.5
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)

    with tempfile.TemporaryDirectory() as tmp:
        databases = Databases(Path(tmp))
        journal = None
        server = None
        try:
            journal = LiveJournal.create(databases, Path(tmp))
            clock = time.perf_counter()
            seats: list[Teacher] = seed_teachers(journal, args.teachers)
            seeded = time.perf_counter() - clock
            server = Gunicorn(journal, workers=args.workers)
            server.start()
            figures = Figures()
            pool = threading.BoundedSemaphore(args.connections)
            teachers = []
            for seat in seats:
                device = PooledDevice(
                    seat,
                    server.url,
                    journal.session_cookie(seat),
                    timeout=120,
                    rng=random.Random(rng.random()),
                    on_exchange=figures.record,
                )
                device.pool = pool
                teachers.append(SimulatedTeacher(device, random.Random(rng.random()), args))

            started = time.perf_counter()
            deadline = started + args.minutes * 60
            for teacher in teachers:
                teacher.start()
            while time.perf_counter() < deadline and figures.requests < args.max_requests:
                time.sleep(0.2)
            for teacher in teachers:
                teacher.stop.set()
            for teacher in teachers:
                teacher.join()
            elapsed = time.perf_counter() - started
            crashed = [t.error for t in teachers if t.error is not None]
            if crashed:
                raise SystemExit(f"a simulated teacher failed: {crashed[0]!r}")

            drain_deadline = time.monotonic() + DRAIN_SECONDS
            for teacher in teachers:
                teacher.device.drain(drain_deadline)
            clock = time.perf_counter()
            audit = journal.audit({t.device.teacher.origin: t.device.made for t in teachers})
            checked = time.perf_counter() - clock
        finally:
            if server is not None:
                server.stop()
            if journal is not None:
                journal.dispose()
            databases.drop_all()

    audit_line = (
        f"  lost:       {audit.lost} entries lost, {audit.doubled} doubled, "
        f"{audit.unexpected} unexpected; {audit.verified} of {len(teachers)} journals verified "
        f"against a fresh checkpoint ({audit.entries:,} entries, {checked:.1f} s)"
        + (f"; PROBLEMS: {audit.problems[:3]}" if audit.problems else "")
    )
    print(report(args, figures, teachers, elapsed, audit_line))
    print(f"  (seeded {args.teachers} teachers in {seeded:.1f} s; seed {seed})")
    refused = sum(len(t.device.refused) for t in teachers)
    return 0 if audit.ok and not refused and audit.verified == len(teachers) else 1


if __name__ == "__main__":
    sys.exit(main())

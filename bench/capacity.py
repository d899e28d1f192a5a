"""Capacity: how many teachers one machine serves before syncing turns slow.

    .venv/bin/python bench/capacity.py [--start 25] [--factor 1.5] [--max-teachers 2000]
                                       [--step-seconds 30] [--workers N] [--quick]

gunicorn (``--workers``, default 2 per core) serves the app from a throwaway PostgreSQL database
on loopback, as in bench/load.py, and the simulated teachers behave as there: a think time
(exponential, mean ``--think`` s), then 1 to 2 × ``--entries`` - 1 signed marks, a sync through
POST /api/sync/entries, and every ``--grid-every`` syncs a read of the grid page.

The teachers are driven open-loop: a scheduler hands each teacher's next sync, at the moment
the teacher presses "sync", to a pool of client threads. A closed loop (one thread per teacher
waiting for its answer) slows down with the server and hides the knee; here a slow server shows
as waiting. A sync's time runs from that moment to the answer, so time spent queued on the
client counts, as it would for a person watching the spinner.

The load grows in steps: each step adds teachers (seeded while the load pauses) and runs
``--step-seconds``. The run stops at the first step whose sync p99 passes 1 s; the knee is the
step before it. Figures are printed per step, and the knee also as a ratio to raw Ed25519
verify/s on one core measured in the same run, so machines compare. At the end every outbox is
drained and every entry must be in its journal exactly once (exit 1 otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import http.client
import os
import queue
import random
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' throwaway databases, server launcher and client

from bench.load import percentile  # noqa: E402
from bench.sync_ingest import ed25519_verify_rate  # noqa: E402
from tests.conftest import Databases  # noqa: E402
from tests.reliability.outbox import Device, Exchange  # noqa: E402
from tests.reliability.servers import Gunicorn, LiveJournal, seed_teachers  # noqa: E402

P99_LIMIT = 1.0  # seconds: past this a teacher waits visibly for every sync
DRAIN_SECONDS = 600


@dataclass
class Seat:
    """One simulated teacher: a device and the marks still to make."""

    device: Device
    rng: random.Random
    cells: list[tuple[str, int, int]]
    rounds: int = 0


@dataclass
class Step:
    """What one step of the ramp measured."""

    teachers: int
    seconds: float = 0.0
    syncs: list[float] = field(default_factory=list)  # pressed -> answered, seconds
    grids: list[float] = field(default_factory=list)
    entries: int = 0
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, exchange: Exchange) -> None:
        if isinstance(exchange.status, str) or exchange.status >= 400:
            with self.lock:
                self.errors += 1

    @property
    def p99(self) -> float:
        return percentile(self.syncs, 0.99)

    def row(self) -> str:
        return (
            f"{self.teachers:9,d}{self.entries / self.seconds:11,.1f}"
            f"{len(self.syncs) / self.seconds:9,.1f}{percentile(self.syncs, 0.5) * 1000:13,.0f}"
            f"{self.p99 * 1000:13,.0f}{percentile(self.grids, 0.99) * 1000:13,.0f}"
            f"{self.errors:8,d}"
        )


class Ramp:
    """The scheduler and the client pool. ``run_step`` plays one step with the seats given."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.due: list[tuple[float, int]] = []  # (moment the teacher presses sync, seat index)
        self.seats: list[Seat] = []
        self.lock = threading.Lock()
        self.work: queue.Queue[tuple[float, int] | None] = queue.Queue()
        self.step = Step(0)
        self.open = threading.Event()
        self.busy = 0
        self.paused_at = 0.0
        self.threads = [
            threading.Thread(target=self._client, daemon=True) for _ in range(args.connections)
        ]
        for thread in self.threads:
            thread.start()

    def add(self, seat: Seat) -> None:
        with self.lock:
            self.seats.append(seat)
            # Start at a random moment, so that new teachers do not arrive in step.
            moment = time.perf_counter() + seat.rng.uniform(0, self.args.think)
            heapq.heappush(self.due, (moment, len(self.seats) - 1))

    def run_step(self, step: Step) -> None:
        self.step = step
        self.open.set()
        started = time.perf_counter()
        deadline = started + self.args.step_seconds
        while (now := time.perf_counter()) < deadline:
            with self.lock:
                while self.due and self.due[0][0] <= now:
                    self.work.put(heapq.heappop(self.due))
                wait = self.due[0][0] - now if self.due else 0.05
            time.sleep(min(max(wait, 0.001), 0.05, deadline - now))
        self.open.clear()
        # Let the syncs already pressed finish; they belong to this step.
        while True:
            with self.lock:
                if self.work.empty() and self.busy == 0:
                    break
            time.sleep(0.02)
        step.seconds = time.perf_counter() - started
        # The next step starts from now: shift the waiting teachers' moments by the pause.
        self.paused_at = time.perf_counter()

    def resume_after_pause(self) -> None:
        shift = time.perf_counter() - self.paused_at
        with self.lock:
            self.due = [(moment + shift, index) for moment, index in self.due]
            heapq.heapify(self.due)

    def _client(self) -> None:
        while (item := self.work.get()) is not None:
            with self.lock:
                self.busy += 1
            try:
                self._sync(*item)
            finally:
                with self.lock:
                    self.busy -= 1

    def _sync(self, pressed: float, index: int) -> None:
        seat, step, args = self.seats[index], self.step, self.args
        device = seat.device
        device.on_exchange = step.record
        for _ in range(seat.rng.randint(1, 2 * args.entries - 1)):
            if seat.cells:
                device.make_entry(*seat.cells.pop())
        before = len(device.stored)
        done = device.sync()
        answered = time.perf_counter()
        with step.lock:
            if done:
                step.syncs.append(answered - pressed)
            step.entries += len(device.stored) - before
        seat.rounds += 1
        if seat.rounds % args.grid_every == 0:
            clock = time.perf_counter()
            # A failure is counted by the exchange; a person would reload.
            with contextlib.suppress(OSError, http.client.HTTPException):
                device.read_grid()
            with step.lock:
                step.grids.append(time.perf_counter() - clock)
        with self.lock:
            # A sync that must be retried comes back soon, as sync.js's retry timer does.
            think = seat.rng.expovariate(1 / args.think) if done else 0.5
            heapq.heappush(self.due, (time.perf_counter() + think, index))

    def close(self) -> None:
        for _ in self.threads:
            self.work.put(None)
        for thread in self.threads:
            thread.join(timeout=60)


def cells_of(device: Device, rng: random.Random) -> list[tuple[str, int, int]]:
    teacher = device.teacher
    cells = [
        (kind, lesson, student)
        for lesson in teacher.lessons
        for student in teacher.students
        for kind in ("attendance", "grade")
    ]
    rng.shuffle(cells)
    return cells


def steps(args: argparse.Namespace) -> list[int]:
    sizes, size = [], float(args.start)
    while round(size) <= args.max_teachers:
        if not sizes or round(size) > sizes[-1]:
            sizes.append(round(size))
        size *= args.factor
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", type=int, default=25, help="teachers in the first step")
    parser.add_argument("--factor", type=float, default=1.5, help="growth from step to step")
    parser.add_argument("--max-teachers", type=int, default=2000)
    parser.add_argument("--step-seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--connections", type=int, default=64, help="client threads")
    parser.add_argument("--think", type=float, default=5.0, help="mean seconds between syncs")
    parser.add_argument("--entries", type=int, default=4, help="mean entries per sync")
    parser.add_argument("--grid-every", type=int, default=5, help="read the grid every N syncs")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="4 to 9 teachers, 5 s steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.start, args.max_teachers, args.step_seconds = 4, 9, 5.0
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    verify_rate = ed25519_verify_rate()

    played: list[Step] = []
    with tempfile.TemporaryDirectory() as tmp:
        databases = Databases(Path(tmp))
        journal = server = ramp = None
        try:
            journal = LiveJournal.create(databases, Path(tmp))
            server = Gunicorn(journal, workers=args.workers)
            server.start()
            ramp = Ramp(args)
            print(
                f"capacity: gunicorn {args.workers} workers, PostgreSQL, loopback; a teacher "
                f"thinks {args.think:g} s on average, syncs {args.entries} entries on average, "
                f"reads the grid every {args.grid_every} syncs; steps of "
                f"{args.step_seconds:g} s; {args.connections} client threads",
                flush=True,
            )
            print(
                "  teachers  entries/s  syncs/s  sync p50 ms  sync p99 ms  grid p99 ms  errors",
                flush=True,
            )
            client_cpu = 0.0
            for size in steps(args):
                for teacher in seed_teachers(journal, size - len(ramp.seats)):
                    device = Device(
                        teacher,
                        server.url,
                        journal.session_cookie(teacher),
                        timeout=120,
                        rng=random.Random(rng.random()),
                    )
                    seat_rng = random.Random(rng.random())
                    ramp.add(Seat(device, seat_rng, cells_of(device, seat_rng)))
                if played:
                    ramp.resume_after_pause()
                step = Step(size)
                cpu = resource.getrusage(resource.RUSAGE_SELF)
                ramp.run_step(step)
                after = resource.getrusage(resource.RUSAGE_SELF)
                client_cpu = max(
                    client_cpu,
                    (after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime) / step.seconds,
                )
                played.append(step)
                print(" " + step.row(), flush=True)
                if step.p99 > P99_LIMIT:
                    break
            ramp.close()
            drain_deadline = time.monotonic() + DRAIN_SECONDS
            for seat in ramp.seats:
                seat.device.drain(drain_deadline)
            audit = journal.audit({s.device.teacher.origin: s.device.made for s in ramp.seats})
            refused = sum(len(s.device.refused) for s in ramp.seats)
        finally:
            if server is not None:
                server.stop()
            if journal is not None:
                journal.dispose()
            databases.drop_all()

    under = [step for step in played if step.p99 <= P99_LIMIT]
    if under:
        knee = under[-1]
        rate = knee.entries / knee.seconds
        print(
            f"knee: {knee.teachers:,} teachers, {rate:,.1f} entries/s "
            f"(sync p99 {knee.p99 * 1000:,.0f} ms); ratio knee entries/s / raw Ed25519 "
            f"verify/s: {rate / verify_rate:.3f}"
        )
    else:
        print("knee: none, the first step's sync p99 already passed 1 s")
    if played and played[-1].p99 <= P99_LIMIT:
        print(
            f"  (p99 stayed under 1 s up to {played[-1].teachers:,} teachers; raise --max-teachers)"
        )
    print(
        f"  raw Ed25519 verify: {verify_rate:,.0f}/s on one core; the client used up to "
        f"{client_cpu:.2f} of a core (it shares the machine with the server)"
    )
    print(
        f"  lost: {audit.lost} entries lost, {audit.doubled} doubled, {audit.unexpected} "
        f"unexpected, {refused} refused; {audit.verified} of {len(ramp.seats)} journals verified"
        f"; seed {seed}"
    )
    return 0 if audit.ok and not refused and audit.verified == len(ramp.seats) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Ledger core throughput on this machine, measured in one run.

    .venv/bin/python bench/ledger_core.py [--leaves N] [--seconds S]

Prints Ed25519 verifications per second (200-byte messages, the baseline), leaf hashes per
second, the time of merkle.root() over 1,000,000 leaves, and each figure as a rate relative to
the baseline; then `record_entry` entries/s on SQLite and PostgreSQL in batches of 200.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# Run from the repository root: `python bench/ledger_core.py`. The repository's folder comes
# first, as in the other benchmarks: this code is measured, whatever the venv's editable install
# points at, and the tests' factories are reused.
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from journal.ledger.entry import (  # noqa: E402
    canonical_payload,
    key_id,
    leaf_bytes,
    public_key_bytes,
    sign_payload,
    verify_payload,
)
from journal.ledger.merkle import leaf_hash, root  # noqa: E402

MESSAGE_BYTES = 200


@dataclass(frozen=True)
class Measurement:
    """One row of the table: `per_second` is what the ratio column compares."""

    name: str
    per_second: float
    detail: str


def rate(operation: Callable[[], object], seconds: float) -> float:
    """Calls per second of `operation`, timed in growing batches for about `seconds`."""
    operation()
    batch, done, elapsed = 16, 0, 0.0
    while elapsed < seconds:
        started = time.perf_counter()
        for _ in range(batch):
            operation()
        elapsed += time.perf_counter() - started
        done += batch
        batch *= 2
    return done / elapsed


def sample_leaf() -> bytes:
    """A realistic entries.jsonl line: a grade entry signed with Ed25519."""
    key = Ed25519PrivateKey.generate()
    alg, raw = public_key_bytes(key.public_key())
    payload = {
        "v": 1,
        "entry_id": "0b4f3c8e-6a55-4a4e-9a43-3f6c1c6f2b10",
        "journal": "school.example.kz/journal/2026-2027/7A",
        "kind": "grade",
        "device_id": "teacher-laptop-1",
        "device_seq": 1234,
        "author": 42,
        "created_at": "2026-11-21T10:00:00Z",
        "lesson": 9876,
        "student": 321,
        "value": {"component": "FO", "points": 9},
    }
    sig = sign_payload(key, canonical_payload(payload))
    return leaf_bytes(1234, "2026-11-21T10:00:01Z", payload, alg, key_id(alg, raw), sig)


def measure_ed25519_verify(seconds: float) -> Measurement:
    key = Ed25519PrivateKey.generate()
    public_key = key.public_key()
    message = os.urandom(MESSAGE_BYTES)
    signature = key.sign(message)
    per_second = rate(lambda: public_key.verify(signature, message), seconds)
    return Measurement("Ed25519 verify", per_second, f"{MESSAGE_BYTES}-byte messages")


def measure_verify_payload(seconds: float) -> Measurement:
    key = Ed25519PrivateKey.generate()
    _, raw = public_key_bytes(key.public_key())
    payload = os.urandom(MESSAGE_BYTES)
    sig = sign_payload(key, payload)
    per_second = rate(lambda: verify_payload("ed25519", raw, payload, sig), seconds)
    return Measurement("entry.verify_payload", per_second, "loads the key on every call")


def measure_leaf_hash(seconds: float) -> Measurement:
    line = sample_leaf()
    per_second = rate(lambda: leaf_hash(line), seconds)
    return Measurement("merkle.leaf_hash", per_second, f"{len(line)}-byte leaf lines")


def measure_root(leaves: int) -> Measurement:
    hashes = [leaf_hash(i.to_bytes(8, "big")) for i in range(leaves)]
    started = time.perf_counter()
    root(hashes)
    elapsed = time.perf_counter() - started
    return Measurement("merkle.root", leaves / elapsed, f"{elapsed:.2f} s for {leaves:,} leaves")


def measure_record_entry(backend: str, entries: int = 4000, batch: int = 200) -> Measurement:
    """`record_entry` through a Recorder per batch of 200, committed per batch, on a fresh
    migrated database (a temporary SQLite file, or a throwaway PostgreSQL database)."""
    import tempfile
    from pathlib import Path

    from journal.db import db
    from journal.recording.recorder import Recorder
    from tests.conftest import Databases, make_app, migrate
    from tests.factories import NOW, build_world

    with tempfile.TemporaryDirectory() as tmp:
        databases = Databases(Path(tmp))
        try:
            app = make_app(databases.create(backend), Path(tmp) / "keys")
            migrate(app)
            with app.app_context():
                session = db.session
                world = build_world(session, app.config["KEYS_DIR"])
                students = [world.add_student() for _ in range(35)]
                submissions = [
                    world.signed("attendance", student=students[i % 35].id) for i in range(entries)
                ]
                session.commit()
                started = time.perf_counter()
                for start in range(0, entries, batch):
                    # As the sync API does: one look-up of the batch's ids, one write per batch.
                    recorder = Recorder(session, now=NOW, deferred=True)
                    chunk = submissions[start : start + batch]
                    recorder.prefetch([sub["payload"]["entry_id"] for sub in chunk])
                    for submission in chunk:
                        recorder.record(submission)
                    session.commit()
                elapsed = time.perf_counter() - started
            app.extensions["journal_db"].engine.dispose()
        finally:
            databases.drop_all()
    return Measurement(
        f"record_entry {backend}", entries / elapsed, f"batches of {batch}, {entries:,} entries"
    )


def print_table(rows: Sequence[Measurement], baseline: Measurement) -> None:
    print(
        f"ledger core on {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs"
    )
    header = f"{'measure':<22} {'per second':>14} {'x Ed25519 verify':>17}  detail"
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = row.per_second / baseline.per_second
        print(f"{row.name:<22} {row.per_second:>14,.0f} {ratio:>17.2f}  {row.detail}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--leaves", type=int, default=1_000_000, help="leaves for merkle.root")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per rate measurement")
    args = parser.parse_args(argv)

    baseline = measure_ed25519_verify(args.seconds)
    rows = [
        baseline,
        measure_verify_payload(args.seconds),
        measure_leaf_hash(args.seconds),
        measure_root(args.leaves),
    ]
    rows.append(measure_record_entry("sqlite"))
    rows.append(measure_record_entry("postgresql"))
    print_table(rows, baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())

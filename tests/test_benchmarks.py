"""Every benchmark under bench/ still runs to its end: each at a tiny size, checked for its exit
status and the line that carries its result. Nothing here measures anything (the suite runs
two tests at a time): the figures come from ``make bench`` alone. Without this, a benchmark
broken by a change is found only at the next ``make bench``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from .conftest import PG_ADMIN_URL
from .external import missing, need_tool

ROOT = Path(__file__).resolve().parent.parent

# script, tiny arguments, what its output must say
BENCHMARKS = [
    ("ledger_core.py", ["--leaves", "20000", "--seconds", "0.1"], "record_entry postgresql"),
    ("sync_ingest.py", ["--entries", "400", "--batch", "100"], "ratio"),
    ("grid_page.py", ["--runs", "2"], "ratio, grid opened again"),
    ("pdf_school.py", ["--classes", "1", "--quarters", "1", "--subjects", "2"], "ratio"),
    ("archive_school.py", ["--classes", "1"], "bags sealed"),
    ("verify_bag.py", ["--entries", "2000", "--rounds", "1", "--sample", "500"], "ratio"),
    ("load.py", ["--teachers", "4", "--minutes", "0.15"], "0 entries lost, 0 doubled"),
    (
        "capacity.py",
        ["--start", "2", "--max-teachers", "3", "--step-seconds", "2"],
        "0 entries lost, 0 doubled",
    ),
]


@pytest.fixture(scope="module")
def postgresql() -> None:
    engine = sa.create_engine(PG_ADMIN_URL)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        missing(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc.orig}")
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("script", "arguments", "says"), BENCHMARKS, ids=[b[0] for b in BENCHMARKS]
)
def test_the_benchmark_runs_to_its_end(postgresql, script: str, arguments: list[str], says: str):
    if script == "archive_school.py":
        need_tool("openssl")  # its timestamp authority; SeaweedFS comes from the venv
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert says in done.stdout, done.stdout[-2000:]

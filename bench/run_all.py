"""Run every benchmark and write bench/RESULTS.md: each one's figures, the machine, the date.

    .venv/bin/python bench/run_all.py [--only NAME ...] [--quick] [--runs N]

Each benchmark prints its own figures as ratios against a baseline measured in the same run,
so runs on noisy machines stay comparable. A benchmark that fails is reported, not hidden.
Benchmarks with a bar run several times (5; the ingest 3, judged on its median) and the
summary table gives each figure's range over the runs: a bar is met only when every run meets
it (the median, for the ingest), never by the best run alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Figure:
    """One figure a benchmark prints, and the bar it must meet."""

    bench: str
    label: str
    pattern: str  # regular expression whose first group is the number
    bar: float
    higher_is_better: bool
    judge: str = "every run"  # or "median"

    def meets(self, value: float) -> bool:
        return value >= self.bar if self.higher_is_better else value <= self.bar


# The bars of issue 18, read from each run's output.
FIGURES = [
    Figure(
        "sync_ingest.py",
        "HTTP ingest on PostgreSQL ÷ raw Ed25519 verify/s (one core)",
        r"ratio ([0-9.]+)",
        0.8,
        True,
        "median",
    ),
    Figure(
        "grid_page.py",
        "grid opened again ÷ bare Jinja table",
        r"ratio, grid opened again: ([0-9.]+)",
        2.0,
        False,
    ),  # fmt: skip
    Figure(
        "grid_page.py",
        "grid after a new entry ÷ bare Jinja table",
        r"ratio after a new entry[^:]*: ([0-9.]+)",
        3.0,
        False,
    ),  # fmt: skip
    Figure(
        "verify_bag.py",
        "verify_bag ÷ raw Ed25519 verify/s (one core)",
        r"ratio:\s+([0-9.]+)",
        1.5,
        True,
    ),  # fmt: skip
    Figure(
        "archive_school.py",
        "whole archive run ÷ building its PDFs alone",
        r"ratio total / PDFs alone: ([0-9.]+)",
        2.0,
        False,
    ),  # fmt: skip
]
RUNS = {"sync_ingest.py": 3, "grid_page.py": 5, "verify_bag.py": 5, "archive_school.py": 5}

# name, arguments for the full run, arguments for --quick, time limit in seconds
BENCHMARKS = [
    ("ledger_core.py", [], ["--leaves", "200000"], 600),
    ("sync_ingest.py", [], ["--quick"], 900),
    ("grid_page.py", [], ["--quick"], 600),
    ("pdf_school.py", [], ["--classes", "4"], 1800),
    ("archive_school.py", [], ["--quick"], 1800),
    ("verify_bag.py", [], ["--entries", "10000"], 900),
    ("load.py", [], ["--quick"], 1200),
    ("capacity.py", [], ["--quick"], 1800),
]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores{memory}, "
        f"Python {platform.python_version()}"
    )


def settle() -> str:
    """Have PostgreSQL write out the pages the previous run left dirty (CHECKPOINT), so that no
    benchmark pays for its predecessor's writes: the grid measured right after the ingest runs
    took 0.5 ms more per page (about 0.25 of its ratio) without it. Returns what went wrong."""
    url = os.environ.get("JOURNAL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        import psycopg

        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True, connect_timeout=5) as db:
            db.execute("CHECKPOINT")
    except Exception as exc:  # the benchmarks that need PostgreSQL say so themselves
        return f"CHECKPOINT before the run failed: {exc}"
    return ""


def _run(command: list[str], limit: int) -> tuple[str, int | str, float]:
    clock = time.perf_counter()
    try:
        result = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=limit, check=False
        )
        output: str = result.stdout
        status: int | str = result.returncode
        if result.returncode != 0:
            output += "\n" + result.stderr[-3000:]
    except subprocess.TimeoutExpired as exc:
        output = (
            (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        )
        status = f"timed out after {limit} s"
    return output, status, time.perf_counter() - clock


def summary(values: dict[tuple[str, str], list[float]]) -> str:
    """The issue's table: each figure's range over the runs, its bar, and whether it is met."""
    lines = [
        "## The bars (issue 18)\n",
        "| benchmark | figure | runs | range | median | bar | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for figure in FIGURES:
        seen = values.get((figure.bench, figure.label), [])
        if not seen:
            lines.append(
                f"| `{figure.bench}` | {figure.label} | 0 | not measured | | "
                f"{'≥' if figure.higher_is_better else '≤'} {figure.bar} | no |"
            )
            continue
        middle = statistics.median(seen)
        met = (
            figure.meets(middle)
            if figure.judge == "median"
            else all(figure.meets(value) for value in seen)
        )
        lines.append(
            f"| `{figure.bench}` | {figure.label} | {len(seen)} | "
            f"{min(seen):.2f}–{max(seen):.2f} | {middle:.2f} | "
            f"{'≥' if figure.higher_is_better else '≤'} {figure.bar} ({figure.judge}) | "
            f"{'yes' if met else 'NO'} |"
        )
    return "\n".join(lines) + "\n\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="run only these benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--runs", type=int, help="runs of each benchmark with a bar (5; ingest 3)")
    args = parser.parse_args(argv)

    started = dt.datetime.now(dt.UTC)
    sections = []
    failures = 0
    values: dict[tuple[str, str], list[float]] = {}
    for name, full, quick, limit in BENCHMARKS:
        if args.only and name not in args.only and name.removesuffix(".py") not in args.only:
            continue
        script = HERE / name
        if not script.exists():
            sections.append(f"## {name}\n\nnot present\n")
            failures += 1
            continue
        command = [sys.executable, str(script), *(quick if args.quick else full)]
        runs = (args.runs or RUNS[name]) if name in RUNS else 1
        for run in range(1, runs + 1):
            print(f"== {name} (run {run} of {runs}): {' '.join(command[1:])}", flush=True)
            trouble = settle()
            if trouble:
                print(trouble, flush=True)
            output, status, seconds = _run(command, limit)
            if status != 0:
                failures += 1
            print(output, flush=True)
            for figure in FIGURES:
                found = re.search(figure.pattern, output) if figure.bench == name else None
                if found:
                    values.setdefault((name, figure.label), []).append(float(found.group(1)))
            sections.append(
                f"## {name}" + (f", run {run} of {runs}" if runs > 1 else "") + "\n\n"
                f"`{' '.join(['python', 'bench/' + name, *command[2:]])}` — exit "
                f"{status}, {seconds:.0f} s\n\n```\n{output.strip()}\n```\n"
            )

    header = (
        "# Benchmark results\n\n"
        f"Written by `make bench` ({'quick' if args.quick else 'full'} run"
        + (f" of {', '.join(args.only)} only" if args.only else "")
        + f") on "
        f"{started:%Y-%m-%d %H:%M} UTC.\n\nMachine: {machine()}.\n\n"
        "Every figure that matters is printed as a ratio to a baseline measured in the same "
        "run (raw Ed25519 verify/s, a plain ReportLab table, a bare Jinja table, building the "
        "PDFs alone), so the ratios compare across machines and noisy runs.\n\n"
    )
    args.output.write_text(header + summary(values) + "\n".join(sections))
    print(f"wrote {args.output}; {failures} benchmark(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

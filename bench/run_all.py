"""Run every benchmark and write bench/RESULTS.md: each one's figures, the machine, the date.

    .venv/bin/python bench/run_all.py [--only NAME ...] [--quick]

Each benchmark prints its own figures as ratios against a baseline measured in the same run,
so runs on noisy machines stay comparable. A benchmark that fails is reported, not hidden.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# name, arguments for the full run, arguments for --quick, time limit in seconds
BENCHMARKS = [
    ("ledger_core.py", [], ["--leaves", "200000"], 600),
    ("sync_ingest.py", [], ["--quick"], 900),
    ("grid_page.py", [], ["--quick"], 600),
    ("pdf_school.py", [], ["--classes", "4"], 1800),
    ("archive_school.py", [], ["--quick"], 1800),
    ("verify_bag.py", [], ["--entries", "10000"], 900),
    ("load.py", [], ["--quick"], 1200),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="run only these benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)

    started = dt.datetime.now(dt.UTC)
    sections = []
    failures = 0
    for name, full, quick, limit in BENCHMARKS:
        if args.only and name not in args.only and name.removesuffix(".py") not in args.only:
            continue
        script = HERE / name
        if not script.exists():
            sections.append(f"## {name}\n\nnot present\n")
            failures += 1
            continue
        command = [sys.executable, str(script), *(quick if args.quick else full)]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        clock = time.perf_counter()
        try:
            result = subprocess.run(
                command, cwd=ROOT, capture_output=True, text=True, timeout=limit, check=False
            )
            output, status = result.stdout, result.returncode
            if result.returncode != 0:
                output += "\n" + result.stderr[-3000:]
        except subprocess.TimeoutExpired as exc:
            output, status = (
                (exc.stdout or b"").decode()
                if isinstance(exc.stdout, bytes)
                else (exc.stdout or ""),
                f"timed out after {limit} s",
            )
        seconds = time.perf_counter() - clock
        if status != 0:
            failures += 1
        print(output, flush=True)
        sections.append(
            f"## {name}\n\n`{' '.join(['python', 'bench/' + name, *command[2:]])}` — exit "
            f"{status}, {seconds:.0f} s\n\n```\n{output.strip()}\n```\n"
        )

    header = (
        "# Benchmark results\n\n"
        f"Written by `make bench` ({'quick' if args.quick else 'full'} run) on "
        f"{started:%Y-%m-%d %H:%M} UTC.\n\nMachine: {machine()}.\n\n"
        "Every figure that matters is printed as a ratio to a baseline measured in the same "
        "run (raw Ed25519 verify/s, a plain ReportLab table, a bare Jinja table, building the "
        "PDFs alone), so the ratios compare across machines and noisy runs.\n\n"
    )
    args.output.write_text(header + "\n".join(sections))
    print(f"wrote {args.output}; {failures} benchmark(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""The archive run checks bag N in a worker process while it builds bag N+1. A run killed with
SIGKILL (the crash test does it at random points; an operator or the OOM killer may) must not
leave that worker behind holding the caller's pipes or running on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RUN = """
import os, signal, sys, time
from archive.readback import check_pool

pool = check_pool(1)
busy = pool.submit(time.sleep, 60)  # a long check in the middle of its work
while not pool._processes:
    time.sleep(0.05)
time.sleep(1.5)  # the worker has started and is sleeping in its "check"
print(*pool._processes, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose but its entry in the process table.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def test_a_killed_run_leaves_no_worker_and_no_open_pipe():
    clock = time.monotonic()
    # capture_output waits for the pipes' end: a worker holding them would hold this call too.
    done = subprocess.run(
        [sys.executable, "-c", RUN], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == -9, done.stderr
    assert time.monotonic() - clock < 20, "the caller waited for the worker's end of the pipes"
    workers = [int(pid) for pid in done.stdout.split()]
    assert workers, done.stdout + done.stderr
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers), "the worker outlived the killed run"

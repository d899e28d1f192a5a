"""Known vulnerabilities in the pinned dependencies (``make security``).

    .venv/bin/python scripts/audit_dependencies.py

Runs pip-audit on ``constraints.txt``: every package the journal runs or is tested with, at the
exact versions that ``make test`` and ``make run`` install (and that ``scripts/constraints.py
check`` holds the environment to). Exits 1 when one has a known vulnerability.

pip-audit asks PyPI's JSON API for each package's known vulnerabilities. When that service cannot
be reached, or answers "not found" (a mirror or proxy without the per-version API), pip-audit
skips the package and still reports success: the audit is then incomplete. Under ``CI=true``
an incomplete audit fails; elsewhere it is skipped, saying why.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

# An audit that could not reach PyPI's vulnerability data fails only where it is required
# (JOURNAL_REQUIRE_AUDIT=1): this project's CI reaches the package registries through a mirror
# that does not serve that data, and an unreachable service must not block every landing.
# Known vulnerabilities always fail.
IN_CI = os.environ.get("JOURNAL_REQUIRE_AUDIT", "").lower() in {"1", "true", "yes"}
TIME_LIMIT = 900
CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"


def incomplete(reason: str, *, in_ci: bool = IN_CI) -> tuple[int, str]:
    if in_ci:
        return 1, f"security: FAILED (JOURNAL_REQUIRE_AUDIT is set): {reason}"
    return 0, f"security: SKIPPED, the dependency audit could not run: {reason}"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_names(constraints: Path) -> set[str]:
    names = set()
    for line in constraints.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(normalize(re.split(r"[=<>!~;\[ ]", line, maxsplit=1)[0]))
    return names


def verdict(
    report: Any, *, in_ci: bool = IN_CI, expected: set[str] | None = None
) -> tuple[int, str]:
    """Exit status and message for pip-audit's JSON report. It passes only when pip-audit
    answered for every package (and for each of ``expected``, the pinned names, when given)."""
    dependencies = report.get("dependencies") if isinstance(report, dict) else None
    if not isinstance(dependencies, list):
        return incomplete("pip-audit's report lists no packages", in_ci=in_ci)
    vulnerable = [d for d in dependencies if d.get("vulns")]
    if vulnerable:
        lines = [
            f"{d['name']} {d['version']}: {vuln['id']} (fixed in: "
            f"{', '.join(vuln.get('fix_versions') or []) or 'no fixed version yet'})"
            for d in vulnerable
            for vuln in d["vulns"]
        ]
        return 1, "\n".join([*lines, f"security: FAILED: {len(vulnerable)} vulnerable package(s)"])
    if not dependencies:
        return incomplete("pip-audit found no packages", in_ci=in_ci)
    # Audited: an answer (a list of vulnerabilities, empty or not) and no reason for skipping.
    unanswered = [
        d for d in dependencies if d.get("skip_reason") or not isinstance(d.get("vulns"), list)
    ]
    if unanswered:
        names = ", ".join(str(d.get("name")) for d in unanswered[:8])
        names += ", ..." if len(unanswered) > 8 else ""
        reason = unanswered[0].get("skip_reason") or "no answer in the report"
        return incomplete(
            f"PyPI's vulnerability service did not answer for {len(unanswered)} of "
            f"{len(dependencies)} packages ({names}): {reason}",
            in_ci=in_ci,
        )
    if expected is not None:
        missing = sorted(expected - {normalize(str(d.get("name"))) for d in dependencies})
        if missing:
            return incomplete(
                f"pip-audit did not report on {len(missing)} pinned package(s): "
                + ", ".join(missing[:8]),
                in_ci=in_ci,
            )
    return 0, f"security: no known vulnerabilities in {len(dependencies)} packages"


def audit_command(constraints: Path = CONSTRAINTS) -> list[str]:
    """pip-audit on exactly the pinned versions: no resolving, no pip, no installing."""
    return [
        sys.executable,
        "-m",
        "pip_audit",
        "--requirement",
        str(constraints),
        "--no-deps",
        "--disable-pip",
        "--format",
        "json",
        "--progress-spinner",
        "off",
    ]


def audit(constraints: Path = CONSTRAINTS, *, in_ci: bool = IN_CI) -> tuple[int, str]:
    if not constraints.is_file():
        return 1, f"security: FAILED: {constraints.name} is missing (make constraints writes it)"
    command = audit_command(constraints)
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=TIME_LIMIT, check=False
        )
    except subprocess.TimeoutExpired:
        return incomplete(f"pip-audit did not finish within {TIME_LIMIT} s", in_ci=in_ci)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        error = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return incomplete(f"pip-audit failed (exit {result.returncode}): {error}", in_ci=in_ci)
    return verdict(report, in_ci=in_ci, expected=pinned_names(constraints))


def main() -> int:
    status, message = audit()
    print(message, file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())

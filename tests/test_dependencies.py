"""Dependencies (issue 13): what the app imports is declared with floors past known advisories,
a fresh install takes exactly the versions in constraints.txt, and the audit of those versions
never passes without an answer for each of them."""

from __future__ import annotations

import ast
import configparser
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from .external import missing

ROOT = Path(__file__).resolve().parents[1]
APP_PACKAGES = ("journal", "auth", "exports", "archive")
FIRST_PARTY = {*APP_PACKAGES, "wsgi"}


def load_script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(section: str, option: str) -> dict[str, Requirement]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = [line.strip() for line in config[section][option].splitlines()]
    requirements = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return {normalize(req.name): req for req in requirements}


def runtime() -> dict[str, Requirement]:
    return declared("options", "install_requires")


def pins() -> dict[str, str]:
    return dict(load_script("constraints").pinned((ROOT / "constraints.txt").read_text()))


def imported_top_level_modules() -> set[str]:
    """Top-level names the app's code imports (archive/verify runs standalone, with its own
    sibling modules, and imports only cryptography from outside the standard library)."""
    names = set()
    for package in APP_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "verify" in path.relative_to(ROOT).parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - FIRST_PARTY - set(sys.stdlib_module_names) - {"__future__"}


def test_every_package_the_app_imports_is_a_declared_runtime_dependency():
    distributions = packages_distributions()
    needed = {
        normalize(dist) for module in imported_top_level_modules() for dist in distributions[module]
    }
    assert {"werkzeug", "jinja2", "itsdangerous", "markupsafe", "gunicorn"} <= set(runtime())
    assert needed - set(runtime()) == set()


# One version each that a known advisory affects (issue 13's list, and later advisories).
VULNERABLE = {
    "flask": "3.1.2",  # CVE-2026-27205; CVE-2025-47278 below 3.1.1
    "werkzeug": "3.1.5",  # CVE-2026-27199
    "jinja2": "3.1.5",  # CVE-2025-27516
    "cryptography": "44.0.0",  # CVE-2024-12797
    "gunicorn": "22.0.0",  # CVE-2024-6827
}


@pytest.mark.parametrize(("name", "version"), sorted(VULNERABLE.items()))
def test_runtime_floors_are_past_known_advisories(name: str, version: str):
    requirement = runtime()[name]
    assert not requirement.specifier.contains(version, prereleases=True)


def test_gunicorn_is_a_runtime_dependency_not_a_test_one():
    assert "gunicorn" in runtime()
    assert "gunicorn" not in declared("options.extras_require", "test")


def test_the_constraints_pin_every_declared_dependency_to_an_allowed_version():
    pinned = pins()
    requirements = {**runtime(), **declared("options.extras_require", "test")}
    unpinned = sorted(set(requirements) - set(pinned))
    assert unpinned == []
    outside = {
        name: pinned[name]
        for name, requirement in requirements.items()
        if not requirement.specifier.contains(pinned[name], prereleases=True)
    }
    assert outside == {}
    assert "ruff" in pinned  # its formatting and findings differ between versions
    assert "class-journal" not in pinned


def test_the_constraints_tell_an_environment_that_drifted():
    constraints = load_script("constraints")
    pinned = constraints.pinned("# header\nflask==3.1.3\nruff==0.17.6\n")
    assert pinned == {"flask": "3.1.3", "ruff": "0.17.6"}
    wrong, unpinned = constraints.differences(pinned, {"flask": "3.1.3", "ruff": "0.18.0"})
    assert wrong == ["ruff 0.18.0 (pinned 0.17.6)"] and unpinned == []
    wrong, unpinned = constraints.differences(pinned, {"flask": "3.1.3", "new-dep": "1.0"})
    assert wrong == ["ruff not installed (pinned 0.17.6)"] and unpinned == ["new-dep 1.0"]
    with pytest.raises(ValueError, match="not an exact pin"):
        constraints.pinned("flask>=3\n")


def test_this_environment_holds_exactly_the_pinned_versions():
    constraints = load_script("constraints")
    wrong, _unpinned = constraints.differences(pins(), constraints.installed())
    assert wrong == []


def test_make_installs_from_the_constraints_and_reinstalls_when_they_change():
    make = shutil.which("make")
    if make is None:
        missing("make is not installed")
    venv = Path(sys.prefix)
    dry_run = subprocess.run(
        [
            make,
            "-C",
            str(ROOT),
            "-n",
            "-W",
            "constraints.txt",
            f"VENV={venv}",
            f"{venv}/.installed",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pip install -q -c constraints.txt -e '.[test]'" in dry_run
    assert "scripts/constraints.py check" in dry_run


# -- the audit (make security) -------------------------------------------------------------------


@pytest.fixture
def pinned_file(tmp_path: Path) -> Path:
    path = tmp_path / "constraints.txt"
    path.write_text("# pinned\nflask==3.1.3\nwerkzeug==3.1.9\n")
    return path


def test_the_audit_reads_exactly_the_pinned_versions(pinned_file: Path):
    command = load_script("audit_dependencies").audit_command(pinned_file)
    assert command[command.index("--requirement") + 1] == str(pinned_file)
    assert "--no-deps" in command and "--disable-pip" in command
    assert "--local" not in command


ANSWERED = {"name": "flask", "version": "3.1.3", "vulns": []}
NOT_FOUND = {
    "name": "werkzeug",
    "version": "3.1.9",
    "skip_reason": "Dependency not found on PyPI and could not be audited: werkzeug (3.1.9)",
}


def fake_pip_audit(
    monkeypatch: pytest.MonkeyPatch, module: Any, stdout: str, *, timeout: bool = False
) -> None:
    def run(command: list[str], **_kwargs: Any) -> subprocess.CompletedProcess[str]:
        if timeout:
            raise subprocess.TimeoutExpired(command, 1)
        return subprocess.CompletedProcess(command, 1, stdout=stdout, stderr="connection refused")

    monkeypatch.setattr(module.subprocess, "run", run)


@pytest.mark.parametrize(
    ("stdout", "timeout"),
    [
        (json.dumps({"dependencies": [ANSWERED, NOT_FOUND]}), False),  # a mirror without data
        (json.dumps({"dependencies": [{**ANSWERED, "name": "werkzeug"}, NOT_FOUND]}), False),
        (json.dumps({"dependencies": [ANSWERED]}), False),  # werkzeug left out
        (json.dumps({"dependencies": [ANSWERED, {"name": "werkzeug", "version": "3.1.9"}]}), False),
        (json.dumps({"dependencies": []}), False),
        (json.dumps([]), False),
        ("", False),  # pip-audit itself failed
        ("", True),
    ],
    ids=[
        "not-found",
        "one-unanswered",
        "one-missing",
        "no-answer",
        "empty",
        "not-a-report",
        "no-output",
        "timeout",
    ],
)
@pytest.mark.parametrize("required", [False, True], ids=["local", "required"])
def test_an_audit_without_data_for_every_pin_says_skipped_never_passed(
    monkeypatch: pytest.MonkeyPatch, pinned_file: Path, stdout: str, timeout: bool, required: bool
):
    module = load_script("audit_dependencies")
    fake_pip_audit(monkeypatch, module, stdout, timeout=timeout)
    status, message = module.audit(pinned_file, in_ci=required)
    assert "no known vulnerabilities" not in message
    if required:
        assert (status, message.split(" (")[0]) == (1, "security: FAILED")
    else:
        assert status == 0
        assert message.startswith("security: SKIPPED, the dependency audit could not run: ")


def test_an_audit_with_an_answer_for_every_pin_passes(
    monkeypatch: pytest.MonkeyPatch, pinned_file: Path
):
    module = load_script("audit_dependencies")
    report = {"dependencies": [ANSWERED, {**ANSWERED, "name": "Werkzeug", "version": "3.1.9"}]}
    fake_pip_audit(monkeypatch, module, json.dumps(report))
    assert module.audit(pinned_file, in_ci=True) == (
        0,
        "security: no known vulnerabilities in 2 packages",
    )


def test_the_audit_fails_without_the_constraints_file(tmp_path: Path):
    status, message = load_script("audit_dependencies").audit(tmp_path / "constraints.txt")
    assert status == 1 and "constraints.txt is missing" in message

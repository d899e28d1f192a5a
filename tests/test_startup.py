"""Start-up that just works (issue 17): `make run PORT=...`, `flask --app wsgi ...` in a new
terminal reads the development settings by itself, a favicon, and a README that names only
tools the project installs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from journal.config import load_development_env

from .conftest import make_app

ROOT = Path(__file__).resolve().parent.parent
FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]


def write_dev_env(instance: Path) -> Path:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "dev_env.py"), str(instance)],
        check=True,
        capture_output=True,
    )
    return instance / "dev.env"


def a_new_terminal(instance: Path) -> dict[str, str]:
    """What a new shell has: no JOURNAL_* secrets, only where the instance folder is."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["JOURNAL_INSTANCE"] = str(instance)
    return env


def flask(instance: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLASK, *args],
        cwd=ROOT,
        env=a_new_terminal(instance),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_flask_commands_in_a_new_terminal_read_instance_dev_env(tmp_path):
    """What the commands say is theirs (no demo school yet, no classes yet), not a traceback
    about missing secrets: they read instance/dev.env. (`demo logins` itself: test_cli.py.)"""
    instance = tmp_path / "instance"
    write_dev_env(instance)
    upgraded = flask(instance, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    logins = flask(instance, "demo", "logins")
    assert "no demo school yet: run `flask --app wsgi demo seed`" in logins.stderr
    classes = flask(instance, "school", "classes")
    assert classes.returncode == 1 and "no classes" in classes.stderr
    for done in (logins, classes):
        assert "Traceback" not in done.stderr and "missing secrets" not in done.stderr


def test_without_dev_env_the_secrets_are_still_required(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    done = flask(instance, "school", "classes")
    assert done.returncode != 0 and "missing secrets" in done.stderr


def test_only_a_development_file_is_read_and_the_environment_wins(tmp_path):
    env_file = write_dev_env(tmp_path)
    environ = {"JOURNAL_INSTANCE": str(tmp_path), "JOURNAL_SECRET_KEY": "from the shell"}
    assert load_development_env(environ) == env_file
    assert environ["JOURNAL_ENV"] == "development"
    assert environ["JOURNAL_SECRET_KEY"] == "from the shell"
    assert environ["JOURNAL_IIN_HMAC_KEY"]

    production = {"JOURNAL_INSTANCE": str(tmp_path), "JOURNAL_ENV": "production"}
    assert load_development_env(production) is None
    assert set(production) == {"JOURNAL_INSTANCE", "JOURNAL_ENV"}

    env_file.write_text(env_file.read_text().replace("JOURNAL_ENV=development", ""))
    other = {"JOURNAL_INSTANCE": str(tmp_path)}
    assert load_development_env(other) is None and set(other) == {"JOURNAL_INSTANCE"}
    assert load_development_env({"JOURNAL_INSTANCE": str(tmp_path / "nowhere")}) is None


def test_make_run_serves_on_the_port_asked_for():
    planned = subprocess.run(
        ["make", "-n", "run", "PORT=5077"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "--port 5077" in planned
    default = subprocess.run(
        ["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "--port 5000" in default


def test_the_favicon_is_served(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'unused.db'}", tmp_path / "keys")
    response = app.test_client().get("/favicon.ico")
    assert response.status_code == 200
    assert response.mimetype == "image/vnd.microsoft.icon"
    assert response.data[:4] == b"\x00\x00\x01\x00" and len(response.data) < 4096
    app.extensions["journal_db"].engine.dispose()


@pytest.mark.parametrize("tool", ["oathtool"])
def test_the_readme_names_no_tool_the_project_does_not_install(tool):
    readme = (ROOT / "README.md").read_text()
    assert tool not in readme
    assert "make run PORT=" in readme and "school classes" in readme

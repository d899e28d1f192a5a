"""Start-up that just works (issue 17): `make run PORT=...`, `flask --app wsgi ...` in a new
terminal reads the development settings by itself, a favicon, and a README that names only
tools the project installs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
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


def shared_memory_kb(pid: int) -> int:
    """Memory a process shares with others that is not a file's (a fork's copy-on-write pages)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    )
    return int(fields["Shared_Dirty"].split()[0])


@pytest.mark.skipif(
    not Path("/proc/self/smaps_rollup").exists()
    or not Path(f"/proc/self/task/{os.getpid()}/children").exists(),
    reason="reads a process's memory and children in Linux's /proc",
)
def test_gunicorn_started_in_the_repository_loads_the_app_once_for_its_workers(tmp_path):
    """gunicorn.conf.py is read by `gunicorn wsgi:app` run here: the master loads the app and
    each worker is a fork that shares its pages, instead of importing it all again."""
    write_dev_env(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}"]
        + ["--log-level", "warning", "wsgi:app"],
        cwd=ROOT,
        env=a_new_terminal(tmp_path),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "gunicorn exited"
            assert time.monotonic() < deadline, "gunicorn did not answer within a minute"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/favicon.ico", timeout=5):
                    break
            except OSError:
                time.sleep(0.1)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
        while len(workers := [int(pid) for pid in children.read_text().split()]) < 2:
            assert time.monotonic() < deadline, f"{len(workers)} workers within a minute"
            time.sleep(0.05)
        # Tens of MB of the master's heap (the loaded app); a worker that imported the app
        # itself shares next to nothing of it.
        assert all(shared_memory_kb(pid) > 30_000 for pid in workers), [
            shared_memory_kb(pid) for pid in workers
        ]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

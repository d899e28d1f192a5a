"""A database that cannot be reached (PostgreSQL restarting, a lost file) answers 503 with
Retry-After, in the three languages, without touching the database again: clients and the
grid's outbox retry 5xx, and a person sees what is happening instead of an error page."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ..conftest import make_app


def unreachable_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'no-such-folder' / 'journal.db'}"
    with socket.socket() as sock:  # a loopback port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/journal"


@pytest.fixture(params=["sqlite", "postgresql"])
def signed_in_without_database(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    app = make_app(unreachable_url(request.param, tmp_path), tmp_path / "keys")
    client = app.test_client()
    with client.session_transaction() as state:
        state.update(sid="a session the unreachable database would have to look up")
    yield client
    app.extensions["journal_db"].engine.dispose()


def test_a_page_says_the_database_is_unreachable_in_three_languages(signed_in_without_database):
    response = signed_in_without_database.get("/teacher/")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    text = response.get_data(as_text=True)
    assert "cannot be reached" in text and "недоступна" in text and "мүмкін емес" in text


def test_the_sync_api_answers_503_json_so_the_outbox_retries(signed_in_without_database):
    response = signed_in_without_database.get("/api/sync/session")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json["error"] == "unavailable"

"""The public check page a printout's QR code leads to: genuine, tampered, and bad uploads."""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

import pytest
import sqlalchemy as sa

from archive import public_check
from exports import printouts
from journal.models import ClassGroup, School

SMALL = ["--students", "5", "--classes", "1"]


@pytest.fixture
def demo(app, session):
    result = app.test_cli_runner().invoke(args=["demo", "seed", *SMALL], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return session.scalar(sa.select(ClassGroup))


@pytest.fixture
def journal_pdf(app, session, demo) -> bytes:
    return printouts.journal_pdf(session, app.config, demo, 1)


def _post(client: Any, data: bytes, name: str = "q1.pdf") -> Any:
    page = client.get("/check")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text)
    assert token, page.text
    return client.post(
        "/check",
        data={"csrf_token": token.group(1), "file": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def _client(app: Any, address: str) -> Any:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_a_genuine_printout_is_valid_and_named(app, session, demo, journal_pdf):
    school = session.scalar(sa.select(School))
    answer = _post(_client(app, "10.1.0.1"), journal_pdf)
    assert answer.status_code == 200
    assert 'data-valid="yes"' in answer.text
    assert school.name in answer.text
    assert demo.name in answer.text
    assert "2026-2027" in answer.text or "20" in answer.text


def test_a_tampered_printout_is_not_valid(app, demo, journal_pdf):
    changed = bytearray(journal_pdf)
    spot = changed.index(b"/Contents") // 2  # inside the signed page content
    changed[spot] = changed[spot] ^ 0x01
    answer = _post(_client(app, "10.1.0.2"), bytes(changed))
    assert answer.status_code == 200
    assert 'data-valid="no"' in answer.text
    assert 'data-valid="yes"' not in answer.text


def test_bad_uploads_get_a_clear_answer(app, demo, monkeypatch):
    client = _client(app, "10.1.0.3")
    not_pdf = _post(client, b"hello", "note.txt")
    assert not_pdf.status_code == 400 and "check-error" in not_pdf.text
    foreign = _post(client, b"%PDF-1.7\n%%EOF\n")
    assert foreign.status_code == 200 and 'data-valid="no"' in foreign.text
    monkeypatch.setattr(public_check, "MAX_UPLOAD", 1024)
    big = _post(client, b"%PDF-" + b"0" * 10_000)
    assert big.status_code == 413 and "check-error" in big.text


def test_the_page_is_rate_limited_per_address(app, demo):
    client = _client(app, "10.1.0.4")
    answers = [_post(client, b"not a pdf").status_code for _ in range(11)]
    assert answers[:10] == [400] * 10
    assert answers[10] == 429
    other = _client(app, "10.1.0.5")
    assert _post(other, b"not a pdf").status_code == 400


def test_the_qr_link_shows_what_it_names_without_login(app, demo):
    root = "A" * 43
    page = _client(app, "10.1.0.6").get(f"/check?o=school.example.kz/journal/7&s=12&r={root}")
    assert page.status_code == 200
    assert "school.example.kz/journal/7" in page.text and ">12<" in page.text


def test_the_rate_limit_count_reads_its_own_index(app, session):
    """The count runs on every upload: it must read the partial index of upload rows, not scan
    the access log, which grows with every grid and pupil page the school opens."""
    query = public_check.uploads_since("10.1.0.7", dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    compiled = query.compile(session.bind, compile_kwargs={"literal_binds": True})
    if session.bind.dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL enable_seqscan = off"))  # a test table is tiny
        plan = "\n".join(session.scalars(sa.text(f"EXPLAIN {compiled}")))
    else:
        plan = "\n".join(
            row[-1] for row in session.execute(sa.text(f"EXPLAIN QUERY PLAN {compiled}"))
        )
    assert "ix_access_log_check_ip" in plan, plan

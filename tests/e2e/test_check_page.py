"""In a real browser: the public check page accepts a genuine printout, refuses a tampered one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from exports import printouts
from journal.db import db
from journal.models import ClassGroup

from ..conftest import Databases, make_app, migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, databases: Databases, tmp_path: Path
) -> Iterator[tuple[str, bytes]]:
    app = make_app(databases.create(request.param), tmp_path / "keys")
    migrate(app)
    seeded = app.test_cli_runner().invoke(
        args=["demo", "seed", "--students", "4", "--classes", "1"]
    )
    assert seeded.exit_code == 0, seeded.output

    def printout() -> bytes:
        with app.app_context():
            group = db.session.scalar(sa.select(ClassGroup))
            data = printouts.journal_pdf(db.session, app.config, group, 1)
            db.session.rollback()
            return data

    # Signing runs asyncio.run (pyhanko): not on the thread where Playwright's loop runs.
    with ThreadPoolExecutor(1) as pool:
        pdf = pool.submit(printout).result()
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}", pdf
    http.shutdown()
    thread.join(timeout=10)
    app.extensions["journal_db"].engine.dispose()  # no pooled connection outlives the test


def _check(chromium: Any, url: str, path: Path) -> str:
    context = chromium.new_context(locale="kk-KZ")
    page = context.new_page()
    page.goto(f"{url}/check")
    page.set_input_files("#check-file", str(path))
    page.click("#check-form button[type=submit]")
    page.wait_for_selector("#check-verdict")
    verdict = page.get_attribute("#check-verdict", "data-valid") or ""
    heading = page.inner_text("#check-result")
    context.close()
    return f"{verdict}|{heading}"


def test_the_check_page_accepts_a_genuine_printout_and_refuses_a_tampered_one(
    chromium: Any, served: tuple[str, bytes], tmp_path: Path
) -> None:
    url, pdf = served
    genuine = tmp_path / "genuine.pdf"
    genuine.write_bytes(pdf)
    changed = bytearray(pdf)
    spot = changed.index(b"/Contents") // 2
    changed[spot] ^= 0x01
    tampered = tmp_path / "tampered.pdf"
    tampered.write_bytes(bytes(changed))

    valid, heading = _check(chromium, url, genuine).split("|", 1)
    assert valid == "yes", heading
    refused, heading = _check(chromium, url, tampered).split("|", 1)
    assert refused == "no", heading

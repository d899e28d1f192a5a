"""With a TSA configured, every checkpoint carries an RFC 3161 token, whichever path cuts it.

One test per path: the hourly `journal checkpoint`, `journal close-term`, the admin's close
button, a parent's proof in the portal, the archive run (quarter bags, summary-ledger records and
the checkpoint that ends every run that adds ledger records). Each token is checked the way an
inspector checks it: ``openssl ts -verify`` against the TSA's CA, over the checkpoint's note.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from archive.timestamps import verify_timestamp
from journal.models import Checkpoint, Term
from journal.recording.recorder import record_entry
from tests.archive.conftest import LocalTSA
from tests.external import need_tool
from tests.factories import NOW, add_user, signed_in_client


@pytest.fixture
def tsa_configured(app: Any, local_tsa: LocalTSA, monkeypatch: pytest.MonkeyPatch) -> LocalTSA:
    need_tool("openssl")
    monkeypatch.setitem(app.config, "TSA_URL", local_tsa.url)
    return local_tsa


@pytest.fixture
def new_checkpoints(session: Any) -> Callable[[], list[Checkpoint]]:
    """A function listing the checkpoints cut since the test began."""
    before = session.scalar(sa.select(sa.func.max(Checkpoint.id))) or 0

    def since() -> list[Checkpoint]:
        session.expire_all()
        query = sa.select(Checkpoint).where(Checkpoint.id > before).order_by(Checkpoint.id)
        return list(session.scalars(query))

    return since


def stamped(checkpoints: list[Checkpoint], tsa: LocalTSA, expected: int) -> None:
    """Exactly ``expected`` new checkpoints, each with a token openssl verifies over its note."""
    assert len(checkpoints) == expected, [c.size for c in checkpoints]
    for checkpoint in checkpoints:
        assert checkpoint.timestamp_token, f"checkpoint {checkpoint.size} has no timestamp"
        verify_timestamp(checkpoint.note.encode(), bytes(checkpoint.timestamp_token), tsa.ca_cert)


def grow(world: Any) -> None:
    record_entry(world.session, world.signed("attendance"), now=NOW)


def test_the_hourly_checkpoint_command(world, app, tsa_configured, new_checkpoints):
    grow(world)
    result = app.test_cli_runner().invoke(args=["journal", "checkpoint", str(world.log.id)])
    assert result.exit_code == 0 and "new checkpoint" in result.output, result.output
    stamped(new_checkpoints(), tsa_configured, 1)


def test_close_term_from_the_command_line(world, app, tsa_configured, new_checkpoints):
    grow(world)
    result = app.test_cli_runner().invoke(
        args=["journal", "close-term", str(world.year.id), "2", "--reason", "test", "--yes"]
    )
    assert result.exit_code == 0, result.output
    stamped(new_checkpoints(), tsa_configured, 2)  # the journal and the ledger log


def test_the_admins_close_button(world, app, session, tsa_configured, new_checkpoints):
    grow(world)
    admin = signed_in_client(app, add_user(session, world.school, "school_admin"))
    page = admin.get("/admin/terms")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    answer = admin.post(
        f"/admin/terms/{world.q2.id}/close",
        data={"csrf_token": token, "confirm": "yes", "reason": "test"},
    )
    assert answer.status_code == 302
    assert session.get(Term, world.q2.id).closed_at is not None
    stamped(new_checkpoints(), tsa_configured, 2)


def test_a_parents_proof_in_the_portal(world, app, session, tsa_configured, new_checkpoints):
    from tests.journal.test_portal import parent_of

    mark = world.signed("grade")
    record_entry(session, mark, now=NOW)
    parent = signed_in_client(app, parent_of(session, world.school, world.student))
    entry_id = mark["payload"]["entry_id"]
    answer = parent.get(f"/api/portal/students/{world.student.id}/entries/{entry_id}/proof")
    assert answer.status_code == 200, answer.text
    stamped(new_checkpoints(), tsa_configured, 1)


def test_no_checkpoint_without_its_timestamp_when_the_tsa_is_down(
    world, app, session, monkeypatch: pytest.MonkeyPatch, new_checkpoints
) -> None:
    monkeypatch.setitem(app.config, "TSA_URL", "http://127.0.0.1:9/tsa")  # nothing listens
    mark = world.signed("grade")
    record_entry(session, mark, now=NOW)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["journal", "checkpoint", str(world.log.id)])
    assert result.exit_code == 1 and "no checkpoint cut" in result.output, result.output
    assert "unreachable" in result.output
    result = runner.invoke(
        args=["journal", "close-term", str(world.year.id), "2", "--reason", "test", "--yes"]
    )
    assert result.exit_code == 1 and "unreachable" in result.output, result.output
    admin = signed_in_client(app, add_user(session, world.school, "school_admin"))
    token = re.search(r'name="csrf_token" value="([^"]+)"', admin.get("/admin/terms").text)
    answer = admin.post(
        f"/admin/terms/{world.q2.id}/close",
        data={"csrf_token": token.group(1), "confirm": "yes", "reason": "test"},
        follow_redirects=True,
    )
    said = (
        "The timestamp authority did not answer",
        "Уақыт белгісі қызметі жауап бермеді",  # the admin's page speaks Kazakh by default
        "Служба меток времени не ответила",
    )
    assert any(text in answer.text for text in said), answer.text[-1500:]
    assert session.get(Term, world.q2.id).closed_at is None
    assert new_checkpoints() == []
    # A parent asking for a proof meanwhile is told it is not ready yet, and nothing is cut.
    from tests.journal.test_portal import parent_of

    parent = signed_in_client(app, parent_of(session, world.school, world.student))
    entry_id = mark["payload"]["entry_id"]
    answer = parent.get(f"/api/portal/students/{world.student.id}/entries/{entry_id}/proof")
    assert answer.status_code == 409 and "timestamp authority" in answer.json["message"]
    assert new_checkpoints() == []


def test_the_archive_run(app, session, tsa_configured, new_checkpoints, tmp_path, monkeypatch):
    """Quarter bags, the summary-ledger records and the checkpoint that ends the run."""
    from tests.archive.school import build_past_school

    for name, value in {
        "TSA_CA_CERTS": str(tsa_configured.ca_cert),
        "ARCHIVE_LOCAL_ROOT": str(tmp_path / "store"),
        "ARCHIVE_STAGING_DIR": str(tmp_path / "staging"),
    }.items():
        monkeypatch.setitem(app.config, name, value)
    past = build_past_school(session, app.config["KEYS_DIR"], classes=1)
    result = app.test_cli_runner().invoke(args=["archive", "run"])
    assert result.exit_code == 0 and "6 bag(s) sealed" in result.output, result.output
    checkpoints = new_checkpoints()
    assert {c.log_id for c in checkpoints} == {past.logs[0].id, past.ledger.id}
    stamped(checkpoints, tsa_configured, len(checkpoints))
    session.refresh(past.ledger)
    assert max(c.size for c in checkpoints if c.log_id == past.ledger.id) == past.ledger.size

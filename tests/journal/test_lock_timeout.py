"""A writer stuck holding a journal's lock does not hang the sync API (issue 18).

On PostgreSQL every append runs under ``SET LOCAL lock_timeout`` (``APPEND_LOCK_TIMEOUT``): a
batch that cannot get a lock it needs in time (the log row's, or the device key row's that
keeps the device_seq report) is answered 503 ``journal_locked`` with Retry-After, writes
nothing, and goes through once the lock is free.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import g
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from werkzeug.test import EnvironBuilder

from auth.models import DeviceKey
from journal.db import db
from journal.models import Entry, Log

from ..factories import build_world, signed_in_client

SPEC = OpenAPI.from_file_path(str(Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"))


def stored_entries(session, log_id: int) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(
        sa.select(sa.func.count()).select_from(Entry).where(Entry.log_id == log_id)
    )


@pytest.mark.postgres_only
@pytest.mark.parametrize("held", ["journal", "device key"])
def test_a_held_journal_lock_is_answered_503_and_nothing_is_written(backend, request, held):
    if backend != "postgresql":
        pytest.skip("lock_timeout is PostgreSQL's; SQLite writers queue on busy_timeout")
    app = request.getfixturevalue("fresh_app")
    app.config["APPEND_LOCK_TIMEOUT"] = 0.3
    with app.app_context():
        world = build_world(db.session, app.config["KEYS_DIR"])
        batch = {"entries": [world.signed("grade"), world.signed("attendance")]}
        log_id = world.log.id
        client = signed_in_client(app, world.teacher)
        g.pop("current_user", None)
        csrf = client.get("/api/sync/session").json["csrf_token"]
        headers = {"X-CSRFToken": csrf}

        holder = sa.create_engine(app.config["DATABASE_URL"])
        try:
            with holder.connect() as other:
                # Another writer (a stuck request, an operator's open transaction) holds the row.
                if held == "journal":
                    other.execute(sa.select(Log.size).where(Log.id == log_id).with_for_update())
                else:  # the same device storing into another journal, at this moment
                    other.execute(
                        sa.select(DeviceKey.kid)
                        .where(DeviceKey.kid == world.device.kid)
                        .with_for_update(key_share=True)
                    )
                started = time.monotonic()
                g.pop("current_user", None)
                refused = client.post("/api/sync/entries", json=batch, headers=headers)
                waited = time.monotonic() - started
                other.rollback()
        finally:
            holder.dispose()

        assert refused.status_code == 503, refused.get_data(as_text=True)
        assert refused.json["error"] == "journal_locked"
        assert refused.json["message"]
        assert int(refused.headers["Retry-After"]) >= 1
        # The view consumed the body; the spec checks a copy of the same request.
        sent = EnvironBuilder(
            "/api/sync/entries", method="POST", json=batch, headers=headers
        ).get_request()
        SPEC.validate_response(WerkzeugOpenAPIRequest(sent), WerkzeugOpenAPIResponse(refused))
        assert 0.3 <= waited < 5, waited  # gave up at the timeout, not later
        db.session.rollback()
        assert stored_entries(db.session, log_id) == 0

        # The lock is free again: the device's retry goes through.
        g.pop("current_user", None)
        again = client.post("/api/sync/entries", json=batch, headers=headers)
        assert again.status_code == 200, again.get_data(as_text=True)
        assert [r["status"] for r in again.json["results"]] == ["accepted", "accepted"]
        db.session.rollback()
        assert stored_entries(db.session, log_id) == 2

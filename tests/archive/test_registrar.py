"""A registrar issues a duplicate-certificate extract from the archive alone, years later, on a
server whose database holds nothing of the former student."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from archive.registrar import Query, RegistrarError, find_records, issue_extract
from archive.services import ArchiveSettings, run_archive
from archive.storage import LocalWormStorage, storage_from_config
from auth.iin import iin_lookup_hash
from auth.models import AccessLogEntry, User
from exports.pdf import extract_embedded_files
from journal.db import db
from journal.models import Entry, Log, School, Student

from ..conftest import Databases, make_app, migrate
from ..external import need_tool
from ..factories import add_user, signed_in_client
from .school import build_past_school

IIN = "110315500018"  # a valid check digit, born 2011-03-15


def test_extract_from_the_archive_alone(
    fresh_app: Any, backend: str, databases: Databases, tmp_path: Path
) -> None:
    # The old server: a finished year, archived.
    with fresh_app.app_context():
        session = db.session
        past = build_past_school(session, fresh_app.config["KEYS_DIR"])
        student = session.scalars(sa.select(Student).order_by(Student.id)).first()
        student.iin_hmac = iin_lookup_hash(IIN, fresh_app.config["IIN_HMAC_KEY"])
        name = (student.last_name, student.first_name, student.birth_date)
        school = (past.school.domain, past.school.name, past.school.log_vkey)
        session.commit()
        settings = ArchiveSettings(
            storage=LocalWormStorage(Path(fresh_app.config["ARCHIVE_LOCAL_ROOT"])),
            staging_dir=tmp_path / "staging",
            keys_dir=Path(fresh_app.config["KEYS_DIR"]),
        )
        [outcome] = run_archive(session, settings)
        assert outcome.error is None, outcome.error

    # The new server: an empty database; the operator registers the school again (its
    # published key) and a registrar account. No student, no entry, no journal.
    new_app = make_app(databases.create(backend), Path(fresh_app.config["KEYS_DIR"]))
    migrate(new_app)
    with new_app.app_context():
        session = db.session
        session.add(School(domain=school[0], name=school[1], log_vkey=school[2]))
        session.flush()
        registrar = add_user(session, session.scalar(sa.select(School)), "registrar")
        session.commit()
        assert session.scalar(sa.select(sa.func.count()).select_from(Student)) == 0
        client = signed_in_client(new_app, registrar)

    page = client.get("/archive/registrar")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    by_iin = client.post("/archive/registrar", data={"csrf_token": token, "iin": IIN})
    assert by_iin.status_code == 200, by_iin.text
    assert "flash-error" not in by_iin.text, by_iin.text[-1500:]
    assert name[0] in by_iin.text and "2024-2025" in by_iin.text
    by_name = client.post(
        "/archive/registrar",
        data={
            "csrf_token": token,
            "last_name": name[0].upper(),
            "first_name": name[1],
            "birth_date": name[2].isoformat(),
        },
    )
    assert name[0] in by_name.text
    wrong = client.post("/archive/registrar", data={"csrf_token": token, "iin": "110315500019"})
    # The reason, in the page's language (Kazakh unless the browser asks otherwise).
    assert "соңғы цифры басқаларына сәйкес емес" in wrong.text

    found = client.post("/archive/registrar", data={"csrf_token": token, "iin": IIN})
    # The extract's language is offered, the interface's (Kazakh) chosen.
    assert '<option value="kk" selected>Қазақша</option>' in found.text
    refused = client.post(
        "/archive/registrar",
        data={"csrf_token": token, "iin": IIN, "issue": "1", "language": "en"},
    )
    assert refused.status_code == 400
    issued = client.post("/archive/registrar", data={"csrf_token": token, "iin": IIN, "issue": "1"})
    assert issued.status_code == 200 and issued.mimetype == "application/pdf"
    need_tool("pdftotext")
    pdf = tmp_path / "extract.pdf"
    pdf.write_bytes(issued.data)
    text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Білім туралы құжат телнұсқасына үзінді көшірме" in text, text
    assert "Выписка" not in text
    files = extract_embedded_files(issued.data)
    vkey = files["log.vkey"].decode().strip()
    assert vkey == school[2]
    leaves = files["entries.jsonl"].splitlines()
    assert leaves
    for line in leaves:
        record = json.loads(line)
        assert record["payload"]["kind"] == "ledger_record"
        assert (
            record["payload"]["student"]["iin_hmac"]
            == base64.b64encode(iin_lookup_hash(IIN, new_app.config["IIN_HMAC_KEY"])).decode()
        )
        leaf = tmp_path / "leaf"
        proof = tmp_path / "record.tlog-proof"
        leaf.write_bytes(line)
        proof.write_bytes(files[f"{record['seq']}.tlog-proof"])
        verify = [sys.executable, "-m", "archive.verify.verify"]
        checked = subprocess.run(
            [*verify, "proof", "--vkey", vkey, "--leaf", str(leaf), str(proof)],
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        leaf.write_bytes(line.replace(b'"ledger_record"', b'"ledger_recorD"'))
        checked = subprocess.run(
            [*verify, "proof", "--vkey", vkey, "--leaf", str(leaf), str(proof)],
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 1

    # The issuance is recorded in the school ledger log of the new server.
    with new_app.app_context():
        session = db.session
        ledger = session.scalar(sa.select(Log).where(Log.kind == "ledger"))
        kinds = [
            json.loads(leaf)["payload"]["kind"]
            for leaf in session.scalars(sa.select(Entry.leaf).where(Entry.log_id == ledger.id))
        ]
        # The extract's signer is registered there first (its anchor travels in the extract).
        assert kinds == ["pdf_signer_registered", "duplicate_issued"]
    new_app.extensions["journal_db"].engine.dispose()


def _token(client: Any) -> str:
    page = client.get("/archive/registrar")
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def test_a_registrar_searches_and_issues_from_their_own_schools_archive_only(
    fresh_app: Any, tmp_path: Path
) -> None:
    """Two schools archived on one server: a registrar of school A finds nothing of school B
    (not by IIN, not by name), cannot have B's extract issued, and each search leaves an
    access-log row with the keyed hash of what was searched, never the IIN."""
    key = fresh_app.config["IIN_HMAC_KEY"]
    with fresh_app.app_context():
        session = db.session
        alpha = build_past_school(session, fresh_app.config["KEYS_DIR"], classes=1)
        beta = build_past_school(session, fresh_app.config["KEYS_DIR"], classes=1)
        alpha.school.name, beta.school.name = "Alpha school", "Beta school"
        beta.students[0].iin_hmac = iin_lookup_hash(IIN, key)
        student = beta.students[0]
        name = (student.last_name, student.first_name, student.birth_date.isoformat())
        own = add_user(session, alpha.school, "registrar")
        theirs = add_user(session, beta.school, "registrar")
        regional = add_user(session, alpha.school, "registrar")
        regional.roles[0].school_id = None  # a registrar for every school
        session.commit()
        ids = {"own": own.id, "theirs": theirs.id, "regional": regional.id}
        beta_scope = {
            "trusted_vkeys": {beta.school.log_vkey},
            "prefixes": [f"{beta.school.domain}/"],
        }
        settings = ArchiveSettings(
            storage=LocalWormStorage(Path(fresh_app.config["ARCHIVE_LOCAL_ROOT"])),
            staging_dir=tmp_path / "staging",
            keys_dir=Path(fresh_app.config["KEYS_DIR"]),
        )
        outcomes = run_archive(session, settings)
        assert [o.error for o in outcomes] == [None, None]
        users = {label: session.get(User, user_id) for label, user_id in ids.items()}
        clients = {label: signed_in_client(fresh_app, user) for label, user in users.items()}
    for client in clients.values():
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"

    def search(label: str, **fields: str) -> Any:
        client = clients[label]
        return client.post("/archive/registrar", data={"csrf_token": _token(client), **fields})

    by_name = {"last_name": name[0], "first_name": name[1], "birth_date": name[2]}
    # School A's registrar: B's pupil is not found by IIN; by name only A's own namesake is.
    by_iin = search("own", iin=IIN)
    assert by_iin.status_code == 200 and "flash-error" not in by_iin.text
    assert "Records found: 0" in by_iin.text
    named = search("own", **by_name)
    assert "Alpha school" in named.text and "Beta school" not in named.text
    issued = search("own", iin=IIN, issue="1")
    assert issued.mimetype == "text/html" and "Records found: 0" in issued.text
    # School B's registrar and the regional one find B's records.
    for label in ("theirs", "regional"):
        found = search(label, iin=IIN)
        assert "Beta school" in found.text and "Records found: 0" not in found.text, label
    assert "Alpha school" not in search("theirs", **by_name).text
    pdf = search("theirs", iin=IIN, issue="1")
    assert pdf.mimetype == "application/pdf"

    with fresh_app.app_context():
        session = db.session
        records = find_records(
            storage_from_config(fresh_app.config),
            Query(iin_hmac=base64.b64encode(iin_lookup_hash(IIN, key)).decode()),
            **beta_scope,
        )
        assert records
        with pytest.raises(RegistrarError, match="not a registrar"):
            issue_extract(
                session, fresh_app.config, records, registrar=session.get(User, ids["own"])
            )
        session.rollback()
        rows = session.scalars(
            sa.select(AccessLogEntry).where(AccessLogEntry.action.like("registrar_search%"))
        ).all()
        hashed = iin_lookup_hash(IIN, key).hex()
        searches = [(r.actor_id, r.target_type, r.target_id) for r in rows]
        assert (ids["own"], "iin", hashed) in searches
        assert (ids["theirs"], "iin", hashed) in searches
        assert {r.target_type for r in rows} == {"iin", "name"}
        assert all(r.target_id and len(r.target_id) == 64 for r in rows)
        logged = session.scalars(sa.select(AccessLogEntry.target_id)).all()
        assert not [t for t in logged if t and (IIN in t or name[0] in t)]
        issues = session.scalars(
            sa.select(AccessLogEntry).where(AccessLogEntry.action == "issue_duplicate")
        ).all()
        assert [(r.actor_id, r.target_id) for r in issues] == [(ids["theirs"], hashed)]

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

import sqlalchemy as sa

from archive.services import ArchiveSettings, run_archive
from archive.storage import LocalWormStorage
from auth.iin import iin_lookup_hash
from exports.pdf import extract_embedded_files
from journal.db import db
from journal.models import Entry, Log, School, Student

from ..conftest import Databases, make_app, migrate
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
    assert "check digit" in wrong.text

    issued = client.post("/archive/registrar", data={"csrf_token": token, "iin": IIN, "issue": "1"})
    assert issued.status_code == 200 and issued.mimetype == "application/pdf"
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

"""The certificate register: a certificate recorded at school, archived; years later, on a server
whose database holds nothing of the pupil, a registrar issues a duplicate from the archive alone
(its own number, the reason, a link to the original record, the final grades); a registrar of
another school finds nothing."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from archive.services import ArchiveSettings, run_archive
from archive.storage import LocalWormStorage
from auth.iin import iin_lookup_hash
from auth.models import User
from exports.pdf import extract_embedded_files
from journal.certificates.register import CertificateError, certificate_grades, year_lines
from journal.certificates.services import record_certificate
from journal.db import db
from journal.models import Entry, Log, School, Student
from journal.services import append_ledger_record

from ..conftest import Databases, make_app, migrate
from ..external import need_tool
from ..factories import add_user, signed_in_client
from .school import YEAR, PastSchool, build_past_school

IIN = "110315500018"
SUBJECTS = ("Математика", "Қазақ тілі")


def _ledger_record(
    session: Any, past: PastSchool, index: int, student: Student, grades: dict[str, list[str]]
) -> None:
    """A summary-ledger record shaped as ``exports.queries.record_summary_ledger`` writes it."""
    group = past.classes[index]
    append_ledger_record(
        session,
        past.school,
        past.log_key,
        "ledger_record",
        {
            "school_year": YEAR[0],
            "class": {"id": group.id, "name": group.name, "grade_level": group.grade_level},
            "student": {
                "id": student.id,
                "last_name": student.last_name,
                "first_name": student.first_name,
                "patronymic": None,
                "birth_date": student.birth_date.isoformat(),
                "iin_hmac": base64.b64encode(student.iin_hmac).decode()
                if student.iin_hmac
                else None,
            },
            "grades": grades,
            "half_year_subjects": [],
            "absences": {"total": 3, "sick": 1},
            "rule": {"id": "kz-criteria", "version": 1},
        },
        student_id=student.id,
        cell=f"ledger:{YEAR[0]}:{group.id}:{student.id}",
    )


def test_a_pupil_who_moved_class_has_one_line_per_year() -> None:
    first = {
        "kind": "ledger_record",
        "school_year": "2024-2025",
        "class": {"name": "9А", "grade_level": 9},
        "grades": {"Математика": ["4", "5", "", "", ""]},
        "absences": {"total": 2, "sick": 1},
    }
    second = {
        **first,
        "class": {"name": "9Б", "grade_level": 9},
        "grades": {"Математика": ["", "", "4", "5", "5"]},
    }
    # The old class sealed a year grade from its two quarters too: the class the pupil
    # finished in gives the year's, in whichever order the classes were recorded.
    first["grades"] = {"Математика": ["4", "5", "", "", "4"]}
    assert year_lines([second, first]) == year_lines([first, second])
    [line] = year_lines([second, first])
    assert line.class_names == ("9А", "9Б")
    assert line.grades == {"Математика": ("4", "5", "4", "5", "5")}
    assert (line.absences_total, line.absences_sick) == (4, 2)
    assert certificate_grades([line], ["Математика", "Химия"]) == {"Математика": "5", "Химия": ""}
    # The exam commission's final grade wins over the year grade (journal.council).
    finals = {"Математика": 4}
    assert certificate_grades([line], ["Математика"], finals) == {"Математика": "4"}


def _count_entries(session: Any) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(Entry)))


def test_duplicate_from_the_archive_alone(
    fresh_app: Any,
    backend: str,
    databases: Databases,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The old server: a grade-9 year; one pupil moved from 9А to 9Б in the third quarter.
    with fresh_app.app_context():
        session = db.session
        past = build_past_school(session, fresh_app.config["KEYS_DIR"])
        for group, name in zip(past.classes, ("9А", "9Б"), strict=True):
            group.grade_level, group.name = 9, name
        moved, stayed = past.students
        moved.iin_hmac = iin_lookup_hash(IIN, fresh_app.config["IIN_HMAC_KEY"])
        school = (past.school.domain, past.school.name, past.school.log_vkey)
        session.commit()

        def summary_ledger_then_certificate(session: Any, class_group: Any, log_key: Any) -> list:
            """The archive run records the summary ledgers just before the year's ledger bag:
            here the grade-9 records, and the certificate issued from them, so both are in
            the bag (the test school has no sealed year grades of its own)."""
            if class_group.id != past.classes[0].id:
                return []
            _ledger_record(session, past, 0, moved, {s: ["4", "5", "", "", ""] for s in SUBJECTS})
            _ledger_record(
                session,
                past,
                1,
                moved,
                {"Математика": ["", "", "4", "4", "4"], "Қазақ тілі": ["", "", "5", "5", "5"]},
            )
            _ledger_record(
                session, past, 1, stayed, {s: ["3", "3", "3", "3", "3"] for s in SUBJECTS}
            )
            fields = record_certificate(
                session,
                past.school,
                past.log_key,
                moved,
                level=9,
                series="НБ",
                number="0012345",
                issued_on=dt.date(2025, 6, 10),
            )
            assert fields["grades"] == {"Математика": "4", "Қазақ тілі": "5"}
            return []

        monkeypatch.setattr(
            "exports.queries.record_summary_ledger", summary_ledger_then_certificate
        )
        settings = ArchiveSettings(
            storage=LocalWormStorage(Path(fresh_app.config["ARCHIVE_LOCAL_ROOT"])),
            staging_dir=tmp_path / "staging",
            keys_dir=Path(fresh_app.config["KEYS_DIR"]),
        )
        outcomes = run_archive(session, settings)
        assert [o.failed for o in outcomes] == [[]]
        assert any(key.endswith("/ledger-2024-2025.tar") for key in outcomes[0].sealed)

        # Refusals write nothing: a number already in the register, years not recorded.
        before = _count_entries(session)
        with pytest.raises(CertificateError, match="already in the register"):
            record_certificate(
                session,
                past.school,
                past.log_key,
                stayed,
                level=9,
                series="НБ",
                number="0012345",
                issued_on=dt.date(2025, 6, 10),
            )
        with pytest.raises(CertificateError, match="grades 10–11"):
            record_certificate(
                session,
                past.school,
                past.log_key,
                stayed,
                level=11,
                series="ЖОБ",
                number="1",
                issued_on=dt.date(2025, 6, 10),
            )
        assert _count_entries(session) == before
        original_leaf = session.scalar(
            sa.select(Entry.leaf).where(Entry.kind == "certificate_issued")
        )
        session.commit()

    # The new server: the live database is EMPTY but for the school and two registrars.
    new_app = make_app(databases.create(backend), Path(fresh_app.config["KEYS_DIR"]))
    new_app.config["ARCHIVE_LOCAL_ROOT"] = fresh_app.config["ARCHIVE_LOCAL_ROOT"]
    migrate(new_app)
    with new_app.app_context():
        session = db.session
        session.add(School(domain=school[0], name=school[1], log_vkey=school[2]))
        other = School(domain="other-school.example.kz", name="Басқа мектеп")
        session.add(other)
        session.flush()
        home = session.scalar(sa.select(School).where(School.domain == school[0]))
        add_user(session, home, "registrar", username="registrar_home")
        add_user(session, other, "registrar", username="registrar_other")
        session.commit()
        assert session.scalar(sa.select(sa.func.count()).select_from(Student)) == 0
        assert _count_entries(session) == 0
    cli = new_app.test_cli_runner()

    def run(*args: str) -> Any:
        return cli.invoke(args=["registrar", *args])

    found = run("search", "--as", "registrar_home", "--iin", IIN)
    assert found.exit_code == 0, found.output
    assert "records found: 3" in found.output
    assert "certificate_issued НБ 0012345 2025-06-10" in found.output

    # A registrar of another school finds nothing, lists nothing, issues nothing.
    nothing = run("search", "--as", "registrar_other", "--iin", IIN)
    assert nothing.exit_code == 0 and "records found: 0" in nothing.output
    assert run("list", "--as", "registrar_other").output == ""
    pdf = tmp_path / "duplicate.pdf"
    duplicate = ("--series", "НБ", "--number", "0099999", "--date", "2026-11-02")
    refused = run(
        "issue", "--as", "registrar_other", "--iin", IIN, *duplicate,
        "--reason", "lost", "--output", str(pdf),
    )  # fmt: skip
    assert refused.exit_code != 0 and not pdf.exists()
    same_number = run(
        "issue", "--as", "registrar_home", "--iin", IIN, "--series", "НБ", "--number",
        "0012345", "--date", "2026-11-02", "--reason", "lost", "--output", str(pdf),
    )  # fmt: skip
    assert same_number.exit_code != 0 and "own series and number" in same_number.output
    with new_app.app_context():
        assert _count_entries(db.session) == 0  # nothing written on refusal

    issued = run(
        "issue", "--as", "registrar_home", "--iin", IIN, *duplicate,
        "--reason", "утерян (жоғалған)", "--output", str(pdf),
    )  # fmt: skip
    assert issued.exit_code == 0, issued.output
    assert "original НБ 0012345" in issued.output

    # The extract: one line for the year across both classes, the final grades, the proofs.
    files = extract_embedded_files(pdf.read_bytes())
    kinds = [json.loads(line)["payload"]["kind"] for line in files["entries.jsonl"].splitlines()]
    assert sorted(kinds) == ["certificate_issued", "ledger_record", "ledger_record"]
    need_tool("pdftotext")
    text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert text.count("2024-2025 (9А → 9Б)") == 1, text
    # In Kazakh unless the registrar asks for Russian (--language ru): its title, its labels.
    assert "Аттестат телнұсқасы НБ № 0099999" in text and "қорытынды бағалар" in text, text
    assert "Дубликат" not in text and "итоговые" not in text
    # The standalone verifier checks the extract: signer, embedded records, their proofs.
    checked = subprocess.run(
        [sys.executable, "-m", "archive.verify.verify", "pdf", "--vkey", school[2], str(pdf)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "duplicate certificate's extract" in checked.stdout
    assert "0099999" in text

    # The duplicate record: its own number, the reason, a link to the original, the grades.
    with new_app.app_context():
        session = db.session
        ledger = session.scalar(sa.select(Log).where(Log.kind == "ledger"))
        leaf = session.scalar(
            sa.select(Entry.leaf).where(
                Entry.log_id == ledger.id, Entry.kind == "certificate_duplicate"
            )
        )
        record = json.loads(leaf)["payload"]
        assert record["certificate"]["number"] == "0099999"
        assert record["reason"] == "утерян (жоғалған)"
        assert record["original"]["leaf_sha256"] == hashlib.sha256(original_leaf).hexdigest()
        assert record["original"]["origin"] == f"{school[0]}/ledger"
        assert record["grades"] == {"Математика": "4", "Қазақ тілі": "5"}

    listed = run("list", "--as", "registrar_home")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert len(lines) == 2
    assert "certificate_issued НБ 0012345 2025-06-10" in lines[0]
    assert "certificate_duplicate НБ 0099999 2026-11-02" in lines[1]
    assert "duplicate of НБ 0012345" in lines[1] and "утерян" in lines[1]
    # The same number twice is refused against the register, live records included.
    again = run(
        "issue", "--as", "registrar_home", "--iin", IIN, *duplicate,
        "--reason", "lost", "--output", str(tmp_path / "again.pdf"),
    )  # fmt: skip
    assert again.exit_code != 0 and "already in the certificate register" in again.output

    # The registrar's page does the same: the certificate is shown, a duplicate issued.
    with new_app.app_context():
        home_registrar = db.session.scalar(sa.select(User).where(User.username == "registrar_home"))
        client = signed_in_client(new_app, home_registrar)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    page = client.get("/archive/registrar")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    found_page = client.post("/archive/registrar", data={"csrf_token": token, "iin": IIN})
    assert "Certificate НБ № 0012345, 2025-06-10" in found_page.text
    assert "Issue a duplicate certificate" in found_page.text
    form = {"csrf_token": token, "iin": IIN, "duplicate": "1", "series": "НБ"}
    form |= {"number": "0012345", "issued_on": "2026-11-03", "reason": "damaged"}
    refused_page = client.post("/archive/registrar", data=form)
    assert refused_page.mimetype == "text/html" and "own series and number" in refused_page.text
    unknown = client.post("/archive/registrar", data=form | {"number": "0100000", "language": "de"})
    assert unknown.status_code == 400
    web = client.post("/archive/registrar", data=form | {"number": "0100000", "language": "ru"})
    assert web.status_code == 200 and web.mimetype == "application/pdf", web.text[-800:]
    web_pdf = tmp_path / "web.pdf"
    web_pdf.write_bytes(web.data)
    web_text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(web_pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Дубликат аттестата НБ № 0100000" in web_text and "итоговые оценки" in web_text
    assert "телнұсқасы" not in web_text
    assert run("list", "--as", "registrar_home").output.count("certificate_duplicate") == 2
    new_app.extensions["journal_db"].engine.dispose()


def test_certify_command_records_a_certificate_once(app: Any, session: Any) -> None:
    past = build_past_school(session, app.config["KEYS_DIR"], classes=1)
    past.classes[0].grade_level = 11
    pupil = past.students[0]
    _ledger_record(session, past, 0, pupil, {s: ["4", "4", "5", "5", "5"] for s in SUBJECTS})
    session.commit()
    runner = app.test_cli_runner()
    certify = ["registrar", "certify", "--student", str(pupil.id), "--series", "ЖОБ"]
    certify += ["--number", "000777", "--date", "2025-06-12"]
    refused = runner.invoke(args=[*certify, "--level", "9"])
    assert refused.exit_code != 0 and "grades 5–9" in refused.output
    done = runner.invoke(args=[*certify, "--level", "11"])
    assert done.exit_code == 0, done.output
    assert "Математика: 5, Қазақ тілі: 5" in done.output
    again = runner.invoke(args=[*certify, "--level", "11"])
    assert again.exit_code != 0 and "already in the register" in again.output
    kinds = session.scalars(sa.select(Entry.kind).where(Entry.kind.like("certificate%"))).all()
    assert kinds == ["certificate_issued"]

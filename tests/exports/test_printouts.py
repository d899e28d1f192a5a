"""Quarterly journals and summary ledgers from the database, checked with the real tools."""

from __future__ import annotations

import json
import re
import subprocess

import pikepdf
import pytest
import sqlalchemy as sa

from exports import printouts, queries
from exports.pdf import extract_embedded_files
from journal.cells import read_cells
from journal.ledger import audit, note, tlogproof
from journal.models import ClassGroup, Entry, Log, Student, Term

from ..external import need_tool

# Quarter 1 written and closed, quarter 2 written up to 6 December.
SMALL = ["--students", "5", "--classes", "1", "--today", "2026-12-07"]


@pytest.fixture
def demo(app, session):
    result = app.test_cli_runner().invoke(args=["demo", "seed", *SMALL], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return session.scalar(sa.select(ClassGroup))


@pytest.fixture
def journal_pdf(app, session, demo, tmp_path):
    path = tmp_path / "q1.pdf"
    path.write_bytes(printouts.journal_pdf(session, app.config, demo, 1))
    return path


def test_journal_signature_is_valid_and_breaks_on_one_byte(journal_pdf, tmp_path):
    need_tool("pdfsig")
    out = subprocess.run(["pdfsig", str(journal_pdf)], capture_output=True, text=True).stdout
    assert "Signature is Valid." in out
    data = bytearray(journal_pdf.read_bytes())
    middle = data.index(b"stream", len(data) // 4) + 20  # inside page content, in the signed range
    data[middle] ^= 0x01
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(bytes(data))
    out = subprocess.run(["pdfsig", str(broken)], capture_output=True, text=True).stdout
    assert "Signature is Valid." not in out
    assert re.search(r"Digest Mismatch|Signature is Invalid|corrupt", out, re.I), out


def test_journal_text_holds_every_name_and_grade_from_the_database(journal_pdf, session, demo):
    """Row by row and subject by subject, the marks printed are the marks in the database."""
    from collections import Counter

    from journal.models import Lesson, Subject

    need_tool("pdftotext")
    log = session.scalar(sa.select(Log).where(Log.class_group_id == demo.id))
    cells = read_cells(session, log.id)
    students = session.scalars(sa.select(Student)).all()
    q1 = session.scalar(sa.select(Term).where(Term.kind == "quarter", Term.number == 1))
    expected: dict[tuple[str, str], Counter] = {}
    for subject in session.scalars(sa.select(Subject)):
        if subject.by_half_year:
            continue  # printed in the half-year journal, not the quarter's
        lessons = session.scalars(
            sa.select(Lesson.id).where(Lesson.subject_id == subject.id, Lesson.date <= q1.ends_on)
        ).all()
        for student in students:
            marks = Counter()
            for lesson_id in lessons:
                for kind in ("FO", "SOR", "SOCh"):
                    cell = cells.get(f"{kind}:{lesson_id}:{student.id}")
                    if cell is not None and cell.value:
                        value = cell.value
                        marks[
                            str(value["score"])
                            if kind == "FO"
                            else f"{value['points']}/{value['max']}"
                        ] += 1
                cell = cells.get(f"att:{lesson_id}:{student.id}")
                if cell is not None and cell.value:
                    marks[
                        {"absent": "н", "sick": "б", "late": "оп", "excused": "уп"}[cell.value]
                    ] += 1
            expected[(subject.name, student.full_name)] = marks

    pages = subprocess.run(
        ["pdftotext", "-layout", str(journal_pdf), "-"], capture_output=True, text=True
    ).stdout.split("\f")
    printed: dict[tuple[str, str], Counter] = {key: Counter() for key in expected}
    for page in pages:
        found = re.search(r"Предмет: (.+?) · Учитель", page)
        if not found:
            continue
        subject_name = found.group(1).strip()
        current = None  # a cell with two marks wraps: continuation lines belong to the row above
        for line in page.splitlines():
            if line.startswith(("н — ", "Темы уроков")):
                current = None
                continue
            tokens = line.split()
            for student in students:
                if re.match(rf"\s*\d+\s+{re.escape(student.full_name)}(\s|$)", line):
                    current = student.full_name
                    tokens = line.split(student.full_name, 1)[1].split()
            if len(tokens) >= 2 and re.fullmatch(r"\d+\.\d", tokens[-2]):
                tokens = tokens[:-2]  # the term percent and grade, on whichever line they sit
            if current is not None:
                printed[(subject_name, current)].update(
                    t for t in tokens if re.fullmatch(r"10|[1-9]|\d+/\d+|н|б|оп|уп", t)
                )
    assert re.search("[әғқңөұүһі]", "".join(pages))
    assert sum(sum(c.values()) for c in expected.values()) > 50
    assert printed == expected


def test_qpdf_and_pdfa_checks_are_clean(journal_pdf):
    need_tool("qpdf")
    result = subprocess.run(["qpdf", "--check", str(journal_pdf)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    with pikepdf.open(journal_pdf) as pdf:
        assert pdf.open_metadata().pdfa_status == "3B"


def test_embedded_entries_verify_against_the_embedded_checkpoint(journal_pdf, session, demo):
    files = extract_embedded_files(journal_pdf.read_bytes())
    verifier = note.parse_vkey(files["log.vkey"].decode().strip())
    checkpoint = note.verify_checkpoint(files["checkpoint"].decode(), verifier)
    start, prefix = audit.parse_range_file(files[audit.RANGE_FILE].decode())
    leaves = files["entries.jsonl"].splitlines()
    audit.verify_range(start, prefix, leaves, checkpoint)
    keys = audit.device_keys_from_document(json.loads(files["device-keys.json"]))
    seqs = range(start, start + len(leaves))
    assert audit.check_leaves(leaves, seqs, keys, checkpoint.origin) == []
    log = session.scalar(sa.select(Log).where(Log.class_group_id == demo.id))
    # The quarter's range ends at the checkpoint that sealed it; quarter 2 goes on after it.
    assert checkpoint.origin == log.origin
    assert start + len(leaves) == checkpoint.size < log.size


def test_one_changed_embedded_entry_no_longer_verifies(journal_pdf):
    files = extract_embedded_files(journal_pdf.read_bytes())
    checkpoint = note.parse_checkpoint(files["checkpoint"].decode().split("\n\n")[0] + "\n")
    start, prefix = audit.parse_range_file(files[audit.RANGE_FILE].decode())
    leaves = files["entries.jsonl"].splitlines()
    leaves[3] = leaves[3].replace(b'"seq":3', b'"seq":4')
    with pytest.raises(ValueError):
        audit.verify_range(start, prefix, leaves, checkpoint)


def test_page_one_is_not_blank_and_has_one_row_per_student(journal_pdf, session, tmp_path):
    need_tool("pdftoppm", "pdftotext")
    subprocess.run(
        [
            "pdftoppm",
            "-r",
            "40",
            "-f",
            "1",
            "-l",
            "1",
            "-gray",
            str(journal_pdf),
            str(tmp_path / "p"),
        ],
        check=True,
    )
    (pgm,) = tmp_path.glob("p*.pgm")
    raw = pgm.read_bytes()
    header = raw.split(b"\n", 3)
    pixels = header[3]
    dark = sum(1 for b in pixels if b < 128)
    assert dark > len(pixels) * 0.01
    page = subprocess.run(
        ["pdftotext", "-layout", "-f", "1", "-l", "1", str(journal_pdf), "-"],
        capture_output=True,
        text=True,
    ).stdout
    for student in session.scalars(sa.select(Student)):
        assert page.count(student.full_name) == 1


def test_ledger_after_year_records_carries_a_tlog_proof_per_student(app, session, demo, tmp_path):
    from journal.keys import load_log_key

    log_key = load_log_key(app.config["KEYS_DIR"], "mektep17.example.kz")
    records = queries.record_summary_ledger(session, demo, log_key)
    assert len(records) == 5
    data = printouts.ledger_pdf(session, app.config, demo)
    files = extract_embedded_files(data)
    verifier = note.parse_vkey(files["log.vkey"].decode().strip())
    lines = files["entries.jsonl"].splitlines()
    assert len(lines) == 5
    for line in lines:
        seq = json.loads(line)["seq"]
        checkpoint = tlogproof.verify_tlog_proof(
            line, files[f"{seq}.tlog-proof"].decode(), verifier
        )
        assert checkpoint.origin.endswith("/ledger")
    need_tool("pdfsig")
    path = tmp_path / "ledger.pdf"
    path.write_bytes(data)
    out = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True).stdout
    assert "Signature is Valid." in out


def test_export_commands_write_signed_files(app, demo, tmp_path):
    runner = app.test_cli_runner()
    out = tmp_path / "j.pdf"
    result = runner.invoke(
        args=["export", "journal", "--class", str(demo.id), "--quarter", "1", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF-1.7")
    # In the class's language of instruction unless --language says otherwise (7Ә: Kazakh).
    need_tool("pdftotext")
    read = ["pdftotext", "-layout", "-f", "1", "-l", "1", str(out), "-"]
    assert "1-тоқсан" in subprocess.run(read, capture_output=True, text=True).stdout
    result = runner.invoke(
        args=["export", "journal", "--class", str(demo.id), "--quarter", "1", "-o", str(out)]
        + ["--language", "ru"]
    )
    assert result.exit_code == 0, result.output
    assert "1 четверть" in subprocess.run(read, capture_output=True, text=True).stdout
    result = runner.invoke(
        args=[
            "export",
            "ledger",
            "--class",
            str(demo.id),
            "--year",
            "1999-2000",
            "-o",
            str(tmp_path / "l.pdf"),
        ]
    )
    assert result.exit_code == 2 and "2026-2027" in result.output
    result = runner.invoke(
        args=["export", "journal", "--class", "999", "--quarter", "1", "-o", str(out)]
    )
    assert result.exit_code == 2


def test_quarter_two_embeds_only_its_own_range(app, session, demo):
    """Q2 is open: its printout starts where Q1's sealing checkpoint ended and holds every
    entry after it, up to a checkpoint cut now."""
    from journal.keys import load_log_key
    from journal.services import cut_checkpoint

    def embedded_range(quarter: int) -> tuple[int, list[bytes]]:
        document = queries.journal_document(session, demo, quarter)
        start, _prefix = audit.parse_range_file(
            dict(document.proof.extra_files)[audit.RANGE_FILE].decode()
        )
        return start, document.proof.entries_jsonl.splitlines()

    q1_start, q1_leaves = embedded_range(1)
    log = session.scalar(sa.select(Log).where(Log.class_group_id == demo.id))
    cut_checkpoint(session, log, load_log_key(app.config["KEYS_DIR"], "mektep17.example.kz"))
    start, leaves = embedded_range(2)
    assert start == q1_start + len(q1_leaves)
    assert len(leaves) == log.size - start > 0
    assert session.scalar(sa.select(sa.func.count()).select_from(Entry)) > 0


def sign_in(app, session, username: str):
    from auth.models import User

    from ..factories import signed_in_client

    return signed_in_client(app, session.scalar(sa.select(User).where(User.username == username)))


def test_class_teacher_downloads_their_class_and_admin_any(app, session, demo):
    teacher = sign_in(app, session, "classteacher")
    listing = teacher.get("/exports")
    assert listing.status_code == 200 and demo.name in listing.text
    response = teacher.get(f"/exports/journal/{demo.id}/1.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf" and response.data.startswith(b"%PDF")
    admin = sign_in(app, session, "admin")
    assert admin.get(f"/exports/ledger/{demo.id}.pdf").status_code == 200


def test_teacher_and_parent_cannot_download(app, session, demo):
    for username in ("teacher2", "parent"):
        client = sign_in(app, session, username)
        assert client.get(f"/exports/journal/{demo.id}/1.pdf").status_code in (403, 404)


def test_admin_closes_a_quarter_from_the_page(app, session, demo):
    admin = sign_in(app, session, "admin")
    assert admin.get("/admin/terms").status_code == 200
    q2 = session.scalar(sa.select(Term).where(Term.kind == "quarter", Term.number == 2))
    page = admin.get(f"/admin/terms/{q2.id}/close")
    assert page.status_code == 200 and 'id="pre-close-report"' in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    assert admin.post(f"/admin/terms/{q2.id}/close").status_code == 400  # no CSRF token
    form = {"csrf_token": token, "confirm": "yes", "reason": "closing for the test"}
    response = admin.post(f"/admin/terms/{q2.id}/close", data=form)
    assert response.status_code == 302
    session.expire_all()
    assert session.get(Term, q2.id).closed_at is not None


def test_a_half_year_subject_is_printed_and_archived_by_half_year(app, session, demo, tmp_path):
    """The demo's «Көркем еңбек» is graded by half-years: its grid, its sealed results, its own
    printout and its own bag; the quarterly printout leaves it out."""
    import datetime as dt

    from archive.services import ArchiveSettings, bag_content, due_journal_bags, plan_bag
    from archive.storage import LocalWormStorage
    from journal.keys import load_log_key
    from journal.models import School
    from journal.year.closing import close_term

    need_tool("pdftotext")
    school = session.scalar(sa.select(School))
    log_key = load_log_key(app.config["KEYS_DIR"], school.domain)
    terms = {(t.kind, t.number): t for t in session.scalars(sa.select(Term))}
    at = dt.datetime(2026, 12, 29, 6, 0, tzinfo=dt.UTC)
    close_term(session, terms["quarter", 2], log_key, closed_by=None, now=at)
    close_term(session, terms["half", 1], log_key, closed_by=None, now=at)
    sealed = [
        json.loads(leaf)["payload"]
        for leaf in session.scalars(sa.select(Entry.leaf).where(Entry.kind == "sealed_term_grade"))
    ]
    by_half = [p for p in sealed if p["term"]["kind"] == "half"]
    assert by_half and {p["subject"]["name"] for p in by_half} == {"Көркем еңбек"}
    assert "Көркем еңбек" not in {
        p["subject"]["name"]
        for p in sealed
        if p["term"]["number"] == 2 and p["term"]["kind"] == "quarter"
    }

    files = printouts.printouts_for(session, demo, terms["half", 1])
    (name,) = files
    assert name == f"journal-class{demo.id}-h1.pdf"
    path = tmp_path / name
    path.write_bytes(files[name])
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True
    ).stdout
    # In the class's language of instruction: the demo's 7Ә learns in Kazakh.
    assert demo.language == "kk"
    assert "1-жартыжылдық" in text and "Көркем еңбек" in text and "Математика" not in text
    assert "полугодие" not in text
    quarter = tmp_path / "q2.pdf"
    quarter.write_bytes(printouts.journal_pdf(session, app.config, demo, 2))
    quarter_text = subprocess.run(
        ["pdftotext", "-layout", str(quarter), "-"], capture_output=True, text=True
    ).stdout
    assert "Математика" in quarter_text and "Көркем еңбек" not in quarter_text

    settings = ArchiveSettings(
        storage=LocalWormStorage(tmp_path / "archive"),
        staging_dir=tmp_path / "staging",
        keys_dir=tmp_path,
        today=dt.date(2026, 12, 30),
    )
    due = [d for d in due_journal_bags(session, school, settings.day()) if d.kind == "journal_half"]
    (half_bag,) = due
    bag = plan_bag(session, settings, school, half_bag, log_key)
    assert bag.key.endswith(f"journal-2026-2027-class{demo.id}-h1.tar")
    payload, info = bag_content(session, bag, settings)
    assert f"printouts/journal-class{demo.id}-h1.pdf" in payload
    assert info["Half-Year"] == "1" and "Quarter" not in info


def test_the_demo_calendar_has_kazakhstans_public_holidays(session, demo):
    import datetime as dt

    from journal.models import Holiday, Lesson

    holidays = {h.name: (h.starts_on, h.ends_on) for h in session.scalars(sa.select(Holiday))}
    assert holidays["Тәуелсіздік күні"] == (dt.date(2026, 12, 16), dt.date(2026, 12, 17))
    assert holidays["Наурыз мейрамы"][0] == dt.date(2027, 3, 21)
    assert {"Халықаралық әйелдер күні", "Жеңіс күні", "Жаңа жыл"} <= holidays.keys()
    days = set(session.scalars(sa.select(Lesson.date).where(Lesson.class_group_id == demo.id)))
    for first, last in holidays.values():
        day = first
        while day <= last:
            assert day not in days, day
            day += dt.timedelta(days=1)
    assert dt.date(2026, 12, 15) in days and dt.date(2027, 3, 5) in days  # ordinary weekdays


def _pdf_tokens(data: bytes, tmp_path) -> list[str]:
    need_tool("pdftotext")
    path = tmp_path / "printout.pdf"
    path.write_bytes(data)
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    return re.findall(r"[^\s/\d]+", text)


def test_a_kazakh_printout_uses_kazakh_codes_and_a_russian_one_russian(
    app, session, demo, tmp_path
):
    kazakh = set(
        _pdf_tokens(printouts.journal_pdf(session, app.config, demo, 2, language="kk"), tmp_path)
    )
    russian = set(
        _pdf_tokens(printouts.journal_pdf(session, app.config, demo, 2, language="ru"), tmp_path)
    )
    assert {"Ж", "А", "К", "Д", "БЖБ", "ТЖБ"} <= kazakh
    assert not {"н", "б", "оп", "уп", "СОР", "СОЧ"} & kazakh
    assert {"н", "б", "оп", "уп", "СОР", "СОЧ"} <= russian
    assert not {"Ж", "БЖБ", "ТЖБ"} & russian


def test_the_download_follows_the_interface_language_with_a_choice(app, session, demo, tmp_path):
    from auth.models import User

    teacher = session.scalar(sa.select(User).where(User.username == "classteacher"))
    teacher.language = "kk"
    session.commit()
    client = sign_in(app, session, "classteacher")
    listing = client.get("/exports")
    assert f"/exports/journal/{demo.id}/2.pdf?lang=kk" in listing.text
    assert "БЖБ" in _pdf_tokens(client.get(f"/exports/journal/{demo.id}/2.pdf").data, tmp_path)
    chosen = client.get(f"/exports/journal/{demo.id}/2.pdf?lang=ru")
    assert "СОР" in _pdf_tokens(chosen.data, tmp_path)
    assert f"/exports/journal/{demo.id}/2.pdf?lang=ru" in client.get("/exports?lang=ru").text
    assert client.get(f"/exports/journal/{demo.id}/2.pdf?lang=de").status_code == 404


def test_the_journal_opens_with_a_title_page_and_the_pupils_numbered_as_the_grid(
    app, session, demo, tmp_path
):
    from auth.models import User

    need_tool("pdftotext")
    document = queries.journal_document(session, demo, 1)
    teacher = session.get(User, demo.class_teacher_id)
    path = tmp_path / "q1.pdf"
    path.write_bytes(printouts.journal_pdf(session, app.config, demo, 1))
    pages = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout.split("\f")
    title = pages[0]
    assert "Классный журнал" in title and f"Классный руководитель: {teacher.full_name}" in title
    grid = [row.student_name for row in document.subjects[0].rows]
    assert len(grid) == 5 and list(document.students) == grid
    for number, name in enumerate(grid, 1):
        assert f"{number}. {name}" in title
        assert re.search(rf"^\s*{number}\s+{re.escape(name)}", pages[1], re.M)

"""The summary ledger prints only what it proves: every grade read back from the PDF's text
(``pdftotext -bbox``) is matched to a leaf embedded in it, and those leaves to the embedded
checkpoint. Mid-year: the closed terms only, no year column, "year not finished". After the
year: the council's decision, and a class 9's exam and final grades."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from archive.verify.verify import main as verify_main
from exports import printouts, queries
from exports.pdf import extract_embedded_files, render_ledger_pdf
from journal.council.records import Choice, record_attestation_grade, record_decisions
from journal.council.rules import EXTRA_ASSESSMENT, GRADUATED
from journal.ledger import audit, note, tlogproof
from journal.models import Lesson, TermClosure
from journal.recording.recorder import record_entry
from journal.services import cut_checkpoint
from journal.year.closing import close_term
from tests.archive.school import _pdf_signer

from ..external import need_tool
from ..factories import NOW, add_user
from ..journal.test_council import LATE, year_closed

WORD = re.compile(
    r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>'
)
GRADE_COLUMNS = {"1", "2", "3", "4", "Г", "Э", "И", "Ж", "Е", "Қ"}


def page_words(path: Path) -> list[tuple[float, float, str]]:
    """(x centre, y top, text) of every word of page 1."""
    need_tool("pdftotext")
    out = subprocess.run(
        ["pdftotext", "-bbox", "-f", "1", "-l", "1", str(path), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        ((float(a) + float(c)) / 2, round(float(b), 1), html.unescape(t))
        for a, b, c, _d, t in WORD.findall(out)
    ]


def printed_grades(path: Path, names: dict[int, str]) -> dict[int, dict[str, str]]:
    """Student id → grade column label → the value printed under it (a one-subject ledger)."""
    words = page_words(path)
    header_y = next(y for _x, y, t in words if t in ("уроки", "сабақ"))
    columns = [(x, t) for x, y, t in words if y == header_y and t in GRADE_COLUMNS]
    name_right = min(x for x, _t in columns) - 8
    found: dict[int, dict[str, str]] = {}
    for student_id, name in names.items():
        last = name.split()[0]
        row_y = next(y for _x, y, t in words if t == last)
        values = found.setdefault(student_id, {})
        for x, y, text in words:
            if abs(y - row_y) > 1 or x < name_right:
                continue
            nearest = min(columns, key=lambda column: abs(column[0] - x))
            if abs(nearest[0] - x) < 7.5:
                values[nearest[1]] = text
    return found, {t for _x, t in columns}


def embedded(data: bytes) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    files = extract_embedded_files(data)
    return files, [json.loads(line) for line in files["entries.jsonl"].splitlines()]


def mid_year(world: Any) -> Any:
    """Quarter 1 closed with an FO 8 (grade 4) and an FO 3 (grade 2) and one day ill; then
    quarter 2 marks and absences, and a checkpoint that covers them."""
    session = world.session
    world.other = world.add_student(last_name="Әбдіғали", first_name="Нұрлан")
    days = (dt.date(2026, 10, 1), dt.date(2026, 10, 2), dt.date(2026, 11, 17))
    lessons = [
        Lesson(class_group_id=world.class_group.id, subject_id=world.subject.id, date=d, period=1)
        for d in days
    ]
    session.add_all(lessons)
    session.flush()
    for student, score in ((world.student, 8), (world.other, 3)):
        record_entry(
            session,
            world.signed("grade", lesson=lessons[0].id, student=student.id, value={"score": score}),
            now=NOW,
        )
    record_entry(
        session,
        world.signed("attendance", lesson=lessons[1].id, student=world.other.id, value="sick"),
        now=NOW,
    )
    admin = add_user(session, world.school, "school_admin")
    close_term(session, world.q1, world.log_key, closed_by=admin, now=NOW, reason="test")
    world.sealed_at = world.log.size
    # Quarter 2 goes on: marks that would change nothing sealed, an absence, a checkpoint.
    for student, score in ((world.student, 2), (world.other, 10)):
        record_entry(
            session,
            world.signed(
                "grade", lesson=world.lesson.id, student=student.id, value={"score": score}
            ),
            now=NOW,
        )
    record_entry(
        session,
        world.signed("attendance", lesson=lessons[2].id, student=world.student.id, value="absent"),
        now=NOW,
    )
    cut_checkpoint(session, world.log, world.log_key)
    return world


def test_a_mid_year_ledger_prints_only_sealed_quarters_its_checkpoint_covers(world, tmp_path):
    mid_year(world)
    document = queries.ledger_document(world.session, world.class_group)
    closure = world.session.scalar(sa.select(TermClosure).where(TermClosure.log_id == world.log.id))
    assert document.proof.tree_size == closure.checkpoint_size == world.sealed_at
    assert world.log.size > world.sealed_at  # quarter 2's entries exist, beyond the checkpoint
    path = tmp_path / "ledger.pdf"
    data = render_ledger_pdf(document)
    path.write_bytes(data)

    files, leaves = embedded(data)
    verifier = note.parse_vkey(files["log.vkey"].decode().strip())
    checkpoint = note.verify_checkpoint(files["checkpoint"].decode(), verifier)
    start, prefix = audit.parse_range_file(files[audit.RANGE_FILE].decode())
    audit.verify_range(start, prefix, files["entries.jsonl"].splitlines(), checkpoint)
    assert (start, checkpoint.size) == (0, world.sealed_at)

    names = {world.student.id: "Өмірзақ Іңкәр", world.other.id: "Әбдіғали Нұрлан"}
    printed, columns = printed_grades(path, names)
    assert "Г" not in columns  # no year column: no year grade exists mid-year
    assert printed == {world.student.id: {"1": "4"}, world.other.id: {"1": "2"}}
    sealed = {
        (leaf["payload"]["student"], leaf["payload"]["term"]["number"]): leaf["payload"]["grade"]
        for leaf in leaves
        if leaf["payload"]["kind"] == "sealed_term_grade"
    }
    for student_id, values in printed.items():
        for column, value in values.items():
            assert sealed[(student_id, int(column))] == int(value)

    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Год не завершён" in text
    # Absences up to the closed quarter's end: the other pupil's day ill (one lesson), not
    # the first pupil's absence in quarter 2.
    row = next(line for line in text.splitlines() if "Әбдіғали" in line)
    assert row.split()[-4:] == ["1", "1", "1", "1"]
    row = next(line for line in text.splitlines() if "Өмірзақ" in line)
    assert row.split()[-4:] == ["0", "0", "0", "0"]


def test_before_a_term_is_closed_the_ledger_prints_no_grade_and_no_absence(world, tmp_path):
    world.other = world.add_student(last_name="Әбдіғали", first_name="Нұрлан")
    record_entry(world.session, world.signed("grade"), now=NOW)
    record_entry(
        world.session,
        world.signed("attendance", student=world.other.id, value="sick"),
        now=NOW,
    )
    cut_checkpoint(world.session, world.log, world.log_key)
    document = queries.ledger_document(world.session, world.class_group)
    assert not document.year_finished
    path = tmp_path / "ledger.pdf"
    path.write_bytes(render_ledger_pdf(document))
    names = {world.student.id: "Өмірзақ Іңкәр", world.other.id: "Әбдіғали Нұрлан"}
    printed, _columns = printed_grades(path, names)
    assert printed == {world.student.id: {}, world.other.id: {}}
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    row = next(line for line in text.splitlines() if "Әбдіғали" in line)
    assert row.split()[-4:] == ["0", "0", "0", "0"]


def test_a_class_9_ledger_prints_the_council_decision_and_the_final_grades(app, world, tmp_path):
    year_closed(world, grade_level=9)
    session = world.session
    record_attestation_grade(
        session, world.class_group, world.student, world.subject, world.log_key,
        entered_by=world.admin, role="commission", exam="5", final="5", now=LATE,
    )  # fmt: skip
    record_decisions(
        session,
        world.class_group,
        world.log_key,
        {world.student.id: Choice(GRADUATED), world.other.id: Choice(EXTRA_ASSESSMENT)},
        decided_by=world.admin,
        protocol_number="7",
        protocol_date="2027-06-10",
        now=LATE,
    )
    _pdf_signer(app.config["KEYS_DIR"], world.school.domain)
    data = printouts.ledger_pdf(session, app.config, world.class_group)
    path = tmp_path / "ledger.pdf"
    path.write_bytes(data)

    files, leaves = embedded(data)
    verifier = note.parse_vkey(files["log.vkey"].decode().strip())
    for line in files["entries.jsonl"].splitlines():
        seq = json.loads(line)["seq"]
        tlogproof.verify_tlog_proof(line, files[f"{seq}.tlog-proof"].decode(), verifier)
    kinds = sorted(leaf["payload"]["kind"] for leaf in leaves)
    assert (
        kinds
        == ["attestation_grade", "council_decision", "council_decision"] + ["ledger_record"] * 2
    )

    names = {world.student.id: "Өмірзақ Іңкәр", world.other.id: "Әбдіғали Нұрлан"}
    printed, columns = printed_grades(path, names)
    assert {"1", "2", "Г", "Э", "И"} <= columns
    assert printed[world.student.id] == {"1": "4", "2": "4", "Г": "4", "Э": "5", "И": "5"}
    assert printed[world.other.id] == {"1": "2", "2": "2", "Г": "2"}
    records = {
        leaf["payload"]["student"]["id"]: leaf["payload"]
        for leaf in leaves
        if leaf["payload"]["kind"] == "ledger_record"
    }
    attested = {
        leaf["payload"]["student"]["id"]: leaf["payload"]
        for leaf in leaves
        if leaf["payload"]["kind"] == "attestation_grade"
    }
    for student_id, values in printed.items():
        grades = records[student_id]["grades"]["Математика"]
        for column, value in values.items():
            if column in ("Э", "И"):
                key = "exam" if column == "Э" else "final"
                assert str(attested[student_id][key]) == value
            else:
                assert grades[4 if column == "Г" else int(column) - 1] == value

    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "окончил(а)" in text and "переведён(а), доп. оценивание" in text
    assert text.count("протокол № 7 от 10.06.2027") == 2
    assert "Директор" in text and "Классный руководитель" in text
    assert "Год не завершён" not in text
    # The standalone verifier verifies the printout with its new kinds of records.
    assert verify_main(["pdf", str(path), "--vkey", world.school.log_vkey]) == 0

    kazakh = tmp_path / "kk.pdf"
    kazakh.write_bytes(
        render_ledger_pdf(queries.ledger_document(session, world.class_group), language="kk")
    )
    printed, columns = printed_grades(kazakh, names)
    assert {"Ж", "Е", "Қ"} <= columns
    assert printed[world.student.id] == {"1": "4", "2": "4", "Ж": "4", "Е": "5", "Қ": "5"}
    text = subprocess.run(
        ["pdftotext", "-layout", str(kazakh), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "бітірді" in text and "№ 7 хаттама, 10.06.2027" in text
    assert "Сынып жетекшісі" in text and "окончил" not in text


def test_a_ledger_bag_with_council_records_verifies_with_the_standalone_verifier(
    app, world, tmp_path
):
    """The school ledger log with its new kinds of records, and the ledger printout made from
    them, in a sealed bag: the bag's own copy of the verifier, run isolated, says OK."""
    import shutil
    import sys

    from archive.bag import build_bag
    from archive.verify import seal
    from journal.models import Checkpoint
    from journal.services import ensure_ledger_log, export_log
    from tests.archive.sample_bag import verifier_files

    year_closed(world, grade_level=9)
    session = world.session
    record_attestation_grade(
        session, world.class_group, world.student, world.subject, world.log_key,
        entered_by=world.admin, role="commission", exam="4", final="5", now=LATE,
    )  # fmt: skip
    record_decisions(
        session,
        world.class_group,
        world.log_key,
        {world.student.id: Choice(GRADUATED)},
        decided_by=world.admin,
        protocol_number="7",
        protocol_date="2027-06-10",
        now=LATE,
    )
    _pdf_signer(app.config["KEYS_DIR"], world.school.domain)
    printout = printouts.ledger_pdf(session, app.config, world.class_group)
    ledger = ensure_ledger_log(session, world.school)
    exported = export_log(session, ledger, world.log_key.vkey)
    files = {
        "entries.jsonl": exported["entries.jsonl"],
        "keys/log.vkey": exported["log.vkey"],
        "keys/device-keys.json": exported["device-keys.json"],
        f"printouts/ledger-class{world.class_group.id}.pdf": printout,
        **verifier_files(),
    }
    for checkpoint in session.scalars(
        sa.select(Checkpoint).where(Checkpoint.log_id == ledger.id).order_by(Checkpoint.size)
    ):
        files[f"checkpoints/{checkpoint.size}.checkpoint"] = checkpoint.note.encode()
        if checkpoint.previous_size:
            name = f"checkpoints/consistency-{checkpoint.previous_size}-{checkpoint.size}.txt"
            files[name] = (checkpoint.consistency_proof or "").encode()
    built = build_bag(tmp_path / "built", files, {"Bagging-Date": "2027-06-30"})
    seal.seal_bag(built, world.log_key.name, world.log_key.private_key)
    elsewhere = tmp_path / "usb-stick" / "bag"
    shutil.copytree(built, elsewhere)
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "data/verify/verify.py",
            "bag",
            ".",
            "--vkey",
            world.school.log_vkey,
        ],
        cwd=elsewhere,
        env={},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "RESULT: OK" in done.stdout
    assert "the summary ledger of class 9А" in done.stdout, done.stdout

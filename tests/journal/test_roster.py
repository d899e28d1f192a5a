"""Roster import: a good file imports once; any bad row or bad file imports nothing and says
where the problem is."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from auth.iin import check_digit, iin_lookup_hash
from journal.models import ClassGroup, Enrollment, Student
from journal.roster import (
    MAX_ROSTER_BYTES,
    RosterRejected,
    import_roster,
    read_roster_file,
)

from ..conftest import TEST_IIN_ENCRYPTION_KEY, TEST_IIN_HMAC_KEY
from ..factories import add_user
from .test_school_setup import csrf_token, sign_in

HEADER = "iin,last_name,first_name,patronymic,birth_date,class\n"
START = dt.date(2026, 9, 1)


def iin(birth: str, serial: int) -> str:
    """A valid IIN for a YYMMDD birth date (a boy born 2000-2099)."""
    while True:
        first = f"{birth}5{serial:04d}"
        digit = check_digit(first)
        if digit is not None:
            return first + str(digit)
        serial += 1


def with_wrong_check_digit(value: str) -> str:
    return value[:11] + str((int(value[11]) + 1) % 10)


IIN_A = iin("130501", 10)
IIN_B = iin("130715", 20)
IIN_C = iin("050312", 30)  # born 2005: leading zero


def good_csv() -> str:
    return (
        HEADER
        + f"{IIN_A},Сәрсенбай,Әлібек,Нұрланұлы,2013-05-01,7Ә\n"
        + f"{IIN_B},Иванова,Мария,,15.07.2013,7Ә\n"
    )


def run_import(session, world, data: bytes, filename: str = "roster.csv"):
    return import_roster(
        session,
        world.year,
        read_roster_file(filename, data),
        starts_on=START,
        encryption_key=TEST_IIN_ENCRYPTION_KEY,
        hmac_key=TEST_IIN_HMAC_KEY,
    )


def counts(session) -> tuple[int, int]:
    return (
        session.scalar(select(func.count()).select_from(Student)),
        session.scalar(select(func.count()).select_from(Enrollment)),
    )


def test_a_good_file_imports_students_into_their_classes(world, session):
    before = counts(session)
    outcome = run_import(session, world, good_csv().encode())
    assert (outcome.created, outcome.enrolled) == (2, 2)
    assert counts(session) == (before[0] + 2, before[1] + 2)
    student = session.scalar(
        select(Student).where(Student.iin_hmac == iin_lookup_hash(IIN_A, TEST_IIN_HMAC_KEY))
    )
    assert student.full_name == "Сәрсенбай Әлібек Нұрланұлы"
    assert student.birth_date == dt.date(2013, 5, 1)
    assert IIN_A.encode() not in student.iin_encrypted  # stored encrypted
    enrollment = session.scalar(select(Enrollment).where(Enrollment.student_id == student.id))
    assert (enrollment.class_group_id, enrollment.starts_on) == (world.class_group.id, START)


def test_importing_the_same_file_again_changes_nothing(world, session):
    run_import(session, world, good_csv().encode())
    before = counts(session)
    again = run_import(session, world, good_csv().encode())
    assert (again.created, again.enrolled, again.updated, again.unchanged) == (0, 0, 0, 2)
    assert not again.changed
    assert counts(session) == before


def test_utf8_with_bom_semicolons_and_russian_headers_are_read(world, session):
    text = (
        "ИИН;Фамилия;Имя;Отчество;Дата рождения;Класс\r\n"
        f"{IIN_A};Сәрсенбай;Әлібек;;;7ә\r\n"  # lower-case class name, birth date from the IIN
    )
    outcome = run_import(session, world, b"\xef\xbb\xbf" + text.encode())
    assert outcome.created == 1


def test_xlsx_with_number_cells_and_dates_is_read(world, session):
    book = Workbook()
    sheet = book.active
    sheet.append(["ЖСН", "Тегі", "Аты", "Сынып", "Туған күні"])
    sheet.append([int(IIN_C), "Өмірзақ", "Іңкәр", "7Ә", dt.datetime(2005, 3, 12)])
    buffer = io.BytesIO()
    book.save(buffer)
    outcome = run_import(session, world, buffer.getvalue(), "roster.xlsx")
    assert outcome.created == 1
    student = session.scalar(
        select(Student).where(Student.iin_hmac == iin_lookup_hash(IIN_C, TEST_IIN_HMAC_KEY))
    )
    assert student.first_name == "Іңкәр" and student.birth_date == dt.date(2005, 3, 12)


def big_file() -> bytes:
    row = f"{IIN_A},Сәрсенбай,Әлібек,,,7Ә\n".encode()
    return HEADER.encode() + row * (MAX_ROSTER_BYTES // len(row) + 1)


# The acceptance table: every case imports nothing and names the row (or the file).
BAD_INPUT = {
    "bad IIN check digit": (
        HEADER
        + f"{IIN_A},Сәрсенбай,Әлібек,,,7Ә\n"
        + f"{with_wrong_check_digit(IIN_B)},Иванова,Мария,,,7Ә\n",
        [(3, "iin", "check digit is wrong")],
    ),
    "duplicated IIN": (
        HEADER
        + f"{IIN_A},Сәрсенбай,Әлібек,,,7Ә\n"
        + f"{IIN_B},Иванова,Мария,,,7Ә\n"
        + f"{IIN_A},Сәрсенбаев,Әлібек,,,7Ә\n",
        [(2, "iin", "also on row 4"), (4, "iin", "also on row 2")],
    ),
    "missing name": (
        HEADER + f"{IIN_A},Сәрсенбай,,,,7Ә\n" + f"{IIN_B},,Мария,,,7Ә\n",
        [(2, "first_name", "first name is missing"), (3, "last_name", "last name is missing")],
    ),
    "unknown class": (
        HEADER + f"{IIN_A},Сәрсенбай,Әлібек,,,7Ә\n" + f"{IIN_B},Иванова,Мария,,,9Ж\n",
        [(3, "class", "no class 9Ж in the school year 2026-2027")],
    ),
    "wrong encoding (CP1251)": (
        (HEADER + f"{IIN_B},Иванова,Мария,Петровна,,7Б\n").encode("cp1251"),
        [(None, None, "Windows-1251")],
    ),
    "empty file": (b"", [(None, None, "The file is empty.")]),
    "only blank lines": (b"\r\n \r\n", [(None, None, "The file is empty.")]),
    "header without students": (HEADER, [(None, None, "header but no students")]),
    "missing column": (
        "iin,last_name,first_name\n" + f"{IIN_A},Сәрсенбай,Әлібек\n",
        [(None, None, "lacks columns: class")],
    ),
    "10 MB file": (big_file, [(None, None, "larger than 10 MB")]),
    "not a workbook": (b"PK\x03\x04broken", [(None, None, "not a valid XLSX")]),
    "birth date against the IIN": (
        HEADER + f"{IIN_A},Сәрсенбай,Әлібек,,2013-05-02,7Ә\n",
        [(2, "birth_date", "does not match the IIN (2013-05-01)")],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_imports_nothing_and_says_where(world, session, case):
    content, expected = BAD_INPUT[case]
    data = content() if callable(content) else content
    data = data.encode() if isinstance(data, str) else data
    before = counts(session)
    with pytest.raises(RosterRejected) as rejected:
        run_import(session, world, data)
    found = [(p.row, p.column, p.english()) for p in rejected.value.problems]
    for row, column, words in expected:
        assert any(r == row and c == column and words in text for r, c, text in found), found
    assert len(found) == len(expected), found
    assert counts(session) == before


def test_a_student_already_in_another_class_is_a_transfer_not_an_import(world, session):
    run_import(session, world, good_csv().encode())
    parallel = ClassGroup(
        school_id=world.school.id, school_year_id=world.year.id, name="7Б", grade_level=7
    )
    session.add(parallel)
    session.flush()
    before = counts(session)
    moved = HEADER + f"{IIN_A},Сәрсенбай,Әлібек,Нұрланұлы,,7Б\n"
    with pytest.raises(RosterRejected, match="already in class 7Ә: use a transfer"):
        run_import(session, world, moved.encode())
    assert counts(session) == before


@pytest.fixture
def admin_client(app, world):
    client = app.test_client()
    sign_in(client, add_user(world.session, world.school, "school_admin"))
    return client


def upload(client, year_id: int, data: bytes, filename: str = "roster.csv"):
    token = csrf_token(client, f"/setup/years/{year_id}/roster")
    return client.post(
        f"/setup/years/{year_id}/roster",
        data={
            "csrf_token": token,
            "starts_on": "2026-09-01",
            "file": (io.BytesIO(data), filename),
        },
        content_type="multipart/form-data",
    )


def test_the_page_lists_every_bad_row_together(world, admin_client, session):
    data = (
        HEADER
        + f"{with_wrong_check_digit(IIN_A)},Сәрсенбай,Әлібек,,,7Ә\n"
        + f"{IIN_B},Иванова,,,,7Ә\n"
        + f"{IIN_C},Өмірзақ,Іңкәр,,,11Х\n"
    ).encode()
    before = counts(session)
    page = upload(admin_client, world.year.id, data)
    html = page.get_data(as_text=True)
    problem_rows = re.findall(r"<tr>\s*<td>(\d+)</td>", html)
    assert problem_rows == ["2", "3", "4"]
    assert "check digit is wrong" in html and "11Х" in html
    assert counts(session) == before


def test_the_page_imports_a_good_file(world, admin_client, session):
    page = upload(admin_client, world.year.id, good_csv().encode())
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'role="status"' in html
    assert session.scalar(select(func.count()).select_from(Student)) == 3  # + the world's one


def test_the_page_refuses_a_cp1251_file_with_advice(world, admin_client):
    data = (HEADER + f"{IIN_B},Иванова,Мария,Петровна,,7Б\n").encode("cp1251")
    html = upload(admin_client, world.year.id, data).get_data(as_text=True)
    assert "Windows-1251" in html and "CSV UTF-8" in html


@pytest.fixture
def cli(app, session):
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=list(args), catch_exceptions=False)


def test_the_command_imports_and_reimports(world, cli, session, tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text(good_csv(), encoding="utf-8")
    args = ("roster", "import", str(path), "--school", world.school.domain, "--year", "2026-2027")
    first = cli(*args, "--starts-on", "2026-09-01")
    assert first.exit_code == 0, first.output
    assert "2 students created, 2 enrolled" in first.output
    again = cli(*args)
    assert again.exit_code == 0 and "0 students created, 0 enrolled" in again.output


def test_the_command_prints_every_problem_and_imports_nothing(world, cli, session, tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text(
        HEADER
        + f"{IIN_A},Сәрсенбай,Әлібек,,,7Ә\n"
        + f"{with_wrong_check_digit(IIN_B)},Иванова,Мария,,,7Ә\n"
        + f"{IIN_C},Өмірзақ,,,,7Ә\n",
        encoding="utf-8",
    )
    before = counts(session)
    result = cli("roster", "import", str(path), "--school", world.school.domain)
    assert result.exit_code == 1
    assert "row 3, IIN: The IIN's check digit is wrong." in result.output
    assert "row 4, First name: The first name is missing." in result.output
    assert "Nothing was imported" in result.output
    assert counts(session) == before


def test_a_file_beyond_the_request_limit_is_refused_on_the_page(
    world, admin_client, app, session, monkeypatch
):
    # Files up to the request limit (16 MB) reach import_roster, which refuses them beyond
    # 10 MB (the table above); beyond the request limit the upload page says the same.
    before = counts(session)
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1024)
    page = upload(admin_client, world.year.id, good_csv().encode() * 20)
    assert page.status_code == 302
    html = admin_client.get(page.headers["Location"]).get_data(as_text=True)
    assert "larger than 10 MB" in html
    assert counts(session) == before

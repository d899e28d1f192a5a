"""Roster import: students and their classes from a CSV or XLSX file, all or nothing.

A file is read into rows first (file-level problems: size, encoding, format, columns), then
every row is checked (IIN check digit, names, class, duplicates) and every problem is reported
with its row number. Only a file without problems writes anything; importing the same file
again changes nothing.

Encodings: UTF-8 with or without a byte-order mark, and UTF-16 with a byte-order mark (Excel's
"Unicode text"), are read. Windows-1251 is detected and refused, not converted: it has no letters
for ә ғ қ ң ө ұ ү һ, so a Kazakh roster saved in it has already lost them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import sys
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask.cli import AppGroup
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.exceptions import RequestEntityTooLarge

from auth.access import roles_required
from auth.iin import check_digit, encrypt_iin, iin_lookup_hash

from .db import db
from .models import ClassGroup, Enrollment, School, SchoolYear, Student
from .setup import N_
from .setup.views import own_year

MAX_ROSTER_BYTES = 10 * 1024 * 1024
MAX_ROWS = 5000
MAX_COLUMNS = 30
MAX_NAME = 100
REQUIRED = ("iin", "last_name", "first_name", "class")

# Accepted column headings, compared case-insensitively (English, Russian, Kazakh).
HEADINGS = {
    "iin": ("iin", "иин", "жсн"),
    "last_name": ("last_name", "last name", "surname", "фамилия", "тегі"),
    "first_name": ("first_name", "first name", "name", "имя", "аты"),
    "patronymic": ("patronymic", "middle name", "отчество", "әкесінің аты"),
    "birth_date": ("birth_date", "birth date", "date of birth", "дата рождения", "туған күні"),
    "class": ("class", "класс", "сынып"),
}
COLUMN_LABELS = {
    "iin": N_("IIN"),
    "last_name": N_("Last name"),
    "first_name": N_("First name"),
    "patronymic": N_("Patronymic"),
    "birth_date": N_("Birth date"),
    "class": N_("Class"),
}
# Latin letters that look like Cyrillic ones in class names typed on the wrong keyboard layout.
LOOKALIKES = str.maketrans("ABCEHKMOPTX", "АВСЕНКМОРТХ")
TOO_LARGE = N_("The file is larger than 10 MB. Split it into several files.")
CENTURIES = {1: 1800, 2: 1800, 3: 1900, 4: 1900, 5: 2000, 6: 2000}


@dataclass(frozen=True)
class Problem:
    """What is wrong and where: ``row`` as the spreadsheet numbers it (header = 1), or None
    for a problem with the whole file."""

    message: str  # an English message id, translated where it is shown
    row: int | None = None
    column: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def english(self) -> str:
        return self.message % self.params if self.params else self.message

    def translated(self) -> str:
        return _(self.message, **self.params)


class RosterRejected(Exception):
    """The file imports nothing; ``problems`` lists every reason found, in row order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(p.english() for p in problems[:5]))
        self.problems = sorted(problems, key=lambda p: (p.row or 0, p.column or ""))


@dataclass(frozen=True)
class RosterRow:
    number: int
    values: dict[str, str]


@dataclass(frozen=True)
class ImportOutcome:
    rows: int
    created: int
    enrolled: int
    updated: int
    unchanged: int

    @property
    def changed(self) -> bool:
        return bool(self.created or self.enrolled or self.updated)


# -- reading files -----------------------------------------------------------------------------


def refuse(message: str, **params: Any) -> RosterRejected:
    return RosterRejected([Problem(message, params=params)])


def read_upload(filename: str, stream: IO[bytes]) -> list[RosterRow]:
    """Read an uploaded file without holding more than the size limit in memory."""
    data = stream.read(MAX_ROSTER_BYTES + 1)
    return read_roster_file(filename, data)


def read_roster_file(filename: str, data: bytes) -> list[RosterRow]:
    if len(data) > MAX_ROSTER_BYTES:
        raise refuse(TOO_LARGE)
    if not data.strip():
        raise refuse(N_("The file is empty."))
    if data.startswith(b"PK\x03\x04"):
        table = _xlsx_table(data)
    elif data.startswith(b"\xd0\xcf\x11\xe0"):
        raise refuse(N_("Old .xls workbooks are not read: save the file as .xlsx or CSV UTF-8."))
    elif filename.lower().endswith(".xlsx"):
        raise refuse(N_("The file is not a valid XLSX workbook."))
    else:
        table = _csv_table(_decode(data))
    return _rows(table)


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise refuse(N_("The file is not valid UTF-16 text.")) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if _looks_like_cp1251(data):
        raise refuse(
            N_(
                "The file is in the Windows-1251 encoding, which has no Kazakh letters "
                "(ә, ғ, қ, ң, ө, ұ, ү, һ). In Excel choose “Save as” → “CSV UTF-8” and "
                "import that file."
            )
        )
    raise refuse(N_("The file is neither CSV text in UTF-8 nor an XLSX workbook."))


def _looks_like_cp1251(data: bytes) -> bool:
    text = data.decode("cp1251", errors="replace")
    cyrillic = sum(1 for c in text if "\u0400" <= c <= "\u04ff")
    high = sum(1 for b in data if b >= 0x80)
    return high > 0 and cyrillic >= high * 0.9


def _csv_table(text: str) -> list[list[str]]:
    first_line = text.split("\n", 1)[0]
    delimiter = max((";", ",", "\t"), key=first_line.count)
    try:
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        return list(itertools.islice(reader, MAX_ROWS + 2))
    except csv.Error as exc:
        raise refuse(N_("The CSV file cannot be read: %(reason)s"), reason=str(exc)) from None


def _xlsx_table(data: bytes) -> list[list[str]]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # openpyxl warns about styles and extensions
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            try:
                if not book.worksheets:
                    raise refuse(N_("The workbook has no sheets."))
                sheet = book.worksheets[0]
                table = []
                for row in sheet.iter_rows(max_col=MAX_COLUMNS, values_only=True):
                    table.append([_cell_text(value) for value in row])
                    if len(table) > MAX_ROWS + 1:
                        break
            finally:
                book.close()
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError):
        raise refuse(N_("The file is not a valid XLSX workbook.")) from None
    return table


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 10**10 <= value < 10**11:
        # An IIN typed into a number cell loses its leading zero (born 2000-2009: "05...").
        return f"{value:012d}"
    return str(value).strip()


def _heading_key(text: str) -> str | None:
    wanted = " ".join(text.replace("_", " ").split()).casefold()
    for key, names in HEADINGS.items():
        if wanted in {n.replace("_", " ") for n in names}:
            return key
    return None


def _rows(table: list[list[str]]) -> list[RosterRow]:
    while table and not any(cell.strip() for cell in table[0]):
        table = table[1:]  # leading blank lines
    if not table:
        raise refuse(N_("The file is empty."))
    header = [_heading_key(cell) for cell in table[0]]
    missing = [key for key in REQUIRED if key not in header]
    if missing:
        raise refuse(
            N_("The header row lacks columns: %(columns)s. Expected: %(expected)s."),
            columns=", ".join(missing),
            expected="iin, last_name, first_name, patronymic, birth_date, class",
        )
    if len(table) > MAX_ROWS + 1:
        raise refuse(N_("The file has more than %(limit)s rows."), limit=MAX_ROWS)
    rows = []
    for index, cells in enumerate(table[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        values = {
            key: cells[i].strip()
            for i, key in enumerate(header)
            if key is not None and i < len(cells)
        }
        rows.append(RosterRow(index, values))
    if not rows:
        raise refuse(N_("The file has a header but no students."))
    return rows


# -- checking and importing --------------------------------------------------------------------


def class_key(name: str) -> str:
    return "".join(name.split()).upper().translate(LOOKALIKES)


def default_start(year: SchoolYear, today: dt.date) -> dt.date:
    """Enrollments start on the first day of the year, or today once the year has begun."""
    return min(max(today, year.starts_on), year.ends_on)


def _iin_problems(row: RosterRow, iin: str) -> list[Problem]:
    if not iin:
        return [Problem(N_("The IIN is missing."), row.number, "iin")]
    if len(iin) != 12 or not iin.isascii() or not iin.isdigit():
        return [Problem(N_("An IIN has exactly 12 digits."), row.number, "iin")]
    if check_digit(iin[:11]) != int(iin[11]):
        return [Problem(N_("The IIN's check digit is wrong."), row.number, "iin")]
    return []


def birth_date_from_iin(iin: str) -> dt.date | None:
    century = CENTURIES.get(int(iin[6]))
    if century is None:
        return None
    try:
        return dt.date(century + int(iin[0:2]), int(iin[2:4]), int(iin[4:6]))
    except ValueError:
        return None


def _parse_date(text: str) -> dt.date | None:
    for pattern in ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    return None


@dataclass(frozen=True)
class CheckedRow:
    number: int
    iin: str
    last_name: str
    first_name: str
    patronymic: str | None
    birth_date: dt.date
    class_group: ClassGroup


def check_rows(
    rows: Iterable[RosterRow], classes: dict[str, ClassGroup], year: SchoolYear
) -> tuple[list[CheckedRow], list[Problem]]:
    checked: list[CheckedRow] = []
    problems: list[Problem] = []
    seen: dict[str, list[int]] = {}
    for row in rows:
        row_problems: list[Problem] = []
        iin = row.values.get("iin", "").replace(" ", "")
        row_problems += _iin_problems(row, iin)
        names = {}
        for key in ("last_name", "first_name", "patronymic"):
            value = " ".join(row.values.get(key, "").split())
            if len(value) > MAX_NAME:
                row_problems.append(
                    Problem(
                        N_("Longer than %(limit)s characters."),
                        row.number,
                        key,
                        {"limit": MAX_NAME},
                    )
                )
            names[key] = value
        if not names["last_name"]:
            row_problems.append(Problem(N_("The last name is missing."), row.number, "last_name"))
        if not names["first_name"]:
            row_problems.append(Problem(N_("The first name is missing."), row.number, "first_name"))
        class_name = row.values.get("class", "").strip()
        class_group = classes.get(class_key(class_name))
        if not class_name:
            row_problems.append(Problem(N_("The class is missing."), row.number, "class"))
        elif class_group is None:
            row_problems.append(
                Problem(
                    N_("There is no class %(name)s in the school year %(year)s."),
                    row.number,
                    "class",
                    {"name": class_name, "year": year.name},
                )
            )
        birth_date = None
        if not row_problems or all(p.column != "iin" for p in row_problems):
            birth_date = _row_birth_date(row, iin, row_problems)
        if iin:
            seen.setdefault(iin, []).append(row.number)
        problems += row_problems
        if not row_problems and class_group is not None and birth_date is not None:
            checked.append(
                CheckedRow(
                    row.number,
                    iin,
                    names["last_name"],
                    names["first_name"],
                    names["patronymic"] or None,
                    birth_date,
                    class_group,
                )
            )
    for numbers in seen.values():
        if len(numbers) > 1:
            for number in numbers:
                others = ", ".join(str(n) for n in numbers if n != number)
                problems.append(
                    Problem(
                        N_("The same IIN is also on row %(rows)s."), number, "iin", {"rows": others}
                    )
                )
    return checked, problems


def _row_birth_date(row: RosterRow, iin: str, problems: list[Problem]) -> dt.date | None:
    from_iin = birth_date_from_iin(iin) if iin else None
    given_text = row.values.get("birth_date", "")
    if given_text:
        given = _parse_date(given_text)
        if given is None:
            problems.append(
                Problem(
                    N_("The birth date is not a date like 2013-05-01 or 01.05.2013."),
                    row.number,
                    "birth_date",
                )
            )
            return None
        if from_iin is not None and given != from_iin:
            problems.append(
                Problem(
                    N_("The birth date does not match the IIN (%(date)s)."),
                    row.number,
                    "birth_date",
                    {"date": from_iin.isoformat()},
                )
            )
            return None
        return given
    if from_iin is None:
        problems.append(
            Problem(
                N_("The IIN does not hold a birth date: fill in the birth date column."),
                row.number,
                "iin",
            )
        )
    return from_iin


def import_roster(
    session: Session,
    year: SchoolYear,
    rows: Sequence[RosterRow],
    *,
    encryption_key: str,
    hmac_key: str,
    starts_on: dt.date | None = None,
    today: dt.date | None = None,
) -> ImportOutcome:
    """Check every row, then create students and enrollments; ``RosterRejected`` writes nothing.

    A student already in the school (same IIN) keeps their record; names are brought in line
    with the file. A student already in another class this year is a transfer, not an import.
    """
    start = starts_on or default_start(year, today or dt.date.today())
    if not year.starts_on <= start <= year.ends_on:
        raise refuse(N_("The enrollment date is outside the school year %(year)s."), year=year.name)
    class_groups = list(
        session.scalars(select(ClassGroup).where(ClassGroup.school_year_id == year.id))
    )
    classes = {class_key(c.name): c for c in class_groups}
    checked, problems = check_rows(rows, classes, year)

    hashes = {row.number: iin_lookup_hash(row.iin, hmac_key) for row in checked}
    existing = {
        student.iin_hmac: student
        for student in session.scalars(
            select(Student).where(
                Student.school_id == year.school_id, Student.iin_hmac.in_(list(hashes.values()))
            )
        )
    }
    class_by_id = {c.id: c for c in class_groups}
    year_enrollments: dict[int, list[Enrollment]] = {}
    if existing:
        for enrollment in session.scalars(
            select(Enrollment).where(
                Enrollment.student_id.in_([s.id for s in existing.values()]),
                Enrollment.class_group_id.in_(list(class_by_id)),
            )
        ):
            year_enrollments.setdefault(enrollment.student_id, []).append(enrollment)

    plans: list[tuple[CheckedRow, Student | None, bool]] = []
    for row in checked:
        student = existing.get(hashes[row.number])
        enroll = True
        if student is not None:
            enrollments = year_enrollments.get(student.id, [])
            if any(e.class_group_id == row.class_group.id for e in enrollments):
                enroll = False
            else:
                elsewhere = [e for e in enrollments if e.ends_on is None]
                if elsewhere:
                    problems.append(
                        Problem(
                            N_("The student is already in class %(name)s: use a transfer."),
                            row.number,
                            "class",
                            {"name": class_by_id[elsewhere[0].class_group_id].name},
                        )
                    )
                    continue
        plans.append((row, student, enroll))
    if problems:
        raise RosterRejected(problems)

    created = enrolled = updated = unchanged = 0
    for row, student, enroll in plans:
        if student is None:
            student = Student(
                school_id=year.school_id,
                last_name=row.last_name,
                first_name=row.first_name,
                patronymic=row.patronymic,
                birth_date=row.birth_date,
                iin_encrypted=encrypt_iin(row.iin, encryption_key),
                iin_hmac=hashes[row.number],
            )
            session.add(student)
            session.flush()
            created += 1
        else:
            fresh = (row.last_name, row.first_name, row.patronymic, row.birth_date)
            stored = (student.last_name, student.first_name, student.patronymic, student.birth_date)
            if fresh != stored:
                (
                    student.last_name,
                    student.first_name,
                    student.patronymic,
                    student.birth_date,
                ) = fresh
                updated += 1
            elif not enroll:
                unchanged += 1
        if enroll:
            session.add(
                Enrollment(
                    student_id=student.id, class_group_id=row.class_group.id, starts_on=start
                )
            )
            enrolled += 1
    session.flush()
    return ImportOutcome(len(plans), created, enrolled, updated, unchanged)


# -- the page ----------------------------------------------------------------------------------

bp = Blueprint("roster", __name__, url_prefix="/setup")


@bp.route("/years/<int:year_id>/roster", methods=["GET", "POST"])
@roles_required("school_admin")
def upload(year_id: int) -> Any:
    year = own_year(year_id)
    outcome: ImportOutcome | None = None
    problems: list[Problem] = []
    if request.method == "POST":
        file = request.files.get("file")
        starts_on = _parse_date(request.form.get("starts_on", "").strip())
        if file is None or not file.filename:
            flash(_("Choose a CSV or XLSX file."), "error")
        else:
            try:
                outcome = import_roster(
                    db.session,
                    year,
                    read_upload(file.filename, file.stream),
                    starts_on=starts_on,
                    encryption_key=current_app.config["IIN_ENCRYPTION_KEY"],
                    hmac_key=current_app.config["IIN_HMAC_KEY"],
                )
            except RosterRejected as rejected:
                problems = rejected.problems
            else:
                db.session.commit()
    return render_template(
        "setup/roster.html",
        year=year,
        outcome=outcome,
        problems=problems,
        column_labels=COLUMN_LABELS,
        default_start=default_start(year, dt.date.today()),
        max_rows=MAX_ROWS,
    )


@bp.errorhandler(RequestEntityTooLarge)
def upload_too_large(_error: RequestEntityTooLarge) -> Any:
    """A file beyond the request limit never reaches the view: say so on the upload page."""
    flash(_(TOO_LARGE), "error")
    return redirect(url_for(".upload", year_id=(request.view_args or {}).get("year_id", 0)))


# -- the command -------------------------------------------------------------------------------

roster_cli = AppGroup("roster", help="Roster import from CSV or XLSX.")


def _pick_school(session: Session, domain: str | None) -> School:
    schools = list(session.scalars(select(School).order_by(School.id)))
    if domain:
        school = next((s for s in schools if s.domain == domain), None)
        if school is None:
            raise click.ClickException(f"no school with domain {domain}")
        return school
    if len(schools) != 1:
        names = ", ".join(s.domain for s in schools) or "none"
        raise click.ClickException(f"choose a school with --school (schools: {names})")
    return schools[0]


def _pick_year(session: Session, school: School, name: str | None) -> SchoolYear:
    years = list(
        session.scalars(
            select(SchoolYear)
            .where(SchoolYear.school_id == school.id)
            .order_by(SchoolYear.starts_on)
        )
    )
    if name:
        year = next((y for y in years if y.name == name), None)
    else:
        today = dt.date.today()
        year = next((y for y in years if y.starts_on <= today <= y.ends_on), None) or (
            years[-1] if years else None
        )
    if year is None:
        raise click.ClickException(f"no school year {name or '(current)'} at {school.domain}")
    return year


@roster_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--school", "domain", help="The school's domain (needed when there are several).")
@click.option("--year", "year_name", help="The school year, e.g. 2026-2027 (default: current).")
@click.option(
    "--starts-on",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="First day of the new enrollments (default: today, within the year).",
)
def roster_import(
    file: Path, domain: str | None, year_name: str | None, starts_on: dt.datetime | None
) -> None:
    """Import students and their classes from FILE (CSV or XLSX); all rows or none."""
    session = db.session
    school = _pick_school(session, domain)
    year = _pick_year(session, school, year_name)
    config = current_app.config
    try:
        if file.stat().st_size > MAX_ROSTER_BYTES:
            raise refuse(TOO_LARGE)
        with file.open("rb") as stream:
            rows = read_upload(file.name, stream)
        outcome = import_roster(
            session,
            year,
            rows,
            starts_on=starts_on.date() if starts_on else None,
            encryption_key=config["IIN_ENCRYPTION_KEY"],
            hmac_key=config["IIN_HMAC_KEY"],
        )
    except RosterRejected as rejected:
        for problem in rejected.problems:
            where = "file" if problem.row is None else f"row {problem.row}"
            if problem.column:
                where += f", {COLUMN_LABELS[problem.column]}"
            click.echo(f"{where}: {problem.english()}", err=True)
        click.echo(f"Nothing was imported; problems found: {len(rejected.problems)}.", err=True)
        sys.exit(1)
    session.commit()
    click.echo(
        f"{school.domain} {year.name}: {outcome.rows} rows; {outcome.created} students created, "
        f"{outcome.enrolled} enrolled, {outcome.updated} updated, {outcome.unchanged} unchanged."
    )

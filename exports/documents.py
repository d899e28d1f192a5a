"""Plain values a printout is made of: what ``exports.queries`` reads and ``exports.pdf`` renders.

Everything here is a frozen dataclass of strings, numbers, dates and tuples: no database rows, no
Flask. Cell contents are already reduced to short strings ("н", "8", "СОР 12/15"); the helpers
at the bottom are the one place that decides how an entry looks in a grid cell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

#: How attendance kinds (DESIGN §4) are written in a grid cell, by printout language: the
#: national e-journal's codes (Kazakh Ж жоқ, А ауырды, Д дәлелді себеп, К кешікті).
ATTENDANCE_CODES: Mapping[str, Mapping[str, str]] = {
    "ru": {"absent": "н", "sick": "б", "late": "оп", "excused": "уп"},
    "kk": {"absent": "Ж", "sick": "А", "late": "К", "excused": "Д"},
}
ATTENDANCE_MARKS: Mapping[str, str] = ATTENDANCE_CODES["ru"]

#: Prefixes for summative grades in a grid cell, by printout language; FO scores and five-point
#: marks are bare numbers.
GRADE_CODES: Mapping[str, Mapping[str, str]] = {
    "ru": {"FO": "", "mark": "", "SOR": "СОР", "SOCh": "СОЧ"},
    "kk": {"FO": "", "mark": "", "SOR": "БЖБ", "SOCh": "ТЖБ"},
}
GRADE_PREFIXES: Mapping[str, str] = GRADE_CODES["ru"]


def _codes(table: Mapping[str, Mapping[str, str]], language: str) -> Mapping[str, str]:
    try:
        return table[language]
    except KeyError:
        raise ValueError(f"language must be one of {', '.join(table)}, got {language!r}") from None


@dataclass(frozen=True)
class ProofBundle:
    """What makes a printout verifiable without our server: the log state it was made from.

    ``root_hash`` is the raw 32-byte Merkle root; ``checkpoint_note`` the signed C2SP checkpoint
    text; ``vkey`` the school's note verifier key; ``entries_jsonl`` the log's leaves up to
    ``tree_size``; ``tlog_proofs`` (file name, text) pairs of ``.tlog-proof`` files;
    ``extra_files`` any other (file name, bytes) to embed (device keys, certificate chains).
    """

    origin: str
    tree_size: int
    root_hash: bytes
    checkpoint_note: str
    vkey: str
    entries_jsonl: bytes
    tlog_proofs: tuple[tuple[str, str], ...] = ()
    extra_files: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class LessonColumn:
    """One lesson of a subject in the quarter: a grid column and a line of the topics list."""

    date: date
    topic: str = ""
    homework: str = ""


@dataclass(frozen=True)
class StudentRow:
    """One student in one subject's grid.

    ``cells`` has one entry per lesson (same order as ``SubjectSheet.lessons``); each entry is the
    tuple of short marks for that lesson, e.g. ``()``, ``("н",)``, ``("8", "СОР 12/15")``.
    """

    student_name: str
    cells: tuple[tuple[str, ...], ...]
    term_percent: str = ""
    term_grade: str = ""


@dataclass(frozen=True)
class SubjectSheet:
    """One subject of a class in one quarter."""

    subject_name: str
    teacher_name: str
    lessons: tuple[LessonColumn, ...]
    rows: tuple[StudentRow, ...]

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row.cells) != len(self.lessons):
                raise ValueError(
                    f"{self.subject_name}: {row.student_name} has {len(row.cells)} cells "
                    f"for {len(self.lessons)} lessons"
                )


@dataclass(frozen=True)
class JournalDocument:
    """The class journal of a quarter (or, for half-year subjects, of a half-year): every
    subject's grid and topics, with the log's proof. ``quarter`` is the term's number."""

    school_name: str
    class_name: str
    school_year: str
    quarter: int
    generated_at: datetime
    subjects: tuple[SubjectSheet, ...]
    proof: ProofBundle | None = None
    term_kind: str = "quarter"  # or "half"
    #: For the title page: the class teacher and the pupils, numbered as in every grid.
    class_teacher: str = ""
    students: tuple[str, ...] = ()
    #: The school's time zone: the creation time is printed on its clock.
    time_zone: str = "Asia/Almaty"

    def __post_init__(self) -> None:
        last = 2 if self.term_kind == "half" else 4
        if self.term_kind not in ("quarter", "half") or not 1 <= self.quarter <= last:
            raise ValueError(f"{self.term_kind} must be 1..{last}, got {self.quarter}")


#: One student's results in one subject, as printed ("" when none): quarters 1..4 and the year,
#: or half-years 1..2 and the year. A result is a grade or a code: "pass", "fail", "exempt",
#: "not_attested", "incomplete" (each printed in the document's language).
TermGrades = tuple[str, ...]


@dataclass(frozen=True)
class LedgerRow:
    """One student's line of the summary ledger."""

    student_name: str
    grades: Mapping[str, TermGrades]
    absences_total: int = 0
    absences_sick: int = 0
    #: Whole days missed (of which by illness); printed when ``LedgerDocument.full``.
    days_total: int = 0
    days_sick: int = 0
    #: Graduating classes: subject → exam grade, subject → final grade ("" where none).
    exam: Mapping[str, str] = field(default_factory=dict)
    final: Mapping[str, str] = field(default_factory=dict)
    #: The council's decision (a code of ``journal.council.rules``) and its protocol's
    #: number and date, e.g. ("promoted", "5", "2027-05-28"); "" where none is recorded.
    decision: str = ""
    protocol_number: str = ""
    protocol_date: str = ""


@dataclass(frozen=True)
class LedgerDocument:
    """The class's summary ledger ("сводная ведомость") for a school year."""

    school_name: str
    class_name: str
    school_year: str
    subjects: tuple[str, ...]
    rows: tuple[LedgerRow, ...]
    proof: ProofBundle | None = None
    generated_at: datetime | None = field(default=None)
    #: Another title for the same layout (a registrar's duplicate-certificate extract).
    title: str = ""
    charts: bool = True
    time_zone: str = "Asia/Almaty"
    #: The school's summary ledger (not an extract): absences in days and lessons, the
    #: council's decision and signature lines; exam and final grades when ``graduating``.
    full: bool = False
    graduating: bool = False
    #: False mid-year: only the closed terms are printed, no year column, and the heading
    #: says the year is not finished.
    year_finished: bool = True


def cell_text(marks: Iterable[str]) -> str:
    """The text of one grid cell: the lesson's marks, space separated, in the given order."""
    return " ".join(m.strip() for m in marks if m and m.strip())


def grade_mark(component: str, value: Mapping[str, int], language: str = "ru") -> str:
    """The short cell form of a grade entry's value (see ``journal.grading.check_grade_value``).

    FO ``{"score": 8}`` → ``"8"``; SOR ``{"points": 12, "max": 15}`` → ``"СОР 12/15"``
    (Kazakh ``"БЖБ 12/15"``); SOCh → ``"СОЧ 18/20"`` (``"ТЖБ 18/20"``); mark → ``"4"``.
    """
    prefixes = _codes(GRADE_CODES, language)
    if component == "FO":
        return str(value["score"])
    if component == "mark":
        return str(value["mark"])
    if component in ("SOR", "SOCh"):
        return f"{prefixes[component]} {value['points']}/{value['max']}"
    raise ValueError(f"unknown grade component {component!r}")


def attendance_mark(kind: str, language: str = "ru") -> str:
    """The cell mark of an attendance entry: Russian absent "н", sick "б", late "оп", excused
    "уп"; Kazakh "Ж", "А", "К", "Д"."""
    codes = _codes(ATTENDANCE_CODES, language)
    try:
        return codes[kind]
    except KeyError:
        raise ValueError(f"unknown attendance kind {kind!r}") from None

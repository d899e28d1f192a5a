"""Benchmark: a whole school's quarterly journals as signed PDF/A-3b, against plain ReportLab.

    .venv/bin/python bench/pdf_school.py                # 40 classes x 25 students, 12 subjects,
                                                        # 45 lessons per quarter, 4 quarters
    .venv/bin/python bench/pdf_school.py --classes 4    # a quick run
    .venv/bin/python bench/pdf_school.py --profile 3    # cProfile three documents

It prints pages per second and total seconds for both pipelines and the ratio of their times
(target: ours <= 3 x plain). Only the rendering calls are timed; building the synthetic data and
counting pages are not. The baseline draws the same cells (grid chunks of at most 25 lessons and
the topics list) as plain ``reportlab.platypus.Table`` objects with DejaVuSans, and does no PDF/A,
embedding or signing.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import datetime as dt
import hashlib
import io
import json
import pstats
import random
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pikepdf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from reportlab.lib.pagesizes import A4, landscape
from reportlab.platypus import LongTable, PageBreak, SimpleDocTemplate, TableStyle

from exports.documents import (
    JournalDocument,
    LessonColumn,
    ProofBundle,
    StudentRow,
    SubjectSheet,
    attendance_mark,
    cell_text,
    grade_mark,
)
from exports.pdf import FONT, LESSONS_PER_PAGE, PdfSigner, _register_fonts, render_journal_pdf

SUBJECTS = (
    "Алгебра",
    "Геометрия",
    "Қазақ тілі",
    "Қазақ әдебиеті",
    "Орыс тілі мен әдебиеті",
    "Ағылшын тілі",
    "Физика",
    "Химия",
    "Биология",
    "География",
    "Қазақстан тарихы",
    "Информатика",
)
FIRST = ("Әлібек", "Қанат", "Ұлжан", "Һадиша", "Іңкәр", "Айгерім", "Бауыржан", "Дана", "Өмірзақ")
LAST = ("Нұрланұлы", "Үсенова", "Ғалымжанқызы", "Төлеген", "Жақыпова", "Серікқызы", "Бөкейхан")
QUARTER_STARTS = ((9, 1), (11, 3), (1, 8), (3, 30))


# --- synthetic school -------------------------------------------------------------------------


@dataclass(frozen=True)
class SchoolShape:
    classes: int = 40
    students: int = 25
    subjects: int = 12
    lessons: int = 45
    quarters: int = 4


def _cells(rnd: random.Random, lessons: int) -> tuple[tuple[str, ...], ...]:
    out: list[tuple[str, ...]] = []
    sor_days = {lessons // 3, 2 * lessons // 3}
    for lesson in range(lessons):
        r = rnd.random()
        if lesson in sor_days:
            out.append((grade_mark("SOR", {"points": rnd.randint(5, 15), "max": 15}),))
        elif lesson == lessons - 1:
            out.append((grade_mark("SOCh", {"points": rnd.randint(8, 20), "max": 20}),))
        elif r < 0.05:
            out.append((attendance_mark(rnd.choice(("absent", "sick", "excused"))),))
        elif r < 0.07:
            out.append((attendance_mark("late"), grade_mark("FO", {"score": rnd.randint(4, 10)})))
        elif r < 0.35:
            out.append((grade_mark("FO", {"score": rnd.randint(3, 10)}),))
        else:
            out.append(())
    return tuple(out)


def _entries(origin: str, count: int, rnd: random.Random) -> bytes:
    """Log leaves shaped like DESIGN §5 records (about 450 bytes each)."""
    lines = []
    for seq in range(count):
        record = {
            "seq": seq,
            "received_at": "2025-10-20T08:15:00Z",
            "alg": "ed25519",
            "kid": "k-" + str(seq % 30),
            "sig": base64.b64encode(rnd.randbytes(64)).decode(),
            "payload": {
                "v": 1,
                "entry_id": str(uuid.UUID(int=rnd.getrandbits(128))),
                "journal": origin,
                "kind": "grade",
                "device_id": "d-" + str(seq % 30),
                "device_seq": seq,
                "author": seq % 30,
                "created_at": "2025-10-20T08:14:59Z",
                "lesson": seq // 20,
                "student": seq % 25,
                "value": {"score": 1 + seq % 10},
                "component": "FO",
            },
        }
        lines.append(json.dumps(record, sort_keys=True, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


def synthetic_school(shape: SchoolShape, seed: int = 2025) -> Iterator[JournalDocument]:
    """One journal per class and quarter, built lazily (a class's log can be megabytes)."""
    for class_no in range(shape.classes):
        rnd = random.Random(seed * 1000 + class_no)
        class_name = f"{5 + class_no % 7}{'АӘБВГ'[class_no % 5]}"
        origin = f"school17.example.kz/journal/2025-2026/{class_no + 1}"
        names = tuple(
            f"{rnd.choice(LAST)} {rnd.choice(FIRST)} {i + 1}" for i in range(shape.students)
        )
        # entries per quarter: grades, absences and topics of every subject so far
        per_quarter = shape.subjects * (shape.lessons + int(shape.students * shape.lessons * 0.35))
        year_log = _entries(origin, per_quarter * shape.quarters, rnd)
        line_ends = [i for i, b in enumerate(year_log) if b == 0x0A]
        for quarter in range(1, shape.quarters + 1):
            month, day = QUARTER_STARTS[quarter - 1]
            start = dt.date(2025 if month >= 9 else 2026, month, day)
            sheets = []
            for s in range(shape.subjects):
                lessons = tuple(
                    LessonColumn(
                        start + dt.timedelta(days=(i * 7) // 5),
                        f"{SUBJECTS[s % len(SUBJECTS)]}: {i + 1}-сабақ, тақырып және мысалдар",
                        f"§{i + 1}, №{3 * i + 1}–{3 * i + 4}",
                    )
                    for i in range(shape.lessons)
                )
                rows = tuple(
                    StudentRow(
                        name,
                        _cells(rnd, shape.lessons),
                        f"{rnd.randint(40, 100)}.{rnd.randint(0, 9)}",
                        str(rnd.randint(3, 5)),
                    )
                    for name in names
                )
                sheets.append(
                    SubjectSheet(SUBJECTS[s % len(SUBJECTS)], "Сәуле Қайратқызы", lessons, rows)
                )
            size = per_quarter * quarter
            root = hashlib.sha256(f"{origin}/{size}".encode()).digest()
            proof = ProofBundle(
                origin=origin,
                tree_size=size,
                root_hash=root,
                checkpoint_note=f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n\n— x\n",
                vkey="school17.example.kz+0a1b2c3d+AQIDBA==",
                entries_jsonl=year_log[: line_ends[size - 1] + 1],
            )
            yield JournalDocument(
                "№ 17 жалпы білім беретін мектеп-гимназиясы",
                class_name,
                "2025-2026",
                quarter,
                dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC),
                tuple(sheets),
                proof,
            )


def throwaway_signer() -> PdfSigner:
    """A self-signed RSA-3072 certificate, as a school's would be."""
    key = rsa.generate_private_key(65537, 3072)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench school")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return PdfSigner(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert.public_bytes(serialization.Encoding.PEM),
    )


# --- the baseline -----------------------------------------------------------------------------

Table = list[list[str]]


def document_cells(doc: JournalDocument) -> list[Table]:
    """The cells our journal draws, as plain tables: each grid chunk, then the topics."""
    tables: list[Table] = []
    for sheet in doc.subjects:
        for start in range(0, max(len(sheet.lessons), 1), LESSONS_PER_PAGE):
            chunk = sheet.lessons[start : start + LESSONS_PER_PAGE]
            header = ["№", "Оқушы", *(lesson.date.strftime("%d.%m") for lesson in chunk)]
            table = [header + ["%", "Баға"]]
            for number, row in enumerate(sheet.rows, 1):
                marks = [cell_text(m) for m in row.cells[start : start + LESSONS_PER_PAGE]]
                table.append(
                    [str(number), row.student_name, *marks, row.term_percent, row.term_grade]
                )
            tables.append(table)
        topics = [["№", "Күні", "Тақырып", "Үй тапсырмасы"]]
        for number, lesson in enumerate(sheet.lessons, 1):
            topics.append([str(number), lesson.date.isoformat(), lesson.topic, lesson.homework])
        tables.append(topics)
    return tables


def plain_reportlab_table(cells: Sequence[Table]) -> bytes:
    """The baseline: the same cells as plain ReportLab tables, one after another, A4 landscape,
    header rows repeated across pages; no PDF/A, no embedded files, no signature."""
    _register_fonts()
    buf = io.BytesIO()
    template = SimpleDocTemplate(
        buf,
        pagesize=landscape(A4),
        leftMargin=28,
        rightMargin=28,
        topMargin=28,
        bottomMargin=28,
        invariant=1,
        initialFontName=FONT,
    )
    style = TableStyle(
        [
            ("FONT", (0, 0), (-1, -1), FONT, 6.5),
            ("GRID", (0, 0), (-1, -1), 0.35, (0, 0, 0)),
            ("LEFTPADDING", (0, 0), (-1, -1), 1),
            ("RIGHTPADDING", (0, 0), (-1, -1), 1),
        ]
    )
    story: list[object] = []
    for table in cells:
        if story:
            story.append(PageBreak())
        story.append(LongTable(table, repeatRows=1, style=style))
    template.build(story)
    return buf.getvalue()


# --- timing -----------------------------------------------------------------------------------


@dataclass
class Timing:
    documents: int = 0
    pages: int = 0
    seconds: float = 0.0
    megabytes: float = 0.0

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0


def _pages(data: bytes) -> int:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return len(pdf.pages)


def render_school(
    docs: Iterable[JournalDocument],
    signer: PdfSigner | None = None,
    *,
    baseline: Timing | None = None,
) -> Timing:
    """Render every journal (timed), counting pages (not timed). With ``baseline`` given, also
    render the same cells with :func:`plain_reportlab_table` into it."""
    timing = Timing()
    for doc in docs:
        started = time.perf_counter()
        data = render_journal_pdf(doc, signer)
        timing.seconds += time.perf_counter() - started
        timing.documents += 1
        timing.pages += _pages(data)
        timing.megabytes += len(data) / 1e6
        if baseline is not None:
            cells = document_cells(doc)
            started = time.perf_counter()
            plain = plain_reportlab_table(cells)
            baseline.seconds += time.perf_counter() - started
            baseline.documents += 1
            baseline.pages += _pages(plain)
            baseline.megabytes += len(plain) / 1e6
    return timing


def _line(label: str, t: Timing) -> str:
    return (
        f"{label:<44} {t.documents:4d} docs {t.pages:6d} pages {t.seconds:8.1f} s "
        f"{t.pages_per_second:7.1f} pages/s {t.megabytes:8.1f} MB"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--students", type=int, default=25)
    parser.add_argument("--subjects", type=int, default=12)
    parser.add_argument("--lessons", type=int, default=45)
    parser.add_argument("--quarters", type=int, default=4)
    parser.add_argument("--no-sign", action="store_true", help="skip the PAdES signature")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="profile N documents")
    args = parser.parse_args(argv)
    shape = SchoolShape(args.classes, args.students, args.subjects, args.lessons, args.quarters)
    signer = None if args.no_sign else throwaway_signer()
    print(
        f"school: {shape.classes} classes x {shape.students} students, {shape.subjects} subjects,"
        f" {shape.lessons} lessons per quarter, {shape.quarters} quarters"
    )
    render_journal_pdf(next(synthetic_school(SchoolShape(1, 2, 1, 2, 1))), signer)  # warm up

    if args.profile:
        docs = list(synthetic_school(shape))[: args.profile]
        profiler = cProfile.Profile()
        profiler.enable()
        render_school(docs, signer)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
        return 0

    baseline = Timing()
    ours = render_school(synthetic_school(shape), signer, baseline=baseline)
    kind = "PDF/A-3b + embedded log" + (", signed" if signer else "")
    print(_line(f"journals ({kind})", ours))
    print(_line("plain ReportLab Table, same cells", baseline))
    ratio = ours.seconds / baseline.seconds if baseline.seconds else float("inf")
    per_page = baseline.pages_per_second / ours.pages_per_second if ours.pages_per_second else 0.0
    print(f"ratio of total time, ours / plain: {ratio:.2f} (target <= 3)")
    print(f"ratio of time per page, ours / plain: {per_page:.2f}")
    print(f"per journal: {ours.seconds / max(ours.documents, 1) * 1000:.0f} ms")
    return 0 if ratio <= 3 else 1


if __name__ == "__main__":
    sys.exit(main())

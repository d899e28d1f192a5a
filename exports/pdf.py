"""Quarterly journals and summary ledgers as signed PDF/A-3b (pure: dataclasses in, bytes out).

The pipeline, per document:

1. **Layout** (:func:`_journal_pages`, ``exports.ledger_pdf``): plain values → a list of pages, each
   a heading and a few drawing closures. The page count is known before anything is drawn, so the
   footer can say "page X of Y" without a second pass.
2. **Drawing** with the ReportLab canvas directly (no platypus): A4 landscape, DejaVuSans embedded
   as a TrueType subset (``initialFontName`` so no unembedded Helvetica is ever referenced), black
   and white only, ``invariant=1`` so equal input gives equal bytes. Each page carries the log
   checkpoint (origin, tree size, base64 root) in its footer and as a QR code (one form XObject
   per document, reused on every page).
3. **PDF/A-3b** with pikepdf: an XMP packet (``pdfaid:part 3``, ``conformance B``) matching the
   document information dictionary, an sRGB output intent (ICC profile built in code by
   :func:`srgb_icc_profile`), and the proof files embedded as associated files (``/AF`` on the
   catalog, ``/AFRelationship`` ``/Source`` for ``entries.jsonl`` and ``/Data`` for the rest).
4. **Signature** with pyHanko: PAdES (``ETSI.CAdES.detached``), RSA, SHA-256, as an incremental
   update that keeps PDF 1.7; then, when a :class:`~pyhanko.sign.timestamps.TimeStamper` is given,
   an RFC 3161 document timestamp as a second incremental update.
"""

from __future__ import annotations

import base64
import functools
import io
import math
import mimetypes
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode
from xml.sax.saxutils import escape

import pikepdf
import segno
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from pyhanko.keys import load_certs_from_pemder_data, load_private_key_from_pemder_data
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.metadata.model import VENDOR as PYHANKO_VENDOR
from pyhanko.sign import fields, signers
from pyhanko.sign.timestamps import TimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore
from reportlab.graphics import renderPDF
from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from exports.documents import (
    ATTENDANCE_CODES,
    JournalDocument,
    LedgerDocument,
    ProofBundle,
    SubjectSheet,
)
from journal.school_time import format_local

__all__ = [
    "PdfSigner",
    "extract_embedded_files",
    "render_journal_pdf",
    "render_ledger_pdf",
    "srgb_icc_profile",
]

PRODUCER: Final = "class-journal exports.pdf (ReportLab, pikepdf, pyHanko)"
CREATOR: Final = "class-journal"

# --- page geometry (points) -------------------------------------------------------------------

PAGE_W, PAGE_H = landscape(A4)
MARGIN: Final = 28.0
HEADER_H: Final = 34.0
FOOTER_H: Final = 60.0
QR_SIZE: Final = 56.0
BODY_TOP: Final = PAGE_H - MARGIN - HEADER_H
BODY_BOTTOM: Final = MARGIN + FOOTER_H
BODY_W: Final = PAGE_W - 2 * MARGIN

LESSONS_PER_PAGE: Final = 25
ROW_H: Final = 14.0
MIN_ROW_H: Final = 11.0
GRID_HEAD_H: Final = 24.0
LEGEND_H: Final = 12.0
LINE_W: Final = 0.35
STRIPE_GRAY: Final = 0.92

FONT: Final = "DejaVuSans"
FONT_BOLD: Final = "DejaVuSans-Bold"
_FONT_FILES: Final = {FONT: "DejaVuSans.ttf", FONT_BOLD: "DejaVuSans-Bold.ttf"}
_FONT_DIRS: Final = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
    "/usr/local/share/fonts",
    "/Library/Fonts",
)

# --- labels ---------------------------------------------------------------------------------

LABELS: Final[dict[str, dict[str, str]]] = {
    "ru": {
        "journal": "Классный журнал",
        "ledger": "Сводная ведомость",
        "year": "{year} учебный год",
        "quarter": "{n} четверть",
        "class": "Класс",
        "subject": "Предмет",
        "teacher": "Учитель",
        "class_teacher": "Классный руководитель",
        "pupils": "Список учащихся",
        "no": "№",
        "student": "Фамилия, имя ученика",
        "percent": "%",
        "grade": "Оц.",
        "topics": "Темы уроков",
        "date": "Дата",
        "topic": "Тема урока",
        "homework": "Домашнее задание",
        "page": "Страница {i} из {n}",
        "log": "Журнал (лог)",
        "size": "размер",
        "root": "корень (base64)",
        "generated": "Сформирован",
        "legend": "н — отсутствовал, б — болел, оп — опоздал, уп — уважительная причина; "
        "СОР — суммативное оценивание за раздел, СОЧ — за четверть; % и Оц. — итог четверти",
        "no_subjects": "Нет предметов",
        "how_to_verify": "Проверить этот документ можно на странице {url}: загрузите этот PDF, "
        "и страница скажет, подлинный ли он, какой школы, какой документ и за какой период. "
        "Без интернета команда journal-verify pdf <файл> проверяет подпись, записи и "
        "контрольную точку, встроенные в файл.",
        "absences": "Пропуски",
        "abs_total": "всего",
        "abs_sick": "бол.",
        "year_col": "Г",
        "distribution": "Распределение оценок",
        "column_year": "годовые",
        "column_quarter": "{n} четв.",
        "no_grades": "нет оценок",
        "students": "учеников",
        "half": "{n} полугодие",
        "column_half": "{n} полуг.",
        "result_pass": "зач.",
        "result_fail": "незач.",
        "result_exempt": "осв.",
        "result_not_attested": "н/а",
        "result_incomplete": "—",
    },
    "kk": {
        "journal": "Сынып журналы",
        "ledger": "Жиынтық ведомость",
        "year": "{year} оқу жылы",
        "quarter": "{n}-тоқсан",
        "class": "Сынып",
        "subject": "Пән",
        "teacher": "Мұғалім",
        "class_teacher": "Сынып жетекшісі",
        "pupils": "Оқушылар тізімі",
        "no": "№",
        "student": "Оқушының аты-жөні",
        "percent": "%",
        "grade": "Баға",
        "topics": "Сабақ тақырыптары",
        "date": "Күні",
        "topic": "Сабақтың тақырыбы",
        "homework": "Үй тапсырмасы",
        "page": "{i}-бет, барлығы {n}",
        "log": "Журнал (лог)",
        "size": "өлшемі",
        "root": "түбірі (base64)",
        "generated": "Жасалған уақыты",
        "legend": "Ж — жоқ, А — ауырды, К — кешікті, Д — дәлелді себеп; "
        "БЖБ — бөлім бойынша жиынтық бағалау, ТЖБ — тоқсан бойынша; "
        "% және Баға — тоқсан қорытындысы",
        "no_subjects": "Пәндер жоқ",
        "how_to_verify": "Бұл құжатты {url} бетінде тексеруге болады: осы PDF файлын жүктеңіз, "
        "бет оның түпнұсқа екенін, қай мектептікі, қандай құжат және қай кезеңге арналғанын "
        "көрсетеді. Интернетсіз journal-verify pdf <файл> командасы файлға енгізілген қолтаңбаны, "
        "жазбаларды және бақылау нүктесін тексереді.",
        "absences": "Жіберілген сабақтар",
        "abs_total": "барлығы",
        "abs_sick": "ауыр.",
        "year_col": "Ж",
        "distribution": "Бағалардың таралуы",
        "column_year": "жылдық",
        "column_quarter": "{n}-тоқсан",
        "no_grades": "бағалар жоқ",
        "students": "оқушы",
        "half": "{n}-жартыжылдық",
        "column_half": "{n}-жартыж.",
        # short: a ledger cell is 15 points wide
        "result_pass": "өтті",
        "result_fail": "өтпеді",
        "result_exempt": "бос.",
        "result_not_attested": "н/а",
        "result_incomplete": "—",
    },
}


@dataclass(frozen=True)
class PdfSigner:
    """The school's signing key and certificate: PEM files, or one PKCS#12 file.

    RSA only (3072 bits recommended): poppler's ``pdfsig`` cannot read Ed25519 PDF signatures, and
    pyHanko moves ECDSA-signed files to PDF 2.0, which is not PDF/A-3. ``chain_pem`` holds the
    intermediate and root certificates to embed in the signature. With ``pkcs12`` (the bytes of a
    ``.p12``/``.pfx``, e.g. issued by the national certificate authority, and its
    ``pkcs12_passphrase``) the key, certificate and chain come from that file instead and
    ``key_pem``/``cert_pem`` stay empty.
    """

    key_pem: bytes
    cert_pem: bytes
    chain_pem: tuple[bytes, ...] = ()
    reason: str = "Class journal printout, signed by the school"
    location: str = ""
    pkcs12: bytes = b""
    pkcs12_passphrase: bytes | None = None


# --- public API -----------------------------------------------------------------------------


def render_journal_pdf(
    doc: JournalDocument,
    signer: PdfSigner | None = None,
    timestamper: TimeStamper | None = None,
    *,
    language: str = "ru",
    check_url: str | None = None,
) -> bytes:
    """The quarterly class journal as PDF/A-3b bytes, signed when a signer is given."""
    _register_fonts()
    labels = _labels(language)
    pages = _journal_pages(doc, labels, check_url)
    title = (
        f"{labels['journal']} {doc.class_name}, {labels['year'].format(year=doc.school_year)}, "
        f"{_term_label(doc, labels)}"
    )
    raw = _draw_document(
        pages, doc.proof, doc.generated_at, labels, language, doc.time_zone, check_url
    )
    producer = _producer(signer, timestamper)
    pdf = _to_pdfa(raw, title, doc.school_name, doc.generated_at, doc.proof, language, producer)
    return _sign(pdf, signer, timestamper)


def render_ledger_pdf(
    doc: LedgerDocument,
    signer: PdfSigner | None = None,
    timestamper: TimeStamper | None = None,
    *,
    language: str = "ru",
    check_url: str | None = None,
) -> bytes:
    """The summary ledger as PDF/A-3b bytes, signed when a signer is given."""
    _register_fonts()
    labels = _labels(language)
    generated_at = doc.generated_at or datetime.now(UTC)
    from .ledger_pdf import ledger_pages  # the ledger's own layout (it imports this module)

    pages = ledger_pages(doc, labels, language)
    title = (
        f"{doc.title or labels['ledger']} {doc.class_name}, "
        f"{labels['year'].format(year=doc.school_year)}"
    )
    raw = _draw_document(pages, doc.proof, generated_at, labels, language, doc.time_zone, check_url)
    producer = _producer(signer, timestamper)
    pdf = _to_pdfa(raw, title, doc.school_name, generated_at, doc.proof, language, producer)
    return _sign(pdf, signer, timestamper)


def _term_label(doc: JournalDocument, labels: dict[str, str]) -> str:
    return labels["half" if doc.term_kind == "half" else "quarter"].format(n=doc.quarter)


def _result_text(value: str, labels: dict[str, str]) -> str:
    """A printed result: a grade as it is, a code ("pass", "exempt", ...) in words."""
    return labels.get(f"result_{value}", value)


def _labels(language: str) -> dict[str, str]:
    try:
        return LABELS[language]
    except KeyError:
        raise ValueError(f"language must be one of {', '.join(LABELS)}, got {language!r}") from None


def extract_embedded_files(pdf_bytes: bytes) -> dict[str, bytes]:
    """Every embedded file of a PDF by name (for verifiers: entries, checkpoint, proofs)."""
    with pikepdf.open(io.BytesIO(pdf_bytes)) as pdf:
        return {name: spec.get_file().read_bytes() for name, spec in pdf.attachments.items()}


# --- fonts, text measuring ------------------------------------------------------------------


def _find_font(file_name: str) -> Path:
    dirs = [os.environ["JOURNAL_FONT_DIR"]] if os.environ.get("JOURNAL_FONT_DIR") else []
    for directory in (*dirs, *_FONT_DIRS):
        path = Path(directory) / file_name
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{file_name} not found in {', '.join((*dirs, *_FONT_DIRS))}; install DejaVu fonts "
        "(Debian: fonts-dejavu-core) or set JOURNAL_FONT_DIR"
    )


@functools.cache
def _register_fonts() -> None:
    """Register DejaVuSans and DejaVuSans-Bold once per process."""
    for name, file_name in _FONT_FILES.items():
        pdfmetrics.registerFont(TTFont(name, str(_find_font(file_name))))


@functools.lru_cache(maxsize=65536)
def _width(text: str, font: str, size: float) -> float:
    return float(pdfmetrics.stringWidth(text, font, size))


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    """Greedy word wrap; words longer than the width are broken by characters."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if _width(candidate, font, size) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while _width(word, font, size) > width and len(word) > 1:
                cut = len(word) - 1
                while cut > 1 and _width(word[:cut], font, size) > width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def _fit(
    text: str, font: str, size: float, width: float, min_size: float = 5.0
) -> tuple[str, float]:
    """Shrink text to fit a width; below ``min_size`` truncate it with an ellipsis."""
    natural = _width(text, font, size)
    if natural <= width:
        return text, size
    shrunk = math.floor(size * width / natural * 10) / 10
    if shrunk >= min_size:
        return text, shrunk
    while text and _width(text + "…", font, min_size) > width:
        text = text[:-1]
    return text + "…", min_size


_CELL_SIZES: Final = (7.0, 6.5, 6.0, 5.5, 5.0)
_CELL_LEADING: Final = 1.02
_BASE_ROW_HEIGHTS: Final = (ROW_H, 13.0, 12.0, MIN_ROW_H)


def _pack_marks(marks: Sequence[str], size: float, width: float) -> tuple[str, ...]:
    """Put whole marks on lines ("оп 8"); a mark wider than the cell wraps on lines of its own."""
    lines: list[str] = []
    line = ""
    for mark in marks:
        candidate = f"{line} {mark}" if line else mark
        if _width(candidate, FONT, size) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        wrapped = _wrap(mark, FONT, size, width)
        lines.extend(wrapped[:-1])
        line = wrapped[-1]
    if line:
        lines.append(line)
    return tuple(lines)


def _lines_height(size: float, count: int) -> float:
    return count * size * _CELL_LEADING + 1.5


@functools.lru_cache(maxsize=16384)
def _cell_layout(
    marks: tuple[str, ...], width: float, row_h: float
) -> tuple[float, tuple[str, ...]]:
    """Font size and lines of a grid cell: the largest size whose lines fit ``row_h``.

    When even the smallest size needs more height (an FO score and a SOR on the same day in a
    narrow column), the smallest size is returned and the row grows to fit it.
    """
    cleaned = tuple(m.strip() for m in marks if m.strip())
    if not cleaned:
        return 0.0, ()
    inner = width - 2
    lines: tuple[str, ...] = ()
    for size in _CELL_SIZES:
        lines = _pack_marks(cleaned, size, inner)
        if _lines_height(size, len(lines)) <= row_h:
            return size, lines
    return _CELL_SIZES[-1], lines


def _balanced(count: int, per_page: int) -> list[tuple[int, int]]:
    """Split ``count`` items into the fewest chunks of at most ``per_page``, sizes within one."""
    if count <= 0:
        return [(0, 0)]
    chunks = math.ceil(count / per_page)
    base, extra = divmod(count, chunks)
    out, start = [], 0
    for i in range(chunks):
        end = start + base + (1 if i < extra else 0)
        out.append((start, end))
        start = end
    return out


def _greedy_rows(heights: Sequence[float], capacity: float) -> list[tuple[int, int]]:
    chunks: list[tuple[int, int]] = []
    start, used = 0, 0.0
    for i, height in enumerate(heights):
        if used + height > capacity and i > start:
            chunks.append((start, i))
            start, used = i, 0.0
        used += height
    chunks.append((start, len(heights)))
    return chunks


def _split_rows(heights: Sequence[float], avail: float) -> list[tuple[int, int]]:
    """Rows per page: as few pages as fit, then balanced so the last page is not a stub."""
    if sum(heights) <= avail:
        return [(0, len(heights))]
    pages = len(_greedy_rows(heights, avail))
    low, high = max(heights), avail
    while high - low > 0.5:
        middle = (low + high) / 2
        if len(_greedy_rows(heights, middle)) <= pages:
            high = middle
        else:
            low = middle
    return _greedy_rows(heights, high)


def _choose_base_height(fits: Callable[[float], bool]) -> float:
    """The largest base row height at which a block fits one page (ROW_H if none does)."""
    for base in _BASE_ROW_HEIGHTS:
        if fits(base):
            return base
    return ROW_H


# --- pages ----------------------------------------------------------------------------------

Draw = Callable[[Canvas], None]


@dataclass(frozen=True)
class _Heading:
    left1: str
    right1: str
    left2: str


@dataclass
class _Page:
    heading: _Heading
    ops: list[Draw] = field(default_factory=list)
    bookmark: str | None = None


def _draw_document(
    pages: Sequence[_Page],
    proof: ProofBundle | None,
    generated_at: datetime,
    labels: dict[str, str],
    language: str,
    time_zone: str = "UTC",
    check_url: str | None = None,
) -> bytes:
    _register_fonts()
    buf = io.BytesIO()
    canvas = Canvas(
        buf,
        pagesize=(PAGE_W, PAGE_H),
        invariant=1,
        pageCompression=1,
        pdfVersion=(1, 7),
        initialFontName=FONT,
        initialFontSize=8,
        lang=f"{language}-KZ",
    )
    footer_lines = [f"{labels['generated']}: {format_local(generated_at, time_zone)}"]
    if proof is not None:
        footer_lines = [
            f"{labels['log']}: {proof.origin}",
            f"{labels['size']} {proof.tree_size} · {labels['root']} {_b64(proof.root_hash)}",
            *footer_lines,
        ]
        _define_qr_form(canvas, qr_text(proof, check_url))
    total = len(pages)
    for number, page in enumerate(pages, 1):
        if page.bookmark is not None:
            key = f"section{number}"
            canvas.bookmarkPage(key)
            canvas.addOutlineEntry(page.bookmark, key, level=0)
        _draw_heading(canvas, page.heading)
        for op in page.ops:
            op(canvas)
        _draw_footer(canvas, labels["page"].format(i=number, n=total), footer_lines, proof)
        canvas.showPage()
    canvas.save()
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _checkpoint_body(proof: ProofBundle) -> str:
    """The first three lines of a C2SP checkpoint: origin, tree size, base64 root hash."""
    return f"{proof.origin}\n{proof.tree_size}\n{_b64(proof.root_hash)}\n"


def qr_text(proof: ProofBundle, check_url: str | None) -> str:
    """What the QR code holds: the school's public check page with the checkpoint the printout
    names (``?o=origin&s=size&r=root``, root in URL-safe base64 without padding), or, with no
    check page configured, the checkpoint's first three lines."""
    if not check_url:
        return _checkpoint_body(proof)
    root = base64.urlsafe_b64encode(proof.root_hash).decode().rstrip("=")
    query = urlencode({"o": proof.origin, "s": proof.tree_size, "r": root})
    return f"{check_url}?{query}"


_QR_FORM: Final = "checkpointQR"


def _define_qr_form(canvas: Canvas, text: str) -> None:
    """The checkpoint QR code as a form XObject, QR_SIZE square, drawn once per document."""
    qr = segno.make(text, error="m", micro=False)
    matrix = qr.matrix
    modules = len(matrix) + 8  # quiet zone of 4 modules each side
    unit = QR_SIZE / modules
    canvas.beginForm(_QR_FORM, lowerx=0, lowery=0, upperx=QR_SIZE, uppery=QR_SIZE)
    path = canvas.beginPath()
    for r, row in enumerate(matrix):
        y = QR_SIZE - (r + 5) * unit
        c = 0
        while c < len(row):
            if row[c]:
                start = c
                while c < len(row) and row[c]:
                    c += 1
                path.rect((start + 4) * unit, y, (c - start) * unit, unit)
            else:
                c += 1
    canvas.setFillGray(0)
    canvas.drawPath(path, stroke=0, fill=1)
    canvas.endForm()


def _draw_heading(canvas: Canvas, heading: _Heading) -> None:
    top = PAGE_H - MARGIN
    right_text, right_size = _fit(heading.right1, FONT, 9, BODY_W * 0.4)
    right_w = _width(right_text, FONT, right_size)
    left_text, left_size = _fit(heading.left1, FONT_BOLD, 11, BODY_W - right_w - 12)
    canvas.setFillGray(0)
    canvas.setFont(FONT_BOLD, left_size)
    canvas.drawString(MARGIN, top - 11, left_text)
    canvas.setFont(FONT, right_size)
    canvas.drawRightString(PAGE_W - MARGIN, top - 10, right_text)
    line2, size2 = _fit(heading.left2, FONT, 9, BODY_W)
    canvas.setFont(FONT, size2)
    canvas.drawString(MARGIN, top - 24, line2)
    canvas.setLineWidth(0.6)
    canvas.setStrokeGray(0)
    canvas.line(MARGIN, top - 29, PAGE_W - MARGIN, top - 29)


def _draw_footer(
    canvas: Canvas, page_text: str, lines: Sequence[str], proof: ProofBundle | None
) -> None:
    top = MARGIN + FOOTER_H - 4
    canvas.setLineWidth(0.4)
    canvas.setStrokeGray(0)
    canvas.line(MARGIN, top, PAGE_W - MARGIN, top)
    canvas.setFillGray(0)
    text_w = BODY_W - QR_SIZE - 130
    y = top - 11
    for line in lines:
        fitted, size = _fit(line, FONT, 7, text_w, 4.5)
        canvas.setFont(FONT, size)
        canvas.drawString(MARGIN, y, fitted)
        y -= 9
    canvas.setFont(FONT, 8)
    right = PAGE_W - MARGIN - (QR_SIZE + 8 if proof is not None else 0)
    canvas.drawRightString(right, top - 11, page_text)
    if proof is not None:
        canvas.saveState()
        canvas.translate(PAGE_W - MARGIN - QR_SIZE, MARGIN - 2)
        canvas.doForm(_QR_FORM)
        canvas.restoreState()


class _Text:
    """One text object for many short strings: far cheaper than a drawString per cell."""

    def __init__(self, canvas: Canvas) -> None:
        self.canvas = canvas
        self.obj = canvas.beginText()
        self.font: tuple[str, float] | None = None

    def put(self, x: float, y: float, text: str, font: str, size: float, align: str = "l") -> None:
        if not text:
            return
        if self.font != (font, size):
            self.obj.setFont(font, size)
            self.font = (font, size)
        if align == "c":
            x -= _width(text, font, size) / 2
        elif align == "r":
            x -= _width(text, font, size)
        self.obj.setTextOrigin(x, y)
        self.obj.textOut(text)

    def close(self) -> None:
        self.canvas.setFillGray(0)
        self.canvas.drawText(self.obj)


def _stripes(canvas: Canvas, x: float, width: float, ys: Sequence[float]) -> None:
    """Shade every second row (``ys`` are the row boundaries, top first)."""
    if len(ys) < 3:
        return
    path = canvas.beginPath()
    for i in range(1, len(ys) - 1, 2):
        path.rect(x, ys[i + 1], width, ys[i] - ys[i + 1])
    canvas.setFillGray(STRIPE_GRAY)
    canvas.drawPath(path, stroke=0, fill=1)
    canvas.setFillGray(0)


def _grid_lines(canvas: Canvas, xs: Sequence[float], ys: Sequence[float]) -> None:
    canvas.setStrokeGray(0)
    canvas.setLineWidth(LINE_W)
    canvas.grid(list(xs), list(ys))


#: Every attendance code in any printout language: drawn bold in grid cells.
_ATTENDANCE_CODES: Final = frozenset(
    code for codes in ATTENDANCE_CODES.values() for code in codes.values()
)


def _centred_lines(
    text: _Text,
    lines: Sequence[str],
    x: float,
    y_top: float,
    height: float,
    font: str,
    size: float,
) -> None:
    leading = size * _CELL_LEADING
    block = leading * len(lines)
    y = y_top - (height - block) / 2 - size * 0.82
    for line in lines:
        words = line.split(" ")
        if not any(w in _ATTENDANCE_CODES for w in words):
            text.put(x, y, line, font, size, "c")
        else:  # attendance codes in bold, so that "б" never reads as a "6"
            fonts = [FONT_BOLD if w in _ATTENDANCE_CODES else font for w in words]
            space = _width(" ", font, size)
            total = sum(_width(w, f, size) for w, f in zip(words, fonts, strict=True))
            cx = x - (total + space * (len(words) - 1)) / 2
            for word, word_font in zip(words, fonts, strict=True):
                text.put(cx, y, word, word_font, size)
                cx += _width(word, word_font, size) + space
        y -= leading


# --- journal layout -------------------------------------------------------------------------


@dataclass(frozen=True)
class _GridGeometry:
    no_w: float
    name_w: float
    lesson_w: float
    pct_w: float
    grade_w: float
    base_h: float


class _Flow:
    """Blocks placed down the pages of one section; a block that does not fit starts a page."""

    def __init__(self, pages: list[_Page], heading: _Heading) -> None:
        self.pages = pages
        self.heading = heading
        self.y = BODY_TOP
        self.fresh = True

    def new_page(self) -> None:
        self.pages.append(_Page(self.heading))
        self.y = BODY_TOP
        self.fresh = True

    def reserve(self, height: float, gap: float = 14.0) -> float:
        """The top y of a block of ``height``, on this page when it fits, else on a new one."""
        if not self.fresh:
            if self.y - gap - height < BODY_BOTTOM:
                self.new_page()
            else:
                self.y -= gap
        top = self.y
        self.y -= height
        self.fresh = False
        return top

    def add(self, op: Draw) -> None:
        self.pages[-1].ops.append(op)


def _journal_pages(
    doc: JournalDocument, labels: dict[str, str], check_url: str | None = None
) -> list[_Page]:
    right = f"{labels['year'].format(year=doc.school_year)} · {_term_label(doc, labels)}"
    pages: list[_Page] = []
    if doc.students:
        heading = _Heading(doc.school_name, right, f"{labels['class']} {doc.class_name}")
        pages.append(_Page(heading, [_title_page(doc, labels)]))
    if not doc.subjects:
        heading = _Heading(doc.school_name, right, f"{labels['class']} {doc.class_name}")
        pages.append(_Page(heading, [_note(labels["no_subjects"])]))
        return pages
    for sheet in doc.subjects:
        heading = _Heading(
            doc.school_name,
            right,
            f"{labels['class']} {doc.class_name} · {labels['subject']}: {sheet.subject_name}"
            f" · {labels['teacher']}: {sheet.teacher_name}",
        )
        flow = _Flow(pages, heading)
        flow.new_page()
        pages[-1].bookmark = sheet.subject_name
        _layout_grid(flow, sheet, labels)
        _layout_topics(flow, sheet, labels)
    if doc.proof is not None:
        _layout_how_to_verify(flow, labels, check_url)
    return pages


_VERIFY_SIZE: Final = 8.0
_LIST_SIZE: Final = 9.0
_LIST_LEADING: Final = 12.0


def _title_page(doc: JournalDocument, labels: dict[str, str]) -> Draw:
    """The journal's title page: school, class, year, term and class teacher, then the pupils
    numbered as in every grid."""

    def draw(canvas: Canvas) -> None:
        y = BODY_TOP - 30
        canvas.setFont(FONT_BOLD, 18)
        canvas.drawCentredString(PAGE_W / 2, y, f"{labels['journal']} {doc.class_name}")
        canvas.setFont(FONT, 12)
        for line in (
            doc.school_name,
            f"{labels['year'].format(year=doc.school_year)} · {_term_label(doc, labels)}",
            f"{labels['class_teacher']}: {doc.class_teacher or '—'}",
        ):
            y -= 20
            fitted, size = _fit(line, FONT, 12, BODY_W)
            canvas.setFont(FONT, size)
            canvas.drawCentredString(PAGE_W / 2, y, fitted)
        y -= 30
        canvas.setFont(FONT_BOLD, 10)
        canvas.drawString(MARGIN, y, labels["pupils"])
        y -= 16
        per_column = max(1, int((y - BODY_BOTTOM) // _LIST_LEADING))
        columns = max(1, -(-len(doc.students) // per_column))
        width = BODY_W / columns
        for index, name in enumerate(doc.students):
            column, row = divmod(index, per_column)
            x = MARGIN + column * width
            line, size = _fit(f"{index + 1}. {name}", FONT, _LIST_SIZE, width - 8)
            canvas.setFont(FONT, size)
            canvas.drawString(x, y - row * _LIST_LEADING, line)

    return draw


def _layout_how_to_verify(flow: _Flow, labels: dict[str, str], check_url: str | None) -> None:
    """Two sentences at the end of the last page: how to verify the printout online and offline."""
    text = labels["how_to_verify"].format(url=check_url or "/check")
    lines = _wrap(text, FONT, _VERIFY_SIZE, BODY_W)
    top = flow.reserve(len(lines) * _VERIFY_SIZE * 1.3 + 4, gap=18.0)

    def draw(canvas: Canvas) -> None:
        canvas.setFont(FONT, _VERIFY_SIZE)
        y = top - _VERIFY_SIZE
        for line in lines:
            canvas.drawString(MARGIN, y, line)
            y -= _VERIFY_SIZE * 1.3

    flow.add(draw)


def _note(message: str) -> Draw:
    def draw(canvas: Canvas) -> None:
        canvas.setFont(FONT, 11)
        canvas.drawString(MARGIN, BODY_TOP - 24, message)

    return draw


def _row_heights(
    sheet: SubjectSheet, l_start: int, l_end: int, lesson_w: float, base_h: float
) -> list[float]:
    heights = []
    for row in sheet.rows:
        height = base_h
        for marks in row.cells[l_start:l_end]:
            if marks:
                size, lines = _cell_layout(marks, lesson_w, base_h)
                height = max(height, _lines_height(size, len(lines)))
        heights.append(math.ceil(height * 2) / 2)
    return heights


def _layout_grid(flow: _Flow, sheet: SubjectSheet, labels: dict[str, str]) -> None:
    """Place one subject's grid: lesson chunks of at most LESSONS_PER_PAGE columns, each split
    into row blocks that fit a page; small blocks share a page."""
    chunks = _balanced(len(sheet.lessons), LESSONS_PER_PAGE)
    widest_chunk = max(end - start for start, end in chunks) or 1
    names = [row.student_name for row in sheet.rows] or [""]
    name_w = min(190.0, max(110.0, max(_width(n, FONT, 7.5) for n in names) + 8))
    pct_w, grade_w, no_w = 30.0, 26.0, 18.0
    lesson_w = min(34.0, (BODY_W - no_w - name_w - pct_w - grade_w) / widest_chunk)
    avail = BODY_TOP - BODY_BOTTOM - GRID_HEAD_H - LEGEND_H

    def fits(base: float) -> bool:
        return all(
            sum(_row_heights(sheet, start, end, lesson_w, base)) <= avail for start, end in chunks
        )

    base_h = _choose_base_height(fits)
    geometry = _GridGeometry(no_w, name_w, lesson_w, pct_w, grade_w, base_h)
    for index, (l_start, l_end) in enumerate(chunks):
        with_term = index == len(chunks) - 1
        heights = _row_heights(sheet, l_start, l_end, lesson_w, base_h)
        for r_start, r_end in _split_rows(heights, avail):
            block_heights = tuple(heights[r_start:r_end])
            top = flow.reserve(GRID_HEAD_H + sum(block_heights) + LEGEND_H)
            flow.add(
                functools.partial(
                    _draw_grid,
                    sheet,
                    geometry,
                    l_start,
                    l_end,
                    r_start,
                    block_heights,
                    with_term,
                    labels,
                    top,
                )
            )


def _draw_grid(
    sheet: SubjectSheet,
    g: _GridGeometry,
    l_start: int,
    l_end: int,
    r_start: int,
    heights: Sequence[float],
    with_term: bool,
    labels: dict[str, str],
    top: float,
    canvas: Canvas,
) -> None:
    lessons = sheet.lessons[l_start:l_end]
    rows = sheet.rows[r_start : r_start + len(heights)]
    x0 = MARGIN
    xs = [x0, x0 + g.no_w, x0 + g.no_w + g.name_w]
    for _ in lessons:
        xs.append(xs[-1] + g.lesson_w)
    if with_term:
        xs.append(xs[-1] + g.pct_w)
        xs.append(xs[-1] + g.grade_w)
    body_top = top - GRID_HEAD_H
    ys = [top, body_top]
    for height in heights:
        ys.append(ys[-1] - height)
    _stripes(canvas, x0, xs[-1] - x0, ys[1:])
    _grid_lines(canvas, xs, ys)
    canvas.setLineWidth(1.0)
    canvas.line(x0, body_top, xs[-1], body_top)

    text = _Text(canvas)
    head_mid = top - GRID_HEAD_H / 2 - 3
    text.put(xs[0] + g.no_w / 2, head_mid, labels["no"], FONT_BOLD, 7, "c")
    name_head, name_head_size = _fit(labels["student"], FONT_BOLD, 7, g.name_w - 4)
    text.put(xs[1] + 3, head_mid, name_head, FONT_BOLD, name_head_size)
    for i, lesson in enumerate(lessons):
        cx = xs[2 + i] + g.lesson_w / 2
        day, month = f"{lesson.date.day:02d}", f"{lesson.date.month:02d}"
        label = f"{day}.{month}"
        if _width(label, FONT, 6.5) <= g.lesson_w - 2:
            text.put(cx, head_mid, label, FONT, 6.5, "c")
        else:
            text.put(cx, top - 10, day, FONT, 6.5, "c")
            text.put(cx, top - 19, month, FONT, 6.5, "c")
    if with_term:
        px = xs[-3]
        text.put(px + g.pct_w / 2, head_mid, labels["percent"], FONT_BOLD, 7, "c")
        grade_head, grade_size = _fit(labels["grade"], FONT_BOLD, 7, g.grade_w - 2)
        text.put(px + g.pct_w + g.grade_w / 2, head_mid, grade_head, FONT_BOLD, grade_size, "c")

    name_size = min(7.5, g.base_h * 0.58)
    for i, (row, height) in enumerate(zip(rows, heights, strict=True)):
        row_top = ys[1 + i]
        base = row_top - height / 2 - name_size * 0.35
        text.put(xs[0] + g.no_w / 2, base, str(r_start + i + 1), FONT, name_size, "c")
        name, size = _fit(row.student_name, FONT, name_size, g.name_w - 5)
        text.put(xs[1] + 3, base, name, FONT, size)
        for j, marks in enumerate(row.cells[l_start:l_end]):
            if not marks:
                continue
            size, lines = _cell_layout(marks, g.lesson_w, g.base_h)
            _centred_lines(text, lines, xs[2 + j] + g.lesson_w / 2, row_top, height, FONT, size)
        if with_term:
            px = xs[-3]
            pct, pct_size = _fit(row.term_percent, FONT, name_size, g.pct_w - 3)
            text.put(px + g.pct_w / 2, base, pct, FONT, pct_size, "c")
            grade, grade_size = _fit(
                _result_text(row.term_grade, labels), FONT_BOLD, name_size + 0.5, g.grade_w - 3
            )
            text.put(px + g.pct_w + g.grade_w / 2, base, grade, FONT_BOLD, grade_size, "c")
    legend, legend_size = _fit(labels["legend"], FONT, 6.5, BODY_W, 4.5)
    text.put(x0, ys[-1] - 9, legend, FONT, legend_size)
    text.close()


_TOPIC_SIZE: Final = 7.5
_TOPIC_LEADING: Final = 9.0
_TOPIC_TITLE_H: Final = 20.0
_TOPIC_HEAD_H: Final = 13.0


def _layout_topics(flow: _Flow, sheet: SubjectSheet, labels: dict[str, str]) -> None:
    """Place the lesson topics list under the grid, continuing on new pages as needed."""
    if not sheet.lessons:
        return
    no_w, date_w = 22.0, 48.0
    topic_w = (BODY_W - no_w - date_w) * 0.58
    hw_w = BODY_W - no_w - date_w - topic_w
    widths = (no_w, date_w, topic_w, hw_w)
    rows: list[tuple[int, list[str], list[str], float]] = []
    max_lines = int((BODY_TOP - BODY_BOTTOM - _TOPIC_HEAD_H - 6) // _TOPIC_LEADING)
    for index, lesson in enumerate(sheet.lessons):
        topic = _wrap(lesson.topic, FONT, _TOPIC_SIZE, topic_w - 6)[:max_lines]
        homework = _wrap(lesson.homework, FONT, _TOPIC_SIZE, hw_w - 6)[:max_lines]
        height = max(len(topic), len(homework), 1) * _TOPIC_LEADING + 4
        rows.append((index, topic, homework, height))

    top = flow.reserve(_TOPIC_TITLE_H + _TOPIC_HEAD_H + rows[0][3])
    flow.add(_topic_title(labels["topics"], top - 12))
    block_top = top - _TOPIC_TITLE_H
    flow.y = block_top - _TOPIC_HEAD_H
    block: list[tuple[int, list[str], list[str], float]] = []
    for row in rows:
        if flow.y - row[3] < BODY_BOTTOM and block:
            flow.add(functools.partial(_draw_topics, sheet, widths, block_top, block, labels))
            flow.new_page()
            block, block_top = [], flow.y
            flow.y -= _TOPIC_HEAD_H
            flow.fresh = False
        block.append(row)
        flow.y -= row[3]
    flow.add(functools.partial(_draw_topics, sheet, widths, block_top, block, labels))


def _topic_title(title: str, y: float) -> Draw:
    def draw(canvas: Canvas) -> None:
        canvas.setFillGray(0)
        canvas.setFont(FONT_BOLD, 9)
        canvas.drawString(MARGIN, y, title)

    return draw


def _draw_topics(
    sheet: SubjectSheet,
    widths: tuple[float, float, float, float],
    top: float,
    block: Sequence[tuple[int, list[str], list[str], float]],
    labels: dict[str, str],
    canvas: Canvas,
) -> None:
    xs = [MARGIN]
    for w in widths:
        xs.append(xs[-1] + w)
    ys = [top, top - _TOPIC_HEAD_H]
    for *_, height in block:
        ys.append(ys[-1] - height)
    _grid_lines(canvas, xs, ys)
    text = _Text(canvas)
    head_base = top - _TOPIC_HEAD_H + 4
    text.put(xs[0] + widths[0] / 2, head_base, labels["no"], FONT_BOLD, 7, "c")
    text.put(xs[1] + 3, head_base, labels["date"], FONT_BOLD, 7)
    text.put(xs[2] + 3, head_base, labels["topic"], FONT_BOLD, 7)
    text.put(xs[3] + 3, head_base, labels["homework"], FONT_BOLD, 7)
    for (index, topic, homework, _), row_top in zip(block, ys[1:], strict=False):
        lesson = sheet.lessons[index]
        base = row_top - 2 - _TOPIC_SIZE
        text.put(xs[0] + widths[0] / 2, base, str(index + 1), FONT, _TOPIC_SIZE, "c")
        text.put(xs[1] + 3, base, lesson.date.strftime("%d.%m.%Y"), FONT, _TOPIC_SIZE - 0.5)
        for k, line in enumerate(topic):
            text.put(xs[2] + 3, base - k * _TOPIC_LEADING, line, FONT, _TOPIC_SIZE)
        for k, line in enumerate(homework):
            text.put(xs[3] + 3, base - k * _TOPIC_LEADING, line, FONT, _TOPIC_SIZE)
    text.close()


# --- ledger layout --------------------------------------------------------------------------

_CHARTS_PER_ROW: Final = 4
_CHART_ROWS: Final = 3


def _is_half(doc: LedgerDocument, subject: str) -> bool:
    """A half-year subject: its rows hold two half-years and the year, not four quarters."""
    return any(len(row.grades.get(subject, ())) == 3 for row in doc.rows)


@functools.lru_cache(maxsize=1024)
def _subject_head(subject: str, width: float) -> tuple[float, tuple[str, ...]]:
    for size in (7.0, 6.5, 6.0, 5.5, 5.0):
        lines = _wrap(subject, FONT_BOLD, size, width)
        if len(lines) <= 2:
            return size, tuple(lines)
    lines = _wrap(subject, FONT_BOLD, 5.0, width)[:2]
    lines[-1] = _fit(lines[-1] + "…", FONT_BOLD, 5.0, width, 5.0)[0]
    return 5.0, tuple(lines)


_GRADE_CATEGORIES: Final = ("2", "3", "4", "5")


def _distribution(doc: LedgerDocument, subject: str) -> tuple[int | None, list[int]]:
    """The column charted for a subject (4 = year, else the latest quarter with grades; for a
    half-year subject 4 = year, 0 and 1 the half-years)."""
    half = _is_half(doc, subject)
    positions = (2, 1, 0) if half else (4, 3, 2, 1, 0)
    for column in positions:
        values = [
            row.grades[subject][column].strip()
            for row in doc.rows
            if subject in row.grades and len(row.grades[subject]) > column
        ]
        values = [v for v in values if v in _GRADE_CATEGORIES]
        if values:
            chart_column = 4 if column == positions[0] else column + (10 if half else 0)
            return chart_column, [values.count(g) for g in _GRADE_CATEGORIES]
    return None, [0] * len(_GRADE_CATEGORIES)


def _draw_charts(
    doc: LedgerDocument, subjects: Sequence[str], labels: dict[str, str], canvas: Canvas
) -> None:
    canvas.setFillGray(0)
    canvas.setFont(FONT_BOLD, 9)
    canvas.drawString(MARGIN, BODY_TOP - 12, labels["distribution"])
    cell_w = BODY_W / _CHARTS_PER_ROW
    cell_h = (BODY_TOP - 20 - BODY_BOTTOM) / _CHART_ROWS
    for index, subject in enumerate(subjects):
        column, counts = _distribution(doc, subject)
        x = MARGIN + (index % _CHARTS_PER_ROW) * cell_w
        y = BODY_TOP - 20 - (index // _CHARTS_PER_ROW + 1) * cell_h
        chart = _chart(subject, column, counts, cell_w - 10, cell_h - 6, labels)
        renderPDF.draw(chart, canvas, x, y)


def _chart(
    subject: str,
    column: int | None,
    counts: list[int],
    width: float,
    height: float,
    labels: dict[str, str],
) -> Drawing:
    drawing = Drawing(width, height, initialFontName=FONT, initialFontSize=7)
    if column is None:
        which = labels["no_grades"]
    elif column == 4:
        which = labels["column_year"]
    elif column >= 10:  # a half-year
        which = labels["column_half"].format(n=column - 9)
    else:
        which = labels["column_quarter"].format(n=column + 1)
    title, title_size = _fit(f"{subject} — {which}", FONT_BOLD, 7.5, width - 4, 5.0)
    drawing.add(
        String(
            2, height - 9, title, fontName=FONT_BOLD, fontSize=title_size, fillColor=colors.black
        )
    )
    chart = VerticalBarChart()
    chart.x, chart.y = 26, 24
    chart.width, chart.height = width - 36, height - 44
    chart.data = [counts]
    chart.categoryAxis.categoryNames = list(_GRADE_CATEGORIES)
    chart.categoryAxis.labels.fontName = FONT
    chart.categoryAxis.labels.fontSize = 7
    chart.categoryAxis.strokeColor = colors.black
    top = max(counts) if any(counts) else 1
    step = max(1, math.ceil(top / 5))
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = step * math.ceil((top + 1) / step)
    chart.valueAxis.valueStep = step
    chart.valueAxis.labels.fontName = FONT
    chart.valueAxis.labels.fontSize = 6.5
    chart.valueAxis.strokeColor = colors.black
    chart.valueAxis.visibleGrid = True
    chart.valueAxis.gridStrokeColor = colors.Color(0.8, 0.8, 0.8)
    chart.valueAxis.gridStrokeWidth = 0.3
    chart.bars[0].fillColor = colors.Color(0.35, 0.35, 0.35)
    chart.bars[0].strokeColor = colors.black
    chart.bars[0].strokeWidth = 0.4
    chart.barLabelFormat = "%d"
    chart.barLabels.fontName = FONT
    chart.barLabels.fontSize = 7
    chart.barLabels.nudge = 5
    drawing.add(chart)
    drawing.add(
        String(
            width / 2,
            1,
            f"{sum(counts)} {labels['students']}",
            fontName=FONT,
            fontSize=6.5,
            textAnchor="middle",
            fillColor=colors.black,
        )
    )
    return drawing


# --- PDF/A-3b -------------------------------------------------------------------------------


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _icc_xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


@functools.cache
def srgb_icc_profile() -> bytes:
    """A minimal ICC v2.1 display profile for sRGB (IEC 61966-2-1), built in code.

    Debian ships no ICC profile in the base system and neither ReportLab nor pikepdf's core
    exposes one, so the output intent's profile is generated here: D50 white point, the
    Bradford-adapted sRGB primaries and the exact sRGB tone curve sampled at 1024 points. LittleCMS
    treats it as equivalent to its built-in sRGB (tests/exports checks a round trip).
    """
    samples = 1024
    curve_values = []
    for i in range(samples):
        v = i / (samples - 1)
        linear = v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4
        curve_values.append(round(linear * 65535))
    curve = b"curv\0\0\0\0" + struct.pack(f">I{samples}H", samples, *curve_values)
    description = b"sRGB IEC61966-2.1\0"
    desc = (
        b"desc\0\0\0\0"
        + struct.pack(">I", len(description))
        + description
        + struct.pack(">IIHB", 0, 0, 0, 0)
        + bytes(67)
    )
    tags = [
        (b"desc", desc),
        (b"cprt", b"text\0\0\0\0No copyright, use freely\0"),
        (b"wtpt", _icc_xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _icc_xyz(0.4360747, 0.2225045, 0.0139322)),
        (b"gXYZ", _icc_xyz(0.3850649, 0.7168786, 0.0971045)),
        (b"bXYZ", _icc_xyz(0.1430804, 0.0606169, 0.7141733)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    data_start = 128 + 4 + 12 * len(tags)
    data = b""
    offsets: dict[bytes, int] = {}
    table = struct.pack(">I", len(tags))
    for signature, body in tags:
        if body not in offsets:
            data += b"\0" * ((-(data_start + len(data))) % 4)
            offsets[body] = data_start + len(data)
            data += body
        table += struct.pack(">4sII", signature, offsets[body], len(body))
    data += b"\0" * ((-len(data)) % 4)
    size = data_start + len(data)
    header = (
        struct.pack(">I", size)
        + bytes(4)  # preferred CMM
        + bytes([2, 0x10, 0, 0])  # version 2.1
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2016, 9, 1, 0, 0, 0)
        + b"acsp"
        + bytes(4 + 4 + 4 + 4 + 8)  # platform, flags, manufacturer, model, attributes
        + struct.pack(">I", 0)  # perceptual
        + _icc_xyz(0.9642, 1.0, 0.8249)[8:]
        + bytes(4 + 16 + 28)  # creator, profile id, reserved
    )
    return header + table + data


def _pdf_date(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return moment.strftime("D:%Y%m%d%H%M%S") + f"{sign}{hours:02d}'{mins:02d}'"


def _xmp_date(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat(timespec="seconds")


def _producer(signer: PdfSigner | None, timestamper: TimeStamper | None) -> str:
    """The /Producer of the file. pyHanko's incremental update sets XMP ``pdf:Producer`` to its
    own name and keeps the information dictionary's /Producer only when that already names
    pyHanko; PDF/A needs the two equal, so a file that will be signed names pyHanko from the
    start (``xmp:CreatorTool`` and /Creator still name this application)."""
    return PYHANKO_VENDOR if signer is not None or timestamper is not None else PRODUCER


def _xmp_packet(title: str, author: str, moment: datetime, language: str, producer: str) -> bytes:
    when = _xmp_date(moment)
    return f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:pdf="http://ns.adobe.com/pdf/1.3/">
   <pdfaid:part>3</pdfaid:part>
   <pdfaid:conformance>B</pdfaid:conformance>
   <dc:format>application/pdf</dc:format>
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">{escape(title)}</rdf:li></rdf:Alt></dc:title>
   <dc:creator><rdf:Seq><rdf:li>{escape(author)}</rdf:li></rdf:Seq></dc:creator>
   <dc:language><rdf:Bag><rdf:li>{escape(language)}</rdf:li></rdf:Bag></dc:language>
   <xmp:CreateDate>{when}</xmp:CreateDate>
   <xmp:ModifyDate>{when}</xmp:ModifyDate>
   <xmp:MetadataDate>{when}</xmp:MetadataDate>
   <xmp:CreatorTool>{CREATOR}</xmp:CreatorTool>
   <pdf:Producer>{escape(producer)}</pdf:Producer>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>""".encode()


_SRGB: Final = "sRGB IEC61966-2.1"


def _proof_files(proof: ProofBundle) -> list[tuple[str, bytes, str, str, str]]:
    """(file name, bytes, MIME type, AFRelationship, description) of every file to embed."""
    files = [
        (
            "entries.jsonl",
            proof.entries_jsonl,
            "application/x-ndjson",
            "Source",
            f"Log leaves of {proof.origin} up to tree size {proof.tree_size}",
        ),
        ("checkpoint", proof.checkpoint_note.encode(), "text/plain", "Data", "Signed checkpoint"),
        ("log.vkey", proof.vkey.encode(), "text/plain", "Data", "Checkpoint verifier key"),
    ]
    for name, text in proof.tlog_proofs:
        files.append((name, text.encode(), "text/plain", "Data", "Inclusion proof"))
    for name, data in proof.extra_files:
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        files.append((name, data, mime, "Data", "Verification material"))
    seen: set[str] = set()
    for name, *_ in files:
        if not name or "/" in name or name in seen:
            raise ValueError(f"embedded file names must be unique plain names, got {name!r}")
        seen.add(name)
    return files


def _to_pdfa(
    raw: bytes,
    title: str,
    author: str,
    moment: datetime,
    proof: ProofBundle | None,
    language: str,
    producer: str,
) -> bytes:
    """Turn ReportLab's output into PDF/A-3b: metadata, output intent, associated files."""
    date = pikepdf.String(_pdf_date(moment))
    with pikepdf.open(io.BytesIO(raw)) as pdf:
        pdf.trailer.Info = pdf.make_indirect(
            pikepdf.Dictionary(
                Title=pikepdf.String(title),
                Author=pikepdf.String(author),
                Creator=pikepdf.String(CREATOR),
                Producer=pikepdf.String(producer),
                CreationDate=date,
                ModDate=date,
            )
        )
        for page in pdf.pages:
            if "/Trans" in page and not page.Trans.keys():
                del page.Trans  # ReportLab writes an empty page transition dictionary
        metadata = pdf.make_stream(_xmp_packet(title, author, moment, language, producer))
        metadata.Type = pikepdf.Name.Metadata
        metadata.Subtype = pikepdf.Name.XML
        pdf.Root.Metadata = metadata
        profile = pdf.make_stream(srgb_icc_profile())
        profile.N = 3
        pdf.Root.OutputIntents = pikepdf.Array(
            [
                pikepdf.Dictionary(
                    Type=pikepdf.Name.OutputIntent,
                    S=pikepdf.Name.GTS_PDFA1,
                    OutputConditionIdentifier=pikepdf.String(_SRGB),
                    Info=pikepdf.String(_SRGB),
                    RegistryName=pikepdf.String("http://www.color.org"),
                    DestOutputProfile=profile,
                )
            ]
        )
        if proof is not None:
            associated = []
            for name, data, mime, relationship, description in _proof_files(proof):
                spec = pikepdf.AttachedFileSpec(
                    pdf,
                    data,
                    description=description,
                    filename=name,
                    mime_type=mime,
                    creation_date=str(date),
                    mod_date=str(date),
                    relationship=pikepdf.Name("/" + relationship),
                )
                pdf.attachments[name] = spec
                associated.append(spec.obj)
            pdf.Root.AF = pdf.make_indirect(pikepdf.Array(associated))
        out = io.BytesIO()
        pdf.save(
            out,
            min_version="1.7",
            deterministic_id=True,
            compress_streams=True,
            object_stream_mode=pikepdf.ObjectStreamMode.generate,
            fix_metadata_version=False,
        )
    return out.getvalue()


# --- signing --------------------------------------------------------------------------------


class _LoadedKeySigner(signers.SimpleSigner):
    """pyHanko's SimpleSigner parses its private key on every signature (about 90 ms for
    RSA-3072, twice per document); this one keeps the parsed key."""

    def __init__(self, key: rsa.RSAPrivateKey, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._key = key

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm).signature_algo
        if mechanism != "rsassa_pkcs1v15":
            return bytes(super().sign_raw(data, digest_algorithm))
        return self._key.sign(data, PKCS1v15(), getattr(hashes, digest_algorithm.upper())())


def _check_rsa(key: object) -> None:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(
            "PDF signing needs an RSA key (3072 bits recommended): pdfsig cannot read Ed25519 "
            "signatures and ECDSA moves the file to PDF 2.0, which breaks PDF/A-3"
        )
    if key.key_size < 2048:
        raise ValueError(f"RSA key of {key.key_size} bits is too small for signing printouts")


def _pkcs12_signer(signer: PdfSigner) -> signers.SimpleSigner:
    """pyHanko's signer from a PKCS#12 file (the key, its certificate and the chain in it)."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        key, _cert, _others = pkcs12.load_key_and_certificates(
            signer.pkcs12, signer.pkcs12_passphrase
        )
    except ValueError as exc:
        raise ValueError(f"the PKCS#12 file cannot be opened (wrong passphrase?): {exc}") from None
    _check_rsa(key)
    extra = [c for pem in signer.chain_pem for c in load_certs_from_pemder_data(pem)]
    return signers.SimpleSigner.load_pkcs12_data(
        signer.pkcs12, other_certs=extra, passphrase=signer.pkcs12_passphrase
    )


@functools.lru_cache(maxsize=8)
def _pyhanko_signer(signer: PdfSigner) -> signers.SimpleSigner:
    if signer.pkcs12:
        return _pkcs12_signer(signer)
    key = serialization.load_pem_private_key(signer.key_pem, password=None)
    _check_rsa(key)
    assert isinstance(key, rsa.RSAPrivateKey)
    cert = next(iter(load_certs_from_pemder_data(signer.cert_pem)))
    chain = [c for pem in signer.chain_pem for c in load_certs_from_pemder_data(pem)]
    return _LoadedKeySigner(
        key,
        signing_cert=cert,
        signing_key=load_private_key_from_pemder_data(signer.key_pem, passphrase=None),
        cert_registry=SimpleCertificateStore.from_certs([cert, *chain]),
    )


def _sign(pdf: bytes, signer: PdfSigner | None, timestamper: TimeStamper | None) -> bytes:
    """Sign (PAdES, incremental update) and/or add a document timestamp; PDF stays 1.7.

    pyHanko updates the modification date in both the information dictionary and the XMP
    packet; it is pinned to one value per update so the two never disagree (PDF/A).
    """
    if signer is not None:
        meta = signers.PdfSignatureMetadata(
            field_name="SchoolSignature",
            md_algorithm="sha256",
            subfilter=fields.SigSeedSubFilter.PADES,
            reason=signer.reason or None,
            location=signer.location or None,
        )
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
        writer.document_meta.last_modified = datetime.now(UTC).replace(microsecond=0)
        out = signers.sign_pdf(writer, meta, signer=_pyhanko_signer(signer))
        pdf = out.getvalue()
    if timestamper is not None:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
        writer.document_meta.last_modified = datetime.now(UTC).replace(microsecond=0)
        out = signers.PdfTimeStamper(timestamper, field_name="DocumentTimestamp").timestamp_pdf(
            writer, "sha256"
        )
        pdf = out.getvalue()
    return pdf

"""The summary ledger's pages: its table (terms, year, exam and final grades, absences in days
and lessons, the council's decision) and signature lines. A module of its own so that
exports/pdf.py keeps the shared machinery (fonts, footer, QR, PDF/A, signing) and the journal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from dataclasses import dataclass
from typing import Final

from reportlab.pdfgen.canvas import Canvas

from .documents import LedgerDocument, LedgerRow
from .pdf import (
    _CHART_ROWS,
    _CHARTS_PER_ROW,
    BODY_BOTTOM,
    BODY_TOP,
    BODY_W,
    FONT,
    FONT_BOLD,
    LINE_W,
    MARGIN,
    _balanced,
    _centred_lines,
    _choose_base_height,
    _draw_charts,
    _fit,
    _Heading,
    _is_half,
    _Page,
    _result_text,
    _split_rows,
    _stripes,
    _subject_head,
    _Text,
    _width,
)

_HEAD1: Final = 20.0
_HEAD2: Final = 10.0
_CELL_W: Final = 15.0
_ABS_W: Final = 34.0
_ABS_W_FULL: Final = 24.0
_DECISION_W: Final = 92.0
_FOOT_H: Final = 34.0  # the legend and the signature lines under the table

#: The ledger's own words (the shared ones are in exports.pdf.LABELS).
LEDGER_LABELS: Final[dict[str, dict[str, str]]] = {
    "ru": {
        "exam_col": "Э",
        "final_col": "И",
        "abs_days": "дни",
        "abs_lessons": "уроки",
        "decision": "Решение педсовета",
        "not_finished": "Год не завершён: только закрытые четверти и полугодия, без годовых оценок",
        "legend_year": "Г — годовая оценка",
        "legend_final": "Э — экзаменационная, И — итоговая оценка",
        "director": "Директор",
        "class_teacher": "Классный руководитель",
        "protocol": "протокол № {number} от {date}",
        "promoted": "переведён(а)",
        "promoted_extra_assessment": "переведён(а), доп. оценивание",
        "retained": "оставлен(а) на повторное обучение",
        "admitted_final_attestation": "допущен(а) к итоговой аттестации",
        "graduated": "окончил(а)",
        "left": "выбыл(а)",
    },
    "kk": {
        "exam_col": "Е",
        "final_col": "Қ",
        "abs_days": "күн",
        "abs_lessons": "сабақ",
        "decision": "Педагогикалық кеңестің шешімі",
        "not_finished": "Оқу жылы аяқталмаған: тек жабылған тоқсандар мен жартыжылдықтар, "
        "жылдық бағаларсыз",
        "legend_year": "Ж — жылдық баға",
        "legend_final": "Е — емтихан бағасы, Қ — қорытынды баға",
        "director": "Директор",
        "class_teacher": "Сынып жетекшісі",
        "protocol": "№ {number} хаттама, {date}",
        "promoted": "көшірілді",
        "promoted_extra_assessment": "көшірілді, қосымша бағалау",
        "retained": "қайта оқуға қалдырылды",
        "admitted_final_attestation": "қорытынды аттестаттауға жіберілді",
        "graduated": "бітірді",
        "left": "шығып кетті",
    },
}


@dataclass(frozen=True)
class _Geometry:
    no_w: float
    name_w: float
    cell_w: float
    abs_w: float
    abs_cols: int
    decision_w: float
    row_h: float


def ledger_pages(doc: LedgerDocument, labels: dict[str, str], language: str = "ru") -> list[_Page]:
    labels = {**labels, **LEDGER_LABELS.get(language, LEDGER_LABELS["ru"])}
    second = f"{doc.title or labels['ledger']} · {labels['class']} {doc.class_name}"
    if not doc.year_finished:
        second += f" · {labels['not_finished']}"
    heading = _Heading(doc.school_name, labels["year"].format(year=doc.school_year), second)
    names = [row.student_name for row in doc.rows] or [""]
    name_w = min(170.0, max(100.0, max(_width(n, FONT, 7.5) for n in names) + 8))
    no_w = 18.0
    abs_cols = 4 if doc.full else 2
    abs_w = _ABS_W_FULL if doc.full else _ABS_W
    decision_w = _DECISION_W if doc.full else 0.0
    widest = max((len(_column_labels(doc, s, labels)) for s in doc.subjects), default=5)
    room = BODY_W - no_w - name_w - abs_cols * abs_w - decision_w
    per_page = max(1, int(room // (widest * _CELL_W)))
    subject_chunks = _balanced(len(doc.subjects), per_page)
    avail = BODY_TOP - BODY_BOTTOM - _HEAD1 - _HEAD2 - (_FOOT_H if doc.full else 0)
    row_h = _choose_base_height(lambda base: len(doc.rows) * base <= avail)
    row_chunks = _split_rows([row_h] * len(doc.rows), avail) if doc.rows else [(0, 0)]
    geometry = _Geometry(no_w, name_w, _CELL_W, abs_w, abs_cols, decision_w, row_h)
    pages: list[_Page] = []
    for s_start, s_end in subject_chunks:
        for r_start, r_end in row_chunks:
            draw = functools.partial(
                _draw_table, doc, geometry, s_start, s_end, r_start, r_end, labels
            )
            pages.append(_Page(heading, [draw]))
    pages[0].bookmark = labels["ledger"]
    per_chart_page = _CHARTS_PER_ROW * _CHART_ROWS
    for start in range(0, len(doc.subjects) if doc.charts else 0, per_chart_page):
        subjects = doc.subjects[start : start + per_chart_page]
        page = _Page(heading, [functools.partial(_draw_charts, doc, subjects, labels)])
        if start == 0:
            page.bookmark = labels["distribution"]
        pages.append(page)
    return pages


def _column_labels(doc: LedgerDocument, subject: str, labels: dict[str, str]) -> tuple[str, ...]:
    terms: tuple[str, ...] = ("I", "II") if _is_half(doc, subject) else ("1", "2", "3", "4")
    if doc.year_finished:
        terms += (labels["year_col"],)
    if doc.graduating:
        terms += (labels.get("exam_col", "Э"), labels.get("final_col", "И"))
    return terms


def _values(doc: LedgerDocument, row: LedgerRow, subject: str, width: int) -> list[str]:
    """The printed values of one subject: the terms, the year (once finished), exam, final."""
    grades = list(row.grades.get(subject, ()))
    terms = 2 if _is_half(doc, subject) else 4
    values = (grades[:terms] + [""] * terms)[:terms]
    if doc.year_finished:
        values.append(grades[terms] if len(grades) > terms else "")
    if doc.graduating:
        values += [row.exam.get(subject, ""), row.final.get(subject, "")]
    return (values + [""] * width)[:width]


def _decision_lines(row: LedgerRow, labels: dict[str, str]) -> list[str]:
    """The decision in words, and its protocol's number and date on a second line."""
    if not row.decision:
        return []
    lines = [labels.get(row.decision, row.decision)]
    if row.protocol_number:
        date = row.protocol_date
        with contextlib.suppress(ValueError):
            date = dt.date.fromisoformat(date).strftime("%d.%m.%Y")
        lines.append(labels["protocol"].format(number=row.protocol_number, date=date))
    return lines


def _draw_table(
    doc: LedgerDocument,
    g: _Geometry,
    s_start: int,
    s_end: int,
    r_start: int,
    r_end: int,
    labels: dict[str, str],
    canvas: Canvas,
) -> None:
    subjects = doc.subjects[s_start:s_end]
    columns = [_column_labels(doc, subject, labels) for subject in subjects]
    rows = doc.rows[r_start:r_end]
    x0 = MARGIN
    name_end = x0 + g.no_w + g.name_w
    xs = [x0, x0 + g.no_w, name_end]
    full_height = {0, 1, 2}
    lefts = []
    for subject_columns in columns:
        lefts.append(xs[-1])
        for _ in subject_columns:
            xs.append(xs[-1] + g.cell_w)
        full_height.add(len(xs) - 1)  # each subject's span ends with a full-height line
    abs_left = xs[-1]
    for _ in range(g.abs_cols):
        xs.append(xs[-1] + g.abs_w)
    full_height.add(len(xs) - 1)
    if g.decision_w:
        xs.append(xs[-1] + g.decision_w)
        full_height.add(len(xs) - 1)
    top = BODY_TOP
    head_split = top - _HEAD1
    body_top = head_split - _HEAD2
    ys = [body_top - (i + 1) * g.row_h for i in range(len(rows))]
    _stripes(canvas, x0, xs[-1] - x0, [body_top, *ys])
    bottom = ys[-1] if ys else body_top
    canvas.setStrokeGray(0)
    canvas.setLineWidth(LINE_W)
    canvas.lines(
        [(x, top if i in full_height else head_split, x, bottom) for i, x in enumerate(xs)]
        + [
            (x0, top, xs[-1], top),
            (name_end, head_split, abs_left + g.abs_cols * g.abs_w, head_split),
        ]  # fmt: skip
        + [(x0, y, xs[-1], y) for y in ys]
    )
    canvas.setLineWidth(1.0)
    canvas.line(x0, body_top, xs[-1], body_top)

    text = _Text(canvas)
    head_mid = top - (_HEAD1 + _HEAD2) / 2 - 3
    text.put(x0 + g.no_w / 2, head_mid, labels["no"], FONT_BOLD, 7, "c")
    student, student_size = _fit(labels["student"], FONT_BOLD, 7, g.name_w - 4)
    text.put(x0 + g.no_w + 3, head_mid, student, FONT_BOLD, student_size)
    for subject, left, subject_columns in zip(subjects, lefts, columns, strict=True):
        span = len(subject_columns) * g.cell_w
        size, lines = _subject_head(subject, span - 3)
        _centred_lines(text, lines, left + span / 2, top, _HEAD1, FONT_BOLD, size)
        for k, label in enumerate(subject_columns):
            text.put(left + (k + 0.5) * g.cell_w, body_top + 3, label, FONT, 6.5, "c")
    block = g.abs_cols * g.abs_w
    absences, abs_size = _fit(labels["absences"], FONT_BOLD, 7, block - 4)
    text.put(abs_left + block / 2, head_split + 7, absences, FONT_BOLD, abs_size, "c")
    if g.abs_cols == 4:
        heads = [labels["abs_days"], labels["abs_sick"], labels["abs_lessons"], labels["abs_sick"]]
    else:
        heads = [labels["abs_total"], labels["abs_sick"]]
    for k, head in enumerate(heads):
        shown, shown_size = _fit(head, FONT, 6.5, g.abs_w - 3, 4.0)
        text.put(abs_left + (k + 0.5) * g.abs_w, body_top + 3, shown, FONT, shown_size, "c")
    decision_left = abs_left + block
    if g.decision_w:
        size, lines = _subject_head(labels["decision"], g.decision_w - 6)
        middle = decision_left + g.decision_w / 2
        _centred_lines(text, lines, middle, top, _HEAD1 + _HEAD2, FONT_BOLD, size)

    size = min(7.5, g.row_h * 0.58)
    for i, row in enumerate(rows):
        row_top = body_top - i * g.row_h
        base = row_top - g.row_h / 2 - size * 0.35
        text.put(x0 + g.no_w / 2, base, str(r_start + i + 1), FONT, size, "c")
        name, name_size = _fit(row.student_name, FONT, size, g.name_w - 5)
        text.put(x0 + g.no_w + 3, base, name, FONT, name_size)
        for subject, left, subject_columns in zip(subjects, lefts, columns, strict=True):
            terms = 2 if _is_half(doc, subject) else 4
            year_at = terms if doc.year_finished else -1
            values = _values(doc, row, subject, len(subject_columns))
            for k, value in enumerate(values):
                font = FONT_BOLD if k >= year_at >= 0 else FONT
                shown = _result_text(value, labels)
                value_text, value_size = _fit(shown, font, size, g.cell_w - 2, 4.0)
                text.put(left + (k + 0.5) * g.cell_w, base, value_text, font, value_size, "c")
        if g.abs_cols == 4:
            counts = [row.days_total, row.days_sick, row.absences_total, row.absences_sick]
        else:
            counts = [row.absences_total, row.absences_sick]
        for k, count in enumerate(counts):
            text.put(abs_left + (k + 0.5) * g.abs_w, base, str(count), FONT, size, "c")
        lines = _decision_lines(row, labels) if g.decision_w else []
        line_size = min(6.0, g.row_h * 0.42)
        for k, line in enumerate(lines):
            shown, shown_size = _fit(line, FONT, line_size, g.decision_w - 4, 3.5)
            y = (
                row_top
                - line_size * (1.05 + k * 1.1)
                - (g.row_h - len(lines) * line_size * 1.1) / 2
            )
            text.put(decision_left + 2, y, shown, FONT, shown_size)
    if doc.full:
        legend = [labels["legend_year"]] if doc.year_finished else []
        if doc.graduating:
            legend.append(labels["legend_final"])
        y = bottom - 11
        if legend:
            shown, shown_size = _fit("; ".join(legend), FONT, 6.5, BODY_W)
            text.put(x0, y, shown, FONT, shown_size)
        y -= 16
        line = "_" * 24
        text.put(x0, y, f"{labels['director']} {line}", FONT, 8)
        text.put(x0 + BODY_W / 2, y, f"{labels['class_teacher']} {line}", FONT, 8)
    text.close()

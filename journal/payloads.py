"""What each entry kind must carry (DESIGN §4, §5): a pure check of a parsed payload.

The server and the offline client agree on these shapes; ``check_payload`` raises
``PayloadRejected`` with a machine code and a sentence a teacher can read.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from .grading import PASS_FAIL, STATUSES, GradeValueError, check_grade_value

ATTENDANCE_VALUES = ("absent", "late", "sick", "excused")
GRADE_COMPONENTS = ("FO", "SOR", "SOCh", "mark")
TEACHER_KINDS = ("attendance", "grade", "topic", "correction", "term_grade", "year_grade")
CORRECTABLE = ("attendance", "grade", "topic")
MAX_TEXT = 1000
MAX_ID = 2**31 - 1  # row ids are INTEGER columns: a larger id names nothing
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_LOWER_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DECIMAL = re.compile(r"^(0|[1-9]\d{0,2})(\.\d{1,2})?$")


class PayloadRejected(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class PayloadFacts(NamedTuple):
    """The parts of a checked payload that the server indexes and authorizes on.

    Immutable; a named tuple rather than a frozen dataclass, whose __init__ (one
    object.__setattr__ per field) cost half of checking a payload in the sync API."""

    entry_id: str
    journal: str
    kind: str
    device_id: str
    device_seq: int
    author: int
    lesson: int | None = None
    student: int | None = None
    subject: int | None = None
    term: int | None = None
    cell: str | None = None
    supersedes: tuple[str, ...] = ()
    correcting: str | None = None  # the kind a correction corrects


def check_payload(payload: Any) -> PayloadFacts:
    if not isinstance(payload, dict):
        raise PayloadRejected("not_object", "the payload must be a JSON object")
    if payload.get("v") != 1:
        raise PayloadRejected("bad_version", "unsupported payload version (expected v=1)")
    entry_id = _uuid(payload, "entry_id")
    journal = _text(payload, "journal", 200)
    kind = payload.get("kind")
    if kind not in TEACHER_KINDS:
        raise PayloadRejected("bad_kind", f"unknown entry kind {kind!r}")
    # The facts every entry has, positionally (the rest as keywords: a dict of all thirteen
    # built and unpacked for each entry cost a third of checking a grade).
    common = (
        entry_id,
        journal,
        kind,
        _text(payload, "device_id", 64),
        _int(payload, "device_seq", 0, 2**53 - 1),
        _int(payload, "author", 1, MAX_ID),
    )
    created_at = _text(payload, "created_at", 40)
    if not _RFC3339.match(created_at):
        raise PayloadRejected("bad_field", "created_at must be an RFC 3339 timestamp")

    if kind == "correction":
        supersedes = _supersedes(payload, entry_id)
        reason = _text(payload, "reason", MAX_TEXT)
        if not reason.strip():
            raise PayloadRejected("reason_required", "a correction must state its reason")
        target = payload.get("corrects")
        if target not in CORRECTABLE:
            raise PayloadRejected("bad_field", f"corrects must be one of {', '.join(CORRECTABLE)}")
        cell = _cell_fields(payload, target, allow_void=True)
        return PayloadFacts(*common, supersedes=supersedes, correcting=target, **cell)
    if kind in ("attendance", "grade", "topic"):
        return PayloadFacts(*common, **_cell_fields(payload, kind, allow_void=False))
    return PayloadFacts(*common, **_summary_fields(payload, kind))  # term_grade, year_grade


def _summary_fields(payload: dict[str, Any], kind: str) -> dict[str, Any]:
    """A term or year result: exactly one of a grade, pass/fail or a status (with a reason),
    the rule version it was computed by, and ``supersedes`` + ``reason`` to re-confirm."""
    student = _int(payload, "student", 1, MAX_ID)
    subject = _int(payload, "subject", 1, MAX_ID)
    term = _int(payload, "term", 1, MAX_ID) if kind == "term_grade" else None
    grade = payload.get("grade")
    if grade is not None and (type(grade) is not int or not 1 <= grade <= 10):
        raise PayloadRejected("out_of_scale", "grade must be a whole number on the scale")
    result = payload.get("result")
    if result is not None and result not in PASS_FAIL:
        raise PayloadRejected("out_of_scale", 'result must be "pass" or "fail"')
    status = payload.get("status")
    if status is not None and status not in STATUSES:
        raise PayloadRejected("bad_field", f"status must be one of {', '.join(STATUSES)}")
    given = [name for name, value in (("grade", grade), ("result", result), ("status", status))]
    given = [name for name in given if payload.get(name) is not None]
    if len(given) != 1:
        raise PayloadRejected(
            "bad_field", "a term or year result is exactly one of a grade, a result or a status"
        )
    percent = payload.get("percent")
    if percent is not None and (not isinstance(percent, str) or not _DECIMAL.match(percent)):
        raise PayloadRejected("bad_field", 'percent must be a decimal string like "84.5"')
    rule = payload.get("rule")
    if (
        not isinstance(rule, dict)
        or not isinstance(rule.get("id"), str)
        or type(rule.get("version")) is not int
    ):
        raise PayloadRejected("bad_field", "rule must name the grading rule id and version")
    supersedes: tuple[str, ...] = ()
    if "supersedes" in payload:
        supersedes = _supersedes(payload, payload["entry_id"])
    if status is not None or supersedes:
        if not isinstance(payload.get("reason"), str) or not payload["reason"].strip():
            raise PayloadRejected("reason_required", "a status or a re-confirmation needs a reason")
        reason = _text(payload, "reason", MAX_TEXT)
        if not reason.strip():
            raise PayloadRejected("reason_required", "a status or a re-confirmation needs a reason")
    scope = f"term:{term}" if term is not None else "year"
    return {
        "student": student,
        "subject": subject,
        "term": term,
        "supersedes": supersedes,
        "cell": f"{kind}:{subject}:{scope}:{student}",
    }


def _supersedes(payload: dict[str, Any], entry_id: str) -> tuple[str, ...]:
    supersedes = payload.get("supersedes")
    if (
        not isinstance(supersedes, list)
        or not 1 <= len(supersedes) <= 20
        or len(set(map(str, supersedes))) != len(supersedes)
    ):
        raise PayloadRejected("bad_field", "supersedes must list 1 to 20 distinct entry ids")
    ids = tuple(_uuid({"id": s}, "id") for s in supersedes)
    if entry_id in ids:
        raise PayloadRejected("bad_field", "an entry cannot supersede itself")
    return ids


def _cell_fields(payload: dict[str, Any], kind: str, *, allow_void: bool) -> dict[str, Any]:
    lesson = _int(payload, "lesson", 1, MAX_ID)
    value = payload.get("value")
    void = allow_void and value == "void"
    if kind == "topic":
        if not void:
            _text(payload, "topic", MAX_TEXT)
            if "homework" in payload:
                _text(payload, "homework", MAX_TEXT)
        return {"lesson": lesson, "cell": f"topic:{lesson}"}
    student = _int(payload, "student", 1, MAX_ID)
    if kind == "attendance":
        if not void and value not in ATTENDANCE_VALUES:
            raise PayloadRejected(
                "out_of_scale", f"attendance must be one of {', '.join(ATTENDANCE_VALUES)}"
            )
        return {"lesson": lesson, "student": student, "cell": f"att:{lesson}:{student}"}
    component = payload.get("component")
    if component not in GRADE_COMPONENTS:
        raise PayloadRejected(
            "bad_field", f"component must be one of {', '.join(GRADE_COMPONENTS)}"
        )
    if not void:
        if not isinstance(value, dict):
            raise PayloadRejected("out_of_scale", "a grade value must be an object")
        try:
            check_grade_value(component, value)
        except GradeValueError as exc:
            raise PayloadRejected("out_of_scale", str(exc)) from exc
    return {"lesson": lesson, "student": student, "cell": f"{component}:{lesson}:{student}"}


def _uuid(payload: dict[str, Any], name: str) -> str:
    # Exactly the strings str(uuid.UUID(value)) gives back unchanged: lowercase 8-4-4-4-12 hex.
    value = payload.get(name)
    if not isinstance(value, str) or not _LOWER_UUID.fullmatch(value):
        raise PayloadRejected("bad_field", f"{name} must be a lowercase UUID")
    return value


def _text(payload: dict[str, Any], name: str, limit: int) -> str:
    value = payload.get(name)
    if type(value) is str and 0 < len(value) <= limit and "\x00" not in value:
        return value  # the usual case, checked at once (entries are checked by the thousand)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise PayloadRejected("bad_field", f"{name} must be text of 1 to {limit} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise PayloadRejected("bad_field", f"{name} must not contain NUL characters")
    return value


def _int(payload: dict[str, Any], name: str, low: int, high: int) -> int:
    value = payload.get(name)
    if type(value) is int and low <= value <= high:
        return value
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise PayloadRejected("bad_field", f"{name} must be a whole number from {low}")
    return value

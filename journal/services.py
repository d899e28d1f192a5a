"""Recording, correcting and checkpointing journal entries.

Every function takes the session first, flushes, and never commits: the request, command or job
that calls it commits once at its boundary.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeVar

import psycopg
from sqlalchemy import Row, Select, String, and_, any_, bindparam, event, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from auth.models import DeviceKey, User

from .db import (
    PENDING_WRITES,
    bound_lock_wait,
    lock_wait_condition,
    lock_wait_params,
    note_write,
    utcnow,
)
from .device_seqs import DeviceSeqReport, fold_stored_seqs
from .grading import NoRuleError
from .keys import LogKey
from .ledger import audit, merkle, note
from .ledger import entry as ledger_entry
from .models import (
    Checkpoint,
    ClassGroup,
    Enrollment,
    Entry,
    LateCorrectionApproval,
    Lesson,
    Log,
    School,
    SchoolYear,
    Student,
    Subject,
    Supersession,
    TeachingAssignment,
    Term,
)
from .payloads import MAX_ID, PayloadFacts, PayloadRejected, check_payload
from .school_time import school_today

_M = TypeVar("_M")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
Status = Literal["accepted", "duplicate", "conflict", "rejected", "quarantined"]


class EntryRefused(Exception):
    """An entry that does not enter the log, with the per-entry status the sync API reports."""

    def __init__(self, status: Status, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"EntryRefused({self.status!r}, {self.code!r}, {self.message!r})"


class Recorded(NamedTuple):
    """What became of an entry that entered the log (or was there already). A named tuple, as
    PayloadFacts: one is made for each entry a sync batch takes."""

    status: Literal["accepted", "duplicate"]
    entry_id: str
    log_id: int
    seq: int


# -- origins -----------------------------------------------------------------------------------


def journal_origin(school: School, school_year: SchoolYear, class_group: ClassGroup) -> str:
    return f"{school.domain}/journal/{school_year.name}/{class_group.id}"


def ledger_origin(school: School) -> str:
    return f"{school.domain}/ledger"


def ensure_journal_log(session: Session, class_group: ClassGroup) -> Log:
    log = session.scalar(select(Log).where(Log.class_group_id == class_group.id))
    if log is None:
        school = session.get_one(School, class_group.school_id)
        year = session.get_one(SchoolYear, class_group.school_year_id)
        log = Log(
            school_id=school.id,
            origin=journal_origin(school, year, class_group),
            kind="journal",
            class_group_id=class_group.id,
        )
        session.add(log)
        session.flush()
    return log


def ensure_ledger_log(session: Session, school: School) -> Log:
    log = session.scalar(select(Log).where(Log.school_id == school.id, Log.kind == "ledger"))
    if log is None:
        log = Log(school_id=school.id, origin=ledger_origin(school), kind="ledger")
        session.add(log)
        session.flush()
    return log


# -- recording ---------------------------------------------------------------------------------


def record_entry(
    session: Session, submission: bytes | str | Mapping[str, Any], *, now: dt.datetime | None = None
) -> Recorded:
    """Verify one signed entry and append it to its journal, once.

    ``submission`` is ``{"payload": {...}, "alg": ..., "kid": ..., "sig": "<base64>"}``, as
    parsed JSON or as the raw bytes of it. Raises ``EntryRefused`` and writes nothing when the
    entry may not enter the log.
    """
    return Recorder(session, now=now).record(submission)


def correct_entry(
    session: Session, submission: bytes | str | Mapping[str, Any], *, now: dt.datetime | None = None
) -> Recorded:
    """Record a correction: a signed entry that supersedes earlier ones and states a reason."""
    recorder = Recorder(session, now=now)
    parsed = recorder.parse(submission)
    if parsed["payload"].get("kind") != "correction":
        raise EntryRefused("rejected", "not_a_correction", "this entry is not a correction")
    return recorder.record(parsed)


class _StudentRow(NamedTuple):
    """What checking an entry reads of its student (``Recorder.prefetch_rows``)."""

    id: int
    school_id: int


class _Span(NamedTuple):
    """What checking an entry reads of an enrollment: its dates (as ``Enrollment``)."""

    starts_on: dt.date
    ends_on: dt.date | None

    def covers(self, day: dt.date) -> bool:
        return self.starts_on <= day and (self.ends_on is None or day <= self.ends_on)


@dataclass(frozen=True)
class _Context:
    """What authorizing an entry needs of its lesson (or subject) and class, read once."""

    class_group: ClassGroup
    class_group_id: int
    school_id: int
    school_year_id: int
    lesson_ok: bool  # the lesson exists, in this journal's class (or none is named)
    subject_ok: bool  # the subject exists, in this school
    subject_id: int
    graded: bool
    term_kind: str  # "half" or "quarter"
    day: dt.date | None  # the lesson's
    term: Term | None  # the one of term_kind covering day


class Recorder:
    """Records entries against one session; caches look-ups across a batch."""

    MAX_SUBMISSION_BYTES = ledger_entry.MAX_PAYLOAD_BYTES + 1024

    def __init__(
        self,
        session: Session,
        *,
        now: dt.datetime | None = None,
        deferred: bool = False,
        plain: bool = False,
    ) -> None:
        self.session = session
        self.now = now
        # Plain: the mappings given to parse() were read by parse_json from a text plain_text
        # accepts (the sync API's body), so canonicalizing them needs no walk over each value.
        self.plain = plain
        # Deferred: rows are written by one executemany per log at flush() (or at commit),
        # with their seqs reserved in memory under the log-row lock taken once per batch.
        self.deferred = deferred
        self._rows: dict[tuple[type, Any], Any] = {}  # strong refs: the identity map is weak
        self._sizes: dict[int, int] = {}
        self._pending: dict[int, list[tuple[Any, ...]]] = {}  # rows in _ENTRY_COLUMNS order
        self._pending_supersessions: list[dict[str, Any]] = []
        # device_seqs of the entries written and not yet folded into their keys' reports.
        self._unfolded: dict[str, list[int]] = {}
        self.seq_reports: dict[str, DeviceSeqReport] = {}  # what each fold found, by kid
        self.seen: set[str] = set()  # keys a fold marked as used (fold_device_seqs' seen_at)
        self._pending_ids: dict[str, tuple[int, int, bytes]] = {}
        self._known: dict[str, tuple[int, int, bytes] | None] = {}
        # The (log, cell) of every entry id found or appended here (cell may be None).
        self.cells: dict[str, tuple[int, str | None]] = {}
        self._logs: dict[str, Log | None] = {}
        self._assigned: dict[tuple[int, int, int], bool] = {}
        self._enrolled: dict[tuple[int, int], list[Enrollment | _Span]] = {}
        self._terms: dict[int, list[Term]] = {}
        # (log, cell prefix "SOR:lesson:") -> {entry id: max} of the live heads: one maximum
        # per summative lesson (see _check_one_maximum).
        self._maxima: dict[tuple[int, str], dict[str, int]] = {}
        self._stamps: dict[dt.datetime, str] = {}  # received_at text for a now
        self._contexts: dict[tuple[int, int | None, int | None], _Context] = {}
        self._students_ok: dict[tuple[Any, ...], str | None] = {}
        self._today_at: dict[tuple[int, dt.datetime], dt.date] = {}  # a school's date at a now
        self._keys_passed: dict[tuple[str, str, int, dt.datetime], tuple[str, bytes]] = {}
        self._device_rows: dict[str, Row[Any] | None] = {}

    # parsing ---------------------------------------------------------------------------------

    def parse(self, submission: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(submission, bytes | str):
            raw = submission.encode() if isinstance(submission, str) else submission
            if len(raw) > self.MAX_SUBMISSION_BYTES:
                raise EntryRefused("rejected", "too_large", "the entry is too large")
            try:
                submission = ledger_entry.parse_json(raw, max_bytes=self.MAX_SUBMISSION_BYTES)
            except ledger_entry.PayloadError as exc:
                raise EntryRefused("rejected", exc.code, str(exc)) from exc
        if not isinstance(submission, Mapping):
            raise EntryRefused("rejected", "not_object", "an entry must be a JSON object")
        parsed = dict(submission)
        for name in ("alg", "kid", "sig"):
            if not isinstance(parsed.get(name), str):
                raise EntryRefused("rejected", "bad_field", f"the entry has no {name}")
        if len(parsed["kid"]) > 64 or "\x00" in parsed["kid"]:
            raise EntryRefused("rejected", "bad_field", "the key id is not a key id")
        if parsed["alg"] not in ledger_entry.ALGS:
            raise EntryRefused("rejected", "bad_alg", f"unsupported algorithm {parsed['alg']!r}")
        if not isinstance(parsed.get("payload"), dict):
            raise EntryRefused("rejected", "not_object", "the payload must be a JSON object")
        return parsed

    # the pipeline ------------------------------------------------------------------------------

    def record(self, submission: bytes | str | Mapping[str, Any]) -> Recorded:
        return self.record_parsed(
            self.parse(submission), from_text=isinstance(submission, bytes | str)
        )

    def record_parsed(self, parsed: dict[str, Any], *, from_text: bool = False) -> Recorded:
        """``record`` of what ``parse`` returned (the sync API parses each entry once);
        ``from_text``: it was parsed from bytes or text given to ``parse``."""
        payload = parsed["payload"]
        try:
            payload_bytes = ledger_entry.canonical_json(payload, plain=self.plain and not from_text)
        except ledger_entry.PayloadError as exc:
            raise EntryRefused("rejected", exc.code, str(exc)) from exc
        if len(payload_bytes) > ledger_entry.MAX_PAYLOAD_BYTES:
            raise EntryRefused("rejected", "too_large", "the entry is too large")
        try:
            facts = check_payload(payload)
        except PayloadRejected as exc:
            raise EntryRefused("rejected", exc.code, str(exc)) from exc
        try:
            sig = base64.b64decode(parsed["sig"], validate=True)
        except (binascii.Error, ValueError):
            raise EntryRefused("rejected", "bad_signature", "the signature is not base64") from None

        now = self.now or utcnow()
        alg, public_key = self._device_key(parsed["kid"], parsed["alg"], facts, now)
        if not ledger_entry.verify_payload(alg, public_key, payload_bytes, sig):
            raise EntryRefused(
                "rejected", "bad_signature", "the signature does not match the entry"
            )

        existing = self._existing(facts.entry_id)
        if existing is not None:
            log_id, seq, existing_payload = existing
            if existing_payload == payload_bytes:
                return Recorded("duplicate", facts.entry_id, log_id, seq)
            raise EntryRefused(
                "conflict",
                "entry_id_reused",
                "an entry with this id but other content is already recorded",
            )

        log = self._journal(facts.journal)
        self._authorize(log, facts)
        if facts.kind in ("term_grade", "year_grade"):
            self._check_result(log, facts, payload, now)
        self._check_one_maximum(log, facts, payload)
        return self._append(
            log, facts, payload, payload_bytes, parsed["alg"], parsed["kid"], sig, now
        )

    def _get(self, model: type[_M], ident: Any) -> _M | None:
        cache_key = (model, ident)
        if cache_key not in self._rows:
            self._rows[cache_key] = self.session.get(model, ident)
        row: _M | None = self._rows[cache_key]
        return row

    def _device_key(
        self, kid: str, alg: str, facts: PayloadFacts, now: dt.datetime
    ) -> tuple[str, bytes]:
        """The algorithm and public key an entry's signature is checked with; EntryRefused
        when the key may not sign it. What was found of a key holds for its batch: past the
        first entry only the entry's own device_id is left to check (the checks below run in
        the same order otherwise)."""
        passed = self._keys_passed.get((kid, alg, facts.author, now))
        if passed is not None and facts.device_id == kid:
            return passed
        key = self._device_row(kid)
        if key is None:
            raise EntryRefused("quarantined", "unknown_key", "the device key is not registered")
        if key.alg != alg:
            raise EntryRefused("rejected", "bad_alg", "the algorithm does not match the key")
        if facts.device_id != kid:
            raise EntryRefused("rejected", "bad_field", "device_id does not name the signing key")
        if key.user_id != facts.author:
            raise EntryRefused(
                "rejected", "not_authors_key", "the key does not belong to the entry's author"
            )
        if key.revoked_at is not None and key.revoked_at <= now:  # DeviceKey.revoked_by
            raise EntryRefused("quarantined", "revoked_key", "the device key has been revoked")
        passed = self._keys_passed[(kid, alg, facts.author, now)] = (key.alg, key.public_key)
        return passed

    def _device_row(self, kid: str) -> Row[Any] | None:
        """What checking reads of a device key, as a plain row (once per key and batch)."""
        if kid not in self._device_rows:
            self._device_rows[kid] = self.session.execute(_DEVICE_KEY_ROW, {"kid": kid}).first()
        return self._device_rows[kid]

    def _journal(self, origin: str) -> Log:
        if origin not in self._logs:
            # With its class, school and the terms of its year (a row each), which checking
            # its entries reads next: one round trip instead of four.
            found = self.session.execute(_JOURNAL_ROWS, {"origin": origin}).all()
            self._logs[origin] = None
            if found:
                self._logs[origin], class_group, school, _term = found[0]
                if class_group is not None:
                    self._rows[(ClassGroup, class_group.id)] = class_group
                    terms = [term for *_row, term in found if term is not None]
                    self._terms.setdefault(class_group.school_year_id, terms)
                if school is not None:
                    self._rows[(School, school.id)] = school
        log = self._logs[origin]
        if log is None:
            raise EntryRefused("rejected", "unknown_journal", f"no journal {origin}")
        return log

    def _authorize(self, log: Log, facts: PayloadFacts) -> None:
        # What depends on the lesson (or subject) alone is looked up once per batch
        # (_context); the checks run in the same order as ever, so the same refusal wins.
        ctx = self._context(log, facts)
        if not ctx.lesson_ok:
            raise EntryRefused("rejected", "unknown_lesson", "no such lesson in this journal")
        if not ctx.subject_ok:
            raise EntryRefused("rejected", "unknown_subject", "no such subject in this school")
        if not self._is_assigned(facts.author, ctx.class_group_id, ctx.subject_id):
            raise EntryRefused(
                "rejected",
                "not_assigned",
                "the author does not teach this subject in this class",
            )
        if "grade" in (facts.kind, facts.correcting) and not ctx.graded:
            raise EntryRefused("rejected", "not_graded", "this subject is not graded")

        day = ctx.day
        kind = ctx.term_kind
        term: Term | None
        if day is not None:
            term = ctx.term
            if term is None:
                raise EntryRefused("rejected", "no_term", f"{day} is not in a term")
            # Lesson topics may be planned ahead; marks and attendance only once it took place.
            if "topic" not in (facts.kind, facts.correcting) and day > self._today(ctx.school_id):
                raise EntryRefused(
                    "rejected",
                    "future_lesson",
                    f"the lesson of {day} has not taken place yet: no marks or attendance",
                )
        elif facts.kind == "year_grade":
            term = None
        else:
            terms = self._school_terms(ctx.school_year_id)
            term = next((t for t in terms if t.id == facts.term), None)
            if term is None:
                raise EntryRefused("rejected", "unknown_term", "no such term this year")
            if term.kind != kind:
                raise EntryRefused(
                    "rejected",
                    "wrong_term_kind",
                    f"this subject is graded by {'half-years' if kind == 'half' else 'quarters'}",
                )
        if (
            term is not None
            and term.closed_at is not None
            and not self._late_correction_approved(log, facts)
        ):
            raise EntryRefused(
                "rejected",
                "closed_term",
                "the term is closed: a correction needs the school admin's approval",
            )

        if facts.student is not None:
            refusal = self._student_refusal(ctx, facts.student, day, term)
            if refusal == "unknown_student":
                raise EntryRefused("rejected", "unknown_student", "no such student")
            if refusal == "not_enrolled":
                raise EntryRefused(
                    "rejected", "not_enrolled", "the student is not in this class on that date"
                )

        if facts.supersedes:
            self.flush()  # this batch's earlier entries may be what is superseded
            rows = self.session.execute(
                select(Entry.entry_id, Entry.log_id, Entry.cell).where(
                    Entry.entry_id.in_(facts.supersedes)
                )
            ).all()
            for row in rows:
                if row.log_id != log.id or row.cell != facts.cell:
                    raise EntryRefused(
                        "rejected",
                        "bad_supersedes",
                        "a correction may only supersede entries of the same cell",
                    )
            # An unknown id would hide whatever later arrives under it. A correction that
            # overtook its entry (another device still offline) is refused too: the device keeps
            # it and sends it again once the entry is in (see sync.js), so nothing is lost.
            if len(rows) != len(facts.supersedes):
                raise EntryRefused(
                    "rejected",
                    "bad_supersedes",
                    "the entry this corrects is not on the server (yet): it is sent again later",
                )

    def _context(self, log: Log, facts: PayloadFacts) -> _Context:
        key = (log.id, facts.lesson, facts.subject if facts.lesson is None else None)
        ctx = self._contexts.get(key)
        if ctx is not None:
            return ctx
        class_group = self._get(ClassGroup, log.class_group_id)
        assert class_group is not None
        day: dt.date | None = None
        lesson_ok = True
        subject_id: int | None
        if facts.lesson is not None:
            lesson = self._get(Lesson, facts.lesson)
            if lesson is None or lesson.class_group_id != class_group.id:
                lesson_ok, subject_id = False, None
            else:
                subject_id, day = lesson.subject_id, lesson.date
        else:
            assert facts.subject is not None
            subject_id = facts.subject
        subject = self._get(Subject, subject_id) if lesson_ok else None
        subject_ok = subject is not None and subject.school_id == class_group.school_id
        kind = "half" if subject is not None and subject.by_half_year else "quarter"
        term = None
        if day is not None and subject_ok:
            terms = self._school_terms(class_group.school_year_id)
            term = next((t for t in terms if t.kind == kind and t.covers(day)), None)
        ctx = self._contexts[key] = _Context(
            class_group=class_group,
            class_group_id=class_group.id,
            school_id=class_group.school_id,
            school_year_id=class_group.school_year_id,
            lesson_ok=lesson_ok,
            subject_ok=subject_ok,
            subject_id=subject_id or 0,
            graded=bool(subject is not None and subject.graded),
            term_kind=kind,
            day=day,
            term=term,
        )
        return ctx

    def _student_refusal(
        self, ctx: _Context, student_id: int, day: dt.date | None, term: Term | None
    ) -> str | None:
        """None, "unknown_student" or "not_enrolled" (in the class on the day, or in the term
        or year); remembered for the batch."""
        key = (student_id, ctx.class_group_id, ctx.school_id, day, term.id if term else None)
        if key in self._students_ok:
            return self._students_ok[key]
        refusal: str | None = None
        student = self._get(Student, student_id)
        if student is None or student.school_id != ctx.school_id:
            refusal = "unknown_student"
        else:
            enrollments = self._enrollments(student.id, ctx.class_group_id)
            if day is not None:
                enrolled = any(e.covers(day) for e in enrollments)
            else:
                first, last = (
                    (term.starts_on, term.ends_on)
                    if term is not None
                    else (
                        self._year(ctx.class_group).starts_on,
                        self._year(ctx.class_group).ends_on,
                    )
                )
                enrolled = any(
                    e.starts_on <= last and (e.ends_on is None or e.ends_on >= first)
                    for e in enrollments
                )
            if not enrolled:
                refusal = "not_enrolled"
        self._students_ok[key] = refusal
        return refusal

    def _check_one_maximum(self, log: Log, facts: PayloadFacts, payload: dict[str, Any]) -> None:
        """A СОР/СОЧ lesson is out of one maximum for the whole class, set by its first result:
        a result out of another maximum is refused (a correction of the only result may change
        it). Keeps the live heads' maxima of the lessons seen, so a batch reads each once."""
        value = payload.get("value")
        if facts.cell is None or not isinstance(value, dict) or "max" not in value:
            return
        prefix = facts.cell.rsplit(":", 1)[0] + ":"
        maxima = self._lesson_maxima(log.id, prefix)
        others = {m for entry_id, m in maxima.items() if entry_id not in facts.supersedes}
        if others and others != {value["max"]}:
            raise EntryRefused(
                "rejected",
                "max_differs",
                f"this lesson's results are out of {min(others)}: one maximum per lesson, "
                f"not {value['max']} (correct the results already written to change it)",
            )

    def _lesson_maxima(self, log_id: int, prefix: str) -> dict[str, int]:
        key = (log_id, prefix)
        if key not in self._maxima:
            self.flush()  # this batch's earlier entries count too
            rows = self.session.execute(
                select(Entry.entry_id, Entry.leaf).where(
                    Entry.log_id == log_id,
                    Entry.cell.startswith(prefix, autoescape=True),
                    ~_superseded_entry(),
                )
            )
            found: dict[str, int] = {}
            for entry_id, leaf in rows:
                value = ledger_entry.parse_leaf(leaf).payload.get("value")
                if isinstance(value, dict) and isinstance(value.get("max"), int):
                    found[entry_id] = value["max"]
            self._maxima[key] = found
        return self._maxima[key]

    def _today(self, school_id: int) -> dt.date:
        key = (school_id, self.now)
        if self.now is not None and key in self._today_at:
            return self._today_at[key]
        school = self._get(School, school_id)
        assert school is not None
        today = school_today(school.time_zone, self.now or utcnow())
        if self.now is not None:
            self._today_at[key] = today
        return today

    def _year(self, class_group: ClassGroup) -> SchoolYear:
        year = self._get(SchoolYear, class_group.school_year_id)
        assert year is not None
        return year

    def _check_result(
        self, log: Log, facts: PayloadFacts, payload: Mapping[str, Any], now: dt.datetime
    ) -> None:
        """A term or year result must be what the subject's rule gives from the journal (or a
        status), under the rule version in force, and may replace a confirmation only by naming
        it (``supersedes``, with a reason)."""
        from .year.results import TermBook, YearBook, year_grade_cell
        from .year.rules import grading_rules, rule_for_subject

        class_group = self._get(ClassGroup, log.class_group_id)
        subject = self._get(Subject, facts.subject)
        assert class_group is not None and subject is not None and facts.student is not None
        year = self._year(class_group)
        term = next((t for t in self._school_terms(year.id) if t.id == facts.term), None)
        on = term.ends_on if term is not None else year.ends_on
        try:
            rule = rule_for_subject(subject, class_group, on)
        except NoRuleError as exc:
            raise EntryRefused("rejected", "bad_rule", str(exc)) from None
        if rule.kind == "no_grades":
            raise EntryRefused("rejected", "not_graded", "this subject is not graded")
        named = payload["rule"]
        if not any(
            r.rule_id == named["id"] and r.version == named["version"] for r in grading_rules()
        ):
            raise EntryRefused(
                "rejected", "bad_rule", f"no grading rule {named['id']} version {named['version']}"
            )
        if (named["id"], named["version"]) != (rule.rule_id, rule.version):
            raise EntryRefused(
                "rejected",
                "bad_rule",
                f"this subject is graded by {rule.rule_id} version {rule.version} on {on}",
            )
        self.flush()  # the marks of this batch count
        if term is not None:
            book = TermBook(self.session, class_group, log, term, student_ids=[facts.student])
            outcome = book.outcome(subject, facts.student)
            cell = book.confirmation_cell(subject.id, facts.student)
        else:
            if year.closed_at is not None:
                raise EntryRefused(
                    "rejected", "closed_year", "the school year is closed: year grades are sealed"
                )
            year_book = YearBook(self.session, class_group, log, student_ids=[facts.student])
            if not year_book.terms_closed(subject):
                raise EntryRefused(
                    "rejected",
                    "year_open",
                    "a year grade exists only once every term of the year is closed",
                )
            found = year_book.outcome(subject, facts.student)
            assert found is not None
            outcome = found
            cell = year_book.cells.get(year_grade_cell(subject.id, facts.student))
        heads = {head.entry_id for head in cell.heads} if cell is not None else set()
        if not heads <= set(facts.supersedes):
            raise EntryRefused(
                "rejected",
                "already_confirmed",
                "this result is confirmed already: re-confirm it naming the confirmation "
                "(supersedes) with a reason",
            )
        if payload.get("status") is not None:
            return
        computed = outcome.computed or outcome
        if computed.incomplete:
            raise EntryRefused(
                "rejected",
                "incomplete",
                "incomplete: the planned "
                + ", ".join(computed.incomplete)
                + " is missing; enter the make-up result or ask the school admin to decide",
            )
        expected = computed.grade if rule.kind != "pass_fail" else computed.result
        given = payload.get("grade") if rule.kind != "pass_fail" else payload.get("result")
        percent = payload.get("percent")
        if (
            expected is None
            or given != expected
            or (percent is not None and percent != computed.percent)
        ):
            shown = "nothing" if expected is None else f"{expected}"
            if computed.percent:
                shown += f" ({computed.percent} %)"
            raise EntryRefused(
                "rejected",
                "not_computed_grade",
                f"the rule {rule.rule_id} version {rule.version} gives {shown} from the journal; "
                "a confirmed result must equal it or be a status",
            )

    def _late_correction_approved(self, log: Log, facts: PayloadFacts) -> bool:
        if facts.kind != "correction":
            return False
        now = self.now or utcnow()
        return (
            self.session.scalar(
                select(LateCorrectionApproval.id).where(
                    LateCorrectionApproval.log_id == log.id,
                    LateCorrectionApproval.cell == facts.cell,
                    LateCorrectionApproval.approved_at <= now,
                    LateCorrectionApproval.expires_at >= now,
                )
            )
            is not None
        )

    def _is_assigned(self, user_id: int, class_group_id: int, subject_id: int) -> bool:
        key = (user_id, class_group_id, subject_id)
        if key not in self._assigned:
            self._assigned[key] = (
                self.session.scalar(
                    select(TeachingAssignment.id).where(
                        TeachingAssignment.user_id == user_id,
                        TeachingAssignment.class_group_id == class_group_id,
                        TeachingAssignment.subject_id == subject_id,
                    )
                )
                is not None
            )
        return self._assigned[key]

    def _enrollments(self, student_id: int, class_group_id: int) -> list[Enrollment | _Span]:
        key = (student_id, class_group_id)
        if key not in self._enrolled:
            self._enrolled[key] = list(
                self.session.scalars(
                    select(Enrollment).where(
                        Enrollment.student_id == student_id,
                        Enrollment.class_group_id == class_group_id,
                    )
                )
            )
        return self._enrolled[key]

    def _school_terms(self, school_year_id: int) -> list[Term]:
        if school_year_id not in self._terms:
            self._terms[school_year_id] = list(
                self.session.scalars(select(Term).where(Term.school_year_id == school_year_id))
            )
        return self._terms[school_year_id]

    def prefetch(self, entry_ids: list[str]) -> None:
        """Look up which of a batch's entry ids are already recorded, in one query."""
        # Only well-formed ids are looked up; the others are refused entry by entry later.
        wanted = [
            i
            for i in entry_ids
            if isinstance(i, str)
            and _UUID.fullmatch(i)
            and i not in self._known
            and i not in self._pending_ids
        ]
        for chunk in range(0, len(wanted), 500):
            part = wanted[chunk : chunk + 500]
            self._known.update(dict.fromkeys(part))
            postgres = self.session.get_bind().dialect.name == "postgresql"
            rows = self.session.execute(_recorded(postgres), {"ids": part})
            for row in rows:
                payload = ledger_entry.parse_leaf(row.leaf).payload_bytes
                self._known[row.entry_id] = (row.log_id, row.seq, payload)
                self.cells[row.entry_id] = (row.log_id, row.cell)

    def prefetch_rows(self, payloads: list[Any]) -> None:
        """Load a batch's lessons (with their subjects and whether the batch's authors teach
        them), students and their enrollments in two queries, instead of one look-up per new
        lesson or student while checking (the sync API's batches)."""

        # Only well-formed ids: anything else is refused later, entry by entry, by check_payload.
        def ids(name: str) -> set[int]:
            values = (p.get(name) for p in payloads if isinstance(p, dict))
            return {i for i in values if type(i) is int and 1 <= i <= MAX_ID}

        lesson_ids = {i for i in ids("lesson") if (Lesson, i) not in self._rows}
        student_ids = ids("student")
        authors = ids("author")
        classes = set()
        taught: set[tuple[int, int]] = set()  # (class, subject) of the lessons
        assigned: set[tuple[int, int, int]] = set()  # (author, class, subject) found
        for lesson, subject, teacher in self.session.execute(
            _LESSON_ROWS, {"lessons": list(lesson_ids), "authors": list(authors)}
        ):
            self._rows[(Lesson, lesson.id)] = lesson
            if subject is not None:
                self._rows[(Subject, subject.id)] = subject
            classes.add(lesson.class_group_id)
            taught.add((lesson.class_group_id, lesson.subject_id))
            if teacher is not None:
                assigned.add((teacher, lesson.class_group_id, lesson.subject_id))
        for class_group_id, subject_id in taught:  # what _is_assigned would look up
            for author in authors:
                key = (author, class_group_id, subject_id)
                self._assigned.setdefault(key, key in assigned)
        new_students = {i for i in student_ids if (Student, i) not in self._rows}
        wanted = {(s, c) for s in student_ids for c in classes} - self._enrolled.keys()
        for key in wanted:
            self._enrolled[key] = []
        if new_students:
            # With their enrollments in the lessons' classes (one row per enrollment), as plain
            # rows: checking reads a student's school and an enrollment's dates, nothing else,
            # and ORM objects for a class's pupils cost more than the batch's other look-ups.
            for row in self.session.execute(
                _STUDENT_ROWS, {"students": list(new_students), "classes": list(classes)}
            ):
                self._rows[(Student, row.id)] = _StudentRow(row.id, row.school_id)
                if row.class_group_id is not None and (row.id, row.class_group_id) in wanted:
                    self._enrolled[(row.id, row.class_group_id)].append(
                        _Span(row.starts_on, row.ends_on)
                    )
        rest = {(s, c) for s, c in wanted if s not in new_students}
        if rest:
            for enrollment in self.session.scalars(
                select(Enrollment).where(
                    Enrollment.student_id.in_({s for s, _c in rest}),
                    Enrollment.class_group_id.in_({c for _s, c in rest}),
                )
            ):
                key = (enrollment.student_id, enrollment.class_group_id)
                if key in rest:
                    self._enrolled[key].append(enrollment)

    def _existing(self, entry_id: str) -> tuple[int, int, bytes] | None:
        if entry_id in self._pending_ids:
            return self._pending_ids[entry_id]
        if entry_id not in self._known:
            self.prefetch([entry_id])
        return self._known[entry_id]

    def _reserve_seq(self, log: Log) -> int:
        log_id = log.id  # an ORM attribute: read once per entry
        seq = self._sizes.get(log_id)
        if seq is None:
            # "SET size = size" takes the row's write lock (held to commit) and reads the
            # committed size: nobody else can append to this log until we commit. A writer
            # stuck holding it makes us give up after APPEND_LOCK_TIMEOUT, not wait for ever.
            postgres = self.session.get_bind().dialect.name == "postgresql"
            seq = self.session.execute(
                _reserve(postgres), {"log_id": log_id, **lock_wait_params()}
            ).scalar_one()
            _pending_recorders(self.session).add(self)
        self._sizes[log_id] = seq + 1
        return seq

    def _append(
        self,
        log: Log,
        facts: PayloadFacts,
        payload: dict[str, Any],
        payload_bytes: bytes,
        alg: str,
        kid: str,
        sig: bytes,
        now: dt.datetime,
    ) -> Recorded:
        seq = self._reserve_seq(log)
        log_id = log.id
        stamp = self._stamps.get(now)
        if stamp is None:
            stamp = self._stamps[now] = ledger_entry.format_timestamp(now)
        leaf = ledger_entry.leaf_bytes(
            seq,
            stamp,
            payload,
            alg,
            kid,
            sig,
            payload_bytes=payload_bytes,
        )
        self._pending.setdefault(log_id, []).append(
            (
                log_id,
                seq,
                facts.entry_id,
                facts.kind,
                facts.author,
                kid,
                facts.device_seq,
                facts.lesson,
                facts.student,
                facts.cell,
                now,
                leaf,
                merkle.leaf_hash(leaf),
            )
        )
        self._pending_ids[facts.entry_id] = (log_id, seq, payload_bytes)
        self.cells[facts.entry_id] = (log_id, facts.cell)
        if facts.cell is not None:
            maxima = self._maxima.get((log_id, facts.cell.rsplit(":", 1)[0] + ":"))
            if maxima is not None:
                for target in facts.supersedes:
                    maxima.pop(target, None)
                value = payload.get("value")
                if isinstance(value, dict) and isinstance(value.get("max"), int):
                    maxima[facts.entry_id] = value["max"]
        self._pending_supersessions.extend(
            {"correction_entry_id": facts.entry_id, "superseded_entry_id": target, "log_id": log_id}
            for target in facts.supersedes
        )
        if not self.deferred:
            self.flush()
        return Recorded("accepted", facts.entry_id, log_id, seq)

    def flush(self) -> None:
        """Write the pooled rows: one INSERT ... executemany per log, then the new sizes."""
        if not self._pending and not self._pending_supersessions:
            return
        for log_id, rows in self._pending.items():
            _insert_entries(self.session, rows)
            for row in rows:
                self._unfolded.setdefault(row[5], []).append(row[6])  # device_kid, device_seq
            self.session.execute(_SET_SIZE, {"log_id": log_id, "size": self._sizes[log_id]})
            log = self.session.identity_map.get(self.session.identity_key(Log, (log_id,)))
            if log is not None:
                set_committed_value(log, "size", self._sizes[log_id])
        if self._pending_supersessions:
            self.session.execute(insert(Supersession.__table__), self._pending_supersessions)
        self._known.update(self._pending_ids)
        self._pending.clear()
        self._pending_ids.clear()
        self._pending_supersessions.clear()

    def fold_device_seqs(self, *, seen_at: dt.datetime | None = None) -> dict[str, DeviceSeqReport]:
        """Fold the device_seqs of the entries written into their keys' reports (after all
        of the transaction's journal locks, so key locks are always taken after them); returns
        the reports of the keys folded in so far. ``seen_at``: mark the keys folded now as
        used at that moment (they are in ``seen``), in the same UPDATE."""
        if self._unfolded:
            folded = fold_stored_seqs(self.session, self._unfolded, seen_at=seen_at)
            self.seq_reports.update(folded)
            if seen_at is not None:
                self.seen.update(folded)
            self._unfolded.clear()
        return self.seq_reports

    def discard(self) -> None:
        """Forget reservations after a rollback."""
        self._unfolded.clear()
        self._pending.clear()
        self._pending_ids.clear()
        self._pending_supersessions.clear()
        self._sizes.clear()
        self._known.clear()


# The statements every sync batch runs are built once: building one (and its cache key) cost
# more than running it.
_JOURNAL_ROWS = (
    select(Log, ClassGroup, School, Term)
    .outerjoin(ClassGroup, ClassGroup.id == Log.class_group_id)
    .outerjoin(School, School.id == ClassGroup.school_id)
    .outerjoin(Term, Term.school_year_id == ClassGroup.school_year_id)
    .where(Log.origin == bindparam("origin"), Log.kind == "journal")
)
_LESSON_ROWS = (
    select(Lesson, Subject, TeachingAssignment.user_id)
    .outerjoin(Subject, Subject.id == Lesson.subject_id)
    .outerjoin(
        TeachingAssignment,
        and_(
            TeachingAssignment.class_group_id == Lesson.class_group_id,
            TeachingAssignment.subject_id == Lesson.subject_id,
            TeachingAssignment.user_id.in_(bindparam("authors", expanding=True)),
        ),
    )
    .where(Lesson.id.in_(bindparam("lessons", expanding=True)))
)
# Plain rows are read through Core tables: SQLAlchemy's ORM handling of a statement that names
# mapped attributes costs about twice the round trip, even when it returns no objects.
_STUDENTS, _ENROLLMENTS = Student.__table__.c, Enrollment.__table__.c
_STUDENT_ROWS = (
    select(
        _STUDENTS.id,
        _STUDENTS.school_id,
        _ENROLLMENTS.class_group_id,
        _ENROLLMENTS.starts_on,
        _ENROLLMENTS.ends_on,
    )
    .select_from(Student.__table__)
    .outerjoin(
        Enrollment.__table__,
        and_(
            _ENROLLMENTS.student_id == _STUDENTS.id,
            _ENROLLMENTS.class_group_id.in_(bindparam("classes", expanding=True)),
        ),
    )
    .where(_STUDENTS.id.in_(bindparam("students", expanding=True)))
)
_KEYS = DeviceKey.__table__.c
_DEVICE_KEY_ROW = select(
    _KEYS.kid, _KEYS.user_id, _KEYS.alg, _KEYS.public_key, _KEYS.revoked_at
).where(_KEYS.kid == bindparam("kid"))


@functools.cache
def _recorded(postgres: bool) -> Select[tuple[str, int, int, bytes, str | None]]:
    """The entries with ids ``:ids``: on PostgreSQL ``= ANY(array)``, one parameter however many
    ids (an expanding IN costs SQLAlchemy and the server a parameter each)."""
    entries = Entry.__table__.c  # Core, as _STUDENT_ROWS
    ids = (
        entries.entry_id == any_(bindparam("ids", type_=postgresql.ARRAY(String)))
        if postgres
        else entries.entry_id.in_(bindparam("ids", expanding=True))
    )
    return select(entries.entry_id, entries.log_id, entries.seq, entries.leaf, entries.cell).where(
        ids
    )


@functools.cache
def _reserve(postgres: bool) -> Any:
    """Lock the log ``:log_id``'s row and read its committed size (see ``_reserve_seq``)."""
    logs = Log.__table__.c
    return (
        update(Log.__table__)
        .where(logs.id == bindparam("log_id"), lock_wait_condition(postgres))
        .values(size=logs.size)
        .returning(logs.size)
    )


# Core, built once (an ORM bulk UPDATE would also look for Log objects to update).
_SET_SIZE = (
    update(Log.__table__)
    .where(Log.__table__.c.id == bindparam("log_id"))
    .values(size=bindparam("size"))
)


# The columns a new entry row fills, in the order of the pending tuples, with their PostgreSQL
# types (as the migrations make them): the COPY is binary, so the leaves go as they are, not as
# hex text for the client to write and the server to read back.
_ENTRY_COLUMN_TYPES = (
    ("log_id", "int4"),
    ("seq", "int8"),
    ("entry_id", "varchar"),
    ("kind", "varchar"),
    ("author_id", "int4"),
    ("device_kid", "varchar"),
    ("device_seq", "int8"),
    ("lesson_id", "int4"),
    ("student_id", "int4"),
    ("cell", "varchar"),
    ("received_at", "timestamptz"),
    ("leaf", "bytea"),
    ("leaf_hash", "bytea"),
)
_ENTRY_COLUMNS = tuple(name for name, _type in _ENTRY_COLUMN_TYPES)
_COPY_ENTRIES = f"COPY entries ({', '.join(_ENTRY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"


def _insert_entries(session: Session, rows: list[tuple[Any, ...]]) -> None:
    """Insert Entry rows (tuples of ``_ENTRY_COLUMNS``' values, UTC-aware ``received_at``).

    On PostgreSQL with psycopg 3 one COPY in the session's transaction: the rows cost the
    server a fraction of as many INSERTs, and constraints and triggers apply as for INSERT.
    Its errors are raised as SQLAlchemy's (IntegrityError for a duplicate entry_id, ...), as
    an INSERT's would be. Elsewhere one INSERT ... executemany."""
    connection = session.connection()
    driver = connection.connection.driver_connection
    if connection.dialect.name != "postgresql" or not isinstance(driver, psycopg.Connection):
        session.execute(
            insert(Entry.__table__), [dict(zip(_ENTRY_COLUMNS, row, strict=True)) for row in rows]
        )
        return
    note_write(connection)
    try:
        with driver.cursor() as cursor, cursor.copy(_COPY_ENTRIES) as copy:
            copy.set_types([type_ for _name, type_ in _ENTRY_COLUMN_TYPES])
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as exc:
        raise DBAPIError.instance(
            _COPY_ENTRIES, None, exc, psycopg.Error, dialect=connection.dialect
        ) from exc


def _pending_recorders(session: Session) -> set[Recorder]:
    recorders: set[Recorder] = session.info.setdefault(PENDING_WRITES, set())
    return recorders


@event.listens_for(Session, "before_commit")
def _flush_recorders(session: Session) -> None:
    """A deferred Recorder's rows are written before any commit, so none can be forgotten."""
    for recorder in session.info.pop(PENDING_WRITES, set()):
        recorder.flush()
        recorder.fold_device_seqs()
        recorder._sizes.clear()  # the row lock ends with the transaction


@event.listens_for(Session, "after_rollback")
def _discard_recorders(session: Session) -> None:
    for recorder in session.info.pop(PENDING_WRITES, set()):
        recorder.discard()


def append_leaf(
    session: Session,
    log: Log,
    *,
    payload: dict[str, Any],
    alg: str,
    kid: str,
    sig: bytes,
    now: dt.datetime,
    columns: Mapping[str, Any],
) -> int:
    """Append one server-made leaf (ledger records) and return its seq.

    The UPDATE that reserves the seq takes the log row's write lock (PostgreSQL) or the database
    write lock (SQLite, BEGIN IMMEDIATE) until commit, so concurrent writers never share or skip
    a seq, and a rolled-back writer gives its seq back.
    """
    bound_lock_wait(session)
    size = session.execute(
        update(Log).where(Log.id == log.id).values(size=Log.size + 1).returning(Log.size),
        execution_options={"synchronize_session": False},
    ).scalar_one()
    set_committed_value(log, "size", size)  # keep the loaded row in step without a reload
    seq = size - 1
    received_at = ledger_entry.format_timestamp(now)
    leaf = ledger_entry.leaf_bytes(seq, received_at, payload, alg, kid, sig)
    session.execute(
        insert(Entry.__table__).values(
            log_id=log.id,
            seq=seq,
            received_at=now,
            leaf=leaf,
            leaf_hash=merkle.leaf_hash(leaf),
            **columns,
        )
    )
    return seq


# -- the school ledger log: server-made records --------------------------------------------------


def append_ledger_record(
    session: Session,
    school: School,
    log_key: LogKey,
    kind: str,
    fields: Mapping[str, Any],
    *,
    now: dt.datetime | None = None,
    student_id: int | None = None,
    cell: str | None = None,
) -> Recorded:
    """Append a record signed by the school's log key to the school ledger log (DESIGN §5):
    term closures, late-correction approvals, sealed journals, key events, destructions,
    summary-ledger records. ``device_seq`` is the record's seq: the key signs nothing else."""
    log = ensure_ledger_log(session, school)
    return append_server_records(
        session, log, log_key, [ServerRecord(kind, fields, student_id, cell)], now=now
    )[0]


@dataclass(frozen=True)
class ServerRecord:
    """A record the school itself signs (with its log key) into one of its logs."""

    kind: str
    fields: Mapping[str, Any]
    student_id: int | None = None
    cell: str | None = None


def append_server_records(
    session: Session,
    log: Log,
    log_key: LogKey,
    records: list[ServerRecord],
    *,
    now: dt.datetime | None = None,
) -> list[Recorded]:
    """Append records signed by the school's log key to a log: the ledger log's records, and
    in a class journal the term and year results sealed at closing and the admin's decisions.
    Their seqs are reserved in one statement (the log-row lock, as for any append);
    ``device_seq`` is each record's seq and ``author`` null: no device and no person signed."""
    if not records:
        return []
    now = now or utcnow()
    size = session.execute(
        update(Log)
        .where(Log.id == log.id)
        .values(size=Log.size + len(records))
        .returning(Log.size),
        execution_options={"synchronize_session": False},
    ).scalar_one()
    set_committed_value(log, "size", size)
    first = size - len(records)
    stamp = ledger_entry.format_timestamp(now)
    rows = []
    recorded = []
    for seq, record in enumerate(records, first):
        entry_id = str(uuid.uuid4())
        payload = {
            **record.fields,
            "v": 1,
            "entry_id": entry_id,
            "journal": log.origin,
            "kind": record.kind,
            "device_id": log_key.kid,
            "device_seq": seq,
            "author": None,
            "created_at": stamp,
        }
        payload_bytes = ledger_entry.canonical_json(payload)
        sig = ledger_entry.sign_payload(log_key.private_key, payload_bytes)
        leaf = ledger_entry.leaf_bytes(seq, stamp, payload, "ed25519", log_key.kid, sig)
        rows.append(
            {
                "log_id": log.id,
                "seq": seq,
                "entry_id": entry_id,
                "kind": record.kind,
                "author_id": None,
                "device_kid": log_key.kid,
                "device_seq": seq,
                "lesson_id": None,
                "student_id": record.student_id,
                "cell": record.cell,
                "received_at": now,
                "leaf": leaf,
                "leaf_hash": merkle.leaf_hash(leaf),
            }
        )
        recorded.append(Recorded("accepted", entry_id, log.id, seq))
    session.execute(insert(Entry.__table__), rows)
    return recorded


# -- checkpoints -------------------------------------------------------------------------------


def leaf_hashes(session: Session, log: Log, size: int | None = None) -> list[bytes]:
    query = select(Entry.leaf_hash).where(Entry.log_id == log.id).order_by(Entry.seq)
    if size is not None:
        query = query.where(Entry.seq < size)
    return list(session.scalars(query))


def latest_checkpoint(session: Session, log: Log) -> Checkpoint | None:
    return session.scalar(
        select(Checkpoint).where(Checkpoint.log_id == log.id).order_by(Checkpoint.size.desc())
    )


def cut_checkpoint(
    session: Session,
    log: Log,
    log_key: LogKey,
    *,
    timestamper: Any = None,
    now: dt.datetime | None = None,
) -> Checkpoint:
    """Sign a checkpoint of the log as it is now; returns the latest one if nothing was added.

    Stores the consistency proof from the previous checkpoint and an RFC 3161 token over the
    note: from ``timestamper`` when given, else from the app's configured TSA (``TSA_URL``), so
    every path that cuts a checkpoint (closing a term, the hourly job, the portal, the ledger)
    timestamps it. With a TSA configured and unreachable, no checkpoint is cut (TimestampError).
    """
    # Serialize cuts of one log and read a size whose entries are all committed.
    bound_lock_wait(session)
    size = session.execute(select(Log.size).where(Log.id == log.id).with_for_update()).scalar_one()
    previous = latest_checkpoint(session, log)
    if previous is not None and previous.size == size:
        return previous
    hashes = leaf_hashes(session, log, size)
    if len(hashes) != size:
        raise RuntimeError(f"log {log.origin} has {len(hashes)} leaves but size {size}")
    root = merkle.root(hashes)
    signed = note.sign_checkpoint(
        note.Checkpoint(log.origin, size, root), log_key.name, log_key.private_key
    )
    proof_text = None
    if previous is not None and previous.size > 0:
        proof = merkle.consistency_proof(hashes, previous.size, size)
        proof_text = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    if timestamper is None:
        from archive.timestamps import configured_timestamper  # the app's TSA, if any

        timestamper = configured_timestamper()
    checkpoint = Checkpoint(
        log_id=log.id,
        size=size,
        root_hash=root,
        note=signed,
        created_at=now or utcnow(),
        previous_size=previous.size if previous is not None else None,
        consistency_proof=proof_text,
        timestamp_token=timestamper.timestamp(signed.encode()) if timestamper else None,
    )
    session.add(checkpoint)
    session.flush()
    return checkpoint


# -- export and verification -------------------------------------------------------------------


def device_keys_document(session: Session, kids: set[str] | None = None) -> dict[str, Any]:
    """``device-keys.json`` (DESIGN §5) for the given key ids, or every key."""
    query = select(DeviceKey, User.username).join(User, User.id == DeviceKey.user_id)
    if kids is not None:
        query = query.where(DeviceKey.kid.in_(sorted(kids)))
    document: dict[str, Any] = {}
    for key, username in session.execute(query.order_by(DeviceKey.kid)):
        document[key.kid] = {
            "alg": key.alg,
            "public_key": base64.b64encode(key.public_key).decode(),
            "user": key.user_id,
            "username": username,
            "revoked_at": ledger_entry.format_timestamp(key.revoked_at) if key.revoked_at else None,
        }
    return document


def export_log(session: Session, log: Log, log_key_vkey: str) -> dict[str, bytes]:
    """The files an inspector needs to check a log without us: leaves, checkpoint, keys."""
    leaves = list(
        session.scalars(select(Entry.leaf).where(Entry.log_id == log.id).order_by(Entry.seq))
    )
    kids = set(session.scalars(select(Entry.device_kid).where(Entry.log_id == log.id).distinct()))
    kids.discard(None)  # type: ignore[arg-type]
    keys = device_keys_document(session, kids)
    keys.update(server_keys_document(session, log))
    checkpoint = latest_checkpoint(session, log)
    files = {
        "entries.jsonl": b"".join(leaf + b"\n" for leaf in leaves),
        "log.vkey": (log_key_vkey + "\n").encode(),
        "device-keys.json": json.dumps(keys, indent=2, sort_keys=True).encode() + b"\n",
    }
    if checkpoint is not None:
        files["checkpoint"] = checkpoint.note.encode()
    return files


def server_keys_document(session: Session, log: Log) -> dict[str, Any]:
    """The school's own key, which signs server-made ledger entries, in device-keys form."""
    school = session.get_one(School, log.school_id)
    if not school.log_vkey:
        return {}
    verifier = note.parse_vkey(school.log_vkey)
    raw = ledger_entry.public_key_bytes(verifier.public_key)[1]
    return {
        ledger_entry.key_id("ed25519", raw): {
            "alg": "ed25519",
            "public_key": base64.b64encode(raw).decode(),
            "user": None,
            "username": school.domain,
            "revoked_at": None,
        }
    }


def verify_journal(session: Session, log: Log) -> audit.AuditReport:
    """Recompute everything from the stored rows: leaves, signatures, tree, checkpoints."""
    school = session.get_one(School, log.school_id)
    if not school.log_vkey:
        raise LookupError(f"school {school.domain} has no published log key")
    rows = session.execute(
        select(Entry.seq, Entry.leaf, Entry.leaf_hash)
        .where(Entry.log_id == log.id)
        .order_by(Entry.seq)
    ).all()
    keys = device_keys_document(session)
    keys.update(server_keys_document(session, log))
    checkpoints = list(
        session.scalars(
            select(Checkpoint).where(Checkpoint.log_id == log.id).order_by(Checkpoint.size)
        )
    )
    report = audit.verify_log(
        [row.leaf for row in rows],
        audit.device_keys_from_document(keys),
        [cp.note for cp in checkpoints],
        note.parse_vkey(school.log_vkey),
        log.origin,
        consistency={
            (cp.previous_size, cp.size): audit.parse_hash_lines(cp.consistency_proof)
            for cp in checkpoints
            if cp.previous_size and cp.consistency_proof is not None
        },
        stored_seqs=[row.seq for row in rows],
        stored_leaf_hashes=[row.leaf_hash for row in rows],
    )
    if log.size != len(rows):
        report.add(None, f"the log says {log.size} entries but {len(rows)} are stored")
    return report


def _superseded_entry() -> Any:
    """Whether a correction supersedes the Entry row at hand."""
    return (
        select(Supersession.correction_entry_id)
        .where(
            Supersession.log_id == Entry.log_id,
            Supersession.superseded_entry_id == Entry.entry_id,
        )
        .exists()
    )

"""The one way a signed entry enters a journal: ``Recorder`` parses it, checks it against the
school's rules and the journal (its key, its author, the lesson, the pupil, the term, one
maximum per summative lesson, closed terms and late corrections), verifies its signature and
appends it, once; ``EntryRefused`` says why one does not enter, with the sync API's status.

The sync API records a batch with one Recorder (deferred: one COPY per log, one lock of the
log row per batch); the grid, imports and the other writers call ``record_entry`` or
``correct_entry``. Every function takes the session first, flushes, and never commits.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeVar

from sqlalchemy import Row, event, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ..db import (
    PENDING_WRITES,
    array_value,
    lock_wait_params,
    utcnow,
)
from ..device_seqs import DeviceSeqReport, fold_stored_seqs
from ..grading import NoRuleError
from ..ledger import entry as ledger_entry
from ..ledger import merkle
from ..models import (
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
from ..payloads import MAX_ID, PayloadFacts, PayloadRejected, check_payload
from ..school_time import school_today
from .rows import (
    DEVICE_KEY_ROW,
    ENTRY_COLUMNS,
    JOURNAL_ROWS,
    LOCKED_JOURNAL_ROWS,
    insert_entries,
    lesson_rows,
    recorded,
    reserve,
    student_rows,
    superseded_entry,
)

_M = TypeVar("_M")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
Status = Literal["accepted", "duplicate", "conflict", "rejected", "quarantined"]
# Where a pending row (``rows.ENTRY_COLUMNS``' order) holds its key and the device's seq.
_DEVICE_KID, _DEVICE_SEQ = ENTRY_COLUMNS.index("device_kid"), ENTRY_COLUMNS.index("device_seq")


class EntryRefused(Exception):
    """An entry that does not enter the log, with the per-entry status the sync API reports."""

    def __init__(self, status: Status, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"EntryRefused({self.status!r}, {self.code!r}, {self.message!r})"


class Signed(NamedTuple):
    """An entry ``Recorder.check_signed`` passed: what checking its signature, and then the
    rest of it, reads."""

    parsed: dict[str, Any]
    payload_bytes: bytes
    facts: PayloadFacts
    sig: bytes
    alg: str
    public_key: bytes
    now: dt.datetime


class Recorded(NamedTuple):
    """What became of an entry that entered the log (or was there already). A named tuple, as
    PayloadFacts: one is made for each entry a sync batch takes."""

    status: Literal["accepted", "duplicate"]
    entry_id: str
    log_id: int
    seq: int


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
        self._pending: dict[int, list[tuple[Any, ...]]] = {}  # rows in rows.ENTRY_COLUMNS order
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
        signed = self.check_signed(parsed, from_text=from_text)
        return self.record_signed(signed, verified=self.verify(signed))

    def check_signed(self, parsed: dict[str, Any], *, from_text: bool = False) -> Signed:
        """What ``record_parsed`` checks before the signature: the payload, the signature's
        form and the key that must have made it (EntryRefused otherwise)."""
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
        return Signed(parsed, payload_bytes, facts, sig, alg, public_key, now)

    @staticmethod
    def verify(signed: Signed) -> bool:
        """Whether the entry's signature is good (check_signed found the key)."""
        return ledger_entry.verify_payload(
            signed.alg, signed.public_key, signed.payload_bytes, signed.sig
        )

    def record_signed(self, signed: Signed, *, verified: bool) -> Recorded:
        """The rest of ``record_parsed``, once ``verify`` said whether the signature is good:
        a sync batch checks all of its signatures in one run first (``verify`` between the
        other checks of each entry cost each more: the two evict each other from the caches).
        """
        if not verified:
            raise EntryRefused(
                "rejected", "bad_signature", "the signature does not match the entry"
            )
        parsed, payload_bytes, facts, sig, _alg, _key, now = signed
        payload = parsed["payload"]

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
        """What checking reads of a device key, as a plain row: once per key for a batch
        received at one moment (``now``), else afresh for each entry (a key revoked meanwhile)."""
        if self.now is None:
            return self.session.execute(DEVICE_KEY_ROW, {"kid": kid}).first()
        if kid not in self._device_rows:
            self._device_rows[kid] = self.session.execute(DEVICE_KEY_ROW, {"kid": kid}).first()
        return self._device_rows[kid]

    def _journal(self, origin: str) -> Log:
        if origin not in self._logs:
            # With its class, school and the terms of its year (a row each), which checking
            # its entries reads next: one round trip instead of four. A sync batch on
            # PostgreSQL reserves the log here too (see _reserve_seq): its entries are checked
            # next and most are appended; a batch whose entries are all refused holds the lock
            # to its commit for nothing, which costs other writers of the journal a short wait.
            lock = self.deferred and self.session.get_bind().dialect.name == "postgresql"
            if lock:
                found = self.session.execute(
                    LOCKED_JOURNAL_ROWS, {"origin": origin, **lock_wait_params()}
                ).all()
            else:
                found = self.session.execute(JOURNAL_ROWS, {"origin": origin}).all()
            self._logs[origin] = None
            if found:
                self._logs[origin], class_group, school, *_rest = found[0]
                if lock:
                    self._sizes.setdefault(found[0][0].id, found[0].locked_size)
                    _pending_recorders(self.session).add(self)
                if class_group is not None:
                    self._rows[(ClassGroup, class_group.id)] = class_group
                    terms = [row[3] for row in found if row[3] is not None]  # Term
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
                    ~superseded_entry(),
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
        from ..year.results import TermBook, YearBook, year_grade_cell
        from ..year.rules import grading_rules, rule_for_subject

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
            rows = self.session.execute(recorded(postgres), {"ids": array_value(part, postgres)})
            for row in rows:
                payload = ledger_entry.parse_leaf(row.leaf).payload_bytes
                self._known[row.entry_id] = (row.log_id, row.seq, payload)
                self.cells[row.entry_id] = (row.log_id, row.cell)

    def prefetch_rows(self, payloads: list[Any]) -> None:
        """Load a batch's lessons (with their subjects and whether the batch's authors teach
        them), students and their enrollments in two queries, instead of one look-up per new
        lesson or student while checking (the sync API's batches)."""

        # Only well-formed ids: anything else is refused later, entry by entry, by check_payload.
        lesson_ids: set[int] = set()
        student_ids: set[int] = set()
        authors: set[int] = set()
        for payload in payloads:
            if isinstance(payload, dict):
                for name, found in (("lesson", lesson_ids), ("student", student_ids)):
                    value = payload.get(name)
                    if type(value) is int and 1 <= value <= MAX_ID:
                        found.add(value)
                author = payload.get("author")
                if type(author) is int and 1 <= author <= MAX_ID:
                    authors.add(author)
        lesson_ids = {i for i in lesson_ids if (Lesson, i) not in self._rows}
        postgres = self.session.get_bind().dialect.name == "postgresql"
        classes = set()
        taught: set[tuple[int, int]] = set()  # (class, subject) of the lessons
        assigned: set[tuple[int, int, int]] = set()  # (author, class, subject) found
        for lesson, subject, teacher in self.session.execute(
            lesson_rows(postgres),
            {
                "lessons": array_value(lesson_ids, postgres),
                "authors": array_value(authors, postgres),
            },
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
        for pair in wanted:
            self._enrolled[pair] = []
        if new_students:
            # With their enrollments in the lessons' classes (one row per enrollment), as plain
            # rows: checking reads a student's school and an enrollment's dates, nothing else,
            # and ORM objects for a class's pupils cost more than the batch's other look-ups.
            for row in self.session.execute(
                student_rows(postgres),
                {
                    "students": array_value(new_students, postgres),
                    "classes": array_value(classes, postgres),
                },
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
                pair = (enrollment.student_id, enrollment.class_group_id)
                if pair in rest:
                    self._enrolled[pair].append(enrollment)

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
                reserve(postgres), {"log_id": log_id, **lock_wait_params()}
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
        """Write the pooled rows: one COPY (PostgreSQL) or INSERT ... executemany per log, then
        the new sizes."""
        if not self._pending and not self._pending_supersessions:
            return
        for log_id, rows in self._pending.items():
            insert_entries(self.session, rows, log_size=(log_id, self._sizes[log_id]))
            for row in rows:
                self._unfolded.setdefault(row[_DEVICE_KID], []).append(row[_DEVICE_SEQ])
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

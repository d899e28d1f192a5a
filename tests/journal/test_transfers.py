"""A pupil moves to another school: the old school prints a one-time transfer code, the new one
enters it with the IIN. A lookup by IIN alone tells nothing about any other school, and every
lookup leaves an access-log row with the keyed hash of the IIN, never the IIN."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pytest
from flask import g
from sqlalchemy import func, select

from auth.iin import iin_lookup_hash
from auth.models import AccessLogEntry, LoginFailure, RoleGrant
from auth.signin import CODE_LIMIT
from journal.models import Enrollment, Student, TransferCode
from journal.school_setup import (
    SetupError,
    admit_transferred_student,
    issue_transfer_code,
    record_leaving,
)

from ..conftest import TEST_IIN_HMAC_KEY
from ..factories import NOW, add_user, build_world
from .test_school_setup import _iin, _student_with_iin, csrf_token, flashes, sign_in

ADDRESS = "192.0.2.7"
ARRIVAL = dt.date(2026, 11, 9)


class Move:
    """A pupil of the old school (left on 6 November, a parent linked) and the new school."""

    def __init__(self, app, world, session) -> None:  # type: ignore[no-untyped-def]
        self.session = session
        self.old = world
        self.iin = _iin()
        self.hash = iin_lookup_hash(self.iin, TEST_IIN_HMAC_KEY)
        self.pupil = _student_with_iin(session, world.school, self.iin)
        self.enrollment = Enrollment(
            student_id=self.pupil.id,
            class_group_id=world.class_group.id,
            starts_on=dt.date(2026, 9, 1),
        )
        session.add(self.enrollment)
        self.parent = add_user(session, world.school, "parent")
        self.parent.roles[0].student_id = self.pupil.id
        self.old_admin = add_user(session, world.school, "school_admin")
        self.new = build_world(session, app.config["KEYS_DIR"])
        self.new_admin = add_user(session, self.new.school, "school_admin")
        session.flush()

    def leave(self) -> None:
        record_leaving(self.session, self.enrollment, dt.date(2026, 11, 6))

    def issue(self, now: dt.datetime = NOW) -> str:
        _row, code = issue_transfer_code(
            self.session, self.old.school, self.pupil, actor=self.old_admin, ip=None, now=now
        )
        return code

    def admit(self, code: str = "", iin: str | None = None, now: dt.datetime = NOW):  # type: ignore[no-untyped-def]
        return admit_transferred_student(
            self.session,
            self.new.school,
            iin or self.iin,
            self.new.class_group,
            ARRIVAL,
            hmac_key=TEST_IIN_HMAC_KEY,
            transfer_code=code,
            actor=self.new_admin,
            address=ADDRESS,
            now=now,
        )

    def counts(self) -> dict[str, int]:
        """Everything an admission writes, but the access log."""
        session = self.session
        return {
            "students": session.scalar(select(func.count()).select_from(Student)),
            "enrollments": session.scalar(select(func.count()).select_from(Enrollment)),
            "grants": session.scalar(select(func.count()).select_from(RoleGrant)),
            "codes used": session.scalar(
                select(func.count())
                .select_from(TransferCode)
                .where(TransferCode.used_at.is_not(None))
            ),
        }

    def failures(self, address: str = ADDRESS) -> int:
        failed = select(func.count()).select_from(LoginFailure)
        return int(self.session.scalar(failed.where(LoginFailure.address == address)) or 0)

    def lookups(self) -> list[AccessLogEntry]:
        return list(
            self.session.scalars(
                select(AccessLogEntry)
                .where(AccessLogEntry.action.like("admit.lookup_iin%"))
                .order_by(AccessLogEntry.id)
            )
        )


@pytest.fixture
def move(app, world, session) -> Move:  # type: ignore[no-untyped-def]
    return Move(app, world, session)


def test_an_iin_alone_finds_nothing_in_another_school_and_says_nothing_about_it(move):
    before = move.counts()
    for moment in ("still enrolled", "left"):
        if moment == "left":
            move.leave()
        with pytest.raises(SetupError) as refused:
            move.admit()
        message = str(refused.value)
        assert "No student with this IIN in this school" in message, moment
        assert move.old.school.name not in message
    assert move.counts() == before
    rows = move.lookups()
    assert [(r.school_id, r.actor_id, r.target_type, r.target_id) for r in rows] == [
        (move.new.school.id, move.new_admin.id, "iin", move.hash.hex())
    ] * 2


def test_the_old_schools_code_with_the_iin_admits_the_pupil_and_the_parent_follows(move):
    move.leave()
    code = move.issue()
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", code)
    stored = move.session.scalar(select(TransferCode))
    # Only the code's hash is kept.
    assert stored.code_hash == hashlib.sha256(code.replace("-", "").encode()).digest()
    admitted = move.admit(code.lower().replace("-", " "))  # typed as it comes
    copy = move.session.get(Student, admitted.student_id)
    assert copy.school_id == move.new.school.id and copy.full_name == move.pupil.full_name
    assert copy.iin_hmac == move.hash
    assert admitted.class_group_id == move.new.class_group.id and admitted.starts_on == ARRIVAL
    grants = {(g.role, g.school_id, g.student_id) for g in move.parent.roles}
    assert ("parent", move.new.school.id, copy.id) in grants
    assert ("parent", move.old.school.id, move.pupil.id) in grants
    move.session.refresh(stored)
    assert stored.used_by_id == move.new_admin.id and stored.admitted_student_id == copy.id
    logged = {
        (r.school_id, r.action, r.target_type, r.target_id)
        for r in move.session.scalars(select(AccessLogEntry))
    }
    assert {
        (move.old.school.id, "transfer_code.issue", "student", str(move.pupil.id)),
        (move.new.school.id, "admit.lookup_iin_with_code", "iin", move.hash.hex()),
        (move.new.school.id, "admit.student", "student", str(copy.id)),
        (move.old.school.id, "transfer_code.redeemed", "student", str(move.pupil.id)),
    } <= logged
    assert not [t for *_, t in logged if t and move.iin in t]
    # The code works once.
    before = move.counts()
    with pytest.raises(SetupError, match="has been used"):
        move.admit(code)
    assert move.counts() == before


def test_a_wrong_code_counts_against_the_address_and_writes_nothing_else(move):
    move.leave()
    code = move.issue()
    other = _student_with_iin(move.session, move.old.school, _iin("12020250033"))
    before, failures = move.counts(), move.failures()
    wrong = [
        "AAAA-BBBB-CCCC",  # no such code
        code.replace(code[0], "2" if code[0] != "2" else "3"),  # one sign off
    ]
    for attempt in wrong:
        with pytest.raises(SetupError, match="does not match this IIN"):
            move.admit(attempt)
    # The right code with another pupil's IIN is as wrong, and says no more.
    with pytest.raises(SetupError, match="does not match this IIN"):
        move.admit(code, iin=_iin("12020250033"))
    assert move.counts() == before
    assert move.failures() == failures + 3
    assert other.school_id == move.old.school.id
    assert len(move.lookups()) == 3
    # The code itself still works for its own pupil.
    assert move.admit(code).class_group_id == move.new.class_group.id


def test_after_too_many_wrong_codes_the_address_waits_even_with_the_right_code(move):
    move.leave()
    code = move.issue()
    for _ in range(CODE_LIMIT):
        with pytest.raises(SetupError, match="does not match"):
            move.admit("AAAA-BBBB-CCCC")
    before, failures = move.counts(), move.failures()
    with pytest.raises(SetupError, match="Too many wrong codes"):
        move.admit(code)
    assert move.counts() == before and move.failures() == failures


def test_a_code_expires_and_a_newer_one_ends_the_older(move):
    move.leave()
    first = move.issue(now=NOW - dt.timedelta(days=31))
    with pytest.raises(SetupError, match="expired"):
        move.admit(first)
    older = move.issue(now=NOW - dt.timedelta(days=1))
    newer = move.issue()
    with pytest.raises(SetupError, match="expired"):
        move.admit(older)
    assert move.admit(newer).class_group_id == move.new.class_group.id


def test_a_code_is_printed_only_after_the_leaving_and_only_by_the_pupils_school(move):
    with pytest.raises(SetupError, match="Record that the student leaves first"):
        move.issue()
    move.leave()
    with pytest.raises(SetupError, match="No such student in this school"):
        issue_transfer_code(
            move.session, move.new.school, move.pupil, actor=move.new_admin, ip=None, now=NOW
        )
    assert move.session.scalar(select(func.count()).select_from(TransferCode)) == 0


def test_the_old_school_must_have_recorded_the_leaving_before_the_arrival(move):
    record_leaving(move.session, move.enrollment, dt.date(2026, 11, 20))  # after 9 November
    code = move.issue()
    before = move.counts()
    with pytest.raises(SetupError, match="has not recorded that the student leaves"):
        move.admit(code)
    assert move.counts() == before


def test_a_pupil_who_comes_back_is_found_in_the_own_school_without_a_code(move, session):
    move.leave()
    back = admit_transferred_student(
        session,
        move.old.school,
        move.iin,
        move.old.class_group,
        dt.date(2026, 12, 1),
        hmac_key=TEST_IIN_HMAC_KEY,
        actor=move.old_admin,
        address=ADDRESS,
        now=NOW,
    )
    assert back.student_id == move.pupil.id


def test_the_letter_and_the_admission_through_the_pages(app, move, session):
    move.leave()
    old = app.test_client()
    sign_in(old, move.old_admin)
    roster = old.get(f"/setup/classes/{move.old.class_group.id}/students").get_data(as_text=True)
    assert f"/setup/students/{move.pupil.id}/transfer-code" in roster
    token = csrf_token(old, "/setup/")
    letter = old.post(f"/setup/students/{move.pupil.id}/transfer-code", data={"csrf_token": token})
    assert letter.status_code == 200
    html = letter.get_data(as_text=True)
    code = re.search(r"<code>([A-Z2-9-]{14})</code>", html).group(1)
    assert move.pupil.full_name in html and move.old.school.name in html

    new = app.test_client()
    sign_in(new, move.new_admin)
    g.pop("csrf_token", None)  # the test's app context outlives each request (Flask-WTF's cache)
    token = csrf_token(new, "/setup/")
    url = f"/setup/years/{move.new.year.id}/admit"
    form = {"csrf_token": token, "iin": move.iin, "class_group": move.new.class_group.id}
    form["on_date"] = ARRIVAL.isoformat()
    without = new.post(url, data=form).get_data(as_text=True)
    assert any("No student with this IIN in this school" in f for f in flashes(without))
    assert move.old.school.name not in without
    wrong = new.post(url, data={**form, "transfer_code": "AAAA-BBBB-CCCC"})
    assert any("does not match" in f for f in flashes(wrong.get_data(as_text=True)))
    assert "AAAA-BBBB-CCCC" not in wrong.get_data(as_text=True)  # never shown back
    # Refused lookups stay on record (the view commits them).
    session.rollback()
    assert len(move.lookups()) == 2 and move.failures("127.0.0.1") == 1
    done = new.post(url, data={**form, "transfer_code": code}, follow_redirects=True)
    assert any("admitted" in f for f in flashes(done.get_data(as_text=True)))
    assert session.scalar(
        select(Student).where(
            Student.school_id == move.new.school.id, Student.iin_hmac == move.hash
        )
    )

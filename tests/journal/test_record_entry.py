"""record_entry: what enters a journal, once, and what never does."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from sqlalchemy import func, select

from journal.ledger import entry as ledger_entry
from journal.models import Entry, Log, Supersession, TeachingAssignment
from journal.recording.recorder import EntryRefused, correct_entry, record_entry

from ..factories import NOW, add_user

pytestmark = pytest.mark.usefixtures("session")


def count_entries(world) -> int:
    return world.session.scalar(select(func.count()).select_from(Entry))


def test_accepts_a_signed_grade_and_appends_seq_zero(world):
    result = record_entry(world.session, world.signed("grade"), now=NOW)
    assert (result.status, result.seq) == ("accepted", 0)
    stored = world.session.scalar(select(Entry).where(Entry.entry_id == result.entry_id))
    record = ledger_entry.parse_leaf(stored.leaf)
    assert record.payload["value"] == {"score": 8}
    assert record.received_at == "2026-11-21T10:00:00Z"
    assert world.session.get(Log, world.log.id).size == 1


def test_seqs_follow_one_another(world):
    seqs = [
        record_entry(world.session, world.signed("attendance", student=s.id), now=NOW).seq
        for s in [world.add_student() for _ in range(5)]
    ]
    assert seqs == [0, 1, 2, 3, 4]


def test_p256_signatures_are_accepted(world):
    device = world.add_device(alg="ecdsa-p256")
    result = record_entry(world.session, world.signed("topic", device=device), now=NOW)
    assert result.status == "accepted"


def test_same_entry_twice_is_a_duplicate_with_the_original_seq(world):
    submission = world.signed("grade")
    record_entry(world.session, world.signed("topic"), now=NOW)
    first = record_entry(world.session, submission, now=NOW)
    again = record_entry(world.session, json.dumps(submission).encode(), now=NOW)
    assert (again.status, again.seq) == ("duplicate", first.seq)
    assert count_entries(world) == 2


def test_raw_bytes_are_accepted_like_parsed_json(world):
    raw = json.dumps(world.signed("attendance"), ensure_ascii=False).encode()
    assert record_entry(world.session, raw, now=NOW).status == "accepted"


def refused(world, submission, status: str, code: str) -> EntryRefused:
    before = count_entries(world)
    with pytest.raises(EntryRefused) as caught:
        record_entry(world.session, submission, now=NOW)
    assert (caught.value.status, caught.value.code) == (status, code), caught.value.message
    assert caught.value.message  # a sentence a person can read
    assert count_entries(world) == before, "a refused entry must write nothing"
    return caught.value


def test_bad_signature(world):
    submission = world.signed("grade")
    submission["payload"]["value"] = {"score": 10}  # changed after signing
    refused(world, submission, "rejected", "bad_signature")


def test_signature_not_base64(world):
    submission = world.signed("grade")
    submission["sig"] = "not base64!"
    refused(world, submission, "rejected", "bad_signature")


def test_unknown_key(world):
    from ..factories import Device

    stranger = Device("0" * 32, "ed25519", world.device.private_key, world.teacher.id)
    refused(world, world.signed("grade", device=stranger), "quarantined", "unknown_key")


def test_revoked_key(world):
    from auth.models import DeviceKey

    world.session.get(DeviceKey, world.device.kid).revoked_at = NOW - dt.timedelta(days=1)
    world.session.flush()
    refused(world, world.signed("grade"), "quarantined", "revoked_key")


def test_entries_signed_before_revocation_are_still_accepted(world):
    from auth.models import DeviceKey

    world.session.get(DeviceKey, world.device.kid).revoked_at = NOW + dt.timedelta(hours=1)
    world.session.flush()
    assert record_entry(world.session, world.signed("grade"), now=NOW).status == "accepted"


def test_author_not_assigned(world):
    other = add_user(world.session, world.school)
    device = world.add_device(user=other)
    refused(world, world.signed("grade", device=device), "rejected", "not_assigned")


def test_assignment_to_another_subject_does_not_count(world):
    from journal.models import Subject

    other = add_user(world.session, world.school)
    physics = Subject(school_id=world.school.id, name="Физика")
    world.session.add(physics)
    world.session.flush()
    world.session.add(
        TeachingAssignment(
            user_id=other.id, class_group_id=world.class_group.id, subject_id=physics.id
        )
    )
    device = world.add_device(user=other)
    refused(world, world.signed("grade", device=device), "rejected", "not_assigned")


def test_key_of_another_user(world):
    other = add_user(world.session, world.school)
    device = world.add_device(user=other)
    submission = device.sign(world.payload("grade", device=device, author=world.teacher.id))
    refused(world, submission, "rejected", "not_authors_key")


def test_unknown_student(world):
    refused(world, world.signed("grade", student=999_999), "rejected", "unknown_student")


def test_student_not_enrolled_that_day(world):
    from journal.models import Enrollment

    late = world.add_student(enrolled=False)
    world.session.add(
        Enrollment(
            student_id=late.id,
            class_group_id=world.class_group.id,
            starts_on=world.lesson.date + dt.timedelta(days=1),
        )
    )
    world.session.flush()
    refused(world, world.signed("grade", student=late.id), "rejected", "not_enrolled")


def test_closed_term(world):
    world.q2.closed_at = NOW
    world.session.flush()
    refused(world, world.signed("grade"), "rejected", "closed_term")


@pytest.mark.parametrize(
    ("component", "value"),
    [
        ("FO", {"score": 11}),
        ("FO", {"score": 0}),
        ("FO", {"score": True}),
        ("SOR", {"points": 16, "max": 15}),
        ("SOCh", {"points": -1, "max": 30}),
        ("mark", {"score": 6}),
    ],
)
def test_value_out_of_scale(world, component, value):
    refused(
        world, world.signed("grade", component=component, value=value), "rejected", "out_of_scale"
    )


def test_attendance_value_out_of_scale(world):
    refused(world, world.signed("attendance", value="present"), "rejected", "out_of_scale")


@pytest.mark.parametrize("where", ["value", "top", "nested"])
def test_a_float_anywhere_in_the_payload(world, where):
    submission = world.signed("grade")
    raw = json.dumps(submission)
    if where == "value":
        raw = raw.replace('"score": 8', '"score": 8.0')
    elif where == "top":
        raw = raw.replace('"v": 1', '"v": 1.0')
    else:
        raw = raw.replace('"score": 8', '"score": 8, "extra": [1, {"x": 1e3}]')
    refused(world, raw.encode(), "rejected", "float")


def test_a_float_in_a_parsed_payload(world):
    submission = world.signed("grade")
    submission["payload"]["value"] = {"score": 8.5}
    refused(world, submission, "rejected", "float")


def test_oversized_payload(world):
    submission = world.signed("topic", topic="ә" * 1000, homework="ү" * 1000)
    refused(world, submission, "rejected", "too_large")
    raw = json.dumps(world.signed("topic", topic="x" * 20000)).encode()
    refused(world, raw, "rejected", "too_large")


def test_same_entry_id_with_other_bytes_is_a_conflict(world):
    first = world.signed("grade")
    record_entry(world.session, first, now=NOW)
    payload = dict(first["payload"], value={"score": 3})
    refused(world, world.device.sign(payload), "conflict", "entry_id_reused")


@pytest.mark.parametrize("raw", [b"{", b"[]", b"\xff\xfe", b'{"payload": 1}', b"null"])
def test_malformed_json(world, raw):
    with pytest.raises(EntryRefused) as caught:
        record_entry(world.session, raw, now=NOW)
    assert caught.value.status == "rejected"
    assert caught.value.code in {"malformed_json", "not_object", "bad_field"}
    assert count_entries(world) == 0


def test_unknown_journal(world):
    refused(
        world,
        world.signed("grade", journal="elsewhere.kz/journal/2026-2027/1"),
        "rejected",
        "unknown_journal",
    )


def test_lesson_of_another_class(world):
    refused(world, world.signed("grade", lesson=999_999), "rejected", "unknown_lesson")


def test_ungraded_subject_refuses_grades_but_takes_attendance(world):
    world.subject.graded = False
    world.session.flush()
    refused(world, world.signed("grade"), "rejected", "not_graded")
    assert record_entry(world.session, world.signed("attendance"), now=NOW).status == "accepted"


def test_correction_supersedes_and_requires_a_reason(world):
    original = record_entry(world.session, world.signed("grade"), now=NOW)
    refused(
        world,
        world.signed(
            "correction",
            corrects="grade",
            component="FO",
            supersedes=[original.entry_id],
            reason=" ",
            value={"score": 9},
        ),
        "rejected",
        "reason_required",
    )
    fixed = correct_entry(
        world.session,
        world.signed(
            "correction",
            corrects="grade",
            component="FO",
            supersedes=[original.entry_id],
            reason="Қате енгізілді / typo",
            value={"score": 9},
        ),
        now=NOW,
    )
    assert fixed.seq == 1
    assert world.session.scalars(select(Supersession.superseded_entry_id)).all() == [
        original.entry_id
    ]


def test_correction_may_void_an_entry(world):
    original = record_entry(world.session, world.signed("attendance"), now=NOW)
    fixed = correct_entry(
        world.session,
        world.signed(
            "correction",
            corrects="attendance",
            supersedes=[original.entry_id],
            reason="was present",
            value="void",
        ),
        now=NOW,
    )
    assert fixed.status == "accepted"


def test_correction_of_another_cell_is_refused(world):
    original = record_entry(world.session, world.signed("grade"), now=NOW)
    other = world.add_student()
    refused(
        world,
        world.signed(
            "correction",
            corrects="grade",
            component="FO",
            student=other.id,
            supersedes=[original.entry_id],
            reason="wrong",
            value={"score": 5},
        ),
        "rejected",
        "bad_supersedes",
    )


def test_correct_entry_only_takes_corrections(world):
    with pytest.raises(EntryRefused) as caught:
        correct_entry(world.session, world.signed("grade"), now=NOW)
    assert caught.value.code == "not_a_correction"


def test_signature_is_over_the_context_and_jcs_bytes(world):
    submission = world.signed("grade")
    payload_bytes = ledger_entry.canonical_json(submission["payload"])
    sig = base64.b64decode(submission["sig"])
    public_key = world.device.private_key.public_key()
    public_key.verify(sig, b"class-journal/entry/v1\n" + payload_bytes)


def test_a_summative_lesson_has_one_maximum(world):
    """The first СОР result sets the lesson's maximum; a result out of another is refused with
    a sentence saying so, and writes nothing; a correction of the only result may change it."""
    first = record_entry(
        world.session,
        world.signed("grade", component="SOR", value={"points": 7, "max": 10}),
        now=NOW,
    )
    other = world.add_student()
    caught = refused(
        world,
        world.signed("grade", component="SOR", student=other.id, value={"points": 12, "max": 15}),
        "rejected",
        "max_differs",
    )
    assert "10" in caught.message and "15" in caught.message
    same = world.signed("grade", component="SOR", student=other.id, value={"points": 9, "max": 10})
    assert record_entry(world.session, same, now=NOW).status == "accepted"
    # Another component of the same lesson has its own maximum.
    soch = world.signed("grade", component="SOCh", value={"points": 20, "max": 30})
    assert record_entry(world.session, soch, now=NOW).status == "accepted"
    # With two results out of 10, changing one of them to 15 is refused too.
    refused(
        world,
        world.signed(
            "correction",
            corrects="grade",
            component="SOR",
            supersedes=[first.entry_id],
            reason="max was 15",
            value={"points": 12, "max": 15},
        ),
        "rejected",
        "max_differs",
    )

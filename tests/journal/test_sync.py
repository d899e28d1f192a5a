"""The sync API (DESIGN §6), the teacher's grid page and the import of exported outbox files.

Every API answer checked here is also validated against docs/openapi.yaml.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from flask import g
from flask_babel import refresh
from hypothesis import given
from hypothesis import strategies as st
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from sqlalchemy.orm import object_session
from werkzeug.test import EnvironBuilder

from auth.models import DeviceKey
from exports.queries import term_grades
from journal.db import TextArray, db, text_array
from journal.grid.importing import EXPORT_FORMAT, IMPORT_MAX_BYTES
from journal.grid.shell import PAGES_OWNER_COOKIE
from journal.ledger import entry as ledger_entry
from journal.models import Entry, Lesson, TeachingAssignment
from journal.sync import QuarantinedSubmission, replay_quarantined, upload_batch

from ..factories import NOW, Device, add_device, add_user, browser_state, build_world

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    return OpenAPI.from_file_path(str(SPEC_PATH))


class Browser:
    """A signed-in teacher's browser: session cookie, CSRF header, answers checked by the spec."""

    def __init__(self, app, openapi: OpenAPI) -> None:
        self.app = app
        self.client = app.test_client()
        self.openapi = openapi
        self.csrf = ""

    def sign_in(self, user, *, second_factor: bool = True) -> None:
        # The assertions read English messages.
        values = browser_state(
            object_session(user), user, second_factor=second_factor, language="en"
        )
        with self.client.session_transaction() as state:
            state.clear()
            state.update(values)
        self.csrf = self.get("/api/sync/session").json["csrf_token"]

    def sign_out(self) -> None:
        with self.client.session_transaction() as state:
            state.clear()

    def _checked(self, response, sent=None):  # type: ignore[no-untyped-def]
        if response.request.path.startswith("/api/sync"):
            self.openapi.validate_response(
                WerkzeugOpenAPIRequest(sent or response.request), WerkzeugOpenAPIResponse(response)
            )
        return response

    def get(self, path: str, **kwargs):  # type: ignore[no-untyped-def]
        g.pop("current_user", None)  # the test's app context outlives each request
        return self._checked(self.client.get(path, **kwargs))

    def post(self, path: str, body, *, csrf: bool = True):  # type: ignore[no-untyped-def]
        g.pop("current_user", None)
        headers = {"X-CSRFToken": self.csrf} if csrf else {}
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False)
        response = self.client.post(
            path, data=data, headers=headers, content_type="application/json"
        )
        # The view consumed the body; the spec checks a copy of the same request.
        cookie = self.client.get_cookie("session")
        if cookie is not None:
            headers["Cookie"] = f"session={cookie.value}"
        sent = EnvironBuilder(
            path, method="POST", data=data, headers=headers, content_type="application/json"
        ).get_request()
        if response.status_code == 200:
            self.openapi.validate_request(WerkzeugOpenAPIRequest(sent))
        return self._checked(response, sent)

    def upload(self, *submissions):  # type: ignore[no-untyped-def]
        response = self.post("/api/sync/entries", {"entries": list(submissions)})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.json

    def form(self, path: str, file: bytes, *, csrf: bool = True):  # type: ignore[no-untyped-def]
        """Post a file as a browser's multipart form does (built here: the test client would
        leave a large upload's temporary file open)."""
        g.pop("current_user", None)
        html = self.client.get(path).get_data(as_text=True)
        token = html.split('name="csrf_token" type="hidden" value="', 1)[1].split('"', 1)[0]
        boundary = "----journal-test-boundary"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
            f"{token if csrf else ''}\r\n".encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="export.json"\r\nContent-Type: application/json\r\n\r\n'.encode(),
            file,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
        g.pop("current_user", None)
        return self.client.post(
            path, data=b"".join(parts), content_type=f"multipart/form-data; boundary={boundary}"
        )


@pytest.fixture
def browser(app, world, openapi) -> Browser:  # type: ignore[no-untyped-def]
    browser = Browser(app, openapi)
    browser.sign_in(world.teacher)
    return browser


def stored(world, entry_id: str) -> int:
    return world.session.scalar(
        sa.select(sa.func.count()).select_from(Entry).where(Entry.entry_id == entry_id)
    )


def statuses(body) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    return [(r["status"], r.get("code")) for r in body["results"]]


# -- upload ------------------------------------------------------------------------------------


def test_accepted_entries_get_their_seq_and_are_stored_once(browser, world):
    first, second = world.signed("grade"), world.signed("attendance")
    body = browser.upload(first, second)
    assert statuses(body) == [("accepted", None), ("accepted", None)]
    assert [r["seq"] for r in body["results"]] == [0, 1]
    assert body["results"][0]["journal"] == world.log.origin
    assert stored(world, first["payload"]["entry_id"]) == 1


def test_the_same_entry_again_is_a_duplicate_with_the_original_seq(browser, world):
    submission = world.signed("grade")
    browser.upload(world.signed("topic"))
    seq = browser.upload(submission)["results"][0]["seq"]
    again = browser.upload(submission)["results"][0]
    assert (again["status"], again["seq"]) == ("duplicate", seq)
    assert stored(world, submission["payload"]["entry_id"]) == 1


def test_the_same_id_with_other_bytes_is_a_conflict_and_not_applied(browser, world):
    submission = world.signed("grade")
    browser.upload(submission)
    other = world.device.sign({**submission["payload"], "value": {"score": 3}})
    assert statuses(browser.upload(other)) == [("conflict", "entry_id_reused")]
    leaf = world.session.scalar(
        sa.select(Entry.leaf).where(Entry.entry_id == submission["payload"]["entry_id"])
    )
    assert ledger_entry.parse_leaf(leaf).payload["value"] == {"score": 8}


def test_a_refused_entry_does_not_undo_the_rest_of_its_batch(browser, world):
    good_before, good_after = world.signed("grade"), world.signed("attendance")
    tampered = world.signed("grade")
    tampered["payload"]["value"] = {"score": 10}  # changed after signing
    body = browser.upload(good_before, tampered, good_after)
    assert statuses(body) == [
        ("accepted", None),
        ("rejected", "bad_signature"),
        ("accepted", None),
    ]
    assert body["results"][1]["message"]
    assert stored(world, tampered["payload"]["entry_id"]) == 0
    assert stored(world, good_after["payload"]["entry_id"]) == 1


def test_entries_of_another_author_are_not_taken(browser, world):
    colleague = add_user(world.session, world.school)
    world.session.add(
        TeachingAssignment(
            user_id=colleague.id,
            class_group_id=world.class_group.id,
            subject_id=world.subject.id,
        )
    )
    device = world.add_device(user=colleague)
    body = browser.upload(world.signed("grade", device=device))
    assert statuses(body) == [("rejected", "not_uploader")]


def test_unknown_key_is_quarantined_once_and_replayed_after_enrolment(browser, world):
    private_key = Ed25519PrivateKey.generate()
    alg, raw = ledger_entry.public_key_bytes(private_key.public_key())
    kid = ledger_entry.key_id(alg, raw)
    stranger = Device(kid, alg, private_key, world.teacher.id)
    submission = world.signed("grade", device=stranger)
    assert statuses(browser.upload(submission)) == [("quarantined", "unknown_key")]
    assert statuses(browser.upload(submission)) == [("quarantined", "unknown_key")]
    kept = world.session.scalars(
        sa.select(QuarantinedSubmission).where(QuarantinedSubmission.kid == kid)
    ).all()
    assert len(kept) == 1
    assert kept[0].entry_id == submission["payload"]["entry_id"]
    assert stored(world, submission["payload"]["entry_id"]) == 0

    world.session.add(DeviceKey(kid=kid, user_id=world.teacher.id, alg=alg, public_key=raw))
    world.session.flush()
    results = replay_quarantined(world.session, kid, now=NOW)
    assert [r.status for r in results] == ["accepted"]
    assert stored(world, submission["payload"]["entry_id"]) == 1


def test_a_revoked_key_is_quarantined(browser, world):
    key = world.session.get(DeviceKey, world.device.kid)
    key.revoked_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    world.session.flush()
    assert statuses(browser.upload(world.signed("grade"))) == [("quarantined", "revoked_key")]


def test_quarantine_is_append_only(browser, world):
    stranger = Device("1" * 32, "ed25519", world.device.private_key, world.teacher.id)
    browser.upload(world.signed("grade", device=stranger))
    with pytest.raises(sa.exc.DatabaseError), world.session.begin_nested():
        world.session.execute(sa.delete(QuarantinedSubmission))


def stranger_device(world, alg: str = "ed25519") -> Device:  # type: ignore[no-untyped-def]
    """A device of the world's teacher whose key the server has never seen."""
    private_key = (
        Ed25519PrivateKey.generate()
        if alg == "ed25519"
        else ec.generate_private_key(ec.SECP256R1())
    )
    alg_name, raw = ledger_entry.public_key_bytes(private_key.public_key())
    return Device(ledger_entry.key_id(alg_name, raw), alg_name, private_key, world.teacher.id)


def quarantined_rows(world) -> int:  # type: ignore[no-untyped-def]
    return world.session.scalar(sa.select(sa.func.count()).select_from(QuarantinedSubmission))


def _other_class_journal(world, app):  # type: ignore[no-untyped-def]
    return build_world(world.session, app.config["KEYS_DIR"])


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("a 3-byte signature", "bad_signature"),
        ("raw r||s for ECDSA", "bad_signature"),
        ("no such journal", "unknown_journal"),
        ("a journal the uploader does not teach", "not_assigned"),
        ("a lesson of another class", "unknown_lesson"),
    ],
)
def test_quarantine_takes_only_what_could_become_an_entry(browser, world, app, case, code):
    """An unknown key is no reason to keep anything: the signature must have its algorithm's
    shape and the journal must exist and be the uploader's; otherwise nothing is stored."""
    device = stranger_device(world, "ecdsa-p256" if "ECDSA" in case else "ed25519")
    submission = world.signed("grade", device=device)
    if case == "a 3-byte signature":
        submission["sig"] = "AAAA"
    elif case == "raw r||s for ECDSA":
        der = base64.b64decode(submission["sig"])
        r, s_ = decode_dss_signature(der)
        submission["sig"] = base64.b64encode(
            r.to_bytes(32, "big") + s_.to_bytes(32, "big")
        ).decode()
    elif case == "no such journal":
        submission = device.sign(world.payload("grade", device, journal="nowhere.kz/journal/x/1"))
    elif case == "a journal the uploader does not teach":
        other = _other_class_journal(world, app)
        payload = world.payload(
            "grade",
            device,
            journal=other.log.origin,
            lesson=other.lesson.id,
            student=other.student.id,
        )
        submission = device.sign(payload)
    else:
        other = _other_class_journal(world, app)
        submission = device.sign(world.payload("grade", device, lesson=other.lesson.id))
    body = browser.upload(submission)
    assert statuses(body) == [("rejected", code)]
    assert body["results"][0]["message"]
    assert quarantined_rows(world) == 0


def test_a_well_formed_ecdsa_entry_with_an_unknown_key_is_quarantined(browser, world):
    submission = world.signed("grade", device=stranger_device(world, "ecdsa-p256"))
    assert statuses(browser.upload(submission)) == [("quarantined", "unknown_key")]
    assert quarantined_rows(world) == 1


def test_quarantine_has_a_daily_quota_per_uploader(browser, world, app, monkeypatch):
    monkeypatch.setitem(app.config, "SYNC_QUARANTINE_DAILY_QUOTA", 3)
    device = stranger_device(world)
    sent = [world.signed("grade", device=device) for _ in range(5)]
    body = browser.upload(*sent)
    assert (
        statuses(body)
        == [("quarantined", "unknown_key")] * 3 + [("rejected", "quarantine_full")] * 2
    )
    assert "enrol" in body["results"][3]["message"]
    assert quarantined_rows(world) == 3
    # A submission kept already is still quarantined when sent again; it counts once.
    assert statuses(browser.upload(sent[0])) == [("quarantined", "unknown_key")]
    assert quarantined_rows(world) == 3
    # The quota is one uploader's: a colleague's entries are quarantined as before.
    colleague = add_user(world.session, world.school)
    world.session.add(
        TeachingAssignment(
            user_id=colleague.id, class_group_id=world.class_group.id, subject_id=world.subject.id
        )
    )
    world.session.flush()
    theirs = Device("2" * 32, "ed25519", Ed25519PrivateKey.generate(), colleague.id)
    outcome = upload_batch(
        world.session, colleague, [world.signed("grade", device=theirs)], quarantine_quota=3
    )
    assert [r.status for r in outcome.results] == ["quarantined"]
    # A day later the teacher's quota is free again.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=25)
    outcome = upload_batch(world.session, world.teacher, sent[3:], now=later, quarantine_quota=3)
    assert [r.status for r in outcome.results] == ["quarantined", "quarantined"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b'{"entries": [{"payload": {"v": 1.5}}]}', 400, "malformed_json"),
        (b'{"entries": {}}', 400, "no_entries"),
        (b"[]", 400, "no_entries"),
    ],
)
def test_a_body_that_is_not_a_batch_is_refused_whole(browser, world, body, status, code):
    response = browser.post("/api/sync/entries", body)
    assert (response.status_code, response.json["error"]) == (status, code)
    assert response.json["message"]


def test_too_many_entries_in_one_batch(browser, world, app):
    limit = app.config["SYNC_MAX_BATCH"]
    submission = world.signed("grade")
    response = browser.post("/api/sync/entries", {"entries": [submission] * (limit + 1)})
    assert (response.status_code, response.json["error"]) == (413, "batch_too_large")
    assert stored(world, submission["payload"]["entry_id"]) == 0


def test_signed_out_gets_json_401_not_a_redirect(browser, world):
    browser.sign_out()
    for response in (
        browser.post("/api/sync/entries", {"entries": [world.signed("grade")]}),
        browser.get("/api/sync/session"),
        browser.get(f"/api/sync/pull?journal={world.log.origin}"),
    ):
        assert response.status_code == 401
        assert response.json["error"] == "signed_out"


def test_an_ended_session_gets_401(browser, world):
    from auth.sessions import end_sessions_of

    end_sessions_of(world.session, world.teacher.id, "reset", NOW)  # as a reset does
    response = browser.post("/api/sync/entries", {"entries": [world.signed("grade")]})
    assert (response.status_code, response.json["error"]) == (401, "signed_out")


def test_a_post_without_csrf_token_is_refused(browser, world):
    submission = world.signed("grade")
    response = browser.post("/api/sync/entries", {"entries": [submission]}, csrf=False)
    assert (response.status_code, response.json["error"]) == (400, "csrf")
    assert stored(world, submission["payload"]["entry_id"]) == 0


def test_staff_before_the_second_factor_get_401(app, world, openapi):
    browser = Browser(app, openapi)
    values = browser_state(world.session, world.teacher, second_factor=False)
    with browser.client.session_transaction() as state:
        state.update(values)
    assert browser.get("/api/sync/session").status_code == 401


def test_a_parent_cannot_upload(app, world, openapi):
    parent = add_user(world.session, world.school, "parent")
    browser = Browser(app, openapi)
    values = browser_state(world.session, parent)
    with browser.client.session_transaction() as state:
        state.update(values)
    g.pop("current_user", None)
    response = browser.client.get("/api/sync/session")
    assert response.status_code == 403
    assert response.is_json


# -- two heads, device_seq gaps ------------------------------------------------------------------


def test_two_devices_writing_one_cell_are_both_stored_and_flagged(browser, world):
    tablet = world.add_device()
    first = world.signed("grade", value={"score": 7})
    second = world.signed("grade", device=tablet, value={"score": 9})
    assert browser.upload(first)["conflicts"] == []
    body = browser.upload(second)
    cell = f"FO:{world.lesson.id}:{world.student.id}"
    assert body["conflicts"] == [
        {
            "journal": world.log.origin,
            "cell": cell,
            "heads": [first["payload"]["entry_id"], second["payload"]["entry_id"]],
        }
    ]
    resolution = world.signed(
        "correction",
        corrects="grade",
        component="FO",
        value={"score": 8},
        supersedes=[first["payload"]["entry_id"], second["payload"]["entry_id"]],
        reason="Екі құрылғыдан екі баға",
    )
    body = browser.upload(resolution)
    assert statuses(body) == [("accepted", None)]
    assert body["conflicts"] == []


def test_device_seq_gaps_and_reuse_are_reported(browser, world):
    entries = [world.signed("attendance", student=world.add_student().id) for _ in range(4)]
    del entries[2]  # device_seq 2 never arrives
    body = browser.upload(*entries)
    assert body["device_seq_gaps"] == [{"kid": world.device.kid, "missing": [[2, 2]], "reused": []}]
    clone = world.signed("topic", device_seq=1)
    body = browser.upload(clone)
    assert body["device_seq_gaps"][0]["reused"] == [1]
    report = browser.get(f"/api/sync/devices/{world.device.kid}/gaps").json
    assert report == {"kid": world.device.kid, "missing": [[2, 2]], "reused": [1]}


def test_no_gap_report_for_a_complete_device(browser, world):
    assert browser.upload(world.signed("grade"), world.signed("topic"))["device_seq_gaps"] == []


def test_gaps_of_someone_elses_key_are_not_shown(browser, world):
    other = add_device(world.session, add_user(world.session, world.school))
    response = browser.get(f"/api/sync/devices/{other.kid}/gaps")
    assert response.status_code == 404


# -- pull --------------------------------------------------------------------------------------


def test_pull_pages_through_the_log_by_cursor(browser, world):
    submissions = [world.signed("attendance", student=world.add_student().id) for _ in range(5)]
    browser.upload(*submissions)
    origin = f"{world.log.origin}&subject={world.subject.id}"
    page = browser.get(f"/api/sync/pull?journal={origin}&limit=2").json
    assert ([e["seq"] for e in page["entries"]], page["next"], page["more"]) == ([0, 1], 2, True)
    page = browser.get(f"/api/sync/pull?journal={origin}&limit=2&cursor=2").json
    assert [e["seq"] for e in page["entries"]] == [2, 3]
    page = browser.get(f"/api/sync/pull?journal={origin}&cursor=4").json
    assert ([e["seq"] for e in page["entries"]], page["next"], page["more"]) == ([4], 5, False)
    leaf = ledger_entry.parse_leaf(page["entries"][0]["leaf"].encode())
    assert leaf.payload == submissions[4]["payload"]
    page = browser.get(f"/api/sync/pull?journal={origin}&cursor=5").json
    assert (page["entries"], page["next"], page["size"]) == ([], 5, 5)


def test_each_pull_and_grid_view_is_recorded_in_the_access_log(browser, world):
    from auth.models import AccessLogEntry

    browser.get(f"/api/sync/pull?journal={world.log.origin}&subject={world.subject.id}")
    browser.get(grid_url(world))
    actions = world.session.scalars(
        sa.select(AccessLogEntry.action).where(AccessLogEntry.actor_id == world.teacher.id)
    ).all()
    assert "view:sync.pull" in actions and "view:teacher.grid" in actions


def test_pull_by_subject_skips_other_subjects_but_advances(browser, world):
    from journal.models import Subject

    physics = Subject(school_id=world.school.id, name="Физика")
    world.session.add(physics)
    world.session.flush()
    world.session.add(
        TeachingAssignment(
            user_id=world.teacher.id, class_group_id=world.class_group.id, subject_id=physics.id
        )
    )
    lesson = Lesson(
        class_group_id=world.class_group.id, subject_id=physics.id, date=world.lesson.date, period=5
    )
    world.session.add(lesson)
    world.session.flush()
    browser.upload(world.signed("topic", lesson=lesson.id), world.signed("grade"))
    url = f"/api/sync/pull?journal={world.log.origin}&subject={world.subject.id}"
    page = browser.get(url).json
    assert ([e["seq"] for e in page["entries"]], page["next"]) == ([1], 2)


def test_pull_of_a_class_the_teacher_does_not_teach_is_forbidden(app, world, openapi):
    stranger = add_user(world.session, world.school)
    browser = Browser(app, openapi)
    browser.sign_in(stranger)
    url = f"/api/sync/pull?journal={world.log.origin}&subject={world.subject.id}"
    assert browser.get(url).status_code == 403
    assert browser.get(f"/api/sync/pull?journal={world.log.origin}").status_code == 403


def test_a_subject_teacher_pulls_only_with_a_subject_and_the_class_teacher_all(
    browser, app, world, openapi
):
    browser.upload(world.signed("grade"))
    assert browser.get(f"/api/sync/pull?journal={world.log.origin}").status_code == 403
    head = add_user(world.session, world.school, "class_teacher")
    world.class_group.class_teacher_id = head.id
    world.session.flush()
    class_teacher = Browser(app, openapi)
    class_teacher.sign_in(head)
    page = class_teacher.get(f"/api/sync/pull?journal={world.log.origin}").json
    assert [e["seq"] for e in page["entries"]] == [0]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("journal=nowhere.kz/journal/x/1", 404),
        ("cursor=-1", 400),
        ("limit=0", 400),
        ("cursor=a", 400),
    ],
)
def test_pull_refuses_bad_parameters(browser, world, query, status):
    if not query.startswith("journal"):
        query = f"journal={world.log.origin}&{query}"
    response = browser.get(f"/api/sync/pull?{query}")
    assert response.status_code == status
    assert response.json["message"]


@pytest.mark.postgres_only
def test_pull_never_skips_a_row_under_concurrent_writers(backend, request):
    """Writers commit batches in parallel; a reader pulling all the while sees every seq once."""
    if backend != "postgresql":
        pytest.skip("row locking is what this checks; SQLite has one writer at a time")
    fresh_app = request.getfixturevalue("fresh_app")
    from journal.recording.recorder import Recorder
    from journal.sync import pull_entries

    writers, batches, per_batch = 4, 6, 20
    with fresh_app.app_context():
        world = build_world(db.session, fresh_app.config["KEYS_DIR"])
        devices = [add_device(db.session, world.teacher) for _ in range(writers)]
        students = [world.add_student() for _ in range(10)]
        work = [
            [
                [
                    world.signed("attendance", device=device, student=students[i % 10].id)
                    for i in range(per_batch)
                ]
                for _ in range(batches)
            ]
            for device in devices
        ]
        log_id = world.log.id
        db.session.commit()

    done = threading.Event()
    errors: list[BaseException] = []

    def write(batches_of_one_writer) -> None:
        try:
            with fresh_app.app_context():
                for batch in batches_of_one_writer:
                    with db.begin() as session:
                        recorder = Recorder(session)
                        for submission in batch:
                            recorder.record(submission)
                        time.sleep(0.002)  # hold the log lock a moment, as a real batch does
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in work]
    for thread in threads:
        thread.start()
    seen: list[int] = []
    cursor = 0
    with fresh_app.app_context():
        from journal.models import Log

        while True:
            finished = done.is_set()
            with db.begin() as session:
                page = pull_entries(session, session.get_one(Log, log_id), None, cursor, 7)
            seen.extend(seq for seq, _leaf in page.entries)
            cursor = page.next_cursor
            if finished and cursor >= page.size and not page.entries:
                break
            if not any(t.is_alive() for t in threads):
                done.set()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert seen == list(range(writers * batches * per_batch))


# -- the grid page -----------------------------------------------------------------------------


def grid_url(world, term=None) -> str:
    term = term or world.q2
    return f"/teacher/grid/{world.class_group.id}/{world.subject.id}/{term.id}"


def test_the_grid_shows_students_lessons_values_and_conflicts(browser, world):
    tablet = world.add_device()
    browser.upload(
        world.signed("grade", value={"score": 7}),
        world.signed("grade", device=tablet, value={"score": 9}),
        world.signed("attendance", value="late"),
        world.signed("topic"),
    )
    html = browser.get(grid_url(world)).get_data(as_text=True)
    assert "Өмірзақ Іңкәр" in html
    assert world.lesson.date.strftime("%d.%m") in html
    assert '<span class="v v-FO" data-state="conflict">7 | 9</span>' in html
    assert '<span class="v v-att" data-state="synced">late</span>' in html
    assert "Теңдеулер жүйесі" in html
    state = json.loads(html.split('id="grid-state">', 1)[1].split("</script>", 1)[0])
    assert state["journal"] == world.log.origin
    assert state["author"] == world.teacher.id
    assert state["cursor"] == 4
    assert len(state["heads"][f"FO:{world.lesson.id}:{world.student.id}"]) == 2


def test_a_corrected_value_replaces_the_old_one_on_the_grid(browser, world):
    first = world.signed("grade", value={"score": 4})
    browser.upload(first)
    browser.upload(
        world.signed(
            "correction",
            corrects="grade",
            component="FO",
            value={"score": 6},
            supersedes=[first["payload"]["entry_id"]],
            reason="Қате жазылды",
        )
    )
    html = browser.get(grid_url(world)).get_data(as_text=True)
    assert '<span class="v v-FO" data-state="synced">6</span>' in html
    assert ">4</span>" not in html  # (the phone's keypad has a "4" button)


def grid_html(browser, world) -> str:
    response = browser.get(grid_url(world))
    assert response.status_code == 200
    return response.get_data(as_text=True)


def grid_state_of(html: str) -> dict:
    return json.loads(html.split('id="grid-state">', 1)[1].split("</script>", 1)[0])


def test_a_grid_opened_again_shows_what_changed_since(browser, world):
    """The page body is kept between loads (teacher.rendered_grids); a new entry, a new
    student, a new lesson, a closed term and another language each show on the next load."""
    browser.upload(world.signed("grade", value={"score": 5}))
    html = grid_html(browser, world)
    assert '<span class="v v-FO" data-state="synced">5</span>' in html
    assert grid_state_of(grid_html(browser, world))["cursor"] == 1

    browser.upload(world.signed("attendance", value="sick"))
    html = grid_html(browser, world)
    assert '<span class="v v-att" data-state="synced">sick</span>' in html
    assert grid_state_of(html)["cursor"] == 2

    newcomer = world.add_student(last_name="Жаңабай", first_name="Әсел")
    html = grid_html(browser, world)
    assert "Жаңабай Әсел" in html
    assert newcomer.id in [student[0] for student in grid_state_of(html)["students"]]

    lesson = Lesson(
        class_group_id=world.class_group.id,
        subject_id=world.subject.id,
        date=world.q2.starts_on,
        period=6,
    )
    world.session.add(lesson)
    world.session.flush()
    assert lesson.id in [row[0] for row in grid_state_of(grid_html(browser, world))["lessons"]]

    world.q2.closed_at = NOW
    world.session.flush()
    html = grid_html(browser, world)
    assert "read-only" in html and grid_state_of(html)["readonly"]

    world.teacher.language = "ru"
    world.session.flush()
    refresh()  # the tests' requests share one app context, where Flask-Babel keeps the locale
    html = grid_html(browser, world)
    assert '<html lang="ru">' in html and "Синхронизировать сейчас" in html


def test_the_grid_term_column_agrees_with_the_printouts(browser, world):
    """The grid computes term grades from its own heads; the printouts read the whole log.
    Both must give every student the same percent and grade."""
    second = world.add_student()
    entries = [
        world.signed("grade", value={"score": 9}),
        world.signed("grade", student=second.id, value={"score": 3}),
        world.signed("grade", component="SOR", value={"points": 7, "max": 10}),
        world.signed("grade", component="SOCh", student=second.id, value={"points": 12, "max": 20}),
    ]
    # A conflict on the first student's FO: neither value counts, on the grid or in print.
    conflicting = world.signed("grade", device=world.add_device(), value={"score": 4})
    browser.upload(*entries, conflicting)
    html = grid_html(browser, world)
    grades = term_grades(world.session, world.class_group, world.log, world.q2, None)
    for student in (world.student, second):
        shown = re.search(
            rf'<td class="term-grade" data-student="{student.id}" '
            r'data-percent="([^"]*)" data-grade="([^"]*)"',
            html,
        )
        assert shown is not None
        assert shown.groups() == grades[(world.subject.id, student.id)]


def test_the_grid_is_only_for_the_assigned_teacher(app, world, openapi):
    browser = Browser(app, openapi)
    browser.sign_in(add_user(world.session, world.school))
    assert browser.get(grid_url(world)).status_code == 403


def test_a_term_of_another_kind_is_not_a_grid(browser, world):
    world.subject.by_half_year = True
    world.session.flush()
    assert browser.get(grid_url(world)).status_code == 404


def test_a_closed_term_is_read_only(browser, world):
    world.q2.closed_at = NOW
    world.session.flush()
    html = browser.get(grid_url(world)).get_data(as_text=True)
    assert "read-only" in html
    assert json.loads(html.split('id="grid-state">', 1)[1].split("</script>", 1)[0])["readonly"]


def test_the_grid_page_loads_no_inline_script(browser, world):
    response = browser.get(grid_url(world))
    html = response.get_data(as_text=True)
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    for tag in html.split("<script")[1:]:
        assert 'type="application/json"' in tag or 'src="/static/grid/' in tag
    assert "onclick" not in html and "style=" not in html


def test_the_teacher_index_links_each_term_grid(browser, world):
    html = browser.get("/teacher/").get_data(as_text=True)
    assert grid_url(world, world.q1) in html and grid_url(world) in html


def test_the_service_worker_is_served_from_the_root(app, world, openapi):
    response = Browser(app, openapi).client.get("/sw.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    body = response.get_data(as_text=True)
    assert "/static/grid/grid.js" in body and "class-journal-shell-" in body


def test_a_new_app_version_changes_the_service_worker(app, world, openapi):
    client = Browser(app, openapi).client
    before = client.get("/sw.js").get_data()
    app.config["OFFLINE_APP_VERSION"] = "next"
    try:
        assert client.get("/sw.js").get_data() != before
    finally:
        app.config.pop("OFFLINE_APP_VERSION")


def test_the_pages_owner_cookie_follows_the_session(app, world, openapi):
    """The service worker keeps and shows a teacher's pages only while this cookie names the
    person it kept them for (journal/templates/teacher/sw.js): the cookie names whoever is fully
    signed in, opaquely, and goes when the session ends, however it ends."""
    browser = Browser(app, openapi)

    def owner() -> str | None:
        cookie = browser.client.get_cookie(PAGES_OWNER_COOKIE)
        assert cookie is None or not cookie.http_only  # the service worker reads it
        return None if cookie is None else cookie.value

    password_only = browser_state(world.session, world.teacher, second_factor=False)
    with browser.client.session_transaction() as state:  # password, no second factor yet
        state.update(password_only)
    browser.get("/")
    assert owner() is None
    browser.sign_in(world.teacher)
    teacher = owner()
    assert teacher is not None and len(teacher) == 32 and teacher != str(world.teacher.id)
    colleague = add_user(world.session, world.school)
    browser.sign_in(colleague)
    assert owner() not in (None, teacher)
    browser.sign_out()
    browser.get("/login")
    assert owner() is None

    browser.sign_in(world.teacher)
    assert owner() == teacher
    from auth.sessions import end_sessions_of

    end_sessions_of(world.session, world.teacher.id, "everywhere", NOW)  # on the server
    assert browser.get("/api/sync/session").status_code == 401
    assert owner() is None


def test_the_offline_manifest_lists_the_weeks_grids(browser, world):
    from journal.clock import today_at

    # The school's today, not the machine's: after 19:00 UTC Almaty is a day ahead.
    today = today_at(world.session, world.school.id)
    world.session.add(
        Lesson(
            class_group_id=world.class_group.id,
            subject_id=world.subject.id,
            date=today,
            period=7,
        )
    )
    world.session.flush()
    pages = browser.get("/teacher/offline.json").json["pages"]
    assert pages[0] == "/teacher/"
    covering = [t for t in (world.q1, world.q2) if t.covers(today)]
    assert pages[1:] == [grid_url(world, t) for t in covering]


# -- import of an exported outbox ----------------------------------------------------------------


def export_file(*submissions, **extra) -> bytes:
    document = {"format": EXPORT_FORMAT, "version": 1, "entries": list(submissions), **extra}
    return json.dumps(document, ensure_ascii=False).encode()


def import_(browser, data: bytes, *, csrf: bool = True):  # type: ignore[no-untyped-def]
    return browser.form("/teacher/import", data, csrf=csrf)


def test_import_stores_each_entry_once_and_shows_the_results(browser, world):
    tampered = world.signed("grade")
    tampered["payload"]["value"] = {"score": 1}
    good = world.signed("attendance")
    response = import_(browser, export_file(good, tampered))
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "1 accepted, 0 already stored, 1 not stored." in html
    assert "the signature does not match the entry" in html
    assert stored(world, good["payload"]["entry_id"]) == 1
    again = import_(browser, export_file(good)).get_data(as_text=True)
    assert "0 accepted, 1 already stored, 0 not stored." in again
    assert stored(world, good["payload"]["entry_id"]) == 1


def test_import_refuses_a_file_that_is_not_an_export(browser, world):
    response = import_(browser, b'{"entries": []}')
    assert response.status_code == 400
    assert "not an export of unsynced journal entries" in response.get_data(as_text=True)


def test_import_refuses_a_file_over_the_limit_and_writes_nothing(browser, world):
    good = world.signed("attendance")
    padding = "x" * (IMPORT_MAX_BYTES + 10)
    response = import_(browser, export_file(good, padding=padding))
    assert response.status_code == 400
    assert "larger than 8 MB" in response.get_data(as_text=True)
    assert stored(world, good["payload"]["entry_id"]) == 0


def test_import_takes_no_more_entries_than_a_sync_batch_and_writes_nothing(browser, world, app):
    limit = app.config["SYNC_MAX_BATCH"]
    unknown = stranger_device(world)
    entries = [world.signed("attendance")] + [
        world.signed("grade", device=unknown) for _ in range(limit)
    ]
    response = import_(browser, export_file(*entries))
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert f"holds {limit + 1} entries; at most {limit} are imported at once" in html
    assert stored(world, entries[0]["payload"]["entry_id"]) == 0
    assert quarantined_rows(world) == 0


def test_import_needs_the_form_token(browser, world):
    good = world.signed("attendance")
    response = import_(browser, export_file(good), csrf=False)
    assert response.status_code == 400
    assert stored(world, good["payload"]["entry_id"]) == 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@given(JSON_VALUES)
def test_the_fast_canonical_json_writes_the_careful_bytes(value):
    """The sync's hot path (json.dumps) and the careful JCS writer agree, astral keys too."""
    careful: list[str] = []
    try:
        ledger_entry._write_json(value, careful, 0)
    except ledger_entry.PayloadError:
        with pytest.raises(ledger_entry.PayloadError):
            ledger_entry.canonical_json(value)
        return
    assert ledger_entry.canonical_json(value) == "".join(careful).encode()


def test_the_openapi_file_is_a_valid_openapi_31_document():
    import yaml
    from openapi_spec_validator import validate

    document = yaml.safe_load(SPEC_PATH.read_text())
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_grid_printouts_and_portal_agree_on_sealed_results_statuses_and_half_years(
    browser, world, app
):
    """Issue 14: after closing, the grid, the printed journal and the portal give every pupil
    the same term result: sealed grades, statuses, incomplete pupils, and by half-year."""
    from journal.models import AssessmentPlan, Term
    from journal.year.closing import close_term

    from ..factories import add_user
    from .test_portal import parent_of
    from .test_school_setup import sign_in

    exempt, missing = world.add_student(), world.add_student()
    half = Term(
        school_year_id=world.year.id,
        kind="half",
        number=1,
        starts_on=world.q1.starts_on,
        ends_on=world.q2.ends_on,
    )
    world.session.add(half)
    world.session.flush()
    browser.upload(
        world.signed("grade", value={"score": 9}),
        world.signed("grade", component="SOCh", value={"points": 15, "max": 20}),
        world.signed("grade", student=missing.id, value={"score": 6}),
        world.signed(
            "term_grade",
            student=exempt.id,
            subject=world.subject.id,
            term=world.q2.id,
            status="exempt",
            reason="medical certificate",
            rule={"id": "kz-criteria", "version": 2},
        ),
    )
    world.session.add(
        AssessmentPlan(
            class_group_id=world.class_group.id,
            subject_id=world.subject.id,
            term_id=world.q2.id,
            soch_planned=True,
            sor_count=0,
        )
    )
    world.session.flush()
    admin = add_user(world.session, world.school, "school_admin")

    def compare(term):
        html = (
            grid_html(browser, world)
            if term is world.q2
            else browser.get(grid_url(world, term)).get_data(as_text=True)
        )
        printed = term_grades(world.session, world.class_group, world.log, term, None)
        shown = {}
        for student in (world.student, exempt, missing):
            cell = re.search(
                rf'<td class="term-grade" data-student="{student.id}" data-percent="([^"]*)" '
                r'data-grade="[^"]*" data-result="[^"]*" data-code="([^"]*)"',
                html,
            )
            assert cell is not None
            assert cell.groups() == printed[(world.subject.id, student.id)], student.id
            shown[student.id] = cell.group(2)
        return shown

    before = compare(world.q2)
    # FO 9 (22.5 of 25) and SOCh 15/20 (37.5 of 50), no SOR: 60 of 75 = 80.0 % -> 4.
    assert before == {world.student.id: "4", exempt.id: "exempt", missing.id: "incomplete"}
    close_term(world.session, world.q2, world.log_key, closed_by=admin, reason="test")
    assert compare(world.q2) == before
    for student in (world.student, exempt, missing):
        parent_browser = app.test_client()
        sign_in(parent_browser, parent_of(world.session, world.school, student))
        sealed = parent_browser.get(f"/api/portal/students/{student.id}").get_json()
        (result,) = [t for t in sealed["term_grades"] if t["term"] == world.q2.id]
        assert result["result"] == before[student.id]

    # The same subject graded by half-year: its own term, computed and sealed the same way.
    world.subject.by_half_year = True
    world.session.flush()
    close_term(world.session, world.q1, world.log_key, closed_by=admin, reason="test")
    close_term(world.session, half, world.log_key, closed_by=admin, reason="test")
    assert compare(half)[world.student.id] == "4"


def test_a_voided_value_is_an_empty_cell_that_says_why(browser, world):
    first = world.signed("grade", value={"score": 4})
    browser.upload(first)
    browser.upload(
        world.signed(
            "correction",
            corrects="grade",
            component="FO",
            value="void",
            supersedes=[first["payload"]["entry_id"]],
            reason="Қате жазылды",
        )
    )
    html = grid_html(browser, world)
    assert (
        '<span class="v v-FO" data-state="synced" title="Emptied by a correction"></span>' in html
    )
    assert "∅" not in html


# Text PostgreSQL keeps as it is given (no NUL), Kazakh letters and array syntax included.
ARRAY_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


def test_arrays_bound_as_text_read_back_as_given(session):
    """The sync path binds its batch's entry ids, cells and referenced rows as one string
    (``db.text_array``, ``db.TextArray``); whatever the strings hold, PostgreSQL reads back the
    same array."""
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("arrays are bound this way on PostgreSQL only; SQLite is given lists")

    def read_back(texts: list[str], numbers: list[int]) -> None:
        statement = sa.text("SELECT :texts, CAST(:numbers AS INTEGER[])").bindparams(
            sa.bindparam("texts", type_=TextArray())
        )
        read = session.execute(
            statement, {"texts": text_array(texts), "numbers": text_array(numbers)}
        ).one()
        assert (read[0], read[1]) == (texts, numbers)

    read_back(["with,comma", 'a "quote"', "back\\slash", "{braces}", " padded ", "", "NULL"], [0])
    read_back(["әғқңөұүһі"], [-(2**31), 2**31 - 1])
    texts = st.lists(ARRAY_TEXT, max_size=20)
    given(texts, st.lists(st.integers(-(2**31), 2**31 - 1), max_size=20))(read_back)()

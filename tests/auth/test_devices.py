"""Device keys: enrolment through the JSON API after a fresh second factor, "My devices", and
revocation (later entries quarantined, earlier ones still verify, both events in the ledger)."""

from __future__ import annotations

import base64
import datetime as dt
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from auth.models import AccessLogEntry, DeviceKey
from journal.ledger import entry as ledger_entry
from journal.models import Entry, Log
from journal.recording.recorder import EntryRefused, record_entry
from journal.services import verify_journal

from ..factories import Device
from .conftest import english_client, post_form, post_json, sign_in

CONFIRMED = {"confirmed": "yes"}  # the answer to "Revoke «name»?"


def public_key_b64(private_key) -> str:  # type: ignore[no-untyped-def]
    return base64.b64encode(ledger_entry.public_key_bytes(private_key.public_key())[1]).decode()


@pytest.fixture
def teacher_client(app, people, clock):  # type: ignore[no-untyped-def]
    client = english_client(app)
    sign_in(client, people["teacher"], at=clock.now)
    return client


def test_a_teacher_enrols_a_webcrypto_key_and_signs_with_it(
    app, world, people, teacher_client, clock, session
):
    private_key = Ed25519PrivateKey.generate()
    body = {
        "alg": "ed25519",
        "public_key": public_key_b64(private_key),
        "label": "Кабинет 12 ноутбук",
    }
    response = post_json(teacher_client, app, "/api/devices", body)
    assert response.status_code == 201, response.text
    kid = response.json["kid"]
    assert kid == ledger_entry.key_id("ed25519", private_key.public_key().public_bytes_raw())
    assert response.json["label"] == "Кабинет 12 ноутбук" and response.json["revoked_at"] is None

    device = Device(kid, "ed25519", private_key, people["teacher"].id)
    recorded = record_entry(session, world.signed("grade", device=device), now=clock.now)
    assert recorded.status == "accepted"

    # The same key again is the same enrolment.
    again = post_json(teacher_client, app, "/api/devices", body)
    assert again.status_code == 200 and again.json["kid"] == kid
    assert len(session.scalars(select(DeviceKey).where(DeviceKey.kid == kid)).all()) == 1
    listed = teacher_client.get("/api/devices").json["devices"]
    assert [key["kid"] for key in listed if key["kid"] == kid] == [kid]
    assert "Кабинет 12 ноутбук" in teacher_client.get("/devices").text


def test_p256_keys_are_accepted_as_der_spki(app, teacher_client):
    private_key = ec.generate_private_key(ec.SECP256R1())
    spki = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    response = post_json(
        teacher_client, app, "/api/devices",
        {"alg": "ecdsa-p256", "public_key": base64.b64encode(spki).decode(), "label": ""},
    )  # fmt: skip
    assert response.status_code == 201
    assert response.json["kid"] == ledger_entry.key_id("ecdsa-p256", spki)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"alg": "rsa", "public_key": base64.b64encode(bytes(32)).decode()}, "bad_alg"),
        ({"alg": "ed25519", "public_key": "not base64!"}, "bad_key"),
        ({"alg": "ed25519", "public_key": base64.b64encode(bytes(31)).decode()}, "bad_key"),
        ({"alg": "ecdsa-p256", "public_key": base64.b64encode(bytes(91)).decode()}, "bad_key"),
        ({"alg": "ed25519", "public_key": 12345}, "bad_key"),
    ],
)
def test_bad_keys_are_refused_and_nothing_is_written(app, teacher_client, session, body, code):
    before = session.scalar(select(DeviceKey.kid).order_by(DeviceKey.created_at.desc()))
    response = post_json(teacher_client, app, "/api/devices", body)
    assert response.status_code == 400
    assert response.json["error"] == code and response.json["message"]
    assert session.scalar(select(DeviceKey.kid).order_by(DeviceKey.created_at.desc())) == before


def test_a_long_label_is_refused(app, teacher_client):
    body = {"alg": "ed25519", "public_key": public_key_b64(Ed25519PrivateKey.generate())}
    response = post_json(teacher_client, app, "/api/devices", {**body, "label": "x" * 101})
    assert response.status_code == 400 and response.json["error"] == "bad_label"


def test_enrolment_needs_a_fresh_second_factor(app, people, clock):
    client = english_client(app)
    sign_in(client, people["teacher"], at=clock.now - dt.timedelta(minutes=6))
    body = {"alg": "ed25519", "public_key": public_key_b64(Ed25519PrivateKey.generate())}
    response = post_json(client, app, "/api/devices", body)
    assert response.status_code == 403
    assert response.json["error"] == "second_factor_required"
    assert response.json["confirm_url"].startswith("/second-factor")
    assert client.get("/api/devices").json["second_factor_fresh"] is False


def test_enrolment_needs_the_csrf_header(app, teacher_client):
    body = {"alg": "ed25519", "public_key": public_key_b64(Ed25519PrivateKey.generate())}
    assert teacher_client.post("/api/devices", json=body).status_code == 400


def test_someone_elses_or_a_revoked_key_is_refused(
    app, world, people, teacher_client, clock, session
):
    taken = {"alg": world.device.alg, "public_key": public_key_b64(world.device.private_key)}
    other = english_client(app)
    sign_in(other, people["class_teacher"], at=clock.now)
    assert post_json(other, app, "/api/devices", taken).json["error"] == "key_in_use"

    private_key = Ed25519PrivateKey.generate()
    body = {"alg": "ed25519", "public_key": public_key_b64(private_key)}
    kid = post_json(teacher_client, app, "/api/devices", body).json["kid"]
    assert post_form(teacher_client, app, f"/devices/{kid}/revoke", CONFIRMED).status_code == 302
    refused = post_json(teacher_client, app, "/api/devices", body)
    assert refused.status_code == 409 and refused.json["error"] == "revoked_key"


def test_revocation_quarantines_later_entries_and_keeps_earlier_ones(
    app, world, people, teacher_client, clock, session
):
    private_key = Ed25519PrivateKey.generate()
    body = {"alg": "ed25519", "public_key": public_key_b64(private_key), "label": "phone"}
    kid = post_json(teacher_client, app, "/api/devices", body).json["kid"]
    device = Device(kid, "ed25519", private_key, people["teacher"].id)
    before = record_entry(session, world.signed("grade", device=device), now=clock.now)

    clock.advance(minutes=1)
    page = post_form(teacher_client, app, f"/devices/{kid}/revoke", CONFIRMED)
    assert page.status_code == 302
    key = session.get(DeviceKey, kid)
    assert key.revoked_at == clock.now
    assert "revoked" in teacher_client.get("/devices").text

    with pytest.raises(EntryRefused) as refused:
        record_entry(
            session,
            world.signed("attendance", device=device),
            now=clock.now + dt.timedelta(seconds=1),
        )
    assert refused.value.status == "quarantined" and refused.value.code == "revoked_key"
    assert verify_journal(session, world.log).ok
    assert session.scalar(select(Entry.entry_id).where(Entry.device_kid == kid)) == before.entry_id


def test_key_events_are_signed_into_the_school_ledger(
    app, world, people, teacher_client, clock, session
):
    body = {"alg": "ed25519", "public_key": public_key_b64(Ed25519PrivateKey.generate())}
    kid = post_json(teacher_client, app, "/api/devices", body).json["kid"]
    post_form(teacher_client, app, f"/devices/{kid}/revoke", CONFIRMED)
    ledger = session.scalar(
        select(Log).where(Log.school_id == world.school.id, Log.kind == "ledger")
    )
    leaves = session.scalars(
        select(Entry.leaf).where(Entry.log_id == ledger.id).order_by(Entry.seq)
    )
    events = [ledger_entry.parse_leaf(leaf).payload for leaf in leaves]
    assert [(e["kind"], e["key"]["kid"]) for e in events[-2:]] == [
        ("key_enrolled", kid),
        ("key_revoked", kid),
    ]
    assert events[-1]["by"] == people["teacher"].id
    report = verify_journal(session, ledger)
    assert report.ok, report.summary()


def test_only_the_owner_or_the_school_admin_revokes(app, world, people, clock, session):
    stranger = english_client(app)
    sign_in(stranger, people["class_teacher"], at=clock.now)
    response = post_form(stranger, app, f"/devices/{world.device.kid}/revoke", CONFIRMED)
    assert response.status_code == 403
    assert session.get(DeviceKey, world.device.kid).revoked_at is None

    admin = english_client(app)
    sign_in(admin, people["school_admin"], at=clock.now)
    assert (
        post_form(admin, app, f"/devices/{world.device.kid}/revoke", CONFIRMED).status_code == 302
    )
    assert session.get(DeviceKey, world.device.kid).revoked_at == clock.now
    row = session.scalar(select(AccessLogEntry).where(AccessLogEntry.action == "device_key.revoke"))
    assert row.actor_id == people["school_admin"].id and row.target_id == world.device.kid


def test_parents_cannot_enrol_device_keys(app, people, clock):
    client = english_client(app)
    sign_in(client, people["parent"], at=clock.now)
    body = {"alg": "ed25519", "public_key": public_key_b64(Ed25519PrivateKey.generate())}
    assert post_json(client, app, "/api/devices", body).status_code == 403


# -- named devices (issue 17) ---------------------------------------------------------------------

ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.6478.122 Mobile Safari/537.36"
)


def enrol(client, app, label: str | None = None) -> str:  # type: ignore[no-untyped-def]
    body = {"alg": "ed25519", "public_key": public_key_b64(Ed25519PrivateKey.generate())}
    if label is not None:
        body["label"] = label
    response = post_json(client, app, "/api/devices", body)
    assert response.status_code == 201, response.text
    return str(response.json["kid"])


def device_row(page: str, kid: str) -> str:
    """The text of a device's row on "My devices"."""
    row = re.search(rf'<tr id="key-{kid}".*?</tr>', page, re.S).group(0)
    values = re.findall(r'value="([^"]*)"', row)
    return " ".join(values + re.sub(r"<[^>]+>", " ", row).split())


def test_an_unnamed_device_is_named_after_its_browser_and_system(app, teacher_client, session):
    teacher_client.environ_base["HTTP_USER_AGENT"] = ANDROID_CHROME
    kid = enrol(teacher_client, app)
    assert session.get(DeviceKey, kid).label == "Chrome on Android"
    assert "Chrome on Android" in device_row(teacher_client.get("/devices").text, kid)
    assert ANDROID_CHROME not in teacher_client.get("/devices").text
    # The grid learns the suggestion before it enrols.
    info = teacher_client.get("/api/sync/session").json
    assert info["suggested_device_name"] == "Chrome on Android"
    assert [k["label"] for k in info["device_keys"] if k["kid"] == kid] == ["Chrome on Android"]


def test_the_default_name_is_in_the_persons_language(app, people, clock, session):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "ru"
    client.environ_base["HTTP_USER_AGENT"] = ANDROID_CHROME
    sign_in(client, people["teacher"], at=clock.now)
    kid = enrol(client, app)
    assert session.get(DeviceKey, kid).label == "Chrome на Android"


def test_the_owner_renames_a_device_and_nobody_else_does(
    app, world, people, teacher_client, clock, session
):
    kid = enrol(teacher_client, app, "phone")
    renamed = post_form(teacher_client, app, f"/devices/{kid}/name", {"label": "  Кабинет 12  "})
    assert renamed.status_code == 303
    assert session.get(DeviceKey, kid).label == "Кабинет 12"
    assert "Кабинет 12" in device_row(teacher_client.get("/devices").text, kid)
    row = session.scalar(select(AccessLogEntry).order_by(AccessLogEntry.id.desc()))
    assert (row.action, row.target_id) == ("device_key.rename", kid)

    refused = post_form(teacher_client, app, f"/devices/{kid}/name", {"label": "x" * 101})
    assert refused.status_code == 303 and session.get(DeviceKey, kid).label == "Кабинет 12"
    assert "at most 100 characters" in teacher_client.get("/devices").text
    empty = post_form(teacher_client, app, f"/devices/{kid}/name", {"label": "   "})
    assert empty.status_code == 303 and session.get(DeviceKey, kid).label == "Кабинет 12"

    api = post_json(teacher_client, app, f"/api/devices/{kid}/name", {"label": "Үйдегі ноутбук"})
    assert api.status_code == 200 and api.json["label"] == "Үйдегі ноутбук"

    for role in ("class_teacher", "school_admin"):
        other = english_client(app)
        sign_in(other, people[role], at=clock.now)
        assert post_form(other, app, f"/devices/{kid}/name", {"label": "mine"}).status_code == 403
        assert post_json(other, app, f"/api/devices/{kid}/name", {"label": "m"}).status_code == 403
    assert session.get(DeviceKey, kid).label == "Үйдегі ноутбук"
    assert post_form(teacher_client, app, "/devices/nokey/name", {"label": "x"}).status_code == 404


def test_last_used_is_when_the_server_last_took_an_entry_the_key_signed(
    app, world, people, teacher_client, clock, session
):
    from journal.sync import upload_batch

    key = session.get(DeviceKey, world.device.kid)
    key.label = "Кабинет 12"
    session.flush()
    assert "not used yet" in device_row(teacher_client.get("/devices").text, key.kid)

    signed = world.signed("grade")
    first = dt.datetime(2026, 11, 16, 4, 5, tzinfo=dt.UTC)  # 09:05 in Almaty
    assert upload_batch(session, world.teacher, [signed], now=first).results[0].status == "accepted"
    assert session.get(DeviceKey, key.kid).last_seen_at == first
    assert "2026-11-16 09:05 (UTC+05:00)" in device_row(
        teacher_client.get("/devices").text, key.kid
    )

    again = first + dt.timedelta(hours=3)  # the same entry sent again: the device synced
    assert (
        upload_batch(session, world.teacher, [signed], now=again).results[0].status == "duplicate"
    )
    session.expire_all()
    assert session.get(DeviceKey, key.kid).last_seen_at == again

    later = again + dt.timedelta(hours=1)  # a refused entry is not a use of the key
    broken = {**world.signed("grade"), "sig": base64.b64encode(bytes(64)).decode()}
    assert upload_batch(session, world.teacher, [broken], now=later).results[0].status == "rejected"
    session.expire_all()
    assert session.get(DeviceKey, key.kid).last_seen_at == again


def test_revoking_asks_first_naming_the_device(app, people, teacher_client, clock, session):
    kid = enrol(teacher_client, app, "Кабинет 12 ноутбук")
    devices_page = teacher_client.get("/devices").text
    assert f'href="/devices/{kid}/revoke"' in devices_page

    question = teacher_client.get(f"/devices/{kid}/revoke")
    assert question.status_code == 200
    assert "Revoke «Кабинет 12 ноутбук»?" in question.text
    assert 'name="confirmed" value="yes"' in question.text
    # Sent without the answer (a forged or an old form): asked again, nothing revoked.
    unanswered = post_form(teacher_client, app, f"/devices/{kid}/revoke")
    assert unanswered.status_code == 200 and "Revoke «Кабинет 12 ноутбук»?" in unanswered.text
    assert session.get(DeviceKey, kid).revoked_at is None

    done = post_form(teacher_client, app, f"/devices/{kid}/revoke", CONFIRMED)
    assert done.status_code == 302 and session.get(DeviceKey, kid).revoked_at == clock.now
    after = teacher_client.get("/devices").text
    assert "«Кабинет 12 ноутбук» is revoked." in after

    stranger = english_client(app)
    sign_in(stranger, people["class_teacher"], at=clock.now)
    assert stranger.get(f"/devices/{kid}/revoke").status_code == 403
    assert teacher_client.get("/devices/no-such-key/revoke").status_code == 404

"""Device keys: enrolment through the JSON API after a fresh second factor, "My devices", and
revocation (later entries quarantined, earlier ones still verify, both events in the ledger)."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from auth.models import AccessLogEntry, DeviceKey
from journal.ledger import entry as ledger_entry
from journal.models import Entry, Log
from journal.services import EntryRefused, record_entry, verify_journal

from ..factories import Device
from .conftest import english_client, post_form, post_json, sign_in


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
    assert post_form(teacher_client, app, f"/devices/{kid}/revoke").status_code == 302
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
    page = post_form(teacher_client, app, f"/devices/{kid}/revoke")
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
    post_form(teacher_client, app, f"/devices/{kid}/revoke")
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
    response = post_form(stranger, app, f"/devices/{world.device.kid}/revoke")
    assert response.status_code == 403
    assert session.get(DeviceKey, world.device.kid).revoked_at is None

    admin = english_client(app)
    sign_in(admin, people["school_admin"], at=clock.now)
    assert post_form(admin, app, f"/devices/{world.device.kid}/revoke").status_code == 302
    assert session.get(DeviceKey, world.device.kid).revoked_at == clock.now
    row = session.scalar(select(AccessLogEntry).where(AccessLogEntry.action == "device_key.revoke"))
    assert row.actor_id == people["school_admin"].id and row.target_id == world.device.kid


def test_parents_cannot_enrol_device_keys(app, people, clock):
    client = english_client(app)
    sign_in(client, people["parent"], at=clock.now)
    body = {"alg": "ed25519", "public_key": public_key_b64(Ed25519PrivateKey.generate())}
    assert post_json(client, app, "/api/devices", body).status_code == 403

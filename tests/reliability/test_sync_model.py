"""A Hypothesis model of the sync protocol (DESIGN §6) against the real app, in process.

Three devices (two of one teacher, one of a colleague who teaches the same class and subject)
sign entries into their outboxes and sync through POST /api/sync/entries with a session cookie
and the CSRF header. Between syncs they go offline, send the same entries again, lose the
server's answer after it committed, send batches in any order, import another device's outbox,
and correct entries the server has not seen yet (the correction may arrive first: the server
refuses it with bad_supersedes and the device keeps it and sends it again, as sync.js does).

Invariant after every step: the journal holds each entry at most once, gap-free, and only
entries some device made; every answer a device saw names the entry's stored seq. At the end
every device comes online and drains its outbox: the journal is then exactly the union of every
device's entries, each once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from journal.db import db
from journal.models import Entry, Lesson, Log, TeachingAssignment

from ..conftest import Databases, make_app, migrate
from ..factories import Device, add_device, add_user, browser_state, build_world
from .conftest import scaled

SETTINGS = settings(
    max_examples=scaled(60, 500),
    stateful_step_count=scaled(30, 60),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
STORED = ("accepted", "duplicate")
# A correction that overtook its entry: refused, kept in the outbox, sent again later.
WAITS = ("rejected", "bad_supersedes")


@dataclass
class ModelDevice:
    """A device as the model sees it: what it made, what waits in its outbox, what it was
    told is stored (entry_id -> seq)."""

    name: str
    client: FlaskClient
    signer: Device
    csrf: str
    online: bool = True
    made: set[str] = field(default_factory=set)
    outbox: dict[str, dict[str, Any]] = field(default_factory=dict)
    confirmed: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Classroom:
    """Ids of one example's school: its journal, two students, two lessons."""

    origin: str
    log_id: int
    students: tuple[int, ...]
    lessons: tuple[int, ...]


class SyncModel(RuleBasedStateMachine):
    app: ClassVar[Flask]

    def __init__(self) -> None:
        super().__init__()
        self.room, signers = new_classroom(self.app)
        self.devices = []
        for name, signer in zip(("phone", "laptop", "colleague"), signers, strict=True):
            client, csrf = signed_in(self.app, signer)
            self.devices.append(ModelDevice(name, client, signer, csrf))
        self.made: dict[str, dict[str, Any]] = {}  # every entry any device made, by id

    # -- making entries --------------------------------------------------------------------------

    @rule(
        device=st.integers(0, 2),
        kind=st.sampled_from(["grade", "attendance", "topic"]),
        student=st.integers(0, 1),
        lesson=st.integers(0, 1),
        value=st.integers(1, 10),
    )
    def make_entry(self, device: int, kind: str, student: int, lesson: int, value: int) -> None:
        fields: dict[str, Any] = {"lesson": self.room.lessons[lesson]}
        if kind == "grade":
            fields.update(
                student=self.room.students[student], component="FO", value={"score": value}
            )
        elif kind == "attendance":
            fields.update(student=self.room.students[student], value="late")
        self.keep(self.devices[device], self.sign(self.devices[device], kind, fields))

    @rule(device=st.integers(0, 2), data=st.data())
    def correct_an_entry(self, device: int, data: st.DataObject) -> None:
        """Correct an entry, often one still waiting in some outbox (not seen by the server)."""
        unseen = [s for d in self.devices for s in d.outbox.values() if is_cell_entry(s)]
        anything = [s for s in self.made.values() if is_cell_entry(s)]
        targets = unseen if unseen and data.draw(st.booleans(), "unseen") else anything
        if not targets:
            return
        target = data.draw(st.sampled_from(targets), "target")["payload"]
        fields: dict[str, Any] = {
            "corrects": target["kind"],
            "lesson": target["lesson"],
            "student": target["student"],
            "supersedes": [target["entry_id"]],
            "reason": "Қате жазылды",
        }
        if target["kind"] == "grade":
            fields.update(component=target["component"], value={"score": 5})
        else:
            fields.update(value="void")
        self.keep(self.devices[device], self.sign(self.devices[device], "correction", fields))

    def sign(self, device: ModelDevice, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        return sign_entry(device.signer, self.room.origin, kind, fields)

    def keep(self, device: ModelDevice, submission: dict[str, Any]) -> None:
        entry_id = submission["payload"]["entry_id"]
        device.made.add(entry_id)
        device.outbox[entry_id] = submission
        self.made[entry_id] = submission

    # -- the network -------------------------------------------------------------------------------

    @rule(device=st.integers(0, 2))
    def go_offline(self, device: int) -> None:
        self.devices[device].online = False

    @rule(device=st.integers(0, 2))
    def come_online(self, device: int) -> None:
        self.devices[device].online = True

    @rule(
        device=st.integers(0, 2),
        batch_size=st.integers(1, 6),
        order=st.randoms(use_true_random=False),
        repeat_one=st.booleans(),
    )
    def sync(self, device: int, batch_size: int, order: Any, repeat_one: bool) -> None:
        """Send the outbox in batches, in any order, maybe with one entry twice in a batch."""
        phone = self.devices[device]
        if not phone.online:
            return  # the request never leaves the device
        pending = list(phone.outbox.values())
        order.shuffle(pending)
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            if repeat_one:
                batch.append(batch[0])
            self.settle(phone, batch, self.upload(phone, batch))

    @rule(device=st.integers(0, 2), count=st.integers(1, 5))
    def sync_but_the_answer_is_lost(self, device: int, count: int) -> None:
        """The server commits the batch; the connection drops before the device hears back."""
        phone = self.devices[device]
        if phone.online and phone.outbox:
            self.upload(phone, list(phone.outbox.values())[:count])

    @rule(device=st.integers(0, 2), data=st.data())
    def send_stored_entries_again(self, device: int, data: st.DataObject) -> None:
        """A device that never cleared its outbox (or a restored backup) sends again."""
        phone = self.devices[device]
        if not phone.online or not phone.confirmed:
            return
        ids = data.draw(st.lists(st.sampled_from(sorted(phone.confirmed)), min_size=1, max_size=4))
        answer = self.upload(phone, [self.made[i] for i in ids])
        for entry_id, result in zip(ids, answer["results"], strict=True):
            assert (result["status"], result["seq"]) == ("duplicate", phone.confirmed[entry_id])

    @rule(source=st.integers(0, 1), into=st.integers(0, 1))
    def import_another_devices_outbox(self, source: int, into: int) -> None:
        """The teacher exports the phone's unsynced entries and imports them on the laptop (or
        the other way round): both will send them. (Only an entry's author may upload it.)"""
        self.devices[into].outbox.update(self.devices[source].outbox)

    def upload(self, device: ModelDevice, batch: list[dict[str, Any]]) -> dict[str, Any]:
        response = device.client.post(
            "/api/sync/entries",
            data=json.dumps({"entries": batch}, ensure_ascii=False),
            content_type="application/json",
            headers={"X-CSRFToken": device.csrf},
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        answer: dict[str, Any] = response.get_json()
        assert [r["index"] for r in answer["results"]] == list(range(len(batch)))
        return answer

    def settle(
        self, device: ModelDevice, batch: list[dict[str, Any]], answer: dict[str, Any]
    ) -> None:
        """As sync.js: forget accepted and duplicate entries; keep a correction whose entry the
        server has not seen yet; nothing else may come back."""
        stored = {entry_id for entry_id, _seq in self.journal()}
        for index, (submission, result) in enumerate(zip(batch, answer["results"], strict=True)):
            entry_id = submission["payload"]["entry_id"]
            if (result["status"], result.get("code")) == WAITS:
                # Its entry was not stored yet: not at all, or later in this very batch.
                later = {s["payload"]["entry_id"] for s in batch[index + 1 :]}
                assert not set(submission["payload"]["supersedes"]) <= stored - later, result
                continue
            assert result["status"] in STORED, result
            assert result["entry_id"] == entry_id and result["journal"] == self.room.origin
            for other in self.devices:
                if entry_id in other.confirmed:
                    assert other.confirmed[entry_id] == result["seq"], "one entry, two seqs"
            device.confirmed[entry_id] = result["seq"]
            device.outbox.pop(entry_id, None)

    # -- what must always hold -----------------------------------------------------------------

    def journal(self) -> list[tuple[str, int]]:
        with self.app.app_context():
            size = db.session.scalar(sa.select(Log.size).where(Log.id == self.room.log_id))
            rows = db.session.execute(
                sa.select(Entry.entry_id, Entry.seq)
                .where(Entry.log_id == self.room.log_id)
                .order_by(Entry.seq)
            ).all()
        assert [seq for _id, seq in rows] == list(range(len(rows))) == list(range(size or 0))
        return [(entry_id, seq) for entry_id, seq in rows]

    @invariant()
    def the_journal_holds_made_entries_once_at_the_seqs_devices_were_told(self) -> None:
        stored = self.journal()
        ids = [entry_id for entry_id, _seq in stored]
        assert len(ids) == len(set(ids)), "an entry is stored twice"
        assert set(ids) <= self.made.keys(), "the journal holds an entry nobody made"
        seqs = dict(stored)
        for device in self.devices:
            for entry_id, seq in device.confirmed.items():
                assert seqs.get(entry_id) == seq, f"{device.name} was told seq {seq}"

    def teardown(self) -> None:
        """Everyone comes online and syncs until every outbox is empty (a correction that
        waited for another device's entry goes through in a later round)."""
        for device in self.devices:
            device.online = True
        for _round in range(4):
            for device in self.devices:
                if device.outbox:
                    batch = list(device.outbox.values())
                    self.settle(device, batch, self.upload(device, batch))
        for device in self.devices:
            assert not device.outbox
        stored = self.journal()
        union = set().union(*(device.made for device in self.devices))
        assert sorted(entry_id for entry_id, _seq in stored) == sorted(union)


def sign_entry(signer: Device, origin: str, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A new entry of the journal ``origin``, signed by the device (its next device_seq)."""
    payload = {
        "v": 1,
        "entry_id": str(uuid.uuid4()),
        "journal": origin,
        "kind": kind,
        "device_id": signer.kid,
        "device_seq": next(signer.seq),
        "author": signer.user_id,
        "created_at": "2026-11-16T09:05:00Z",
        **fields,
    }
    if kind == "topic":
        payload.update(topic="Теңдеулер жүйесі", homework="§12")
    return signer.sign(payload)


def is_cell_entry(submission: dict[str, Any]) -> bool:
    return submission["payload"]["kind"] in ("grade", "attendance")


def new_classroom(app: Flask) -> tuple[Classroom, list[Device]]:
    """A new school per example: a class, two students, two lessons, a teacher with two
    devices and a colleague (same class and subject) with one."""
    with app.app_context():
        world = build_world(db.session, app.config["KEYS_DIR"])
        second = world.add_student()
        lesson = Lesson(
            class_group_id=world.class_group.id,
            subject_id=world.subject.id,
            date=world.lesson.date,
            period=world.lesson.period + 1,
        )
        colleague = add_user(db.session, world.school)
        db.session.add_all(
            [
                lesson,
                TeachingAssignment(
                    user_id=colleague.id,
                    class_group_id=world.class_group.id,
                    subject_id=world.subject.id,
                ),
            ]
        )
        db.session.flush()
        signers = [world.device, world.add_device(), add_device(db.session, colleague)]
        room = Classroom(
            world.log.origin,
            world.log.id,
            (world.student.id, second.id),
            (world.lesson.id, lesson.id),
        )
        db.session.commit()
    return room, signers


def signed_in(app: Flask, signer: Device) -> tuple[FlaskClient, str]:
    """A browser signed in as the device's owner past the second factor, and its CSRF token."""
    from auth.models import User

    with app.app_context():
        user = db.session.get_one(User, signer.user_id)
        state = browser_state(db.session, user)
        db.session.commit()
    client = app.test_client()
    with client.session_transaction() as session:
        session.update(state)
    response = client.get("/api/sync/session")
    assert response.status_code == 200, response.get_data(as_text=True)
    return client, response.get_json()["csrf_token"]


BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="module", params=BACKENDS)
def model_app(
    request: pytest.FixtureRequest, databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flask]:
    url = databases.create(request.param)
    app = make_app(url, Path(tmp_path_factory.mktemp("model-keys")))
    migrate(app)
    yield app
    app.extensions["journal_db"].engine.dispose()


def test_sync_keeps_every_entry_once_whatever_the_network_does(model_app: Flask) -> None:
    SyncModel.app = model_app
    run_state_machine_as_test(SyncModel, settings=SETTINGS)


def test_a_correction_that_arrives_before_its_entry_leaves_one_value_in_the_cell(
    model_app: Flask,
) -> None:
    """The phone grades offline; the laptop corrects that grade and syncs first. The server
    refuses the correction (it names an entry it does not hold: bad_supersedes, issue 13) and
    stores nothing; the laptop keeps it. Once the grade arrives, the correction sent again is
    stored, once, and is the cell's only head."""
    room, (phone, laptop, _colleague) = new_classroom(model_app)
    fields = {"lesson": room.lessons[0], "student": room.students[0], "component": "FO"}
    grade = sign_entry(phone, room.origin, "grade", {**fields, "value": {"score": 3}})
    correction = sign_entry(
        laptop,
        room.origin,
        "correction",
        {
            **fields,
            "corrects": "grade",
            "value": {"score": 8},
            "supersedes": [grade["payload"]["entry_id"]],
            "reason": "Қате жазылды",
        },
    )
    laptop_client, laptop_csrf = signed_in(model_app, laptop)
    phone_client, phone_csrf = signed_in(model_app, phone)
    early = post_batch(laptop_client, laptop_csrf, [correction])
    assert [(r["status"], r["code"]) for r in early["results"]] == [WAITS]
    second = post_batch(phone_client, phone_csrf, [grade])
    again = post_batch(laptop_client, laptop_csrf, [correction])
    assert [r["status"] for r in second["results"] + again["results"]] == ["accepted"] * 2
    assert again["conflicts"] == []  # one head: the correction
    twice = post_batch(laptop_client, laptop_csrf, [correction])
    assert [r["status"] for r in twice["results"]] == ["duplicate"]
    with model_app.app_context():
        stored = db.session.scalars(
            sa.select(Entry.entry_id).where(Entry.log_id == room.log_id).order_by(Entry.seq)
        ).all()
    assert stored == [grade["payload"]["entry_id"], correction["payload"]["entry_id"]]


def post_batch(client: FlaskClient, csrf: str, batch: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post(
        "/api/sync/entries",
        data=json.dumps({"entries": batch}, ensure_ascii=False),
        content_type="application/json",
        headers={"X-CSRFToken": csrf},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()

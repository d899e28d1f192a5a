"""Hostile input: the sync API fuzzed from its OpenAPI description, and the parsers fuzzed with
arbitrary bytes and structured mutations of valid documents.

* schemathesis generates requests from docs/openapi.yaml (data that fits the description and
  data that does not) and sends them in process to the WSGI app as a signed-in teacher: no
  answer is a 5xx, and every answer matches the description (status, content type, body).
* The parsers raise their documented errors and nothing else: ``PayloadError`` (entry JSON and
  log records), ``PayloadRejected`` (payload shapes), ``EntryRefused`` (the recorder, down to
  the database with valid signatures), ``ProofFormatError`` / ``ProofError`` (tlog proofs).
  What they accept, they accept in canonical form only: it writes back to the same bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from journal.db import db
from journal.ledger import entry as ledger_entry
from journal.ledger import merkle, note, tlogproof
from journal.payloads import PayloadRejected, check_payload
from journal.recording.recorder import EntryRefused, Recorder
from journal.sync import upload_batch

from ..conftest import Databases, make_app, migrate
from ..factories import Device, browser_state, build_world
from .conftest import scaled

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
API_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Pure parsers are fast: many examples. The API and the database: fewer.
PARSERS = settings(max_examples=scaled(300, 5000), deadline=None)
FUZZ = settings(
    max_examples=scaled(60, 400),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# -- the sync API, from its OpenAPI description ------------------------------------------------


@dataclass(frozen=True)
class FuzzSchool:
    """The app on its own PostgreSQL database and its school's teacher, signed in."""

    app: Flask
    origin: str
    subject_id: int
    lesson_id: int
    student_id: int
    device: Device
    cookie: str
    csrf: str

    def client(self) -> FlaskClient:
        client = self.app.test_client()
        client.set_cookie("session", self.cookie)
        return client


@pytest.fixture(scope="module")
def school(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzSchool]:
    url = databases.create("postgresql")
    app = make_app(url, tmp_path_factory.mktemp("fuzz-keys"))
    migrate(app)
    with app.app_context():
        world = build_world(db.session, app.config["KEYS_DIR"])
        recorder = Recorder(db.session)
        for kind in ("grade", "attendance", "topic"):  # something to pull
            recorder.record(world.signed(kind))
        db.session.commit()
        signed_in = browser_state(db.session, world.teacher, language="en")
        db.session.commit()
        ids = (world.log.origin, world.subject.id, world.lesson.id, world.student.id)
    client = app.test_client()
    with client.session_transaction() as state:
        state.update(signed_in)
    csrf = client.get("/api/sync/session").get_json()["csrf_token"]
    cookie = client.get_cookie("session")
    assert cookie is not None
    yield FuzzSchool(app, *ids, world.device, cookie.value, csrf)
    app.extensions["journal_db"].engine.dispose()


SCHEMA = schemathesis.openapi.from_path(SPEC_PATH)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_the_sync_api_answers_every_request_as_its_description_says(
    school: FuzzSchool, operation: Any, mode: str
) -> None:
    strategy = operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode))

    @FUZZ
    @given(case=strategy, real_school=st.booleans())
    def fuzz(case: Any, real_school: bool) -> None:
        if real_school:  # half the time, reach the real journal and key too
            if isinstance(case.query, dict) and "journal" in case.query:
                case.query["journal"] = school.origin
            if isinstance(case.query, dict) and "subject" in case.query:
                case.query["subject"] = school.subject_id
            if isinstance(case.path_parameters, dict) and "kid" in case.path_parameters:
                case.path_parameters["kid"] = school.device.kid
        response = case.call(
            app=school.app,
            headers={"X-CSRFToken": school.csrf, "Accept-Language": "en"},
            cookies={"session": school.cookie},
        )
        case.validate_response(response, checks=API_CHECKS)

    fuzz()


# Found by the fuzzers above, kept as plain examples. Each once answered 500: for a whole batch
# (a device then retries it for ever, and the entries next to the hostile one never arrive), for
# a pull or for a gap report.


def upload_beside_a_good_entry(school: FuzzSchool, hostile: dict[str, Any]) -> list[str]:
    neighbour = school.device.sign(entry_payload(school))
    response = school.client().post(
        "/api/sync/entries",
        json={"entries": [hostile, neighbour]},
        headers={"X-CSRFToken": school.csrf},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return [result["status"] for result in response.get_json()["results"]]


@pytest.mark.parametrize("field", ["lesson", "student"])
@pytest.mark.parametrize("value", [[], {"id": 1}], ids=["list", "object"])
def test_an_entry_whose_id_is_not_a_number_is_refused_alone(school: FuzzSchool, field, value):
    """Both databases: the batch's look-up of lessons and students built a set of the raw
    values before any check (TypeError: unhashable type)."""
    hostile = school.device.sign({**entry_payload(school), field: value})
    assert upload_beside_a_good_entry(school, hostile) == ["rejected", "accepted"]


@pytest.mark.parametrize("field", ["lesson", "student"])
def test_an_entry_naming_an_id_beyond_the_database_integer_is_refused_alone(
    school: FuzzSchool, field: str
) -> None:
    """PostgreSQL: ``integer out of range`` for ids from 2**31 (payloads allowed 2**53)."""
    hostile = school.device.sign({**entry_payload(school), field: 2**31})
    assert upload_beside_a_good_entry(school, hostile) == ["rejected", "accepted"]


@pytest.mark.parametrize("field", ["journal", "entry_id", "kid"])
def test_an_entry_with_a_nul_character_is_refused_alone(school: FuzzSchool, field: str) -> None:
    """PostgreSQL: ``text fields cannot contain NUL (0x00) bytes`` when the journal origin, the
    entry id or the key id reached a query."""
    payload = entry_payload(school)
    if field == "kid":
        hostile = {**school.device.sign(payload), "kid": school.device.kid[:-1] + "\x00"}
    else:
        hostile = school.device.sign({**payload, field: payload[field][:-1] + "\x00"})
    assert upload_beside_a_good_entry(school, hostile)[1] == "accepted"


@pytest.mark.parametrize(
    ("journal_suffix", "subject", "cursor"),
    [("", 2**31, 0), ("", None, 2**63), ("%00", None, 0)],
    ids=["subject-beyond-integer", "cursor-beyond-bigint", "nul-in-journal"],
)
def test_a_pull_with_an_out_of_range_parameter_is_answered(
    school: FuzzSchool, journal_suffix: str, subject: int | None, cursor: int
) -> None:
    """PostgreSQL: subject >= 2**31 (the assignment check), cursor >= 2**63 (the page query)
    and a NUL in the journal origin."""
    url = (
        f"/api/sync/pull?journal={school.origin}{journal_suffix}"
        f"&subject={subject or school.subject_id}&cursor={cursor}"
    )
    response = school.client().get(url)
    assert response.status_code < 500 and response.is_json  # a page, or an error to show


def test_the_gaps_of_a_key_id_with_a_nul_character_are_answered(school: FuzzSchool) -> None:
    """PostgreSQL: the key look-up with a NUL in the path's key id."""
    response = school.client().get(f"/api/sync/devices/%00{school.device.kid[1:]}/gaps")
    assert response.status_code == 404 and response.is_json


def entry_payload(school: FuzzSchool) -> dict[str, Any]:
    return {
        "v": 1,
        "entry_id": str(uuid.uuid4()),
        "journal": school.origin,
        "kind": "attendance",
        "device_id": school.device.kid,
        "device_seq": next(school.device.seq),
        "author": school.device.user_id,
        "created_at": "2026-11-16T09:05:00Z",
        "lesson": school.lesson_id,
        "student": school.student_id,
        "value": "late",
    }


# -- entry JSON, payloads and log records --------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-ledger_entry.MAX_SAFE_INTEGER, ledger_entry.MAX_SAFE_INTEGER)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)
# Values a hostile client may put where a field belongs: out of range, of the wrong type, big.
HOSTILE_VALUES = (
    JSON_VALUES
    | st.integers(-(2**70), 2**70)
    | st.integers(2**31 - 2, 2**31 + 2)  # around the database's integer ids
    | st.integers(2**53 - 2, 2**53 + 2)  # around the largest integer an entry may hold
    | st.sampled_from(["", "void", "FO", "ə" * 1001, "00000000-0000-0000-0000-000000000000"])
    | st.text(min_size=900, max_size=1200)
)


def mutate(data: bytes, draw: Any) -> bytes:
    """One structured mutation of a document's bytes: delete, insert, flip, repeat a span."""
    position = draw(st.integers(0, max(len(data) - 1, 0)))
    how = draw(st.sampled_from(["delete", "insert", "flip", "repeat", "truncate"]))
    if how == "delete":
        return data[:position] + data[position + 1 :]
    if how == "insert":
        token = draw(
            st.sampled_from(
                [
                    b'"',
                    b",",
                    b"{",
                    b"}",
                    b"[",
                    b"]",
                    b":",
                    b"\\",
                    b"1.5",
                    b"\xff",
                    b"\xed\xa0\x80",
                    b" ",
                    b"\n",
                    b"null",
                    b'"a":1,',
                ]
            )
        )
        return data[:position] + token + data[position:]
    if how == "flip":
        if not data:
            return data
        bit = 1 << draw(st.integers(0, 7))
        return data[:position] + bytes([data[position] ^ bit]) + data[position + 1 :]
    if how == "repeat":
        end = draw(st.integers(position, len(data)))
        return data[:end] + data[position:end] + data[end:]
    return data[:position]


@PARSERS
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_parse_json_refuses_arbitrary_bytes_with_payload_error_only(raw: bytes) -> None:
    try:
        parsed = ledger_entry.parse_json(raw)
    except ledger_entry.PayloadError as refused:
        assert refused.code
        return
    assert ledger_entry.parse_json(ledger_entry.canonical_json(parsed)) == parsed


@PARSERS
@given(JSON_VALUES)
def test_canonical_json_round_trips_through_the_strict_parser(value: Any) -> None:
    data = ledger_entry.canonical_json(value)
    parsed = ledger_entry.parse_json(data, max_bytes=len(data))
    assert parsed == value
    assert ledger_entry.canonical_json(parsed) == data


@PARSERS
@given(JSON_VALUES)
def test_plain_values_take_the_fast_encoder_with_the_careful_bytes(value: Any) -> None:
    """Values the fast encoder writes (orjson) come out byte for byte as the careful path
    writes them; the others (astral keys, lone surrogates) take the careful path."""
    careful: list[str] = []
    try:
        ledger_entry._write_json(value, careful, 0)
    except ledger_entry.PayloadError:
        assert not ledger_entry._plain(value, 0)
        return
    assert ledger_entry.canonical_json(value) == "".join(careful).encode("utf-8")


@PARSERS
@given(
    JSON_VALUES,
    st.sampled_from([(",", ":"), (", ", ": "), (",", " : "), (",\n", ":\t")]),
    st.data(),
)
def test_bytes_are_read_as_their_text_is(value: Any, separators: Any, data: Any) -> None:
    """Bytes may be read by orjson (parse_json's plain path); text always takes the careful
    path: for any document, mutated ones with repeated keys and floats among them, both give
    the same value or the same refusal."""
    text = json.dumps({"payload": value, "k": [value]}, separators=separators, ensure_ascii=False)
    raw = mutate(text.encode(), data.draw)

    def outcome(document: bytes | str) -> Any:
        try:
            return ("value", ledger_entry.parse_json(document, max_bytes=10_000))
        except ledger_entry.PayloadError as refused:
            return ("refused", refused.code)

    try:
        as_text = raw.decode("utf-8")
    except UnicodeDecodeError:
        assert outcome(raw)[0] == "refused"
        return
    assert outcome(raw) == outcome(as_text)


@PARSERS
@given(JSON_VALUES, st.data())
def test_mutated_json_is_refused_or_parsed_into_writable_values(value: Any, data: Any) -> None:
    raw = mutate(ledger_entry.canonical_json({"payload": value}), data.draw)
    try:
        parsed = ledger_entry.parse_json(raw, max_bytes=10_000)
    except ledger_entry.PayloadError:
        return
    # Whatever the strict parser lets through is JSON the canonical writer can write.
    ledger_entry.parse_json(ledger_entry.canonical_json(parsed), max_bytes=20_000)


def valid_leaf(draw: Any) -> bytes:
    payload = draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=5))
    when = draw(st.datetimes(timezones=st.just(dt.UTC)))
    return ledger_entry.leaf_bytes(
        draw(st.integers(0, ledger_entry.MAX_SAFE_INTEGER)),
        ledger_entry.format_timestamp(when),
        payload,
        draw(st.sampled_from(ledger_entry.ALGS)),
        draw(st.text("0123456789abcdef", min_size=32, max_size=32)),
        draw(st.binary(min_size=1, max_size=72)),
    )


def written_back(record: ledger_entry.LeafRecord) -> bytes:
    return ledger_entry.leaf_bytes(
        record.seq, record.received_at, record.payload, record.alg, record.kid, record.sig
    )


@PARSERS
@given(st.data())
def test_a_log_record_round_trips_and_its_mutations_are_refused_or_canonical(data: Any) -> None:
    leaf = valid_leaf(data.draw)
    assert written_back(ledger_entry.parse_leaf(leaf)) == leaf
    mutated = mutate(leaf, data.draw)
    try:
        record = ledger_entry.parse_leaf(mutated)
    except ledger_entry.PayloadError:
        return
    assert written_back(record) == mutated  # accepted only in its one canonical form


@PARSERS
@given(st.binary(max_size=400))
def test_parse_leaf_refuses_arbitrary_bytes_with_payload_error_only(raw: bytes) -> None:
    try:
        record = ledger_entry.parse_leaf(raw)
    except ledger_entry.PayloadError as refused:
        assert refused.code
        return
    assert written_back(record) == raw


def valid_payload(kind: str, ids: dict[str, Any] | None = None) -> dict[str, Any]:
    """A payload of ``kind`` that check_payload accepts; ``ids`` point it at a real school."""
    ids = {
        "entry_id": "6f1c5d9e-3f4a-4b6c-9d2e-1a2b3c4d5e6f",
        "journal": "school.example.kz/journal/2026-2027/7",
        "device_id": "0" * 32,
        "author": 7,
        "lesson": 11,
        "student": 12,
        "subject": 3,
        "term": 2,
        "supersedes": "0b1c5d9e-3f4a-4b6c-9d2e-1a2b3c4d5e6f",
        **(ids or {}),
    }
    payload: dict[str, Any] = {
        "v": 1,
        "entry_id": ids["entry_id"],
        "journal": ids["journal"],
        "kind": kind,
        "device_id": ids["device_id"],
        "device_seq": 3,
        "author": ids["author"],
        "created_at": "2026-11-16T09:05:00Z",
    }
    cell = {"lesson": ids["lesson"], "student": ids["student"]}
    if kind == "grade":
        payload.update(cell, component="SOR", value={"points": 7, "max": 10})
    elif kind == "attendance":
        payload.update(cell, value="sick")
    elif kind == "topic":
        payload.update(lesson=ids["lesson"], topic="Теңдеулер", homework="§12")
    elif kind == "correction":
        payload.update(
            cell,
            corrects="grade",
            component="FO",
            value="void",
            supersedes=[ids["supersedes"]],
            reason="Қате",
        )
    else:
        payload.update(
            student=ids["student"],
            subject=ids["subject"],
            grade=5,
            percent="84.5",
            rule={"id": "kz-criteria", "version": 1},
        )
        if kind == "term_grade":
            payload["term"] = ids["term"]
    return payload


KINDS = ["attendance", "grade", "topic", "correction", "term_grade", "year_grade"]
FIELDS = sorted({name for kind in KINDS for name in valid_payload(kind)} | {"unknown"})


@st.composite
def mutated_payloads(draw: Any, ids: dict[str, Any] | None = None) -> dict[str, Any]:
    """A valid payload of some kind with one to three fields deleted or replaced by hostile
    values."""
    payload = valid_payload(draw(st.sampled_from(KINDS)), ids)
    for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
        if draw(st.booleans()):
            payload.pop(name, None)
        else:
            payload[name] = draw(HOSTILE_VALUES)
    return payload


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_valid_payload_passes(kind: str) -> None:
    assert check_payload(valid_payload(kind)).kind == kind


@PARSERS
@given(JSON_VALUES | mutated_payloads())
def test_check_payload_raises_payload_rejected_only(payload: Any) -> None:
    try:
        facts = check_payload(payload)
    except PayloadRejected as refused:
        assert refused.code and str(refused)
        return
    assert facts.entry_id == payload["entry_id"] and facts.kind == payload["kind"]


@PARSERS
@given(st.binary(max_size=300) | JSON_VALUES.map(lambda v: json.dumps(v).encode()) | JSON_VALUES)
def test_the_recorders_parser_refuses_with_entry_refused_only(submission: Any) -> None:
    try:
        parsed = Recorder(None).parse(submission)  # type: ignore[arg-type]  # parsing needs no db
    except EntryRefused as refused:
        assert refused.status == "rejected" and refused.code
        return
    assert isinstance(parsed["payload"], dict) and parsed["alg"] in ledger_entry.ALGS


@FUZZ
@given(data=st.data())
def test_signed_hostile_payloads_are_recorded_or_refused_never_crash(world: Any, data: Any):
    """The sync API's batch service with a hostile entry signed by the teacher's real key and
    pointing at the real school, so every check after the signature (journal, lesson, student,
    term, supersedes) and the database see the hostile values; a valid entry follows it in
    the same batch and must be stored whatever happened to the first."""
    ids = {
        "entry_id": world.payload()["entry_id"],
        "journal": world.log.origin,
        "device_id": world.device.kid,
        "author": world.teacher.id,
        "lesson": world.lesson.id,
        "student": world.student.id,
        "subject": world.subject.id,
        "term": world.q2.id,
    }
    payload = data.draw(mutated_payloads(ids))
    valid = world.signed("topic")
    try:
        signature = ledger_entry.sign_payload(
            world.device.private_key, ledger_entry.canonical_json(payload)
        )
    except ledger_entry.PayloadError:
        return  # not even JSON a device could sign
    submission = {
        "payload": payload,
        "alg": "ed25519",
        "kid": world.device.kid,
        "sig": base64.b64encode(signature).decode(),
    }
    with world.session.begin_nested():
        outcome = upload_batch(world.session, world.teacher, [submission, valid])
    statuses = [result.status for result in outcome.results]
    assert statuses[0] in ("accepted", "duplicate", "rejected", "conflict", "quarantined")
    assert statuses[1] == "accepted", "a hostile entry undid its neighbour in the batch"
    if statuses[0] != "accepted":
        assert outcome.results[0].code and outcome.results[0].message


# -- tlog proofs -----------------------------------------------------------------------------------

LOG_KEY = Ed25519PrivateKey.generate()
ORIGIN = "school.example.kz/journal/2026-2027/7"
VERIFIER = note.parse_vkey(note.vkey("school.example.kz", LOG_KEY.public_key()))


@st.composite
def valid_proofs(draw: Any) -> tuple[bytes, str]:
    """A leaf and its .tlog-proof text against a signed checkpoint of a small log."""
    size = draw(st.integers(1, 40))
    leaves = [f"leaf {n}".encode() for n in range(size)]
    tree = merkle.MerkleTree([merkle.leaf_hash(leaf) for leaf in leaves])
    checkpoint = note.sign_checkpoint(
        note.Checkpoint(ORIGIN, size, tree.root(size)), "school.example.kz", LOG_KEY
    )
    index = draw(st.integers(0, size - 1))
    extra = draw(st.none() | st.binary(max_size=12))
    proof = tlogproof.make_tlog_proof(tree, index, checkpoint, extra)
    return leaves[index], tlogproof.format_tlog_proof(proof)


def mutate_lines(text: str, draw: Any) -> str:
    """A line-level mutation: drop, repeat, swap or replace one line, or change the index."""
    lines = text.split("\n")
    position = draw(st.integers(0, len(lines) - 1))
    how = draw(st.sampled_from(["drop", "repeat", "swap", "replace", "index"]))
    if how == "drop":
        del lines[position]
    elif how == "repeat":
        lines.insert(position, lines[position])
    elif how == "swap" and position + 1 < len(lines):
        lines[position], lines[position + 1] = lines[position + 1], lines[position]
    elif how == "replace":
        lines[position] = draw(
            st.sampled_from(["", "index 01", "index -1", "extra ", "extra @@", "A" * 44, " "])
            | st.text(max_size=60)
        )
    else:
        index = draw(st.integers(-3, 2**64 + 3))
        lines = [f"index {index}" if line.startswith("index ") else line for line in lines]
    return "\n".join(lines)


@PARSERS
@given(st.binary(max_size=600) | st.text(max_size=600))
def test_parse_tlog_proof_refuses_arbitrary_input_with_proof_format_error_only(raw: Any):
    try:
        proof = tlogproof.parse_tlog_proof(raw)
    except tlogproof.ProofFormatError:
        return
    text = raw.decode() if isinstance(raw, bytes) else raw
    assert tlogproof.format_tlog_proof(proof) == text


@PARSERS
@given(valid_proofs(), st.data())
def test_mutated_tlog_proofs_are_refused_or_canonical_and_never_verify_wrongly(
    proof: tuple[bytes, str], data: Any
) -> None:
    leaf, text = proof
    assert tlogproof.verify_tlog_proof(leaf, text, VERIFIER, ORIGIN).origin == ORIGIN
    if data.draw(st.booleans()):
        mutated = mutate_lines(text, data.draw)
    else:
        mutated = mutate(text.encode(), data.draw).decode("utf-8", "surrogateescape")
    try:
        parsed = tlogproof.parse_tlog_proof(mutated.encode("utf-8", "surrogateescape"))
    except tlogproof.ProofFormatError:
        return
    assert tlogproof.format_tlog_proof(parsed) == mutated  # one text per proof
    try:
        tlogproof.verify_tlog_proof(leaf, mutated, VERIFIER, ORIGIN)
    except merkle.ProofError:
        return
    # Only a change that leaves the proof's meaning intact may still verify.
    original = tlogproof.parse_tlog_proof(text)
    assert (parsed.index, parsed.hashes) == (original.index, original.hashes)

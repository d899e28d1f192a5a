"""Journal and ledger logs: their origins, the school's own signed records, checkpoints, export
and verification. Entries from devices are recorded by ``journal.recording.recorder``.

Every function takes the session first, flushes, and never commits: the request, command or job
that calls it commits once at its boundary.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from auth.models import DeviceKey, User

from .db import (
    bound_lock_wait,
    utcnow,
)
from .keys import LogKey
from .ledger import audit, merkle, note
from .ledger import entry as ledger_entry
from .models import (
    Checkpoint,
    ClassGroup,
    Entry,
    Log,
    School,
    SchoolYear,
)
from .recording.recorder import Recorded
from .recording.rows import ENTRY_COLUMNS, insert_entries

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
    row = {
        "log_id": log.id,
        "seq": seq,
        "received_at": now,
        "leaf": leaf,
        "leaf_hash": merkle.leaf_hash(leaf),
        **columns,
    }
    unknown = row.keys() - set(ENTRY_COLUMNS)
    if unknown:
        raise TypeError(f"entries have no columns {sorted(unknown)}")
    insert_entries(session, [tuple(row.get(name) for name in ENTRY_COLUMNS)])
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
        # In rows.ENTRY_COLUMNS' order.
        rows.append(
            (
                log.id,
                seq,
                entry_id,
                record.kind,
                None,  # author
                log_key.kid,
                seq,  # device_seq
                None,  # lesson
                record.student_id,
                record.cell,
                now,
                leaf,
                merkle.leaf_hash(leaf),
            )
        )
        recorded.append(Recorded("accepted", entry_id, log.id, seq))
    insert_entries(session, rows)
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
    # The checking processes start now and import while the rows are read (as journal-verify's).
    with audit.worker_pool(log.size) as pool:
        return _verify_rows(session, school, log, pool)


def _verify_rows(
    session: Session, school: School, log: Log, pool: Executor | None
) -> audit.AuditReport:
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
        pool=pool,
    )
    if log.size != len(rows):
        report.add(None, f"the log says {log.size} entries but {len(rows)} are stored")
    return report

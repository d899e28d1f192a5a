"""Signatures are checked on every core, and the report is the same as on one."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from journal.ledger import audit, note
from journal.ledger.entry import canonical_json
from tests.archive.sample_bag import KEY_NAME, ORIGIN, make_log


def _damaged_log(
    count: int,
) -> tuple[list[bytes], dict[str, audit.DeviceKeyInfo], list[str], note.Verifier]:
    log_key = Ed25519PrivateKey.generate()
    sample = make_log(count, (count // 2, count), log_key, devices=3)
    leaves = list(sample.leaves)
    # A changed grade (bad signature) near the start, another past the first chunk, and an
    # entry_id repeated across chunks: the check that needs every earlier leaf.
    for seq in (5, 2500):
        record = json.loads(leaves[seq])
        record["payload"]["value"]["score"] = 11
        leaves[seq] = canonical_json(record)
    first = json.loads(leaves[10])
    again = json.loads(leaves[4100])
    again["payload"]["entry_id"] = first["payload"]["entry_id"]
    leaves[4100] = canonical_json(again)
    keys = audit.device_keys_from_document(sample.device_keys)
    verifier = note.Verifier.from_public_key(KEY_NAME, log_key.public_key())
    return leaves, keys, list(sample.notes.values()), verifier


def test_serial_and_parallel_reports_are_identical() -> None:
    leaves, keys, notes, verifier = _damaged_log(4500)
    serial = audit.verify_log(leaves, keys, notes, verifier, ORIGIN, workers=1)
    parallel = audit.verify_log(leaves, keys, notes, verifier, ORIGIN, workers=2)
    assert parallel == serial
    assert parallel.summary() == serial.summary()
    seqs = [p.seq for p in serial.problems if p.exact]
    assert 5 in seqs and 2500 in seqs and 4100 in seqs
    assert any("entry_id also used at seq 10" in p.what for p in parallel.problems)
    assert not serial.ok


def test_a_large_log_goes_parallel_by_itself_and_a_small_one_does_not() -> None:
    assert audit._worker_count(None, audit.PARALLEL_MIN_LEAVES - 1) == 1
    assert audit._worker_count(1, 10**6) == 1
    assert audit._worker_count(3, 10) == 3

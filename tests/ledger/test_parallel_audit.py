"""Signatures are checked on every core, and the report is the same as on one."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from journal.ledger import audit, merkle, note
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


def _leaf_problems(report: audit.AuditReport) -> list[audit.Problem]:
    return [p for p in report.problems if p.exact and p.seq is not None]


def test_chunks_report_what_leaf_by_leaf_checks_report() -> None:
    """Clean chunks are passed a chunk at a time (ids, stored seqs and hashes): the problems
    are still those ``check_leaves`` finds leaf by leaf, in the same order."""
    leaves, keys, notes, verifier = _damaged_log(4500)
    # An entry_id repeated inside one chunk, and a leaf with none (both in an otherwise clean
    # chunk), besides the damaged log's bad signatures and repeat across chunks.
    first = json.loads(leaves[3000])
    again = json.loads(leaves[3001])
    again["payload"]["entry_id"] = first["payload"]["entry_id"]
    leaves[3001] = canonical_json(again)
    missing = json.loads(leaves[3500])
    del missing["payload"]["entry_id"]
    leaves[3500] = canonical_json(missing)
    expected = audit.check_leaves(leaves, range(len(leaves)), keys, ORIGIN)
    for workers in (1, 2):
        report = audit.verify_log(leaves, keys, notes, verifier, ORIGIN, workers=workers)
        assert _leaf_problems(report) == expected
    assert [p.seq for p in expected if "entry_id also used" in p.what] == [3001, 4100]

    # Chunk [1024, 2048) is otherwise clean: each stored column's mismatch must be found in it.
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    seqs = list(range(len(leaves)))
    seqs[1030] = 1031
    stored = audit.verify_log(leaves, keys, notes, verifier, ORIGIN, stored_seqs=seqs)
    assert _leaf_problems(stored) == sorted(
        [*expected, audit.Problem(1030, "stored seq 1031 where 1030 was expected")],
        key=lambda p: p.seq or 0,
    )
    hashes[1040] = hashes[1041]
    stored = audit.verify_log(leaves, keys, notes, verifier, ORIGIN, stored_leaf_hashes=hashes)
    assert _leaf_problems(stored) == sorted(
        [*expected, audit.Problem(1040, "the leaf bytes do not match their recorded hash")],
        key=lambda p: p.seq or 0,
    )


def test_a_pool_started_beforehand_gives_the_same_report() -> None:
    leaves, keys, notes, verifier = _damaged_log(4500)
    serial = audit.verify_log(leaves, keys, notes, verifier, ORIGIN, workers=1)
    with audit.worker_pool(len(leaves), workers=2) as pool:
        assert pool is not None
        early = audit.verify_log(leaves, keys, notes, verifier, ORIGIN, workers=2, pool=pool)
    assert early == serial
    with audit.worker_pool(audit.PARALLEL_MIN_LEAVES - 1) as none:
        assert none is None


def test_checkpoint_roots_inside_and_at_the_end_of_chunks() -> None:
    """A checkpoint inside a chunk is computed leaf by leaf, one at a chunk's end from the
    subtree root: both match the signed roots."""
    log_key = Ed25519PrivateKey.generate()
    sizes = (1024, 1500, 2048, 2500)
    sample = make_log(2500, sizes, log_key, devices=2)
    keys = audit.device_keys_from_document(sample.device_keys)
    verifier = note.Verifier.from_public_key(KEY_NAME, log_key.public_key())
    report = audit.verify_log(
        list(sample.leaves), keys, list(sample.notes.values()), verifier, ORIGIN, workers=1
    )
    assert report.ok, report.summary()
    assert sorted(report.checkpoints_checked) == list(sizes)

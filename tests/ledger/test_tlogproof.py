"""C2SP tlog-proof files: format, verification, tampering."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from journal.ledger.merkle import MerkleTree, ProofError, leaf_hash, root
from journal.ledger.note import Checkpoint, Verifier, sign_checkpoint
from journal.ledger.tlogproof import (
    HEADER,
    ProofFormatError,
    TlogProof,
    format_tlog_proof,
    make_tlog_proof,
    parse_tlog_proof,
    verify_tlog_proof,
)

ORIGIN = "school.example.kz/journal/2026-2027/7A"
KEY = Ed25519PrivateKey.generate()
VERIFIER = Verifier.from_public_key(ORIGIN, KEY.public_key())
LINES = [f'{{"seq":{i},"entry":"ә{i}"}}'.encode() for i in range(11)]
TREE_HASHES = [leaf_hash(line) for line in LINES]
TREE = MerkleTree(TREE_HASHES)
CHECKPOINT = sign_checkpoint(Checkpoint(ORIGIN, 11, TREE.root()), ORIGIN, KEY)


def proof_text(index: int, extra: bytes | None = None) -> str:
    return format_tlog_proof(make_tlog_proof(TREE, index, CHECKPOINT, extra))


def test_format_known_layout() -> None:
    h1, h2 = bytes(32), bytes(range(32))
    text = format_tlog_proof(TlogProof(5, (h1, h2), CHECKPOINT))
    assert text == (
        "c2sp.org/tlog-proof@v1\n"
        "index 5\n"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
        "\n" + CHECKPOINT
    )
    with_extra = format_tlog_proof(TlogProof(0, (), CHECKPOINT, b"age-v1"))
    assert with_extra == f"{HEADER}\nextra YWdlLXYx\nindex 0\n\n{CHECKPOINT}"


@pytest.mark.parametrize("extra", [None, b"", b"context \x00\xff"])
def test_round_trip(extra: bytes | None) -> None:
    proof = make_tlog_proof(TREE, 7, CHECKPOINT, extra)
    assert proof.hashes == tuple(TREE.inclusion_proof(7))
    text = format_tlog_proof(proof)
    assert parse_tlog_proof(text) == proof
    assert parse_tlog_proof(text.encode()) == proof
    assert format_tlog_proof(parse_tlog_proof(text)) == text


@pytest.mark.parametrize("index", range(11))
def test_every_leaf_verifies(index: int) -> None:
    cp = verify_tlog_proof(LINES[index], proof_text(index), VERIFIER, origin=ORIGIN)
    assert cp == Checkpoint(ORIGIN, 11, TREE.root())


def test_proof_against_an_older_checkpoint() -> None:
    old = sign_checkpoint(Checkpoint(ORIGIN, 6, root(TREE_HASHES[:6])), ORIGIN, KEY)
    text = format_tlog_proof(make_tlog_proof(TREE, 5, old))
    assert verify_tlog_proof(LINES[5], text, VERIFIER).size == 6
    with pytest.raises(ProofError):
        make_tlog_proof(TREE, 6, old)


def test_wrong_leaf_verifier_or_origin_is_rejected() -> None:
    text = proof_text(3)
    with pytest.raises(ProofError):
        verify_tlog_proof(LINES[4], text, VERIFIER)
    with pytest.raises(ProofError):
        verify_tlog_proof(LINES[3] + b" ", text, VERIFIER)
    stranger = Verifier.from_public_key(ORIGIN, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(ProofError, match="checkpoint"):
        verify_tlog_proof(LINES[3], text, stranger)
    with pytest.raises(ProofError, match="origin"):
        verify_tlog_proof(LINES[3], text, VERIFIER, origin="school.example.kz/ledger")


def test_every_changed_character_is_rejected() -> None:
    """Changing any one character of the file breaks parsing, the signature or the proof,
    except in the unauthenticated extra line."""
    text = proof_text(4, extra=b"note")
    verify_tlog_proof(LINES[4], text, VERIFIER)
    extra_line = text.split("\n")[1]
    assert extra_line.startswith("extra ")
    start = len(HEADER) + 1
    for i, ch in enumerate(text):
        if start <= i < start + len(extra_line):
            continue
        replacement = "B" if ch != "B" else "C"
        changed = text[:i] + replacement + text[i + 1 :]
        with pytest.raises(ProofError):
            verify_tlog_proof(LINES[4], changed, VERIFIER)


def test_index_and_hash_tampering_is_rejected() -> None:
    proof = make_tlog_proof(TREE, 2, CHECKPOINT)
    for index in [1, 3, 10, 11, 2**64 - 1]:
        text = format_tlog_proof(TlogProof(index, proof.hashes, CHECKPOINT))
        with pytest.raises(ProofError):
            verify_tlog_proof(LINES[2], text, VERIFIER)
    for i in range(len(proof.hashes)):
        hashes = list(proof.hashes)
        hashes[i] = bytes([hashes[i][0] ^ 1]) + hashes[i][1:]
        text = format_tlog_proof(TlogProof(2, tuple(hashes), CHECKPOINT))
        with pytest.raises(ProofError, match="root"):
            verify_tlog_proof(LINES[2], text, VERIFIER)
    for wrong_length in [proof.hashes[:-1], (*proof.hashes, proof.hashes[0]), ()]:
        text = format_tlog_proof(TlogProof(2, wrong_length, CHECKPOINT))
        with pytest.raises(ProofError):
            verify_tlog_proof(LINES[2], text, VERIFIER)


GOOD = proof_text(1)
HASH_LINE = GOOD.split("\n")[2]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(GOOD.replace(HEADER, "c2sp.org/tlog-proof@v2"), id="other version"),
        pytest.param(GOOD.replace(HEADER + "\n", ""), id="no header"),
        pytest.param(GOOD.replace("index 1", "index 01"), id="leading zero"),
        pytest.param(GOOD.replace("index 1", "index +1"), id="plus sign"),
        pytest.param(GOOD.replace("index 1", "index  1"), id="two spaces"),
        pytest.param(GOOD.replace("index 1", "index"), id="index without number"),
        pytest.param(GOOD.replace("index 1", "Index 1"), id="capital Index"),
        pytest.param(GOOD.replace("index 1\n", ""), id="no index line"),
        pytest.param(GOOD.replace("index 1", "index 18446744073709551616"), id="index 2**64"),
        pytest.param(GOOD.replace(HASH_LINE, HASH_LINE[:-2] + "=="), id="non-zero padding bits"),
        pytest.param(GOOD.replace(HASH_LINE, HASH_LINE[:-1]), id="hash without padding"),
        pytest.param(
            GOOD.replace(HASH_LINE, base64.b64encode(bytes(31)).decode()), id="short hash"
        ),
        pytest.param(GOOD.replace(HASH_LINE, base64.b64encode(bytes(64)).decode()), id="long hash"),
        pytest.param(GOOD.replace(HASH_LINE, HASH_LINE + " "), id="trailing space"),
        pytest.param(GOOD.replace(HEADER, HEADER + "\nextra !!"), id="extra not base64"),
        pytest.param(GOOD.replace(HEADER, HEADER + "\nextra"), id="extra without space"),
        pytest.param(GOOD.replace("\n\n", "\n", 1), id="no empty line"),
        pytest.param(GOOD.replace("\n", "\r\n"), id="CRLF"),
        pytest.param(GOOD.split("\n\n")[0] + "\n\n", id="no checkpoint"),
        pytest.param(
            GOOD.split("\n\n")[0] + "\n\n" + GOOD.split("\n\n")[1] + "\n",
            id="unsigned checkpoint",
        ),
        pytest.param(GOOD[:-1], id="no final newline"),
        pytest.param(
            GOOD.replace("index 1\n", "index 1\n" + (HASH_LINE + "\n") * 61), id="65 hashes"
        ),
    ],
)
def test_malformed_proofs_are_rejected(text: str) -> None:
    with pytest.raises(ProofFormatError):
        parse_tlog_proof(text)
    with pytest.raises(ProofError):
        verify_tlog_proof(LINES[1], text, VERIFIER)


def test_invalid_utf8_is_rejected() -> None:
    with pytest.raises(ProofFormatError):
        parse_tlog_proof(b"\xff" + GOOD.encode())


def test_format_refuses_bad_proofs() -> None:
    for proof in [
        TlogProof(-1, (), CHECKPOINT),
        TlogProof(0, (b"short",), CHECKPOINT),
        TlogProof(0, (bytes(32),) * 65, CHECKPOINT),
        TlogProof(0, (), "not a checkpoint\n"),
    ]:
        with pytest.raises(ProofFormatError):
            format_tlog_proof(proof)


def test_make_refuses_a_checkpoint_of_other_leaves() -> None:
    other = MerkleTree([leaf_hash(b"x" + line) for line in LINES])
    with pytest.raises(ProofError, match="does not match"):
        make_tlog_proof(other, 0, CHECKPOINT)
    with pytest.raises(ProofError, match="beyond"):
        make_tlog_proof(MerkleTree(TREE_HASHES[:5]), 0, CHECKPOINT)
    with pytest.raises(ProofError):
        make_tlog_proof(TREE, 11, CHECKPOINT)

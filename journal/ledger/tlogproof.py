"""C2SP transparency log proofs (c2sp.org/tlog-proof@v1, file extension .tlog-proof).

    c2sp.org/tlog-proof@v1
    extra <base64 opaque data>          (optional line; not authenticated)
    index <zero-based leaf index, decimal without leading zeros>
    <base64 hash>                       (zero or more: the RFC 9162 inclusion path,
    ...                                  leaf sibling first, up to the root's child)
                                        (an empty line)
    <signed checkpoint note, verbatim>

The checkpoint is a c2sp.org/tlog-checkpoint signed note; it ends the file.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .merkle import HASH_SIZE, MerkleTree, ProofError, leaf_hash, verify_inclusion
from .note import (
    MAX_TREE_SIZE,
    Checkpoint,
    NoteError,
    Verifier,
    parse_checkpoint,
    split_note,
    verify_checkpoint,
)

HEADER = "c2sp.org/tlog-proof@v1"
FILE_EXTENSION = ".tlog-proof"
# An inclusion path in a tree of at most 2**64 leaves has at most 64 hashes.
MAX_PROOF_HASHES = 64
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class ProofFormatError(ProofError):
    """A .tlog-proof file that does not follow the format."""


@dataclass(frozen=True)
class TlogProof:
    """Leaf index, inclusion path and the signed checkpoint it leads to; `extra` is optional."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None


def _decode(text: str, what: str) -> bytes:
    if not _BASE64.fullmatch(text):
        raise ProofFormatError(f"{what} is not standard base64")
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:
        raise ProofFormatError(f"{what} is not standard base64") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise ProofFormatError(f"{what} is not canonical base64")
    return data


def _unverified_checkpoint(note: str) -> Checkpoint:
    try:
        text, _ = split_note(note)
        return parse_checkpoint(text)
    except NoteError as exc:
        raise ProofFormatError(f"checkpoint: {exc}") from None


def format_tlog_proof(proof: TlogProof) -> str:
    """The .tlog-proof text."""
    if isinstance(proof.index, bool) or not 0 <= proof.index <= MAX_TREE_SIZE:
        raise ProofFormatError(f"index {proof.index} is out of range")
    if len(proof.hashes) > MAX_PROOF_HASHES:
        raise ProofFormatError(f"more than {MAX_PROOF_HASHES} proof hashes")
    if any(len(h) != HASH_SIZE for h in proof.hashes):
        raise ProofFormatError("every proof hash must be 32 bytes")
    _unverified_checkpoint(proof.checkpoint)
    lines = [HEADER]
    if proof.extra is not None:
        lines.append("extra " + base64.b64encode(proof.extra).decode("ascii"))
    lines.append(f"index {proof.index}")
    lines.extend(base64.b64encode(h).decode("ascii") for h in proof.hashes)
    return "\n".join(lines) + "\n\n" + proof.checkpoint


def parse_tlog_proof(text: str | bytes) -> TlogProof:
    """Strictly parse a .tlog-proof; the checkpoint must be a well-formed (unverified) note."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ProofFormatError("proof is not valid UTF-8") from None
    head, blank, checkpoint = text.partition("\n\n")
    if not blank:
        raise ProofFormatError("proof has no empty line before the checkpoint")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise ProofFormatError(f"proof does not start with {HEADER}")
    position = 1
    extra: bytes | None = None
    if position < len(lines) and lines[position].startswith("extra "):
        extra = _decode(lines[position][len("extra ") :], "extra data")
        position += 1
    if position == len(lines) or not lines[position].startswith("index "):
        raise ProofFormatError("proof has no index line")
    index_text = lines[position][len("index ") :]
    if not _DECIMAL.fullmatch(index_text) or int(index_text) > MAX_TREE_SIZE:
        raise ProofFormatError(f"index {index_text!r} is not a decimal without leading zeros")
    hash_lines = lines[position + 1 :]
    if len(hash_lines) > MAX_PROOF_HASHES:
        raise ProofFormatError(f"more than {MAX_PROOF_HASHES} proof hashes")
    hashes = tuple(_decode(line, "proof hash") for line in hash_lines)
    if any(len(h) != HASH_SIZE for h in hashes):
        raise ProofFormatError("every proof hash must be 32 bytes")
    _unverified_checkpoint(checkpoint)
    return TlogProof(int(index_text), hashes, checkpoint, extra)


def make_tlog_proof(
    leaves: MerkleTree | Sequence[bytes],
    index: int,
    signed_checkpoint: str,
    extra: bytes | None = None,
) -> TlogProof:
    """Proof for leaf `index` against a signed checkpoint over these leaf hashes."""
    tree = leaves if isinstance(leaves, MerkleTree) else MerkleTree(leaves)
    cp = _unverified_checkpoint(signed_checkpoint)
    if cp.size > tree.size:
        raise ProofError(f"checkpoint size {cp.size} is beyond the {tree.size} leaves given")
    if tree.root(cp.size) != cp.root_hash:
        raise ProofError("checkpoint root hash does not match the leaves given")
    if not 0 <= index < cp.size:
        raise ProofError(f"leaf index {index} is not below checkpoint size {cp.size}")
    hashes = tuple(tree.inclusion_proof(index, cp.size))
    return TlogProof(index, hashes, signed_checkpoint, extra)


def verify_tlog_proof(
    leaf_data: bytes, text: str | bytes, verifier: Verifier, origin: str | None = None
) -> Checkpoint:
    """Check that `leaf_data` is in the log whose checkpoint `verifier` signed; ProofError if not.

    Returns the verified checkpoint. The extra data, if any, is not authenticated.
    """
    proof = parse_tlog_proof(text)
    try:
        cp = verify_checkpoint(proof.checkpoint, verifier, origin)
    except NoteError as exc:
        raise ProofError(f"checkpoint does not verify: {exc}") from None
    verify_inclusion(leaf_hash(leaf_data), proof.index, cp.size, proof.hashes, cp.root_hash)
    return cp

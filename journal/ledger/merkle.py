"""Merkle tree hashes, inclusion and consistency proofs of RFC 9162 §2.1 (SHA-256).

Leaf hash = SHA-256(0x00 ‖ data); interior node = SHA-256(0x01 ‖ left ‖ right). The tree over
n leaves splits at the largest power of two smaller than n, so every node covers a range
[start, end) whose left part is a perfect subtree of 2**k leaves aligned to 2**k. `MerkleTree`
keeps the hashes of all perfect aligned subtrees, so any node hash, and so any proof for any
tree size up to the number of leaves it holds, costs O(log n) hashes once the tree is built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof, or the arguments it is checked against, does not verify."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 ‖ data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right)."""
    return _sha256(b"\x01" + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Root hash (MTH) of the tree whose leaves have these hashes."""
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    sha256 = _sha256
    while len(level) > 1:
        # Pairing level by level and carrying an odd last node up gives the RFC tree.
        pairs = [
            sha256(b"\x01" + left + right).digest()
            for left, right in zip(level[0::2], level[1::2], strict=False)
        ]
        if len(level) % 2:
            pairs.append(level[-1])
        level = pairs
    return level[0]


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class TreeBuilder:
    """Incremental root: keeps one perfect subtree root per set bit of the size (compact range)."""

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []

    @classmethod
    def resume(cls, size: int, hashes: Sequence[bytes]) -> TreeBuilder:
        """Continue from a saved `size` and `hashes` (perfect subtree roots, largest first)."""
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError(f"a tree of size {size} needs {max(size, 0).bit_count()} hashes")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("every hash must be 32 bytes")
        builder = cls()
        builder._size = size
        builder._stack = list(hashes)
        return builder

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Perfect subtree roots, largest (leftmost) first: the state to save for `resume`."""
        return tuple(self._stack)

    def append(self, leaf_hash: bytes) -> None:
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError("a leaf hash must be 32 bytes")
        node = leaf_hash
        n = self._size
        while n & 1:
            node = node_hash(self._stack.pop(), node)
            n >>= 1
        self._stack.append(node)
        self._size += 1

    def append_subtree(self, subtree_root: bytes, count: int) -> None:
        """Append ``count`` leaves at once by the root of their perfect subtree: ``count`` is a
        power of two and the size a multiple of it (a verifier's worker hashes that much)."""
        if count <= 0 or count & (count - 1) or self._size % count:
            raise ValueError(f"{count} leaves are not a perfect subtree aligned at {self._size}")
        if len(subtree_root) != HASH_SIZE:
            raise ValueError("a subtree root must be 32 bytes")
        node = subtree_root
        n = self._size // count
        while n & 1:
            node = node_hash(self._stack.pop(), node)
            n >>= 1
        self._stack.append(node)
        self._size += count

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node


class MerkleTree:
    """All perfect subtree hashes over a list of leaf hashes, for fast roots and proofs."""

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        level = list(leaf_hashes)
        if any(len(h) != HASH_SIZE for h in level):
            raise ValueError("every leaf hash must be 32 bytes")
        sha256 = _sha256
        self._levels: list[list[bytes]] = [level]
        while len(level) > 1:
            level = [
                sha256(b"\x01" + left + right).digest()
                for left, right in zip(level[0::2], level[1::2], strict=False)
            ]
            self._levels.append(level)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def _range_hash(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end), a node of the RFC tree (start aligned, end <= size)."""
        pieces: list[bytes] = []
        while start < end:
            height = (end - start).bit_length() - 1
            pieces.append(self._levels[height][start >> height])
            start += 1 << height
        node = pieces[-1]
        for left in reversed(pieces[:-1]):
            node = node_hash(left, node)
        return node

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} is outside 0..{self.size}")

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        self._check_size(size)
        return self._range_hash(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) of RFC 9162 §2.1.3.1, leaf sibling first."""
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is outside 0..{size - 1}")
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                path.append(self._range_hash(start + k, end))
                end = start + k
            else:
                path.append(self._range_hash(start, start + k))
                start += k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[new_size]) of RFC 9162 §2.1.4.1; empty when old_size is 0 or equal."""
        new_size = self.size if new_size is None else new_size
        self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise ValueError(f"old size {old_size} is outside 0..{new_size}")
        if old_size in (0, new_size):
            return []
        proof: list[bytes] = []
        start, end, m, complete = 0, new_size, old_size, True
        while m != end - start:
            k = _split(end - start)
            if m <= k:
                proof.append(self._range_hash(start + k, end))
                end = start + k
            else:
                proof.append(self._range_hash(start, start + k))
                start += k
                m -= k
                complete = False
        if not complete:
            proof.append(self._range_hash(start, end))
        proof.reverse()
        return proof


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """Inclusion proof for leaf `index` in the tree of the first `size` leaf hashes."""
    if not 0 <= size <= len(leaf_hashes):
        raise ValueError(f"tree size {size} is outside 0..{len(leaf_hashes)}")
    return MerkleTree(leaf_hashes[:size]).inclusion_proof(index, size)


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """Consistency proof from tree size `old_size` to `new_size` over these leaf hashes."""
    if not 0 <= new_size <= len(leaf_hashes):
        raise ValueError(f"tree size {new_size} is outside 0..{len(leaf_hashes)}")
    return MerkleTree(leaf_hashes[:new_size]).consistency_proof(old_size, new_size)


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def inclusion_proof_length(index: int, size: int) -> int:
    """Number of hashes in the inclusion proof of leaf `index` in a tree of `size` leaves."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside 0..{size - 1}")
    # Levels where index and size - 1 still differ, plus the right-edge levels above them.
    last = size - 1
    inner = (index ^ last).bit_length()
    return inner + (last >> inner).bit_count()


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an inclusion proof by RFC 9162 §2.1.3.2; raise ProofError if it fails."""
    if index < 0 or size < 0:
        raise ProofError("index and size must not be negative")
    if index >= size:
        raise ProofError(f"leaf index {index} is not below tree size {size}")
    _check_hash(leaf_hash, "leaf hash")
    _check_hash(root, "root hash")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof hash {i}")
    expected = inclusion_proof_length(index, size)
    if len(proof) != expected:
        raise ProofError(f"proof has {len(proof)} hashes, a tree of {size} needs {expected}")
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError("proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is shorter than the path to the root")
    if r != root:
        raise ProofError("proof does not lead to the root hash")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check a consistency proof by RFC 9162 §2.1.4.2; raise ProofError if it fails.

    Equal sizes need an empty proof and equal roots; old size 0 needs an empty proof and
    the empty-tree root as old root.
    """
    if old_size < 0 or new_size < 0:
        raise ProofError("sizes must not be negative")
    if old_size > new_size:
        raise ProofError(f"old size {old_size} is larger than new size {new_size}")
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof hash {i}")
    if old_size == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        if old_root != EMPTY_ROOT:
            raise ProofError("old root is not the empty-tree root")
        return
    if old_size == new_size:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("equal sizes with different roots")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("proof is longer than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is shorter than needed")
    if fr != old_root:
        raise ProofError("proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("proof does not lead to the new root")

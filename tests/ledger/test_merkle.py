"""RFC 9162 Merkle trees: reference vectors, a naive second implementation, and properties."""

from __future__ import annotations

import hashlib
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journal.ledger.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofError,
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    inclusion_proof_length,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

# transparency-dev/merkle proof/verify_test.go: the RFC 6962 reference tree.
LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ROOTS = [
    bytes.fromhex(h)
    for h in [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
]
# (0-based leaf index, tree size, proof); the Go file numbers leaves from 1.
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
LEAF_HASHES = [leaf_hash(data) for data in LEAVES]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


# --- an independent, naive transcription of the RFC 9162 definitions -------------------------


def naive_split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(hashes: list[bytes]) -> bytes:
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = naive_split(len(hashes))
    return hashlib.sha256(b"\x01" + naive_mth(hashes[:k]) + naive_mth(hashes[k:])).digest()


def naive_path(m: int, hashes: list[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = naive_split(len(hashes))
    if m < k:
        return naive_path(m, hashes[:k]) + [naive_mth(hashes[k:])]
    return naive_path(m - k, hashes[k:]) + [naive_mth(hashes[:k])]


def naive_subproof(m: int, hashes: list[bytes], complete: bool) -> list[bytes]:
    n = len(hashes)
    if m == n:
        return [] if complete else [naive_mth(hashes)]
    k = naive_split(n)
    if m <= k:
        return naive_subproof(m, hashes[:k], complete) + [naive_mth(hashes[k:])]
    return naive_subproof(m - k, hashes[k:], False) + [naive_mth(hashes[:k])]


@cache
def path_sides(m: int, n: int) -> tuple[bool, ...]:
    """For each hash of PATH(m, D[n]), whether the sibling lies on the left."""
    if n == 1:
        return ()
    k = naive_split(n)
    if m < k:
        return (*path_sides(m, k), False)
    return (*path_sides(m - k, n - k), True)


def consistency_shape(m: int, n: int) -> tuple[bool, tuple[bool, ...]]:
    """What the §2.1.4.2 verifier computes for sizes (m, n): it walks the path of leaf m - 1
    above the levels where the old tree is already complete, and prepends the old root when m
    is a power of two. Equal shapes mean the very same computation."""
    trailing_ones = ((m - 1) ^ m).bit_length() - 1
    return (m & (m - 1) == 0, path_sides(m - 1, n)[trailing_ones:])


# --- known answers ----------------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    expected = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert EMPTY_ROOT.hex() == expected
    assert root([]) == EMPTY_ROOT
    assert MerkleTree([]).root() == EMPTY_ROOT


def test_leaf_and_node_hash_domain_separation() -> None:
    assert leaf_hash(b"") == ROOTS[0]
    assert leaf_hash(b"") != hashlib.sha256(b"").digest()
    assert node_hash(LEAF_HASHES[0], LEAF_HASHES[1]) == ROOTS[1]


@pytest.mark.parametrize("size", range(1, 9))
def test_reference_roots_for_every_prefix(size: int) -> None:
    assert root(LEAF_HASHES[:size]) == ROOTS[size - 1]
    assert MerkleTree(LEAF_HASHES).root(size) == ROOTS[size - 1]
    builder = TreeBuilder()
    for h in LEAF_HASHES[:size]:
        builder.append(h)
    assert builder.root() == ROOTS[size - 1]


def test_reference_root_of_all_eight() -> None:
    assert root(LEAF_HASHES).hex() == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    )


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION_VECTORS)
def test_reference_inclusion_proofs(index: int, size: int, expected: list[str]) -> None:
    proof = inclusion_proof(LEAF_HASHES, index, size)
    assert [h.hex() for h in proof] == expected
    verify_inclusion(LEAF_HASHES[index], index, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "expected"), CONSISTENCY_VECTORS)
def test_reference_consistency_proofs(old: int, new: int, expected: list[str]) -> None:
    proof = consistency_proof(LEAF_HASHES, old, new)
    assert [h.hex() for h in proof] == expected
    verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION_VECTORS[1:])
def test_reference_inclusion_probes_are_rejected(
    index: int, size: int, expected: list[str]
) -> None:
    """The corruptions transparency-dev/merkle tries on each reference proof."""
    proof = [bytes.fromhex(h) for h in expected]
    leaf, good_root = LEAF_HASHES[index], ROOTS[size - 1]
    probes = [
        (index - 1, size, good_root, leaf, proof),
        (index + 1, size, good_root, leaf, proof),
        (index ^ 2, size, good_root, leaf, proof),
        (index, size * 2, good_root, leaf, proof),
        (index, size // 2, good_root, leaf, proof),
        (index, size, good_root, SOME_HASH, proof),
        (index, size, EMPTY_ROOT, leaf, proof),
        (index, size, SOME_HASH, leaf, proof),
        (index, size, good_root, leaf, [*proof, good_root]),
        (index, size, good_root, leaf, [good_root, *proof]),
        (index, size, good_root, leaf, proof[:-1]),
        (index, size, good_root, leaf, [proof[0], SOME_HASH, *proof[1:]]),
        (index, size, good_root, leaf, [*proof, b""]),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 8]) + wrong[i][1:]
        probes.append((index, size, good_root, leaf, wrong))
    for p_index, p_size, p_root, p_leaf, p_proof in probes:
        with pytest.raises(ProofError):
            verify_inclusion(p_leaf, p_index, p_size, p_proof, p_root)


@pytest.mark.parametrize(("old", "new", "expected"), CONSISTENCY_VECTORS[1:])
def test_reference_consistency_probes_are_rejected(old: int, new: int, expected: list[str]) -> None:
    proof = [bytes.fromhex(h) for h in expected]
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    probes = [
        (old - 1, new, r1, r2, proof),
        (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof),
        (old, new, SOME_HASH, r2, proof),
        (old, new, r1, SOME_HASH, proof),
        (old, new, r2, r1, proof),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*proof, r1]),
        (old, new, r1, r2, [*proof, r2]),
        (old, new, r1, r2, [r1, *proof]),
        (old, new, r1, r2, [r2, *proof]),
        (old, new, r1, r2, [proof[0], *proof]),
        (old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 16]) + wrong[i][1:]
        probes.append((old, new, r1, r2, wrong))
    for p_old, p_new, p_r1, p_r2, p_proof in probes:
        with pytest.raises(ProofError):
            verify_consistency(p_old, p_new, p_r1, p_r2, p_proof)


@pytest.mark.parametrize(
    ("old", "new", "old_root", "new_root", "proof", "accepted"),
    [
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [], True),
        (0, 1, EMPTY_ROOT, ROOTS[0], [], True),
        (1, 1, ROOTS[0], ROOTS[0], [], True),
        (1, 1, ROOTS[0], ROOTS[1], [], False),
        (0, 0, SOME_HASH, SOME_HASH, [], False),  # size 0 has exactly one root
        (1, 0, ROOTS[0], EMPTY_ROOT, [], False),
        (2, 1, ROOTS[1], ROOTS[0], [], False),
        (1, 2, ROOTS[0], ROOTS[1], [], False),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (0, 1, EMPTY_ROOT, ROOTS[0], [EMPTY_ROOT], False),
        (1, 1, ROOTS[0], ROOTS[0], [EMPTY_ROOT], False),
        (1, 2, ROOTS[0][:31], ROOTS[1], [LEAF_HASHES[1]], False),
    ],
)
def test_consistency_edge_cases(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes], accepted: bool
) -> None:
    if accepted:
        verify_consistency(old, new, old_root, new_root, proof)
    else:
        with pytest.raises(ProofError):
            verify_consistency(old, new, old_root, new_root, proof)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 1)])
def test_inclusion_index_must_be_below_size(index: int, size: int) -> None:
    with pytest.raises(ProofError):
        verify_inclusion(ROOTS[0], index, size, [], ROOTS[0])


def test_inclusion_rejects_wrong_hash_lengths() -> None:
    verify_inclusion(ROOTS[0], 0, 1, [], ROOTS[0])
    with pytest.raises(ProofError):
        verify_inclusion(b"", 0, 1, [], b"")
    with pytest.raises(ProofError):
        verify_inclusion(ROOTS[0], 0, 1, [], ROOTS[0] + b"\x00")


def test_proof_generation_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof(LEAF_HASHES, 8, 8)
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof(LEAF_HASHES, 0, 9)
    with pytest.raises(ValueError, match="outside"):
        consistency_proof(LEAF_HASHES, 5, 4)
    assert consistency_proof(LEAF_HASHES, 0, 8) == []
    assert consistency_proof(LEAF_HASHES, 8, 8) == []


# --- a second implementation, and properties --------------------------------------------------

TREE_HASHES = [leaf_hash(i.to_bytes(4, "big")) for i in range(1000)]
TREE = MerkleTree(TREE_HASHES)


@pytest.mark.parametrize("size", range(0, 65))
def test_roots_and_all_proofs_match_naive_definitions(size: int) -> None:
    hashes = TREE_HASHES[:size]
    assert root(hashes) == naive_mth(hashes) == TREE.root(size)
    for index in range(size):
        assert inclusion_proof(hashes, index, size) == naive_path(index, hashes)
    for old in range(1, size):
        assert consistency_proof(hashes, old, size) == naive_subproof(old, hashes, True)


def test_tree_builder_equals_root_for_sizes_0_to_300() -> None:
    builder = TreeBuilder()
    assert builder.size == 0
    assert builder.root() == EMPTY_ROOT
    for size in range(1, 301):
        builder.append(TREE_HASHES[size - 1])
        assert builder.size == size
        assert len(builder.hashes) == bin(size).count("1")
        assert builder.root() == root(TREE_HASHES[:size]), size


@pytest.mark.parametrize("count", [1, 2, 4, 8, 32])
def test_tree_builder_appends_aligned_perfect_subtrees(count: int) -> None:
    builder = TreeBuilder()
    for start in range(0, 256, count):
        builder.append_subtree(root(TREE_HASHES[start : start + count]), count)
        assert builder.size == start + count
        assert builder.hashes == _one_by_one(start + count).hashes
        assert builder.root() == root(TREE_HASHES[: start + count])
    builder.append(TREE_HASHES[256])
    assert builder.root() == root(TREE_HASHES[:257])


def test_tree_builder_refuses_a_subtree_that_is_not_perfect_and_aligned() -> None:
    builder = _one_by_one(3)
    for count in (0, 3, 2, 4):  # not a power of two, or the size 3 is no multiple of it
        with pytest.raises(ValueError):
            builder.append_subtree(TREE_HASHES[0], count)
    with pytest.raises(ValueError):
        _one_by_one(4).append_subtree(b"short", 4)
    assert builder.size == 3


def _one_by_one(size: int) -> TreeBuilder:
    builder = TreeBuilder()
    for h in TREE_HASHES[:size]:
        builder.append(h)
    return builder


def test_tree_builder_resumes_from_saved_state() -> None:
    builder = TreeBuilder()
    for h in TREE_HASHES[:77]:
        builder.append(h)
    resumed = TreeBuilder.resume(builder.size, builder.hashes)
    for h in TREE_HASHES[77:200]:
        resumed.append(h)
    assert resumed.root() == root(TREE_HASHES[:200])
    with pytest.raises(ValueError):
        TreeBuilder.resume(77, builder.hashes[:-1])
    with pytest.raises(ValueError):
        builder.append(b"short")


def test_root_of_a_million_leaves_is_quick() -> None:
    import time

    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(1_000_000)]
    started = time.perf_counter()
    value = root(hashes)
    elapsed = time.perf_counter() - started
    assert value == MerkleTree(hashes).root()
    assert elapsed < 10, f"root() of 1,000,000 leaves took {elapsed:.1f} s"


def flip_bit(data: bytes, bit: int) -> bytes:
    changed = bytearray(data)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


SIZE_BITS = 11  # sizes below 1001 fit in 10 bits; one more catches growth past them


@settings(max_examples=200, deadline=None)
@given(data=st.data(), size=st.integers(1, 1000))
def test_every_inclusion_proof_verifies_and_single_bit_changes_fail(
    data: st.DataObject, size: int
) -> None:
    index = data.draw(st.integers(0, size - 1), label="index")
    tree_root = TREE.root(size)
    leaf = TREE_HASHES[index]
    proof = TREE.inclusion_proof(index, size)
    assert len(proof) == inclusion_proof_length(index, size) == len(path_sides(index, size))
    verify_inclusion(leaf, index, size, proof, tree_root)

    for i in range(len(proof)):
        bit = data.draw(st.integers(0, 255), label=f"bit of proof[{i}]")
        wrong = list(proof)
        wrong[i] = flip_bit(proof[i], bit)
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, wrong, tree_root)
    root_bit = data.draw(st.integers(0, 255), label="bit of root")
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, proof, flip_bit(tree_root, root_bit))
    leaf_bit = data.draw(st.integers(0, 255), label="bit of leaf")
    with pytest.raises(ProofError):
        verify_inclusion(flip_bit(leaf, leaf_bit), index, size, proof, tree_root)

    for bit in range(SIZE_BITS):
        other_index = index ^ (1 << bit)
        with pytest.raises(ProofError):
            verify_inclusion(leaf, other_index, size, proof, tree_root)

    # A different size is refused unless the verifier would do the very same hashing for it
    # (the RFC 9162 algorithm cannot tell such sizes apart; the signed checkpoint binds them).
    for bit in range(SIZE_BITS):
        other_size = size ^ (1 << bit)
        same_work = index < other_size and path_sides(index, other_size) == path_sides(index, size)
        if same_work:
            verify_inclusion(leaf, index, other_size, proof, tree_root)
        else:
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, other_size, proof, tree_root)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), new=st.integers(1, 1000))
def test_every_consistency_proof_verifies_and_single_bit_changes_fail(
    data: st.DataObject, new: int
) -> None:
    old = data.draw(st.integers(1, new), label="old size")
    old_root, new_root = TREE.root(old), TREE.root(new)
    proof = TREE.consistency_proof(old, new)
    verify_consistency(old, new, old_root, new_root, proof)

    for i in range(len(proof)):
        bit = data.draw(st.integers(0, 255), label=f"bit of proof[{i}]")
        wrong = list(proof)
        wrong[i] = flip_bit(proof[i], bit)
        with pytest.raises(ProofError):
            verify_consistency(old, new, old_root, new_root, wrong)
    old_bit = data.draw(st.integers(0, 255), label="bit of old root")
    with pytest.raises(ProofError):
        verify_consistency(old, new, flip_bit(old_root, old_bit), new_root, proof)
    if old != new:  # with equal sizes only the equality of the roots is checked, see below
        new_bit = data.draw(st.integers(0, 255), label="bit of new root")
        with pytest.raises(ProofError):
            verify_consistency(old, new, old_root, flip_bit(new_root, new_bit), proof)
    else:
        with pytest.raises(ProofError):
            verify_consistency(old, new, old_root, flip_bit(new_root, 0), proof)

    for bit in range(SIZE_BITS):
        for other_old, other_new in ((old ^ (1 << bit), new), (old, new ^ (1 << bit))):
            same_work = (
                0 < other_old < other_new
                and old < new
                and consistency_shape(other_old, other_new) == consistency_shape(old, new)
            )
            if same_work:
                verify_consistency(other_old, other_new, old_root, new_root, proof)
            else:
                with pytest.raises(ProofError):
                    verify_consistency(other_old, other_new, old_root, new_root, proof)

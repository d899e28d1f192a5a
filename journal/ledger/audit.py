"""Check a whole log from its leaves, keys and checkpoints: the one verification routine shared by
``flask journal verify`` (rows from the database) and the standalone bag verifier (files).

Standard library and ``cryptography`` only: this folder is copied into every archive bag.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import functools
import hashlib
import json
import multiprocessing
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NoReturn, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import merkle, note
from .entry import (
    _KID,
    ALGS,
    LEAF_FIELDS,
    MAX_LEAF_BYTES,
    MAX_NESTING,
    MAX_PAYLOAD_BYTES,
    MAX_SAFE_INTEGER,
    SIGNING_CONTEXT,
    Alg,
    KeyFormatError,
    LeafRecord,
    PayloadError,
    load_public_key,
    parse_leaf,
    verify_payload,
)


@dataclass(frozen=True)
class DeviceKeyInfo:
    alg: str
    public_key: bytes
    user: int | None
    revoked_at: str | None


@dataclass(frozen=True)
class Problem:
    seq: int | None  # the first leaf concerned, when one can be named
    what: str
    # False when ``seq`` only starts the range a checkpoint's root does not match: the change is
    # somewhere in it. ``checkpoint`` is then that checkpoint's size.
    exact: bool = True
    checkpoint: int | None = None

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.what}" if self.seq is not None else self.what


@dataclass
class AuditReport:
    origin: str
    size: int = 0
    root: bytes = merkle.EMPTY_ROOT
    checkpoints_checked: list[int] = field(default_factory=list)
    consistency_checked: list[tuple[int, int]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(
        self, seq: int | None, what: str, *, exact: bool = True, checkpoint: int | None = None
    ) -> None:
        self.problems.append(Problem(seq, what, exact, checkpoint))

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [p.seq for p in self.problems if p.seq is not None]
        return min(seqs) if seqs else None

    def summary(self) -> str:
        if self.ok:
            covered = max(self.checkpoints_checked, default=0)
            # Not a failure (entries arrive between checkpoints), but never silent.
            uncovered = (
                f"; the last {self.size - covered} entries are under no checkpoint yet"
                if covered < self.size
                else ""
            )
            return (
                f"OK {self.origin}: {self.size} entries, root "
                f"{base64.b64encode(self.root).decode()}, "
                f"{len(self.checkpoints_checked)} checkpoint(s) verified{uncovered}"
            )
        first = self.first_bad_seq
        head = f"FAILED {self.origin}" + (f": first bad seq {first}" if first is not None else "")
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


def device_keys_from_document(document: Mapping[str, Any]) -> dict[str, DeviceKeyInfo]:
    """Read ``device-keys.json``: ``{kid: {alg, public_key (base64), user, revoked_at}}``."""
    keys = {}
    for kid, info in document.items():
        keys[kid] = DeviceKeyInfo(
            alg=str(info["alg"]),
            public_key=base64.b64decode(info["public_key"], validate=True),
            user=info.get("user"),
            revoked_at=info.get("revoked_at"),
        )
    return keys


def parse_hash_lines(text: str) -> list[bytes]:
    """A consistency proof as stored: one base64 SHA-256 hash per line."""
    hashes = []
    for line in text.splitlines():
        if line:
            value = base64.b64decode(line, validate=True)
            if len(value) != 32:
                raise ValueError("a proof hash must be 32 bytes")
            hashes.append(value)
    return hashes


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def verify_log(
    leaves: Sequence[bytes],
    device_keys: Mapping[str, DeviceKeyInfo],
    checkpoint_notes: Sequence[str],
    verifier: note.Verifier,
    origin: str,
    *,
    consistency: Mapping[tuple[int, int], Sequence[bytes]] | None = None,
    stored_seqs: Sequence[int] | None = None,
    stored_leaf_hashes: Sequence[bytes] | None = None,
    workers: int | None = None,
    pool: Executor | None = None,
) -> AuditReport:
    """Check every leaf, the tree against every checkpoint, and the consistency proofs.

    ``stored_seqs`` and ``stored_leaf_hashes`` are the database's index columns, when there is a
    database: a mismatch with the leaf bytes names the tampered seq. Large logs are checked on
    every core (``workers``: None for all, 1 for this process only), in ``pool`` when the caller
    started it with ``worker_pool``; the report is the same.
    """
    report = AuditReport(origin=origin, size=len(leaves))
    parsed: list[note.Checkpoint] = []
    for text in checkpoint_notes:
        try:
            checkpoint = note.verify_checkpoint(text, verifier, origin)
        except (note.NoteError, ValueError) as exc:
            report.add(None, f"checkpoint signature or format invalid: {exc}")
            continue
        parsed.append(checkpoint)
    parsed.sort(key=lambda cp: cp.size)
    problems: list[Problem] = []  # the leaves' own, added after the checkpoints' (their order)
    # The tree grows as the workers' results arrive, so no walk is left for after the last one.
    builder = merkle.TreeBuilder()
    wanted = {cp.size for cp in parsed}
    roots: dict[int, bytes] = {0: builder.root()} if 0 in wanted else {}
    seen_ids: dict[str, int] = {}
    size = merkle.HASH_SIZE
    for start, hashes, leaf_problems, entry_ids, subtree in _checked_chunks(
        leaves, device_keys, origin, workers, pool
    ):
        end = start + len(entry_ids)
        if subtree is not None and not any(start < w < end for w in wanted):
            builder.append_subtree(subtree, end - start)
            if end in wanted:
                roots[end] = builder.root()
        else:
            for offset in range(0, len(hashes), size):
                builder.append(hashes[offset : offset + size])
                if builder.size in wanted:
                    roots[builder.size] = builder.root()
        if _chunk_is_clean(
            start, end, hashes, leaf_problems, entry_ids, seen_ids, stored_seqs, stored_leaf_hashes
        ):
            continue
        # Something to say in this chunk: leaf by leaf, in the order of the checks.
        for offset, entry_id in enumerate(entry_ids):
            index = start + offset
            leaf_hash_value = hashes[offset * size : (offset + 1) * size]
            if stored_seqs is not None and stored_seqs[index] != index:
                problems.append(
                    Problem(index, f"stored seq {stored_seqs[index]} where {index} was expected")
                )
            if stored_leaf_hashes is not None and stored_leaf_hashes[index] != leaf_hash_value:
                problems.append(Problem(index, "the leaf bytes do not match their recorded hash"))
            problems.extend(leaf_problems.get(index, ()))
            if entry_id is not None:
                if entry_id in seen_ids:
                    problems.append(
                        Problem(index, f"entry_id also used at seq {seen_ids[entry_id]}")
                    )
                else:
                    seen_ids[entry_id] = index
    report.problems[:0] = problems
    report.root = builder.root()

    previous_size = 0
    for checkpoint in parsed:
        if checkpoint.size > len(leaves):
            report.add(
                None,
                f"checkpoint of size {checkpoint.size} covers more entries than the "
                f"{len(leaves)} present: entries were removed",
            )
            continue
        if roots[checkpoint.size] != checkpoint.root_hash:
            # Name a seq only when no single leaf was found bad in the range: then the change
            # is somewhere in it and the range's start is the best first bad seq we can give.
            named = any(
                p.seq is not None and previous_size <= p.seq < checkpoint.size
                for p in report.problems
            )
            report.add(
                None if named or previous_size >= checkpoint.size else previous_size,
                f"the entries do not hash to the root of checkpoint {checkpoint.size} "
                f"(a change between seq {previous_size} and {checkpoint.size - 1})",
                exact=False,
                checkpoint=checkpoint.size,
            )
        else:
            report.checkpoints_checked.append(checkpoint.size)
        previous_size = checkpoint.size

    if consistency:
        roots = {cp.size: cp.root_hash for cp in parsed}
        for (old_size, new_size), proof in sorted(consistency.items()):
            if old_size not in roots or new_size not in roots:
                report.add(None, f"consistency proof {old_size}->{new_size} names no checkpoint")
                continue
            try:
                merkle.verify_consistency(
                    old_size, new_size, roots[old_size], roots[new_size], list(proof)
                )
            except merkle.ProofError as exc:
                report.add(None, f"consistency proof {old_size}->{new_size} fails: {exc}")
            else:
                report.consistency_checked.append((old_size, new_size))
    return report


def _refuse_number(literal: str) -> NoReturn:
    raise ValueError(f"number {literal} is not an integer")


def _safe_int(literal: str) -> int:
    value = int(literal)
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise ValueError(f"integer {literal} is outside ±(2**53 - 1)")
    return value


# One decoder and one encoder for every leaf (json.loads and json.dumps with options build new
# ones on each call).
_DECODER = json.JSONDecoder(
    parse_float=_refuse_number, parse_constant=_refuse_number, parse_int=_safe_int
)
# For a leaf with no run of 16 digits (every one in practice): its integers are all safe, and
# json's own int() is several times cheaper than a hook called for each of them.
_SHORT_INT_DECODER = json.JSONDecoder(parse_float=_refuse_number, parse_constant=_refuse_number)
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))
_PAYLOAD_START = b',"payload":'
_PAYLOAD_END = b',"received_at":'
# Deleting every byte below 0xF0 leaves the lead bytes of 4-byte UTF-8 sequences: JCS orders keys
# by UTF-16 code units and json.dumps by code points, and the two differ only for those.
_BELOW_F0 = bytes(range(0xF0))
# One translation of a leaf answers most questions asked of its bytes (with ``bytes.find``, not
# ``in``, which costs a TypeError raised and cleared in CPython): digits become "0" (a run of
# 16 is an integer that may be unsafe); whitespace, backslashes and the lead bytes of 4-byte
# sequences become "!" (what ``_plainly_canonical`` cannot judge); "-" stays, and the bytes a
# number may follow (":", ",", "[", "{") become "(": "(-0" is a negative number, maybe "-0",
# which json reads as 0.
_CLASSES = bytes(
    ord("0")
    if 0x30 <= b <= 0x39
    else ord("!")
    if b in b" \t\n\r\\" or b >= 0xF0
    else ord("(")
    if b in b":,[{"
    else b
    if b == ord("-")
    else ord("x")
    for b in range(256)
)
_SUSPECT = b"!"
_SIXTEEN_DIGITS = b"0" * 16
_NEGATIVE = b"(-0"
_KEY_END = b'":'
_LEAF_ORDER = tuple(sorted(LEAF_FIELDS))  # ASCII: code points and UTF-16 units order alike
# Key sequences found in increasing order already: a log's payloads have a handful of shapes.
_ORDERED_KEYS: set[tuple[str, ...]] = set()
_CONTAINERS = frozenset({dict, list})
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?Z")


def _plainly_canonical(obj: dict[str, Any], line: bytes) -> bool:
    """Whether ``line``, which decodes to ``obj``, is ``_ENCODER.encode(obj)`` (its UTF-8), for a
    line without whitespace, backslashes, astral-plane characters or a "-0" number: then no
    token has another spelling (every string is written as it reads, every integer as json
    read it), so the text is canonical exactly when every object's keys increase and none
    is repeated. A repeated key leaves fewer keys in the objects than the line's ``":``, which
    end every key (and open a string that starts with a colon: then it says no, and the
    encoder decides). A leaf's top level (its fields in order, the payload an object) is
    judged at once, only the payload's objects one by one: an object anywhere else adds
    ``":`` to the line and none to the count."""
    payload = obj.get("payload")
    if type(payload) is dict and tuple(obj) == _LEAF_ORDER:
        count = _keys_in_order(payload)
        return count >= 0 and count + len(_LEAF_ORDER) == line.count(_KEY_END)
    count = _keys_in_order(obj)
    return count >= 0 and count == line.count(_KEY_END)


def _keys_in_order(value: Any) -> int:
    """How many keys the objects in ``value`` hold, or -1 when one's keys do not increase."""
    count = 0
    if type(value) is dict:
        keys = tuple(value)
        if keys not in _ORDERED_KEYS:
            if any(a >= b for a, b in zip(keys, keys[1:], strict=False)):
                return -1
            if len(_ORDERED_KEYS) < 4096:
                _ORDERED_KEYS.add(keys)
        count = len(keys)
        value = value.values()
    for item in value:
        if type(item) in _CONTAINERS:
            inner = _keys_in_order(item)
            if inner < 0:
                return -1
            count += inner
    return count


def parse_leaf_fast(line: bytes) -> LeafRecord | None:
    """``parse_leaf`` for leaves that are plainly canonical, several times faster; None whenever
    in doubt, and the caller asks ``parse_leaf`` (which also says what is wrong)."""
    fields = _plain_leaf_fields(line)
    return None if fields is None else LeafRecord(*fields)


_LeafFields = tuple[int, str, dict[str, Any], bytes, Alg, str, bytes]


def _plain_leaf_fields(line: bytes) -> _LeafFields | None:
    """``parse_leaf_fast``'s fields, as a tuple (no record built for each leaf a worker checks).

    For JSON without floats, astral-plane characters or deep nesting, ``json.dumps`` with sorted
    keys, no spaces and ``ensure_ascii=False`` writes exactly the RFC 8785 bytes ``parse_leaf``
    requires: so a leaf that is its own re-serialization is canonical. The payload's canonical
    bytes are then the slice of the line between ``"payload":`` and ``,"received_at":``.
    """
    if len(line) > MAX_LEAF_BYTES:
        return None
    if line.count(b"{") + line.count(b"[") > MAX_NESTING:
        return None
    classes = line.translate(_CLASSES)
    suspect = classes.find(_SUSPECT) >= 0
    if suspect and line.translate(None, _BELOW_F0):
        return None
    try:
        text = line.decode("utf-8")
        decoder = _SHORT_INT_DECODER if classes.find(_SIXTEEN_DIGITS) < 0 else _DECODER
        # raw_decode, not decode (a little cheaper): whitespace before or after the object,
        # which decode would allow, makes the leaf not canonical anyway.
        obj, end = decoder.raw_decode(text)
        if end != len(text) or type(obj) is not dict or obj.keys() != LEAF_FIELDS:
            return None
        # Re-serializing decides whenever the quick check cannot say yes: the same leaves pass.
        if (
            suspect or classes.find(_NEGATIVE) >= 0 or not _plainly_canonical(obj, line)
        ) and _ENCODER.encode(obj) != text:
            return None
        seq, received_at, payload = obj["seq"], obj["received_at"], obj["payload"]
        alg, kid, sig_text = obj["alg"], obj["kid"], obj["sig"]
        if (
            type(seq) is not int
            or not 0 <= seq <= MAX_SAFE_INTEGER
            or type(payload) is not dict
            or alg not in ALGS
            or type(kid) is not str
            or not _KID.fullmatch(kid)
            or type(sig_text) is not str
            or type(received_at) is not str
        ):
            return None
        # parse_timestamp's rule: the regex, a real date and time, no ".000000".
        if not _TIMESTAMP.fullmatch(received_at) or received_at.endswith(".000000Z"):
            return None
        dt.datetime.fromisoformat(received_at[:-1])
        sig = binascii.a2b_base64(sig_text, strict_mode=True)
        if not sig or binascii.b2a_base64(sig, newline=False) != sig_text.encode():
            return None
    except (ValueError, RecursionError, UnicodeError, binascii.Error):
        return None
    payload_bytes = line[
        line.index(_PAYLOAD_START) + len(_PAYLOAD_START) : line.rindex(_PAYLOAD_END)
    ]
    if len(payload_bytes) > MAX_PAYLOAD_BYTES:
        return None
    return seq, received_at, payload, payload_bytes, alg, kid, sig


@functools.lru_cache(maxsize=4096)
def _ed25519_key(raw: bytes) -> Ed25519PublicKey:
    key = load_public_key("ed25519", raw)
    assert isinstance(key, Ed25519PublicKey)
    return key


def _verify_signature(alg: str, raw_public_key: bytes, payload_bytes: bytes, sig: bytes) -> bool:
    """``verify_payload``, with Ed25519 keys loaded once per key rather than once per entry."""
    if alg != "ed25519":
        return verify_payload(alg, raw_public_key, payload_bytes, sig)
    key = _ed25519_key(raw_public_key)
    if len(sig) != 64:
        return False
    try:
        key.verify(sig, SIGNING_CONTEXT + payload_bytes)
    except InvalidSignature:
        return False
    return True


def _check_leaf(
    report: AuditReport,
    index: int,
    line: bytes,
    device_keys: Mapping[str, DeviceKeyInfo],
    origin: str,
) -> str | None:
    """Problems of one leaf go into ``report``; returns the entry id the caller must check is
    unique (None when the leaf has none, or was refused before its payload was trusted)."""
    record = parse_leaf_fast(line)
    if record is None:
        try:
            record = parse_leaf(line)
        except (PayloadError, ValueError, KeyError, TypeError, binascii.Error) as exc:
            report.add(index, f"the leaf is not a canonical log record: {exc}")
            return None
    if record.seq != index:
        report.add(index, f"the leaf says seq {record.seq}")
    payload = record.payload
    if payload.get("journal") != origin:
        report.add(index, f"the entry belongs to {payload.get('journal')!r}, not this log")
    key = device_keys.get(record.kid)
    if key is None:
        report.add(index, f"signed by an unknown key {record.kid}")
        return None
    if key.alg != record.alg:
        report.add(index, "the algorithm does not match the key")
        return None
    if payload.get("device_id") != record.kid:
        report.add(index, "device_id does not name the signing key")
    if key.user is not None and payload.get("author") != key.user:
        report.add(index, "the author is not the key's owner")
    try:
        valid = _verify_signature(record.alg, key.public_key, record.payload_bytes, record.sig)
    except KeyFormatError as exc:
        report.add(index, f"unusable key {record.kid}: {exc}")
        return None
    if not valid:
        report.add(index, "the signature does not match the entry")
    if key.revoked_at is not None:
        try:
            if _parse_time(record.received_at) > _parse_time(key.revoked_at):
                report.add(index, "accepted after its key was revoked")
        except ValueError:
            report.add(index, "received_at is not a timestamp")
    entry_id = payload.get("entry_id")
    return entry_id if isinstance(entry_id, str) else None


def _note_entry_id(
    report: AuditReport, index: int, entry_id: str | None, seen_ids: dict[str, int]
) -> None:
    """The one check that needs every earlier leaf: done in order, in this process."""
    if entry_id is None:
        return
    if entry_id in seen_ids:
        report.add(index, f"entry_id also used at seq {seen_ids[entry_id]}")
    else:
        seen_ids[entry_id] = index


# Below this many leaves starting processes costs more than it saves.
PARALLEL_MIN_LEAVES = 4000
# Small enough that the last chunks keep both cores busy to the end; a power of two, so that a
# worker hands back its chunk's perfect subtree root and the caller appends it in one step.
_CHUNK = 1024

# A worker's answer for a chunk, compact to send back: its start, the leaf hashes joined, the
# problems by seq (few), each leaf's entry id, and the root of the chunk's leaves when they
# form a perfect subtree aligned at ``start`` (else None).
_Chunk = tuple[int, bytes, dict[int, list[Problem]], list[str | None], bytes | None]


def _chunk_is_clean(
    start: int,
    end: int,
    hashes: bytes,
    leaf_problems: Mapping[int, list[Problem]],
    entry_ids: list[str | None],
    seen_ids: dict[str, int],
    stored_seqs: Sequence[int] | None,
    stored_leaf_hashes: Sequence[bytes] | None,
) -> bool:
    """True, with the chunk's entry ids noted in ``seen_ids``, when none of its leaves has a
    problem: checked a chunk at a time, as ``verify_log`` does leaf by leaf otherwise."""
    if leaf_problems:
        return False
    if stored_seqs is not None and list(stored_seqs[start:end]) != list(range(start, end)):
        return False
    if stored_leaf_hashes is not None and b"".join(stored_leaf_hashes[start:end]) != hashes:
        return False
    batch = dict(zip(entry_ids, range(start, end), strict=True))
    # An id repeated within the chunk shrinks the batch, one seen before meets it; a leaf
    # without an id (None) is rare enough to be left to the leaf-by-leaf loop.
    if len(batch) != len(entry_ids) or None in batch or not seen_ids.keys().isdisjoint(batch):
        return False
    seen_ids.update(cast(dict[str, int], batch))
    return True


def _ready_keys(device_keys: Mapping[str, DeviceKeyInfo]) -> dict[str, tuple[Any, int | None]]:
    """The Ed25519 keys that are loadable and not revoked, loaded, with their owner: a leaf signed
    by one needs no more than the checks ``_check_range`` makes on its own."""
    ready: dict[str, tuple[Any, int | None]] = {}
    for kid, info in device_keys.items():
        if info.alg != "ed25519" or info.revoked_at is not None:
            continue
        try:
            ready[kid] = (_ed25519_key(info.public_key), info.user)
        except KeyFormatError:
            continue
    return ready


def _check_range(
    leaves: Sequence[bytes], start: int, device_keys: Mapping[str, DeviceKeyInfo], origin: str
) -> _Chunk:
    """``leaves`` are the log's leaves from seq ``start`` on (a chunk, in a worker).

    A leaf that is plainly fine (canonical, in its place, of this log, signed by a ready key
    of its device and owner, the signature good) is passed with the fewest steps; any other
    goes through ``_check_leaf``, which says what is wrong in the words of the report."""
    report = AuditReport(origin=origin)
    problems: dict[int, list[Problem]] = {}
    ready = _ready_keys(device_keys)
    sha256 = hashlib.sha256
    hashes = [sha256(b"\x00" + line).digest() for line in leaves]
    # Three passes, not one: the chunk's signatures checked in one run cost about 3 % less than
    # each between its leaf's parsing (Ed25519 and the interpreter evict each other's caches).
    # A plain leaf's key, signature, signed bytes and entry id; None sends it to _check_leaf.
    plain: list[tuple[Any, bytes, bytes, Any] | None] = []
    for index, line in enumerate(leaves, start):
        fields = _plain_leaf_fields(line)
        if fields is not None:
            seq, _received_at, payload, payload_bytes, alg, kid, sig = fields
            key = ready.get(kid)
            if (
                key is not None
                and seq == index
                and alg == "ed25519"
                and len(sig) == 64
                and payload.get("journal") == origin
                and payload.get("device_id") == kid
                and (key[1] is None or payload.get("author") == key[1])
            ):
                plain.append(
                    (key[0], sig, SIGNING_CONTEXT + payload_bytes, payload.get("entry_id"))
                )
                continue
        plain.append(None)
    for position, check in enumerate(plain):
        if check is not None:
            try:
                check[0].verify(check[1], check[2])
            except InvalidSignature:
                plain[position] = None
    entry_ids: list[str | None] = []
    for index, (line, check) in enumerate(zip(leaves, plain, strict=True), start):
        if check is not None:
            entry_ids.append(check[3] if type(check[3]) is str else None)
            continue
        before = len(report.problems)
        entry_ids.append(_check_leaf(report, index, line, device_keys, origin))
        if len(report.problems) != before:
            problems[index] = report.problems[before:]
    count = len(leaves)
    perfect = count > 0 and not count & (count - 1) and not start % count
    return start, b"".join(hashes), problems, entry_ids, merkle.root(hashes) if perfect else None


def _worker_count(workers: int | None, size: int) -> int:
    if workers is not None:
        return max(1, workers)
    if size < PARALLEL_MIN_LEAVES:
        return 1
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _new_pool(count: int) -> ProcessPoolExecutor:
    # spawn, not fork: a worker must hold none of the caller's files, locks or pipes (a
    # killed caller then leaves no worker behind, and nothing is finalized twice).
    return ProcessPoolExecutor(max_workers=count, mp_context=multiprocessing.get_context("spawn"))


def _started() -> None:
    """Nothing: one call per worker makes it start, and import this module, at once."""


@contextlib.contextmanager
def worker_pool(expected_leaves: int, workers: int | None = None) -> Iterator[Executor | None]:
    """The workers ``verify_log`` will check about ``expected_leaves`` leaves on, started now:
    a worker takes a fraction of a second to start (a new interpreter, its imports), which
    then passes while the caller reads the log instead of after. None when one process will
    do; give what this yields to ``verify_log`` as ``pool``."""
    count = _worker_count(workers, expected_leaves)
    if count == 1:
        yield None
        return
    with _new_pool(count) as pool:
        for _ in range(count):
            pool.submit(_started)
        yield pool


def _checked_chunks(
    leaves: Sequence[bytes],
    device_keys: Mapping[str, DeviceKeyInfo],
    origin: str,
    workers: int | None,
    pool: Executor | None,
) -> Iterator[_Chunk]:
    """Each chunk's leaf hashes, problems and entry ids, in seq order, computed on ``workers``
    cores (in ``pool`` when the caller started one)."""
    count = _worker_count(workers, len(leaves))
    starts = range(0, len(leaves), _CHUNK)
    if count == 1:
        for start in starts:
            yield _check_range(leaves[start : start + _CHUNK], start, device_keys, origin)
        return
    keys = dict(device_keys)
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(_new_pool(count))
        yield from pool.map(
            _check_range,
            [leaves[start : start + _CHUNK] for start in starts],
            starts,
            [keys] * len(starts),
            [origin] * len(starts),
        )


def check_leaves(
    leaves: Sequence[bytes],
    seqs: Sequence[int],
    device_keys: Mapping[str, DeviceKeyInfo],
    origin: str,
) -> list[Problem]:
    """Each leaf's form, place and signature as ``verify_log`` checks them, for leaves that are
    not a whole log (a printout's slice, chosen records); ``seqs`` are their positions."""
    report = AuditReport(origin=origin)
    seen_ids: dict[str, int] = {}
    for seq, line in zip(seqs, leaves, strict=True):
        _note_entry_id(report, seq, _check_leaf(report, seq, line, device_keys, origin), seen_ids)
    return report.problems


# -- a slice of a log, proven against a checkpoint -------------------------------------------
#
# A printout embeds the leaves [start, size) of its period and ``entries-range.txt``: the line
# "start <n>" followed by the compact range of the leaves before it (the roots of the perfect
# subtrees covering [0, start), largest first, base64, one per line). Appending the period's
# leaf hashes to that compact range must give the checkpoint's root at exactly its size.

RANGE_FILE = "entries-range.txt"


def format_range_file(start: int, prefix_hashes: Sequence[bytes]) -> str:
    lines = [f"start {start}"] + [base64.b64encode(h).decode() for h in prefix_hashes]
    return "\n".join(lines) + "\n"


def parse_range_file(text: str) -> tuple[int, list[bytes]]:
    lines = text.splitlines()
    if not lines or not lines[0].startswith("start "):
        raise ValueError("entries-range.txt must begin with 'start <n>'")
    digits = lines[0][len("start ") :]
    if not digits.isdigit() or (len(digits) > 1 and digits.startswith("0")):
        raise ValueError("the start of the range is not a decimal number")
    return int(digits), parse_hash_lines("\n".join(lines[1:]))


def verify_range(
    start: int, prefix_hashes: Sequence[bytes], leaves: Sequence[bytes], checkpoint: note.Checkpoint
) -> None:
    """Raise ValueError unless ``leaves`` are exactly the log's leaves [start, checkpoint.size)."""
    builder = merkle.TreeBuilder.resume(start, prefix_hashes)
    for line in leaves:
        builder.append(merkle.leaf_hash(line))
    if builder.size != checkpoint.size:
        raise ValueError(
            f"the range ends at {builder.size}, the checkpoint covers {checkpoint.size} entries"
        )
    if builder.root() != checkpoint.root_hash:
        raise ValueError("the embedded entries do not hash to the checkpoint's root")
    for offset, line in enumerate(leaves):
        record = parse_leaf(line)
        if record.seq != start + offset:
            raise ValueError(f"embedded leaf {offset} says seq {record.seq}")

"""Entry payloads, their signatures and log records (DESIGN.md §5).

A payload is a JSON object without floats, serialized by RFC 8785 (JCS). For the values we allow
(objects with string keys, arrays, strings, integers within ±(2**53 - 1), booleans, null) JCS is
`json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` except that keys are
sorted by their UTF-16 code units; strings with lone surrogates are refused (RFC 8785 §3.2.2.2).

A device signs `SIGNING_CONTEXT + payload_bytes` with Ed25519 (64 raw bytes) or ECDSA P-256 with
SHA-256 (DER). A log record (a leaf, one line of entries.jsonl) is the JCS bytes of
`{"alg", "kid", "payload", "received_at", "seq", "sig"}` with `sig` in standard padded base64.

Timestamps are RFC 3339 UTC with "Z": `2026-11-21T10:00:00Z` when the microsecond is 0, else
`2026-11-21T10:00:00.123456Z` (always six digits). `format_timestamp` and `parse_timestamp` are
exact inverses on that set; anything else is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, NoReturn, cast

import orjson
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

MAX_PAYLOAD_BYTES = 4096
# A leaf adds seq, received_at, alg, kid and a signature to its payload.
MAX_LEAF_BYTES = MAX_PAYLOAD_BYTES + 1024
MAX_NESTING = 32
MAX_SAFE_INTEGER = 2**53 - 1

SIGNING_CONTEXT = b"class-journal/entry/v1\n"

Alg = Literal["ed25519", "ecdsa-p256"]
ALGS: tuple[Alg, ...] = ("ed25519", "ecdsa-p256")

PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey

LEAF_FIELDS = frozenset({"seq", "received_at", "payload", "alg", "kid", "sig"})
_KID = re.compile(r"[0-9a-f]{32}")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?Z")


class PayloadError(ValueError):
    """JSON that is not an acceptable payload or leaf; `code` says why, for machines."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class KeyFormatError(ValueError):
    """A public or private key that is not of an accepted algorithm and encoding."""


# --- JSON -------------------------------------------------------------------------------------


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _check_string(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError("invalid_unicode", "string contains a lone surrogate") from None


def _write_json(obj: object, out: list[str], depth: int) -> None:
    if depth > MAX_NESTING:
        raise PayloadError("too_deep", f"nested deeper than {MAX_NESTING} levels")
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, float):
        raise PayloadError("float", f"floating-point number {obj!r} is not allowed")
    elif isinstance(obj, int):
        if not -MAX_SAFE_INTEGER <= obj <= MAX_SAFE_INTEGER:
            raise PayloadError("int_range", f"integer {obj} is outside ±(2**53 - 1)")
        out.append(str(int(obj)))
    elif isinstance(obj, str):
        _check_string(obj)
        out.append(json.dumps(obj, ensure_ascii=False))
    elif isinstance(obj, list):
        out.append("[")
        for i, item in enumerate(obj):
            if i:
                out.append(",")
            _write_json(item, out, depth + 1)
        out.append("]")
    elif isinstance(obj, Mapping):
        for key in obj:
            if not isinstance(key, str):
                raise PayloadError("bad_type", f"object key {key!r} is not a string")
            _check_string(key)
        out.append("{")
        for i, key in enumerate(sorted(obj, key=_utf16_key)):
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _write_json(obj[key], out, depth + 1)
        out.append("}")
    else:
        raise PayloadError("bad_type", f"{type(obj).__name__} is not a JSON value we accept")


def _plain(obj: object, depth: int) -> bool:
    """True when compact JSON with sorted keys (``canonical_json``'s fast path) is the JCS
    bytes: plain dicts and lists, well-formed strings, keys inside the Basic Multilingual Plane
    (where code point order is UTF-16 order), safe integers, booleans and null. Anything else
    takes the careful path."""
    if depth > MAX_NESTING:
        return False
    kind = type(obj)
    if kind is str:
        text = cast(str, obj)
        return text.isascii() or _well_formed(text)
    if kind is int:
        return -MAX_SAFE_INTEGER <= cast(int, obj) <= MAX_SAFE_INTEGER
    if obj is None or kind is bool:
        return True
    if kind is list:
        return all(_plain(item, depth + 1) for item in cast(list[object], obj))
    if kind is dict:
        for key, value in cast(dict[object, object], obj).items():
            if type(key) is not str:
                return False
            if not key.isascii() and (not _well_formed(key) or max(key) > "\uffff"):
                return False
            if not _plain(value, depth + 1):
                return False
        return True
    return False


def _well_formed(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def canonical_json(obj: object, *, plain: bool = False) -> bytes:
    """RFC 8785 (JCS) bytes of a value made of dict, list, str, int, bool and None.

    ``plain=True`` promises what ``_plain`` would check: the value was read by ``parse_json``
    from a text that ``plain_text`` accepts, nested at most MAX_NESTING deep (the sync API's
    entries, read from one request body). It skips the walk over the value."""
    if plain or _plain(obj, 0):
        # The same bytes as the careful path below: for such values JCS is compact JSON with
        # keys in code point order, which is what orjson writes with OPT_SORT_KEYS (UTF-8 byte
        # order is code point order), about 14 times faster than json.dumps(sort_keys=True);
        # every entry the sync API takes is canonicalized once to check its signature.
        # test_entry.py holds it to the careful path over the whole Basic Multilingual Plane.
        # (The standalone verifier, archive/verify, keeps the standard library.)
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    out: list[str] = []
    _write_json(obj, out, 0)
    return "".join(out).encode("utf-8")


def _reject_float(literal: str) -> NoReturn:
    raise PayloadError("float", f"number {literal} is not an integer")


def _parse_int(literal: str) -> int:
    if len(literal) < 16:  # at most 15 digits: well inside ±(2**53 - 1)
        return int(literal)
    if len(literal.lstrip("-")) > 16:
        raise PayloadError("int_range", f"integer {literal[:20]} is outside ±(2**53 - 1)")
    value = int(literal)
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise PayloadError("int_range", f"integer {literal} is outside ±(2**53 - 1)")
    return value


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise PayloadError("duplicate_key", f"key {key!r} appears twice")
            seen.add(key)
    return obj


def _check_parsed(obj: object, depth: int) -> None:
    if depth > MAX_NESTING:
        raise PayloadError("too_deep", f"nested deeper than {MAX_NESTING} levels")
    if isinstance(obj, str):
        _check_string(obj)
    elif isinstance(obj, list):
        for item in obj:
            _check_parsed(item, depth + 1)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _check_string(key)
            _check_parsed(value, depth + 1)


def _check_depth(obj: Any, depth: int) -> None:
    """``_check_parsed`` for a value whose strings are known to be well-formed: only its
    containers are visited (the sync API's bodies hold thousands of strings); a value of any
    kind nested deeper than MAX_NESTING is refused, as there."""
    if depth > MAX_NESTING:
        raise PayloadError("too_deep", f"nested deeper than {MAX_NESTING} levels")
    kind = type(obj)
    if kind is not dict and kind is not list:
        return
    for item in obj.values() if kind is dict else obj:
        if type(item) is dict or type(item) is list:
            _check_depth(item, depth + 1)
        elif depth >= MAX_NESTING:
            raise PayloadError("too_deep", f"nested deeper than {MAX_NESTING} levels")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
# Integer literals of at most 15 digits are within ±(2**53 - 1): a text without a longer run of
# digits anywhere needs no check of its integers (json's own int() is then enough). Found by a
# byte translation and a substring search: a regular expression costs more than the hook saves.
_DIGITS_AS_ZERO = bytes(48 if 48 <= b <= 57 else 120 for b in range(256))
_SIXTEEN_DIGITS = b"0" * 16


def _short_integers_only(raw: bytes | str) -> bool:
    return isinstance(raw, bytes) and _SIXTEEN_DIGITS not in raw.translate(_DIGITS_AS_ZERO)


def _no_surrogate_escape(text: str) -> bool:
    return "\\u" not in text or not _SURROGATE_ESCAPE.search(text)


# A string's closing quote followed by whitespace (or an opening one by a space): rare, so a text
# with none is read by orjson, in which every key ends with '":' exactly (see _read_plain).
_QUOTE_THEN_SPACE = re.compile(rb'"[ \n\t\r]')
_CAREFUL = object()  # what _read_plain returns when the careful parse must decide


def _members(obj: Any, depth: int) -> int:
    """The number of object members in a value orjson read, or -1 when the careful parse must
    decide: a float, or nesting deeper than MAX_NESTING (it raises for those)."""
    if depth > MAX_NESTING:
        return -1
    kind = type(obj)
    if kind is float:
        return -1
    if kind is not dict and kind is not list:
        return 0
    found = len(obj) if kind is dict else 0
    for item in obj.values() if kind is dict else obj:
        if type(item) is dict or type(item) is list:
            inner = _members(item, depth + 1)
            if inner < 0:
                return -1
            found += inner
        elif type(item) is float or depth >= MAX_NESTING:
            return -1
    return found


def _read_plain(raw: bytes) -> object:
    """What the careful parse below reads from ``raw``, by orjson (the sync API's bodies hold
    hundreds of entries), or _CAREFUL when it cannot tell. For a text with no integer longer
    than 15 digits, no escaped surrogate, no float and nesting within MAX_NESTING both read the
    same values, unless a key is repeated in an object (orjson keeps the last). Repeats are
    ruled out by counting: with no quote followed by whitespace, every key ends with '":', and
    the only other '":' are escaped quotes inside strings, so as many '":' as object members
    read means no key came twice. Anything else, an error included, is left to the careful
    parse."""
    if (
        not _short_integers_only(raw)
        or (b"\\u" in raw and _SURROGATE_ESCAPE_BYTES.search(raw))
        or _QUOTE_THEN_SPACE.search(raw)
    ):
        return _CAREFUL
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _CAREFUL
    members = _members(obj, 0)
    if members < 0 or members != raw.count(b'":'):
        return _CAREFUL
    return obj


def parse_json(raw: bytes | str, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> object:
    """Strictly parse UTF-8 JSON: no floats, no duplicate keys, integers within ±(2**53 - 1)."""
    size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)
    if size > max_bytes:
        raise PayloadError("too_large", f"{size} bytes is more than {max_bytes}")
    if isinstance(raw, bytes):
        plain = _read_plain(raw)
        if plain is not _CAREFUL:
            return plain
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError("malformed_json", f"not UTF-8: {exc.reason}") from None
    else:
        text = raw
    try:
        obj = json.loads(
            text,
            parse_float=_reject_float,
            parse_constant=_reject_float,
            parse_int=None if _short_integers_only(raw) else _parse_int,
            object_pairs_hook=_object_without_duplicates,
        )
    except json.JSONDecodeError as exc:
        raise PayloadError("malformed_json", f"not JSON: {exc}") from None
    except RecursionError:
        raise PayloadError("too_deep", f"nested deeper than {MAX_NESTING} levels") from None
    # Strict UTF-8 never decodes to a surrogate, so a lone one can only come from a \uD800-style
    # escape: without any, every string is well-formed and only the nesting is left to check.
    if isinstance(raw, bytes) and _no_surrogate_escape(text):
        _check_depth(obj, 0)
    else:
        _check_parsed(obj, 0)
    return obj


def plain_text(text: str) -> bool:
    """For a text ``parse_json`` accepted: whether all its strings lie inside the Basic
    Multilingual Plane (where JCS key order is code point order), so that every value read
    from it may be given to ``canonical_json`` with ``plain=True``."""
    return _no_surrogate_escape(text) and (text.isascii() or max(text) <= "\uffff")


def parse_payload(raw: bytes | str) -> dict[str, object]:
    """`parse_json` that also requires a JSON object at the top."""
    obj = parse_json(raw)
    if not isinstance(obj, dict):
        raise PayloadError("not_object", "a payload must be a JSON object")
    return obj


def canonical_payload(payload: Mapping[str, object]) -> bytes:
    """JCS bytes of a payload object, refused when larger than MAX_PAYLOAD_BYTES."""
    if not isinstance(payload, Mapping):
        raise PayloadError("not_object", "a payload must be a JSON object")
    data = canonical_json(payload)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise PayloadError("too_large", f"{len(data)} bytes is more than {MAX_PAYLOAD_BYTES}")
    return data


# --- keys and signatures ----------------------------------------------------------------------


def _check_alg(alg: str) -> Alg:
    if alg not in ALGS:
        raise KeyFormatError(f"unknown algorithm {alg!r}; expected one of {', '.join(ALGS)}")
    return alg


def load_public_key(alg: str, raw: bytes) -> PublicKey:
    """Ed25519 from 32 raw bytes; P-256 from canonical DER SubjectPublicKeyInfo."""
    if _check_alg(alg) == "ed25519":
        if len(raw) != 32:
            raise KeyFormatError(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
        try:
            return Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise KeyFormatError(f"not an Ed25519 public key: {exc}") from None
    try:
        key = serialization.load_der_public_key(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"not a DER SubjectPublicKeyInfo: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise KeyFormatError("not a P-256 public key")
    if public_key_bytes(key)[1] != raw:
        raise KeyFormatError("P-256 key is not in canonical DER (uncompressed point)")
    return key


def public_key_bytes(key: PublicKey) -> tuple[Alg, bytes]:
    """The (alg, raw bytes) pair that `load_public_key` reads back."""
    if isinstance(key, Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "ed25519", raw
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return "ecdsa-p256", key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    raise KeyFormatError(f"unsupported public key {type(key).__name__}")


def key_id(alg: str, raw: bytes) -> str:
    """Device key id: hex of the first 16 bytes of SHA-256(alg ‖ 0x0A ‖ raw public key)."""
    _check_alg(alg)
    return hashlib.sha256(alg.encode() + b"\n" + raw).digest()[:16].hex()


def sign_payload(private_key: PrivateKey, payload_bytes: bytes) -> bytes:
    """Sign SIGNING_CONTEXT + payload_bytes: Ed25519 raw 64 bytes, or P-256 ECDSA SHA-256 DER."""
    message = SIGNING_CONTEXT + payload_bytes
    if isinstance(private_key, Ed25519PrivateKey):
        return private_key.sign(message)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if private_key.curve.name != "secp256r1":
            raise KeyFormatError(f"ECDSA key on {private_key.curve.name}, not P-256")
        return private_key.sign(message, ec.ECDSA(hashes.SHA256()))
    raise KeyFormatError(f"unsupported private key {type(private_key).__name__}")


def ecdsa_der_from_raw(sig: bytes) -> bytes:
    """DER form of a 64-byte r ‖ s P-256 signature, the form WebCrypto's sign() returns."""
    if len(sig) != 64:
        raise ValueError(f"a raw P-256 signature is 64 bytes, not {len(sig)}")
    return encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))


@lru_cache(maxsize=4096)
def _loaded_public_key(alg: str, raw: bytes) -> PublicKey:
    """``load_public_key``, remembered: a batch's entries are signed by a handful of keys, and
    loading one (point decompression) costs a twentieth of checking a signature."""
    return load_public_key(alg, raw)


def verify_payload(alg: str, raw_public_key: bytes, payload_bytes: bytes, sig: bytes) -> bool:
    """True if `sig` signs SIGNING_CONTEXT + payload_bytes; KeyFormatError for an unusable key."""
    key = _loaded_public_key(alg, bytes(raw_public_key))
    message = SIGNING_CONTEXT + payload_bytes
    try:
        if isinstance(key, Ed25519PublicKey):
            if len(sig) != 64:
                return False
            key.verify(sig, message)
        else:
            # Only the one DER encoding of (r, s) counts, so a signature has a single byte form.
            r, s = decode_dss_signature(sig)
            if encode_dss_signature(r, s) != sig:
                return False
            key.verify(sig, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


# --- timestamps -------------------------------------------------------------------------------


def format_timestamp(dt: datetime) -> str:
    """RFC 3339 UTC with 'Z'; six fraction digits only when the microsecond is not 0."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware")
    dt = dt.astimezone(UTC)
    text = (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    )
    if dt.microsecond:
        text += f".{dt.microsecond:06d}"
    return text + "Z"


def parse_timestamp(text: str) -> datetime:
    """Inverse of `format_timestamp`; refuses every other spelling."""
    if not _TIMESTAMP.fullmatch(text):
        raise ValueError(f"not a timestamp of the form 2026-11-21T10:00:00[.123456]Z: {text!r}")
    try:
        dt = datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"not a valid date and time: {text!r}") from None
    if format_timestamp(dt) != text:
        raise ValueError(f"timestamp is not in canonical form: {text!r}")
    return dt


def _check_timestamp(text: str) -> None:
    """``parse_timestamp`` for its check alone; a batch's leaves share their ``received_at``."""
    if type(text) is str:
        _check_timestamp_text(text)
    else:
        parse_timestamp(text)


@lru_cache(maxsize=256)
def _check_timestamp_text(text: str) -> None:
    parse_timestamp(text)


# --- log records ------------------------------------------------------------------------------


def _bad_field(message: str) -> PayloadError:
    return PayloadError("bad_field", message)


def leaf_bytes(
    seq: int,
    received_at: str,
    payload: Mapping[str, object],
    alg: str,
    kid: str,
    sig: bytes,
    *,
    payload_bytes: bytes | None = None,
) -> bytes:
    """JCS bytes of one log record: a line of entries.jsonl without its newline.

    ``payload_bytes``, when the caller has them, must be ``canonical_payload(payload)``: JCS
    nests, so they are spliced in instead of canonicalizing the payload twice more (the
    record's other members are ASCII and checked here)."""
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SAFE_INTEGER:
        raise _bad_field(f"seq must be an integer in 0..2**53 - 1, not {seq!r}")
    try:
        _check_timestamp(received_at)
    except (ValueError, TypeError) as exc:
        raise _bad_field(f"received_at: {exc}") from None
    if alg not in ALGS:
        raise _bad_field(f"alg must be one of {', '.join(ALGS)}, not {alg!r}")
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise _bad_field(f"kid must be 32 lowercase hex digits, not {kid!r}")
    if not isinstance(sig, bytes) or not sig:
        raise _bad_field("sig must be non-empty bytes")
    if payload_bytes is not None:
        # Members in JCS order: alg, kid, payload, received_at, seq, sig.
        return b"".join(
            (
                b'{"alg":"',
                alg.encode(),
                b'","kid":"',
                kid.encode(),
                b'","payload":',
                payload_bytes,
                b',"received_at":"',
                received_at.encode(),
                b'","seq":',
                str(seq).encode(),
                b',"sig":"',
                base64.b64encode(sig),
                b'"}',
            )
        )
    canonical_payload(payload)
    return canonical_json(
        {
            "seq": seq,
            "received_at": received_at,
            "payload": payload,
            "alg": alg,
            "kid": kid,
            "sig": base64.b64encode(sig).decode("ascii"),
        }
    )


@dataclass(frozen=True)
class LeafRecord:
    """One parsed log record."""

    seq: int
    received_at: str
    payload: dict[str, object]
    payload_bytes: bytes
    alg: Alg
    kid: str
    sig: bytes


def parse_leaf(line: bytes) -> LeafRecord:
    """Strictly parse one line of entries.jsonl (without newline); it must be canonical."""
    obj = parse_json(line, max_bytes=MAX_LEAF_BYTES)
    if not isinstance(obj, dict):
        raise PayloadError("not_object", "a log record must be a JSON object")
    if set(obj) != LEAF_FIELDS:
        raise _bad_field(f"a log record has exactly the fields {', '.join(sorted(LEAF_FIELDS))}")
    seq, received_at, payload = obj["seq"], obj["received_at"], obj["payload"]
    alg, kid, sig_text = obj["alg"], obj["kid"], obj["sig"]
    if not isinstance(payload, dict):
        raise PayloadError("not_object", "payload must be a JSON object")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise _bad_field("seq must be an integer")
    if not isinstance(received_at, str) or not isinstance(alg, str) or not isinstance(kid, str):
        raise _bad_field("received_at, alg and kid must be strings")
    if not isinstance(sig_text, str):
        raise _bad_field("sig must be a base64 string")
    try:
        sig = base64.b64decode(sig_text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_field("sig is not standard base64") from None
    if leaf_bytes(seq, received_at, payload, alg, kid, sig) != line:
        raise PayloadError("not_canonical", "log record is not in canonical JCS form")
    return LeafRecord(
        seq=seq,
        received_at=received_at,
        payload=payload,
        payload_bytes=canonical_json(payload),
        alg=_check_alg(alg),
        kid=kid,
        sig=sig,
    )

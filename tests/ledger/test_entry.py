"""Payload JSON, device signatures and log records."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from journal.ledger import entry
from journal.ledger.entry import (
    ALGS,
    MAX_NESTING,
    MAX_PAYLOAD_BYTES,
    SIGNING_CONTEXT,
    KeyFormatError,
    LeafRecord,
    PayloadError,
    canonical_json,
    canonical_payload,
    ecdsa_der_from_raw,
    format_timestamp,
    key_id,
    leaf_bytes,
    load_public_key,
    parse_json,
    parse_leaf,
    parse_payload,
    parse_timestamp,
    public_key_bytes,
    sign_payload,
    verify_payload,
)

# --- canonical JSON ---------------------------------------------------------------------------


def test_jcs_sorts_keys_by_utf16_code_units() -> None:
    """The property-sorting example of RFC 8785 §3.2.3."""
    obj = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    values = list(json.loads(canonical_json(obj)).values())
    assert values == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]
    # Code point order (what sort_keys=True does) would put U+FB33 before the emoji.
    assert json.dumps(obj, sort_keys=True).index("ufb33") < json.dumps(obj, sort_keys=True).index(
        "ud83d"
    )


def test_jcs_string_escapes() -> None:
    """The string example of RFC 8785 §3.2.2.2."""
    parsed = parse_json(r'''"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/"''')
    assert parsed == '€$\x0f\nA\'B"\\\\"/'
    assert canonical_json(parsed) == r'''"€$\u000f\nA'B\"\\\\\"/"'''.encode()


def test_jcs_keeps_kazakh_text_unescaped() -> None:
    payload = {
        "сынып": "7Ә",
        "пән": "Қазақ тілі",
        "оқушы": "Әлия Ғалымқызы Құрманова",
        "letters": "ә ғ қ ң ө ұ ү һ і Ә Ғ Қ Ң Ө Ұ Ү Һ І",
    }
    expected = (
        '{"letters":"ә ғ қ ң ө ұ ү һ і Ә Ғ Қ Ң Ө Ұ Ү Һ І","оқушы":"Әлия Ғалымқызы Құрманова",'
        '"пән":"Қазақ тілі","сынып":"7Ә"}'
    ).encode()
    assert canonical_json(payload) == expected
    assert b"\\u" not in expected
    # For BMP keys, JCS is exactly the json.dumps recipe of DESIGN.md §5.
    recipe = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(payload) == recipe.encode()


def test_jcs_nested_values() -> None:
    value = {"b": [1, -2, True, False, None, {"d": "", "c": []}], "a": {}}
    assert canonical_json(value) == b'{"a":{},"b":[1,-2,true,false,null,{"c":[],"d":""}]}'


def test_bool_is_not_an_int() -> None:
    assert canonical_json(True) == b"true"
    assert canonical_json(1) == b"1"
    assert canonical_json({"v": True}) != canonical_json({"v": 1})
    assert parse_json(b"[true,1]") == [True, 1]
    assert type(parse_json(b"[true]")[0]) is bool  # type: ignore[index]


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        0.5,
        float("nan"),
        float("inf"),
        [1, 2.0],
        {"a": {"b": [0.25]}},
        {"grade": {"points": 7, "max": 10.0}},
    ],
)
def test_floats_are_refused_anywhere(value: object) -> None:
    with pytest.raises(PayloadError) as info:
        canonical_json(value)
    assert info.value.code == "float"


@pytest.mark.parametrize("value", [2**53 - 1, -(2**53 - 1), 0, -1])
def test_safe_integers_are_kept(value: int) -> None:
    assert canonical_json({"n": value}) == b'{"n":' + str(value).encode() + b"}"


@pytest.mark.parametrize("value", [2**53, -(2**53), 10**30, [2**64]])
def test_unsafe_integers_are_refused(value: object) -> None:
    with pytest.raises(PayloadError) as info:
        canonical_json(value)
    assert info.value.code == "int_range"


@pytest.mark.parametrize(
    "value",
    [(1, 2), {1, 2}, b"bytes", Decimal("1"), datetime(2026, 1, 1, tzinfo=UTC), {1: "int key"}],
)
def test_other_types_are_refused(value: object) -> None:
    with pytest.raises(PayloadError) as info:
        canonical_json(value)
    assert info.value.code == "bad_type"


def test_lone_surrogates_are_refused() -> None:
    for value in ["\ud800", {"\udc00": 1}, ["ok", "a\udfffb"]]:
        with pytest.raises(PayloadError) as info:
            canonical_json(value)
        assert info.value.code == "invalid_unicode"


def test_nesting_is_limited() -> None:
    deep: Any = []
    for _ in range(40):
        deep = [deep]
    with pytest.raises(PayloadError) as info:
        canonical_json(deep)
    assert info.value.code == "too_deep"


# --- strict parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"a":1', "malformed_json"),
        (b"", "malformed_json"),
        (b'{"a":1} x', "malformed_json"),
        (b"{'a':1}", "malformed_json"),
        (b'{"a":"\xff"}', "malformed_json"),
        (b'\xef\xbb\xbf{"a":1}', "malformed_json"),
        (b'{"a":"tab\there"}', "malformed_json"),
        (b'{"a":1.0}', "float"),
        (b'{"a":1e5}', "float"),
        (b'{"a":1E+2}', "float"),
        (b'{"a":-0.0}', "float"),
        (b'{"a":[[{"b":0.1}]]}', "float"),
        (b'{"a":NaN}', "float"),
        (b'{"a":Infinity}', "float"),
        (b'{"a":-Infinity}', "float"),
        (b'{"a":1,"a":2}', "duplicate_key"),
        (b'{"x":{"a":1,"b":2,"a":1}}', "duplicate_key"),
        (b'{"a":9007199254740992}', "int_range"),
        (b'{"a":-9007199254740992}', "int_range"),
        (b'{"a":' + b"9" * 5000 + b"}", "too_large"),
        (b'{"a":"' + b"x" * MAX_PAYLOAD_BYTES + b'"}', "too_large"),
        (b"[" * 4000 + b"]" * 4000, "too_large"),
        (b"[" * 2000 + b"]" * 2000, "too_deep"),
        (b'{"a":"\\ud800"}', "invalid_unicode"),
    ],
)
def test_parse_json_errors(raw: bytes, code: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_json(raw)
    assert info.value.code == code
    assert str(info.value)


def _nested(depth: int, inner: str) -> str:
    return "[" * depth + inner + "]" * depth


@pytest.mark.parametrize(
    "text",
    [
        _nested(MAX_NESTING, "1"),
        _nested(MAX_NESTING, "[]"),
        _nested(MAX_NESTING + 1, "1"),
        _nested(MAX_NESTING + 1, "[]"),
        _nested(MAX_NESTING - 1, '{"a":1}'),
        _nested(MAX_NESTING, '{"a":1}'),
        _nested(MAX_NESTING, '{"a":[]}'),
        '{"a":123456789012345}',
        '{"a":9007199254740991,"b":-9007199254740991}',
        '{"a":9007199254740992}',
        '{"a":"1234567890123456789"}',
        '{"a":"\\ud800"}',
        '{"a":"\\ud83d\\ude00"}',
        '{"a":["\\udc00"]}',
        '{"\\ud800":1}',
        '"plain"',
        "7",
        # Read by orjson when plain: repeated keys, however spelled, floats and big integers
        # (orjson reads either as a float) and whitespace before a colon go the careful way.
        '{"a":1,"a":2}',
        '{"a": 1, "a": 2}',
        '{"a":1, "a" :2}',
        '{"a":1,"a"\n:2}',
        '{"\\u0061":1,"a":2}',
        '{"a":"x\\":y","a":2}',
        '{"a":"x\\":y","b":2}',
        '{"a":[{"b":{"c":1}}],"d":{"b":2,"c":[{"b":3}]}}',
        '{"a":{},"b":[],"c":[{}]}',
        '{"a": " x", "b": "y "}',
        '{"a":1.5}',
        '{"a":1e3}',
        "[1.0]",
        "-0",
        '{"a":123456789012345678901}',
        '{"a":"\\u00e9\\u0000"}',
        '{"a":1}\n',
        '"x"\n',
        "\ufeff{}",
        '{"a":1,}',
        "[1 2]",
    ],
)
def test_parse_json_reads_bytes_as_it_reads_text(text: str) -> None:
    """Bytes take shorter paths (orjson for a plain text, else no per-string walk and no
    integer hook when no 16-digit run is in them): the outcome is the one the text gets, which
    always takes the careful path."""

    def outcome(raw: bytes | str) -> object:
        try:
            return parse_json(raw)
        except PayloadError as exc:
            return (exc.code, str(exc))

    assert outcome(text.encode()) == outcome(text)


def test_parse_json_checks_size_before_parsing() -> None:
    garbage = b"{" * (MAX_PAYLOAD_BYTES + 1)
    with pytest.raises(PayloadError) as info:
        parse_json(garbage)
    assert info.value.code == "too_large"
    at_limit = b'{"a":"' + b"x" * (MAX_PAYLOAD_BYTES - 8) + b'"}'
    assert len(at_limit) == MAX_PAYLOAD_BYTES
    assert parse_json(at_limit) == {"a": "x" * (MAX_PAYLOAD_BYTES - 8)}


def test_parse_json_accepts_text_and_bytes() -> None:
    raw = '{"оқушы":"Әлия","n":-5,"ok":true,"x":null,"l":[]}'
    expected = {"оқушы": "Әлия", "n": -5, "ok": True, "x": None, "l": []}
    assert parse_json(raw) == expected
    assert parse_json(raw.encode()) == expected
    # The byte limit counts UTF-8 bytes, not characters.
    with pytest.raises(PayloadError, match="more than"):
        parse_json('"' + "ә" * 2100 + '"')


def test_parse_payload_needs_an_object() -> None:
    assert parse_payload(b'{"v":1}') == {"v": 1}
    for raw in [b"[1]", b'"text"', b"1", b"null"]:
        with pytest.raises(PayloadError) as info:
            parse_payload(raw)
        assert info.value.code == "not_object"


def _careful(value: object) -> bytes:
    """The JCS bytes written value by value (the path taken by anything not plain)."""
    out: list[str] = []
    entry._write_json(value, out, 0)
    return "".join(out).encode("utf-8")


def test_the_fast_encoder_writes_the_careful_bytes_for_every_bmp_character() -> None:
    """Plain values (what the sync API reads) are written by orjson: for each character of the
    Basic Multilingual Plane, as a key and inside strings next to the characters JSON escapes,
    the bytes are the ones the careful JCS path writes, so a signature made over a device's
    JCS bytes checks on the server (and a leaf's payload is the verifier's JCS)."""
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue  # lone surrogates are not plain: they take the careful path and are refused
        char = chr(code)
        text = f'{char}"\\/\b{char}\u2028'
        value = {
            "k" + char: [text, code, -code, None, True, False, {"z": text, char: {}}],
            char: char,
            "": [],
        }
        assert canonical_json(value, plain=True) == _careful(value), hex(code)


def test_plain_values_are_written_as_the_careful_path_writes_them() -> None:
    value = {"ә": [1, -9007199254740991, 9007199254740991], "a": {"b": None, "A": "\x00\x1f\x7f"}}
    assert entry._plain(value, 0)
    assert canonical_json(value) == _careful(value)
    # Outside the BMP keys sort by UTF-16 code units: the careful path, not the fast one.
    astral = {"\U0001f600": 1, "\ufb33": 2}
    assert not entry._plain(astral, 0)
    assert canonical_json(astral) == '{"\U0001f600":1,"\ufb33":2}'.encode()


def test_canonical_payload_limits_size_and_type() -> None:
    assert canonical_payload({"v": 1}) == b'{"v":1}'
    with pytest.raises(PayloadError) as info:
        canonical_payload({"s": "x" * MAX_PAYLOAD_BYTES})
    assert info.value.code == "too_large"
    with pytest.raises(PayloadError) as info:
        canonical_payload([1])  # type: ignore[arg-type]
    assert info.value.code == "not_object"


def test_parse_then_canonicalize_is_stable() -> None:
    raw = b'{ "b" : [1, 2], "a" : "\\u04d9" }'
    once = canonical_json(parse_json(raw))
    assert once == '{"a":"ә","b":[1,2]}'.encode()
    assert canonical_json(parse_json(once)) == once


# --- keys and signatures ----------------------------------------------------------------------

PAYLOAD = {
    "v": 1,
    "entry_id": "0b4f3c8e-6a55-4a4e-9a43-3f6c1c6f2b10",
    "journal": "school.example.kz/journal/2026-2027/7A",
    "kind": "grade",
    "student": 17,
    "value": {"component": "FO", "points": 9},
    "author": 3,
    "device_id": "d1",
    "device_seq": 12,
    "created_at": "2026-11-21T10:00:00Z",
}
PAYLOAD_BYTES = canonical_payload(PAYLOAD)


def ed25519_pair() -> tuple[Ed25519PrivateKey, bytes]:
    key = Ed25519PrivateKey.generate()
    return key, public_key_bytes(key.public_key())[1]


def p256_pair() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, public_key_bytes(key.public_key())[1]


@pytest.mark.parametrize("alg", ALGS)
def test_sign_and_verify(alg: str) -> None:
    key, raw = ed25519_pair() if alg == "ed25519" else p256_pair()
    assert public_key_bytes(key.public_key())[0] == alg
    sig = sign_payload(key, PAYLOAD_BYTES)
    if alg == "ed25519":
        assert len(sig) == 64
        # The signed message is the context followed by the payload bytes.
        key.public_key().verify(sig, SIGNING_CONTEXT + PAYLOAD_BYTES)  # type: ignore[call-arg]
    else:
        assert sig[0] == 0x30  # DER SEQUENCE
    assert verify_payload(alg, raw, PAYLOAD_BYTES, sig)
    # Every single changed byte of the payload or the signature fails.
    for i in range(len(PAYLOAD_BYTES)):
        tampered = bytearray(PAYLOAD_BYTES)
        tampered[i] ^= 0x01
        assert not verify_payload(alg, raw, bytes(tampered), sig)
    for i in range(len(sig)):
        tampered_sig = bytearray(sig)
        tampered_sig[i] ^= 0x80
        assert not verify_payload(alg, raw, PAYLOAD_BYTES, bytes(tampered_sig))
    # Without the context, the same key's signature does not count.
    if alg == "ed25519":
        assert isinstance(key, Ed25519PrivateKey)
        assert not verify_payload(alg, raw, PAYLOAD_BYTES, key.sign(PAYLOAD_BYTES))


@pytest.mark.parametrize("alg", ALGS)
def test_verify_never_raises_on_garbage_signatures(alg: str) -> None:
    _, raw = ed25519_pair() if alg == "ed25519" else p256_pair()
    for sig in [b"", b"\x00", b"\x00" * 64, b"\x30\x06\x02\x01\x01\x02\x01\x01", b"\xff" * 72]:
        assert verify_payload(alg, raw, PAYLOAD_BYTES, sig) is False


def test_wrong_key_fails() -> None:
    key, _ = ed25519_pair()
    _, other_raw = ed25519_pair()
    assert not verify_payload("ed25519", other_raw, PAYLOAD_BYTES, sign_payload(key, PAYLOAD_BYTES))
    p_key, _ = p256_pair()
    _, p_other = p256_pair()
    p_sig = sign_payload(p_key, PAYLOAD_BYTES)
    assert not verify_payload("ecdsa-p256", p_other, PAYLOAD_BYTES, p_sig)


def test_ecdsa_signature_must_be_exact_der() -> None:
    key, raw = p256_pair()
    sig = sign_payload(key, PAYLOAD_BYTES)
    assert verify_payload("ecdsa-p256", raw, PAYLOAD_BYTES, sig)
    assert not verify_payload("ecdsa-p256", raw, PAYLOAD_BYTES, sig + b"\x00")
    # The same (r, s) with a BER long-form length is not the signature's one byte form.
    assert sig[1] < 0x80
    long_form = bytes([0x30, 0x81, sig[1]]) + sig[2:]
    assert not verify_payload("ecdsa-p256", raw, PAYLOAD_BYTES, long_form)


def test_raw_webcrypto_ecdsa_signature_converts_to_der() -> None:
    key, raw = p256_pair()
    der = sign_payload(key, PAYLOAD_BYTES)
    r, s = decode_dss_signature(der)
    webcrypto = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert not verify_payload("ecdsa-p256", raw, PAYLOAD_BYTES, webcrypto)
    assert ecdsa_der_from_raw(webcrypto) == der
    assert verify_payload("ecdsa-p256", raw, PAYLOAD_BYTES, ecdsa_der_from_raw(webcrypto))
    with pytest.raises(ValueError, match="64 bytes"):
        ecdsa_der_from_raw(webcrypto[:-1])


@pytest.mark.parametrize(
    ("alg", "raw"),
    [
        ("ed25519", b"\x00" * 31),
        ("ed25519", b"\x00" * 33),
        ("rsa", b"\x00" * 32),
        ("ecdsa-p256", b"not der"),
        ("ecdsa-p256", b""),
    ],
)
def test_unusable_keys_raise(alg: str, raw: bytes) -> None:
    with pytest.raises(KeyFormatError):
        load_public_key(alg, raw)
    with pytest.raises(KeyFormatError):
        verify_payload(alg, raw, PAYLOAD_BYTES, b"\x00" * 64)


def test_ecdsa_key_must_be_p256_in_canonical_der() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    der384 = p384.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(KeyFormatError, match="P-256"):
        load_public_key("ecdsa-p256", der384)
    with pytest.raises(KeyFormatError):
        sign_payload(p384, PAYLOAD_BYTES)
    ed_key, ed_raw = ed25519_pair()
    ed_der = ed_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(KeyFormatError):
        load_public_key("ecdsa-p256", ed_der)

    key, raw = p256_pair()
    compressed = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    spki_header = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200")
    with pytest.raises(KeyFormatError, match="canonical"):
        load_public_key("ecdsa-p256", spki_header + compressed)
    loaded = load_public_key("ecdsa-p256", raw)
    assert public_key_bytes(loaded) == ("ecdsa-p256", raw)
    assert public_key_bytes(load_public_key("ed25519", ed_raw)) == ("ed25519", ed_raw)


def test_key_id() -> None:
    # Public key of RFC 8032 §7.1 test 1.
    raw = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    kid = key_id("ed25519", raw)
    assert kid == hashlib.sha256(b"ed25519\n" + raw).hexdigest()[:32]
    assert len(kid) == 32 and kid == kid.lower()
    assert key_id("ecdsa-p256", raw) != kid
    with pytest.raises(KeyFormatError):
        key_id("ed448", raw)


# --- timestamps -------------------------------------------------------------------------------


def test_format_timestamp() -> None:
    assert format_timestamp(datetime(2026, 11, 21, 10, 0, tzinfo=UTC)) == "2026-11-21T10:00:00Z"
    assert (
        format_timestamp(datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC))
        == "2026-11-21T10:00:00.123456Z"
    )
    assert (
        format_timestamp(datetime(2026, 11, 21, 10, 0, 0, 120000, tzinfo=UTC))
        == "2026-11-21T10:00:00.120000Z"
    )
    almaty = timezone(timedelta(hours=5))
    assert format_timestamp(datetime(2026, 1, 1, 3, 0, tzinfo=almaty)) == "2025-12-31T22:00:00Z"
    with pytest.raises(ValueError, match="aware"):
        format_timestamp(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "text", ["2026-11-21T10:00:00Z", "2026-11-21T10:00:00.000001Z", "0001-01-01T00:00:00Z"]
)
def test_parse_timestamp_round_trip(text: str) -> None:
    assert format_timestamp(parse_timestamp(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-21T10:00:00.000000Z",
        "2026-11-21T10:00:00.12Z",
        "2026-11-21T10:00:00+00:00",
        "2026-11-21T10:00:00z",
        "2026-11-21 10:00:00Z",
        "2026-02-30T10:00:00Z",
        "2026-11-21T24:00:00Z",
        "2026-11-21T10:00Z",
        "",
    ],
)
def test_parse_timestamp_refuses_other_spellings(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


# --- log records ------------------------------------------------------------------------------

KID = "0123456789abcdef0123456789abcdef"


def test_leaf_bytes_known_answer() -> None:
    payload = {"v": 1, "kind": "topic"}
    line = leaf_bytes(0, "2026-11-21T10:00:00Z", payload, "ed25519", KID, b"\x01\x02\x03")
    assert line == (
        b'{"alg":"ed25519","kid":"0123456789abcdef0123456789abcdef",'
        b'"payload":{"kind":"topic","v":1},"received_at":"2026-11-21T10:00:00Z",'
        b'"seq":0,"sig":"AQID"}'
    )
    assert b"\n" not in line


@pytest.mark.parametrize("alg", ALGS)
def test_leaf_round_trip(alg: str) -> None:
    key, raw = ed25519_pair() if alg == "ed25519" else p256_pair()
    sig = sign_payload(key, PAYLOAD_BYTES)
    kid = key_id(alg, raw)
    line = leaf_bytes(41, "2026-11-21T10:00:00.500000Z", PAYLOAD, alg, kid, sig)
    record = parse_leaf(line)
    assert record == LeafRecord(
        seq=41,
        received_at="2026-11-21T10:00:00.500000Z",
        payload=PAYLOAD,
        payload_bytes=PAYLOAD_BYTES,
        alg=alg,  # type: ignore[arg-type]
        kid=kid,
        sig=sig,
    )
    assert verify_payload(record.alg, raw, record.payload_bytes, record.sig)
    assert (
        leaf_bytes(
            record.seq, record.received_at, record.payload, record.alg, record.kid, record.sig
        )
        == line
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"v": 1, "kind": "topic"},
        PAYLOAD,
        {"topic": "Қазақ тілі: әріптер ғ қ ң ө ұ ү һ і", "n": [1, {"z": None, "a": True}]},
        {"emoji": "\U0001f600", "\u00e9": "é", "tab": 'a\tb"c\\'},
    ],
)
def test_leaf_bytes_with_the_payload_bytes_given_writes_the_same_line(payload: Any) -> None:
    """The sync splices the payload's canonical bytes in rather than canonicalizing it again:
    the line must be byte for byte the one written from the payload alone."""
    for seq, stamp, sig in (
        (0, "2026-11-21T10:00:00Z", b"\x01"),
        (2**53 - 1, "2026-11-21T10:00:00.000001Z", b"\xff" * 64),
    ):
        plain = leaf_bytes(seq, stamp, payload, "ed25519", KID, sig)
        spliced = leaf_bytes(
            seq, stamp, payload, "ed25519", KID, sig, payload_bytes=canonical_payload(payload)
        )
        assert spliced == plain
        assert parse_leaf(spliced).payload == payload


def good_line() -> bytes:
    return leaf_bytes(3, "2026-11-21T10:00:00Z", {"v": 1}, "ed25519", KID, b"\x00" * 64)


def test_parse_leaf_refuses_non_canonical_lines() -> None:
    line = good_line()
    obj = json.loads(line)
    variants = [
        json.dumps(obj).encode(),  # spaces
        json.dumps(obj, separators=(",", ":")).encode(),  # insertion order, not sorted
        line + b"\n",
        line.replace(b'"v":1', b'"v":1 '),
        line.replace(b'"sig":"', b'"sig":"' + base64.b64encode(b"\x00" * 64)[:-2] + b'"x'),
    ]
    for variant in variants:
        if variant == line:
            continue
        with pytest.raises(PayloadError) as info:
            parse_leaf(variant)
        assert info.value.code in {"not_canonical", "malformed_json", "bad_field"}
    sorted_ascii = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    assert sorted_ascii == line
    assert parse_leaf(sorted_ascii).seq == 3


def test_parse_leaf_refuses_escaped_non_ascii() -> None:
    line = leaf_bytes(0, "2026-11-21T10:00:00Z", {"t": "ә"}, "ed25519", KID, b"\x01")
    escaped = line.replace("ә".encode(), b"\\u04d9")
    with pytest.raises(PayloadError) as info:
        parse_leaf(escaped)
    assert info.value.code == "not_canonical"


def test_parse_leaf_sig_padding_bits_must_be_zero() -> None:
    line = leaf_bytes(0, "2026-11-21T10:00:00Z", {"v": 1}, "ed25519", KID, b"\x01")
    assert b'"sig":"AQ=="' in line
    with pytest.raises(PayloadError) as info:
        parse_leaf(line.replace(b'"AQ=="', b'"AR=="'))
    assert info.value.code == "not_canonical"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"seq": -1}, "bad_field"),
        ({"seq": "3"}, "bad_field"),
        ({"seq": True}, "bad_field"),
        ({"received_at": "2026-11-21T10:00:00+00:00"}, "bad_field"),
        ({"alg": "rsa"}, "bad_field"),
        ({"kid": KID.upper()}, "bad_field"),
        ({"kid": KID[:-1]}, "bad_field"),
        ({"sig": "not base64!"}, "bad_field"),
        ({"sig": ""}, "bad_field"),
        ({"payload": [1]}, "not_object"),
        ({"extra": 1}, "bad_field"),
    ],
)
def test_parse_leaf_refuses_bad_fields(change: dict[str, object], code: str) -> None:
    obj = json.loads(good_line())
    obj.update(change)
    line = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    with pytest.raises(PayloadError) as info:
        parse_leaf(line)
    assert info.value.code == code


def test_parse_leaf_refuses_missing_field_and_bad_json() -> None:
    obj = json.loads(good_line())
    del obj["kid"]
    with pytest.raises(PayloadError) as info:
        parse_leaf(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())
    assert info.value.code == "bad_field"
    for raw, code in [
        (good_line().replace(b'"v":1', b'"v":1.5'), "float"),
        (good_line().replace(b'{"v":1}', b'{"v":1,"v":1}'), "duplicate_key"),
        (b"[]", "not_object"),
        (b"", "malformed_json"),
    ]:
        with pytest.raises(PayloadError) as info:
            parse_leaf(raw)
        assert info.value.code == code


def test_leaf_bytes_refuses_oversized_payload_and_bad_fields() -> None:
    with pytest.raises(PayloadError) as info:
        leaf_bytes(0, "2026-11-21T10:00:00Z", {"s": "x" * 5000}, "ed25519", KID, b"\x01")
    assert info.value.code == "too_large"
    with pytest.raises(PayloadError) as info:
        leaf_bytes(0, "2026-11-21T10:00:00", {}, "ed25519", KID, b"\x01")
    assert info.value.code == "bad_field"
    with pytest.raises(PayloadError) as info:
        leaf_bytes(0, "2026-11-21T10:00:00Z", {"x": 0.5}, "ed25519", KID, b"\x01")
    assert info.value.code == "float"


def test_largest_payload_fits_in_a_leaf() -> None:
    payload = {"s": "ә" * ((MAX_PAYLOAD_BYTES - 8) // 2)}
    assert len(canonical_payload(payload)) <= MAX_PAYLOAD_BYTES
    key, raw = p256_pair()
    sig = sign_payload(key, canonical_payload(payload))
    line = leaf_bytes(2**53 - 1, "2026-11-21T10:00:00.999999Z", payload, "ecdsa-p256", KID, sig)
    assert parse_leaf(line).payload == payload

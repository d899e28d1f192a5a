"""The verifier's quick canonical check says yes only where re-serializing, and ``parse_leaf``
(the judge), would: texts are built from pairs, so keys may repeat or come in any order, and
written with or without spaces, escapes and other spellings of the same numbers."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from journal.ledger import audit
from journal.ledger.entry import PayloadError, parse_leaf

# A JSON value as written: an object is a list of (key, value) pairs, so a text may repeat a key.
Pairs = list[tuple[str, Any]]

KEYS = st.sampled_from(["a", "b", "ab", "B", "é", "\u00ff", ":", ":x", "", "\ue000", "kind"])
TEXTS = st.text(
    alphabet=st.sampled_from(["a", " ", ":", '"', "\\", "\n", "é", "\u2028", "\x7f", "0", "-"]),
    max_size=6,
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.integers(min_value=-3, max_value=3),
    TEXTS,
)


class Obj(list):  # type: ignore[type-arg]
    """Pairs of one object (a list of values is a plain list)."""


VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(st.tuples(KEYS, inner), max_size=4).map(Obj),
    ),
    max_leaves=12,
)
PAYLOADS = st.lists(st.tuples(KEYS, VALUES), max_size=5).map(Obj)


def write(value: Any, *, order: str, space: str, ascii_only: bool, minus_zero: bool) -> str:
    if isinstance(value, Obj):
        pairs = list(value)
        if order == "sorted":
            pairs.sort(key=lambda pair: pair[0])
        elif order == "reversed":
            pairs.reverse()
        members = [
            json.dumps(key, ensure_ascii=ascii_only)
            + ":"
            + space
            + write(item, order=order, space=space, ascii_only=ascii_only, minus_zero=minus_zero)
            for key, item in pairs
        ]
        return "{" + ("," + space).join(members) + "}"
    if isinstance(value, list):
        items = [
            write(item, order=order, space=space, ascii_only=ascii_only, minus_zero=minus_zero)
            for item in value
        ]
        return "[" + ",".join(items) + "]"
    if minus_zero and value == 0 and type(value) is int:
        return "-0"
    return json.dumps(value, ensure_ascii=ascii_only)


def leaf(payload_text: str) -> bytes:
    sig = base64.b64encode(bytes(range(64))).decode()
    return (
        '{"alg":"ed25519","kid":"0123456789abcdef0123456789abcdef","payload":'
        + payload_text
        + f',"received_at":"2026-11-21T10:00:00Z","seq":7,"sig":"{sig}"}}'
    ).encode()


def judged(line: bytes) -> Any:
    try:
        return parse_leaf(line)
    except (PayloadError, ValueError, KeyError, TypeError):
        return None


@settings(max_examples=600, deadline=None)
@given(
    payload=PAYLOADS,
    order=st.sampled_from(["sorted", "sorted", "as drawn", "reversed"]),
    space=st.sampled_from(["", "", " "]),
    ascii_only=st.booleans(),
    minus_zero=st.booleans(),
)
@example(
    payload=Obj([("a", 1), ("a", ":x")]),
    order="as drawn",
    space="",
    ascii_only=False,
    minus_zero=False,
)
@example(
    payload=Obj([("a", ":"), ("b", 1), ("a", 2)]),
    order="sorted",
    space="",
    ascii_only=False,
    minus_zero=False,
)
def test_the_fast_parse_accepts_only_what_parse_leaf_accepts(
    payload: Obj, order: str, space: str, ascii_only: bool, minus_zero: bool
) -> None:
    text = write(payload, order=order, space=space, ascii_only=ascii_only, minus_zero=minus_zero)
    line = leaf(text)
    expected = judged(line)
    got = audit.parse_leaf_fast(line)
    assert got is None or got == expected, line
    if expected is not None and b"\\" not in line and b" " not in line:
        assert got == expected, line  # a plain canonical leaf takes the quick path


@settings(max_examples=600, deadline=None)
@given(
    payload=PAYLOADS,
    order=st.sampled_from(["sorted", "as drawn", "reversed"]),
    minus_zero=st.booleans(),
)
def test_plainly_canonical_is_re_serialization_without_the_encoder(
    payload: Obj, order: str, minus_zero: bool
) -> None:
    text = write(payload, order=order, space="", ascii_only=False, minus_zero=minus_zero)
    line = text.encode()
    if any(c in line for c in b" \t\n\r\\") or any(z in line for z in (b":-", b",-", b"[-")):
        return  # those go to the encoder
    try:
        obj = json.loads(text)
    except ValueError:
        return
    canonical = audit._ENCODER.encode(obj) == text
    if audit._plainly_canonical(obj, line):
        assert canonical, text
    elif canonical:  # said no only where a string starts with a colon: the encoder decides
        assert text.count('":') > keys(payload), text


def keys(value: Any) -> int:
    if isinstance(value, Obj):
        return len(value) + sum(keys(item) for _key, item in value)
    if isinstance(value, list):
        return sum(keys(item) for item in value)
    return 0


def test_repeated_and_unordered_keys_are_refused_without_the_encoder() -> None:
    for text in (
        '{"a":1,"a":1}',
        '{"a":{"b":1,"b":1}}',
        '{"b":1,"a":1}',
        '{"a":[{"c":1,"b":2}]}',
        '{"a":":","a":1}',
        # a leaf's fields in order: the objects outside the payload are judged too
        '{"alg":{"b":1,"a":1},"kid":"k","payload":{},"received_at":"t","seq":0,"sig":"s"}',
        '{"alg":"a","kid":"k","payload":{"b":1,"a":2},"received_at":"t","seq":0,"sig":"s"}',
        '{"alg":"a","kid":"k","payload":{"a":{"c":1,"b":1}},"received_at":"t","seq":0,"sig":"s"}',
    ):
        assert not audit._plainly_canonical(json.loads(text), text.encode()), text
    for text in (
        '{"a":1,"b":[{"a":1,"b":{}}]}',
        '{"":1,"a":"x:","é":null}',
        '{"alg":[1],"kid":"k","payload":{"a":{"b":[]}},"received_at":"t","seq":0,"sig":"s"}',
    ):
        assert audit._plainly_canonical(json.loads(text), text.encode()), text

"""C2SP signed notes and tlog checkpoints."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from journal.ledger.note import (
    Checkpoint,
    NoteError,
    Verifier,
    format_checkpoint,
    open_note,
    parse_checkpoint,
    parse_vkey,
    sign_checkpoint,
    sign_note,
    split_note,
    verify_checkpoint,
    vkey,
)

# Known answers from golang.org/x/mod/sumdb/note (note_test.go), the reference implementation
# of the C2SP signed-note format. The signer key is "PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖
# 32-byte Ed25519 seed)>".
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngot"
    "pRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLo"
    "x33WWd1RvMc+QQ=\n"
)

# The example note at the top of c2sp.org/signed-note (its public key is not published).
C2SP_NOTE = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed è subito sera.\n"
    "\n"
    "— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrM"
    "ouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)
# The example of c2sp.org/tlog-checkpoint.
C2SP_CHECKPOINT = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhc"
    "yv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)


def peter_key() -> Ed25519PrivateKey:
    encoded = PETER_SKEY.split("+", 4)[4]
    raw = base64.b64decode(encoded)
    assert raw[0] == 0x01 and len(raw) == 33
    return Ed25519PrivateKey.from_private_bytes(raw[1:])


def test_known_answer_vkey_and_signature() -> None:
    key = peter_key()
    assert vkey("PeterNeumann", key.public_key()) == PETER_VKEY
    # Ed25519 is deterministic: our signed note is byte for byte the reference one.
    assert sign_note(TEXT, "PeterNeumann", key) == TEXT + "\n" + PETER_SIG


def test_known_answer_note_opens() -> None:
    peter = parse_vkey(PETER_VKEY)
    assert peter.name == "PeterNeumann"
    assert peter.key_id == bytes.fromhex("c74f20a3")
    assert peter.vkey() == PETER_VKEY
    assert open_note(TEXT + "\n" + PETER_SIG, peter) == TEXT
    # Signatures by other keys are ignored, in any order.
    enoch = parse_vkey(ENOCH_VKEY)
    assert open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, peter) == TEXT
    assert open_note(TEXT + "\n" + ENOCH_SIG + PETER_SIG, peter) == TEXT
    assert open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, enoch) == TEXT
    assert open_note((TEXT + "\n" + PETER_SIG).encode(), peter) == TEXT


def test_c2sp_example_note_parses() -> None:
    text, signatures = split_note(C2SP_NOTE)
    # The text runs to the last blank line, keeping its own blank line.
    assert text == (
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\n"
        "ed è subito sera.\n"
    )
    [(name, raw)] = signatures
    assert name == "quasimodo.example/salvatore"
    assert len(raw) == 4 + 64
    stranger = Verifier.from_public_key(name, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(NoteError, match="no signature"):
        open_note(C2SP_NOTE, stranger)


def test_c2sp_example_checkpoint_parses() -> None:
    text, signatures = split_note(C2SP_CHECKPOINT)
    cp = parse_checkpoint(text)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.extensions == ()
    assert format_checkpoint(cp) == text
    assert signatures[0][0] == cp.origin


def test_wrong_key_is_rejected() -> None:
    note = TEXT + "\n" + PETER_SIG
    impostor = Verifier.from_public_key("PeterNeumann", Ed25519PrivateKey.generate().public_key())
    with pytest.raises(NoteError):
        open_note(note, impostor)
    # Same key id but a different key: a signature by "that" key must verify, and does not.
    forged = Verifier("PeterNeumann", bytes.fromhex("c74f20a3"), impostor.public_key)
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(note, forged)
    with pytest.raises(NoteError):
        open_note(TEXT + "\n" + ENOCH_SIG, parse_vkey(PETER_VKEY))


def test_modified_text_is_rejected() -> None:
    peter = parse_vkey(PETER_VKEY)
    for changed in [
        TEXT.replace("cryptography", "Cryptography"),
        TEXT.replace("is.\n", "is!\n"),
        TEXT + "extra line\n",
        TEXT[1:],
    ]:
        with pytest.raises(NoteError, match="invalid signature"):
            open_note(changed + "\n" + PETER_SIG, peter)


def test_tampered_signature_is_rejected() -> None:
    peter = parse_vkey(PETER_VKEY)
    encoded = PETER_SIG.split(" ")[2].strip()
    raw = bytearray(base64.b64decode(encoded))
    raw[10] ^= 1
    bad = "— PeterNeumann " + base64.b64encode(bytes(raw)).decode() + "\n"
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(TEXT + "\n" + bad, peter)
    # A bad signature by the trusted key rejects the note even next to a good one.
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(TEXT + "\n" + PETER_SIG + bad, peter)


@pytest.mark.parametrize(
    "note",
    [
        TEXT,  # no signatures
        TEXT + "\n",  # blank line, no signatures
        TEXT + "\n" + PETER_SIG[:-1],  # no final newline
        "\x01" + TEXT + "\n" + PETER_SIG,  # control character
        TEXT.replace("\n", "\r\n") + "\r\n" + PETER_SIG,  # CR
        TEXT + "\n" + PETER_SIG.replace("\n", "\r\n"),
        TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Peter Neumann"),  # space in name
        TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Peter+Neumann"),  # plus in name
        TEXT + "\n" + PETER_SIG.replace("— ", "- "),  # hyphen, not em dash
        TEXT + "\n" + PETER_SIG.replace("— ", "—"),
        TEXT + "\n" + PETER_SIG.replace("=\n", "\n"),  # padding dropped
        TEXT + "\n" + PETER_SIG.replace("x08g", "x08g "),  # space inside base64
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + "— PeterNeumann AAAA\n",  # shorter than a key id and one byte
        TEXT + "\n" + PETER_SIG * 101,  # too many signatures
    ],
)
def test_malformed_notes_are_rejected(note: str) -> None:
    with pytest.raises(NoteError):
        open_note(note, parse_vkey(PETER_VKEY))


def test_invalid_utf8_is_rejected() -> None:
    with pytest.raises(NoteError, match="UTF-8"):
        open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), parse_vkey(PETER_VKEY))


def test_sixteen_signatures_are_accepted() -> None:
    others = "".join(
        sign_note(TEXT, f"witness{i}.example", Ed25519PrivateKey.generate()).split("\n\n")[1]
        for i in range(15)
    )
    assert open_note(TEXT + "\n" + others + PETER_SIG, parse_vkey(PETER_VKEY)) == TEXT


def test_vkey_manglings_are_rejected() -> None:
    """As golang.org/x/mod/sumdb/note does: no proper substring, no changed byte parses."""
    for i in range(len(PETER_VKEY) + 1):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(NoteError):
                    parse_vkey(PETER_VKEY[i:j])
    for i in range(len(PETER_VKEY)):
        changed = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
        with pytest.raises(NoteError):
            parse_vkey(changed)
    for bad in [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "",
    ]:
        with pytest.raises(NoteError):
            parse_vkey(bad)


def test_sign_note_checks_its_input() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(NoteError, match="newline"):
        sign_note("no newline", "name", key)
    with pytest.raises(NoteError):
        sign_note("bad\rtext\n", "name", key)
    for name in ["", "a b", "a+b", "a\u00a0b", "a\u3000b"]:
        with pytest.raises(NoteError):
            sign_note(TEXT, name, key)
        with pytest.raises(NoteError):
            vkey(name, key.public_key())


def test_note_text_may_contain_blank_lines() -> None:
    key = Ed25519PrivateKey.generate()
    verifier = Verifier.from_public_key("school.example.kz/log", key.public_key())
    for text in ["a\n\nb\n", "a\n\n", "\n", "Сынып журналы 7Ә\n"]:
        assert open_note(sign_note(text, verifier.name, key), verifier) == text


# --- checkpoints ------------------------------------------------------------------------------

ROOT = bytes(range(32))


def test_checkpoint_format_and_round_trip() -> None:
    cp = Checkpoint("school.example.kz/journal/2026-2027/7A", 12, ROOT)
    text = format_checkpoint(cp)
    assert text == (
        "school.example.kz/journal/2026-2027/7A\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    )
    assert parse_checkpoint(text) == cp
    with_ext = Checkpoint("o", 0, ROOT, ("ext one", "ext two"))
    assert format_checkpoint(with_ext).endswith("\next one\next two\n")
    assert parse_checkpoint(format_checkpoint(with_ext)) == with_ext


@pytest.mark.parametrize(
    "text",
    [
        "o\n012\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "o\n+12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "o\n-1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "o\n 12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "o\n١٢\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "o\n18446744073709551616\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "o\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\n",
        "o\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=\n",
        "o\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n",
        "o\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n",
        "o\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "o\n12\n",
        "o\r\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    ],
)
def test_malformed_checkpoints_are_rejected(text: str) -> None:
    with pytest.raises(NoteError):
        parse_checkpoint(text)


def test_checkpoint_size_may_be_zero_and_large() -> None:
    root_b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    assert parse_checkpoint(f"o\n0\n{root_b64}\n").size == 0
    assert parse_checkpoint(f"o\n18446744073709551615\n{root_b64}\n").size == 2**64 - 1


def test_format_checkpoint_refuses_bad_fields() -> None:
    for cp in [
        Checkpoint("", 1, ROOT),
        Checkpoint("a\nb", 1, ROOT),
        Checkpoint("o", -1, ROOT),
        Checkpoint("o", 1, ROOT[:31]),
        Checkpoint("o", 1, ROOT, ("",)),
    ]:
        with pytest.raises(NoteError):
            format_checkpoint(cp)


def test_signed_checkpoint_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    origin = "school.example.kz/ledger"
    verifier = parse_vkey(vkey(origin, key.public_key()))
    cp = Checkpoint(origin, 5, ROOT)
    note = sign_checkpoint(cp, origin, key)
    assert note.startswith(format_checkpoint(cp) + "\n— school.example.kz/ledger ")
    assert verify_checkpoint(note, verifier) == cp
    assert verify_checkpoint(note, verifier, origin=origin) == cp
    with pytest.raises(NoteError, match="origin"):
        verify_checkpoint(note, verifier, origin="school.example.kz/journal/2026-2027/7A")
    bigger = note.replace("\n5\n", "\n6\n", 1)
    with pytest.raises(NoteError, match="invalid signature"):
        verify_checkpoint(bigger, verifier)
    other = Verifier.from_public_key(origin, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(NoteError):
        verify_checkpoint(note, other)

"""C2SP signed notes (Ed25519 only) and tlog checkpoints.

Signed note (c2sp.org/signed-note): the text, which ends in a newline, then a blank line, then one
or more lines "— <key name> <base64(4-byte key id ‖ signature)>". The whole note is UTF-8 with no
control characters but newline. Key names are non-empty, without Unicode spaces or "+". The key id
is SHA-256(name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key)[:4], and the verifier key is written
`<name>+<8 hex key id>+<base64(0x01 ‖ public key)>` (golang.org/x/mod/sumdb/note).

Checkpoint (c2sp.org/tlog-checkpoint): the note text "<origin>\\n<size>\\n<base64 root>\\n"
followed by optional non-empty extension lines; the size is decimal without leading zeros.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519_TYPE = b"\x01"
SIGNATURE_PREFIX = "— "
MAX_SIGNATURES = 100
MAX_TREE_SIZE = 2**64 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")


class NoteError(ValueError):
    """A note, verifier key or checkpoint that is malformed or does not verify."""


def _strict_b64decode(text: str, what: str) -> bytes:
    """Standard padded base64 whose decoding encodes back to the same text."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not standard base64") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise NoteError(f"{what} is not canonical base64")
    return data


def _check_note_chars(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError("note is not valid UTF-8") from None
    for ch in text:
        if ch < " " and ch != "\n":
            raise NoteError(f"note contains control character U+{ord(ch):04X}")


def check_key_name(name: str) -> None:
    """Raise NoteError unless `name` is a valid key name (non-empty, no spaces, no '+')."""
    if not name:
        raise NoteError("key name is empty")
    _check_note_chars(name)
    if "+" in name or any(ch.isspace() for ch in name):
        raise NoteError(f"key name {name!r} contains a space or '+'")


def _public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def note_key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """4-byte key id: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]."""
    data = name.encode("utf-8") + b"\n" + ED25519_TYPE + _public_bytes(public_key)
    return hashlib.sha256(data).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    """A trusted Ed25519 note key."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey) -> Verifier:
        check_key_name(name)
        return cls(name, note_key_id(name, public_key), public_key)

    def vkey(self) -> str:
        return vkey(self.name, self.public_key)


def vkey(name: str, public_key: Ed25519PublicKey) -> str:
    """Verifier key string `<name>+<hex key id>+<base64(0x01 ‖ public key)>`."""
    check_key_name(name)
    encoded = base64.b64encode(ED25519_TYPE + _public_bytes(public_key)).decode("ascii")
    return f"{name}+{note_key_id(name, public_key).hex()}+{encoded}"


def parse_vkey(text: str) -> Verifier:
    """Parse a verifier key string; the key id in it must match the name and key."""
    parts = text.split("+", 2)  # the base64 key may itself contain "+"
    if len(parts) != 3:
        raise NoteError("verifier key is not <name>+<key id>+<key>")
    name, key_id_hex, key_b64 = parts
    check_key_name(name)
    if not _KEY_ID_HEX.fullmatch(key_id_hex):
        raise NoteError("verifier key id is not 8 lowercase hex digits")
    key = _strict_b64decode(key_b64, "verifier key")
    if len(key) != 33 or key[:1] != ED25519_TYPE:
        raise NoteError("verifier key is not an Ed25519 key (0x01 followed by 32 bytes)")
    try:
        public_key = Ed25519PublicKey.from_public_bytes(key[1:])
    except ValueError as exc:
        raise NoteError(f"bad Ed25519 public key: {exc}") from None
    verifier = Verifier.from_public_key(name, public_key)
    if verifier.key_id.hex() != key_id_hex:
        raise NoteError("verifier key id does not match the name and key")
    return verifier


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """Signed note: `text` (ending in a newline), a blank line, and one signature line."""
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    _check_note_chars(text)
    check_key_name(name)
    key_id = note_key_id(name, private_key.public_key())
    signature = private_key.sign(text.encode("utf-8"))
    encoded = base64.b64encode(key_id + signature).decode("ascii")
    return f"{text}\n{SIGNATURE_PREFIX}{name} {encoded}\n"


def split_note(note: str | bytes) -> tuple[str, list[tuple[str, bytes]]]:
    """Parse without verifying: the text and (key name, key id ‖ signature) of each signature."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("note is not valid UTF-8") from None
    _check_note_chars(note)
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block or not block.endswith("\n"):
        raise NoteError("note does not end with a signature line")
    signatures: list[tuple[str, bytes]] = []
    for line in block[:-1].split("\n"):
        if len(signatures) == MAX_SIGNATURES:
            raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("signature line does not start with an em dash and a space")
        name, space, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not space:
            raise NoteError("signature line has no space between name and signature")
        check_key_name(name)
        raw = _strict_b64decode(encoded, "signature")
        if len(raw) < 5:
            raise NoteError("signature is too short")
        signatures.append((name, raw))
    return text, signatures


def open_note(note: str | bytes, verifier: Verifier) -> str:
    """The note text, if the note carries a valid signature by `verifier`; others are ignored.

    A signature with the verifier's name and key id that fails to verify rejects the note.
    """
    text, signatures = split_note(note)
    message = text.encode("utf-8")
    verified = False
    for name, raw in signatures:
        if name != verifier.name or raw[:4] != verifier.key_id:
            continue
        try:
            verifier.public_key.verify(raw[4:], message)
        except InvalidSignature:
            raise NoteError(f"invalid signature by {verifier.name}") from None
        verified = True
    if not verified:
        raise NoteError(f"note has no signature by {verifier.name}+{verifier.key_id.hex()}")
    return text


# --- checkpoints ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed tree head: origin, tree size and root hash."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()


def format_checkpoint(cp: Checkpoint) -> str:
    """Checkpoint note text: origin, size, base64 root hash, extension lines; each ends in \\n."""
    for line in (cp.origin, *cp.extensions):
        if not line or "\n" in line:
            raise NoteError("origin and extension lines must be non-empty single lines")
        _check_note_chars(line)
    if isinstance(cp.size, bool) or not 0 <= cp.size <= MAX_TREE_SIZE:
        raise NoteError(f"tree size {cp.size} is out of range")
    if len(cp.root_hash) != 32:
        raise NoteError("root hash must be 32 bytes")
    lines = [cp.origin, str(cp.size), base64.b64encode(cp.root_hash).decode("ascii")]
    return "".join(line + "\n" for line in [*lines, *cp.extensions])


def parse_checkpoint(text: str) -> Checkpoint:
    """Strictly parse checkpoint note text (as returned by `open_note`)."""
    _check_note_chars(text)
    if not text.endswith("\n"):
        raise NoteError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("checkpoint needs origin, size and root hash lines")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise NoteError("checkpoint origin is empty")
    if not _DECIMAL.fullmatch(size_text) or int(size_text) > MAX_TREE_SIZE:
        raise NoteError(f"checkpoint size {size_text!r} is not a decimal without leading zeros")
    root_hash = _strict_b64decode(root_text, "checkpoint root hash")
    if len(root_hash) != 32:
        raise NoteError("checkpoint root hash is not 32 bytes")
    if any(not line for line in extensions):
        raise NoteError("checkpoint extension lines must be non-empty")
    return Checkpoint(origin, int(size_text), root_hash, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, name: str, private_key: Ed25519PrivateKey) -> str:
    """Signed checkpoint note."""
    return sign_note(format_checkpoint(cp), name, private_key)


def verify_checkpoint(
    note: str | bytes, verifier: Verifier, origin: str | None = None
) -> Checkpoint:
    """Open a signed checkpoint with `verifier`; check its origin when one is given."""
    cp = parse_checkpoint(open_note(note, verifier))
    if origin is not None and cp.origin != origin:
        raise NoteError(f"checkpoint origin {cp.origin!r} is not {origin!r}")
    return cp

"""The IIN (Kazakhstan's 12-digit individual identification number): check, encrypt, look up.

The IIN is personal data: stored only encrypted with AES-256-GCM and found by HMAC-SHA256, both
keyed from configuration (``JOURNAL_IIN_ENCRYPTION_KEY``, ``JOURNAL_IIN_HMAC_KEY``, base64).
The same encryption key, through a key derived for the purpose, seals the other short secrets
the database keeps for people (TOTP seeds: ``seal_secret``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_WEIGHTS_1 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
_WEIGHTS_2 = (3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2)


class InvalidIIN(ValueError):
    """Not an IIN: ``code`` says why ("length", "birth_date", "check_digit") for views to
    explain in the reader's language; the message is English, for commands and logs."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_digit(first_eleven: str) -> int | None:
    """The 12th digit for the first eleven, or None when no digit is valid."""
    digits = [int(c) for c in first_eleven]
    for weights in (_WEIGHTS_1, _WEIGHTS_2):
        remainder = sum(d * w for d, w in zip(digits, weights, strict=True)) % 11
        if remainder != 10:
            return remainder
    return None


def validate_iin(value: str) -> str:
    iin = value.strip()
    if len(iin) != 12 or not iin.isascii() or not iin.isdigit():
        raise InvalidIIN("length", "an IIN has exactly 12 digits")
    month, day = int(iin[2:4]), int(iin[4:6])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        raise InvalidIIN("birth_date", "the IIN does not start with a valid birth date (YYMMDD)")
    if check_digit(iin[:11]) != int(iin[11]):
        raise InvalidIIN("check_digit", "the IIN's check digit is wrong")
    return iin


def _key(encoded: str | bytes, name: str) -> bytes:
    key = base64.b64decode(encoded) if isinstance(encoded, str) else encoded
    if len(key) != 32:
        raise ValueError(f"{name} must be 32 bytes, base64-encoded")
    return key


def iin_lookup_hash(iin: str, hmac_key: str | bytes) -> bytes:
    return hmac.new(_key(hmac_key, "IIN_HMAC_KEY"), iin.encode(), hashlib.sha256).digest()


def encrypt_iin(iin: str, encryption_key: str | bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(_key(encryption_key, "IIN_ENCRYPTION_KEY")).encrypt(
        nonce, iin.encode(), b"iin"
    )


def decrypt_iin(blob: bytes, encryption_key: str | bytes) -> str:
    aead = AESGCM(_key(encryption_key, "IIN_ENCRYPTION_KEY"))
    return aead.decrypt(blob[:12], blob[12:], b"iin").decode()


SEALED_PREFIX = "sealed:v1:"


def _secret_key(encryption_key: str | bytes) -> bytes:
    """A key for sealing secrets, derived from the IIN key: the two never share ciphertexts."""
    master = _key(encryption_key, "IIN_ENCRYPTION_KEY")
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=b"class-journal/secret").derive(
        master
    )


def seal_secret(secret: str, encryption_key: str | bytes) -> str:
    """``sealed:v1:`` and base64 of nonce + AES-256-GCM ciphertext: fits a short text column."""
    nonce = os.urandom(12)
    sealed = AESGCM(_secret_key(encryption_key)).encrypt(nonce, secret.encode(), b"secret")
    return SEALED_PREFIX + base64.b64encode(nonce + sealed).decode()


def open_secret(value: str, encryption_key: str | bytes) -> str:
    """The secret in a sealed value; a value written before sealing is returned as it is."""
    if not value.startswith(SEALED_PREFIX):
        return value
    blob = base64.b64decode(value[len(SEALED_PREFIX) :])
    return AESGCM(_secret_key(encryption_key)).decrypt(blob[:12], blob[12:], b"secret").decode()

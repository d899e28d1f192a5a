"""The school's log key: signs checkpoints and server-made ledger entries.

The private key lives in a PEM file under ``KEYS_DIR`` (operator custody, never the database);
the public half is published as a C2SP vkey and kept on the school row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .ledger import entry as ledger_entry
from .ledger import note


@dataclass(frozen=True)
class LogKey:
    name: str  # the key name in signed notes: the school's domain
    private_key: Ed25519PrivateKey

    @property
    def vkey(self) -> str:
        return note.vkey(self.name, self.private_key.public_key())

    @property
    def raw_public_key(self) -> bytes:
        return ledger_entry.public_key_bytes(self.private_key.public_key())[1]

    @property
    def kid(self) -> str:
        """The key id under which server-made ledger entries are signed."""
        return ledger_entry.key_id("ed25519", self.raw_public_key)


def key_path(keys_dir: str | Path, domain: str) -> Path:
    return Path(keys_dir) / f"{domain}.log-key.pem"


def load_log_key(keys_dir: str | Path, domain: str) -> LogKey:
    path = key_path(keys_dir, domain)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LookupError(
            f"no log key for {domain} at {path}; create one with `flask --app wsgi demo seed` "
            "or restore it from the key backup"
        ) from None
    private_key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(private_key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return LogKey(domain, private_key)


def create_log_key(keys_dir: str | Path, domain: str) -> LogKey:
    """Create the key file once; an existing key is returned, never replaced."""
    path = key_path(keys_dir, domain)
    if path.exists():
        return load_log_key(keys_dir, domain)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return LogKey(domain, private_key)

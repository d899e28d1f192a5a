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


# -- the school's PDF signing certificate ------------------------------------------------------
#
# RSA-3072 (PDF/A-3 stays on PDF 1.7; poppler's pdfsig cannot read Ed25519). In production the
# operator puts the key and certificate issued to the school in KEYS_DIR; `demo seed` makes a
# demo school CA and a certificate signed by it.


def pdf_key_paths(keys_dir: str | Path, domain: str) -> tuple[Path, Path, Path]:
    base = Path(keys_dir)
    return (
        base / f"{domain}.pdf-key.pem",
        base / f"{domain}.pdf-cert.pem",
        base / f"{domain}.pdf-chain.pem",
    )


def load_pdf_signer(keys_dir: str | Path, domain: str) -> PdfSignerFiles:
    key_path, cert_path, chain_path = pdf_key_paths(keys_dir, domain)
    if not key_path.exists() or not cert_path.exists():
        raise LookupError(f"no PDF signing key for {domain} in {keys_dir}")
    chain = chain_path.read_bytes() if chain_path.exists() else b""
    return PdfSignerFiles(key_path.read_bytes(), cert_path.read_bytes(), _split_pems(chain))


def create_demo_pdf_signer(keys_dir: str | Path, domain: str, school_name: str) -> PdfSignerFiles:
    """A demo CA and a school signing certificate; an existing key is kept."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key_path, cert_path, chain_path = pdf_key_paths(keys_dir, domain)
    if key_path.exists() and cert_path.exists():
        return load_pdf_signer(keys_dir, domain)
    Path(keys_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Demo school CA ({domain})")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365 * 30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, school_name[:64]),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, domain),
                ]
            )
        )
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365 * 5))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    chain_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return load_pdf_signer(keys_dir, domain)


@dataclass(frozen=True)
class PdfSignerFiles:
    key_pem: bytes
    cert_pem: bytes
    chain_pem: tuple[bytes, ...]


def _split_pems(data: bytes) -> tuple[bytes, ...]:
    marker = b"-----END CERTIFICATE-----"
    parts = [p.strip() + b"\n" + marker + b"\n" for p in data.split(marker) if p.strip()]
    return tuple(parts)

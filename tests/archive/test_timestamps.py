"""RFC 3161 timestamps against a real local TSA (``openssl ts -reply``) and ``ts -verify``."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import time
from pathlib import Path

import pytest
import rfc3161_client
from cryptography import x509

from archive.timestamps import (
    HttpTimestampAuthority,
    TimestampError,
    build_request,
    check_response,
    timestamp_authority_from_config,
    timestamp_gen_time,
    timestamp_imprint,
    verify_timestamp,
)
from tests.archive.conftest import LocalTSA
from tests.archive.services import ServiceUnavailable, free_ports, start_local_tsa
from tests.external import missing, need_tool

CHECKPOINT = b"school.example.kz/journal/2024-2025/7A\n12\nq7v8...base64...=\n\n- school sig\n"


@pytest.fixture(scope="module")
def token(local_tsa: LocalTSA) -> bytes:
    return HttpTimestampAuthority(local_tsa.url, timeout=10).timestamp(CHECKPOINT)


def test_token_verifies_with_openssl_and_returns_gen_time(
    local_tsa: LocalTSA, token: bytes
) -> None:
    need_tool("openssl")
    gen_time = verify_timestamp(CHECKPOINT, token, local_tsa.ca_cert)
    assert gen_time.tzinfo is not None
    assert abs(dt.datetime.now(dt.UTC) - gen_time) < dt.timedelta(minutes=5)
    assert gen_time == timestamp_gen_time(token)
    assert verify_timestamp(CHECKPOINT, token, local_tsa.ca_cert, local_tsa.tsa_cert) == gen_time


def test_token_covers_sha256_of_the_data(token: bytes) -> None:
    assert timestamp_imprint(token) == ("sha256", hashlib.sha256(CHECKPOINT).digest())


def test_rfc3161_client_agrees(local_tsa: LocalTSA, token: bytes) -> None:
    """An independent implementation (sigstore's rfc3161-client) reads and verifies the token."""
    response = rfc3161_client.decode_timestamp_response(token)
    assert response.status == rfc3161_client.PKIStatus.GRANTED
    assert response.tst_info.gen_time.replace(tzinfo=dt.UTC) == timestamp_gen_time(token)
    ca = x509.load_pem_x509_certificate(local_tsa.ca_cert.read_bytes())
    verifier = rfc3161_client.VerifierBuilder().add_root_certificate(ca).build()
    assert verifier.verify_message(response, CHECKPOINT)
    with pytest.raises(rfc3161_client.VerificationError):
        verifier.verify_message(response, CHECKPOINT + b"x")


def test_changed_data_fails(local_tsa: LocalTSA, token: bytes) -> None:
    need_tool("openssl")
    changed = bytearray(CHECKPOINT)
    changed[5] ^= 0x01
    with pytest.raises(TimestampError, match="imprint"):
        verify_timestamp(bytes(changed), token, local_tsa.ca_cert)


def _flip(data: bytes, offset: int) -> bytes:
    changed = bytearray(data)
    changed[offset] ^= 0x01
    return bytes(changed)


def test_changed_token_byte_fails(local_tsa: LocalTSA, token: bytes) -> None:
    need_tool("openssl")
    gen_time = timestamp_gen_time(token).strftime("%Y%m%d%H%M%S").encode()
    offsets = {
        "signature (last byte)": len(token) - 1,
        "genTime": token.index(gen_time) + len(gen_time) - 1,
        "message imprint": token.index(hashlib.sha256(CHECKPOINT).digest()) + 3,
        "serial/nonce area": token.index(gen_time) - 12,
    }
    for where, offset in offsets.items():
        with pytest.raises(TimestampError):
            verify_timestamp(CHECKPOINT, _flip(token, offset), local_tsa.ca_cert)
            pytest.fail(f"a changed byte in the {where} verified")


def test_other_ca_fails(tmp_path: Path, token: bytes) -> None:
    need_tool("openssl")
    from tests.archive.services import make_test_pki

    other_ca, _, _ = make_test_pki(tmp_path / "other")
    with pytest.raises(TimestampError, match="openssl ts -verify failed"):
        verify_timestamp(CHECKPOINT, token, other_ca)


def test_garbage_is_not_a_token() -> None:
    with pytest.raises(TimestampError):
        timestamp_gen_time(b"\x30\x03\x02\x01\x00")
    with pytest.raises(TimestampError):
        timestamp_gen_time(b"not der at all")


def test_nonce_mismatch_is_refused(token: bytes) -> None:
    with pytest.raises(TimestampError, match="nonce"):
        check_response(CHECKPOINT, token, nonce=1)


def test_request_is_a_timestamp_query() -> None:
    der, nonce = build_request(b"abc", nonce=42)
    assert nonce == 42
    openssl = shutil.which("openssl")
    if openssl is None:
        missing("openssl is not installed")
    import subprocess

    text = subprocess.run(
        [openssl, "ts", "-query", "-in", "/dev/stdin", "-text"],
        input=der,
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert "sha256" in text
    assert "Nonce: 0x2A" in text
    assert "Certificate required: yes" in text
    assert hashlib.sha256(b"abc").hexdigest()[:4] in text.replace(" ", "").lower()


def test_unreachable_tsa_raises() -> None:
    (port,) = free_ports(1)
    authority = HttpTimestampAuthority(f"http://127.0.0.1:{port}/tsa", timeout=2)
    with pytest.raises(TimestampError, match="unreachable"):
        authority.timestamp(b"x")


def test_http_error_raises(local_tsa: LocalTSA) -> None:
    with pytest.raises(TimestampError, match="HTTP 404"):
        HttpTimestampAuthority(local_tsa.url + "/nope", timeout=5).timestamp(b"x")


def test_rejection_status_raises() -> None:
    rejection = bytes.fromhex("30053003020102")  # TimeStampResp { status: rejection }
    with pytest.raises(TimestampError, match="refused: status rejection"):
        check_response(CHECKPOINT, rejection)


def test_config() -> None:
    assert timestamp_authority_from_config({"TSA_URL": None}) is None
    authority = timestamp_authority_from_config(
        {"TSA_URL": "https://tsa.example/", "TSA_TIMEOUT": 3}
    )
    assert authority is not None and authority.url == "https://tsa.example/"
    assert authority.timeout == 3.0
    with pytest.raises(ValueError):
        HttpTimestampAuthority("file:///etc/passwd")


def test_token_still_verifies_after_the_tsa_certificate_expired(tmp_path: Path) -> None:
    """RECIPES: ``-attime <genTime>``. The TSA certificate here lives for 3 seconds."""
    need_tool("openssl")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    try:
        url, ca_cert, _, stop = start_local_tsa(
            tmp_path,
            tsa_not_before=now - dt.timedelta(minutes=1),
            tsa_not_after=now + dt.timedelta(seconds=3),
        )
    except ServiceUnavailable as exc:
        missing(str(exc))
    try:
        token = HttpTimestampAuthority(url).timestamp(CHECKPOINT)
    finally:
        stop()
    expired_at = now + dt.timedelta(seconds=3)
    time.sleep(max(0.0, (expired_at - dt.datetime.now(dt.UTC)).total_seconds()) + 1.1)
    assert dt.datetime.now(dt.UTC) > expired_at
    # Plain `openssl ts -verify` (checking at the current time) now refuses the token ...
    import subprocess

    (tmp_path / "data").write_bytes(CHECKPOINT)
    (tmp_path / "token.tsr").write_bytes(token)
    plain = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-data",
            str(tmp_path / "data"),
            "-in",
            str(tmp_path / "token.tsr"),
            "-CAfile",
            str(ca_cert),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert plain.returncode != 0 and "expired" in (plain.stdout + plain.stderr)
    # ... and verify_timestamp, checking at genTime, accepts it.
    assert verify_timestamp(CHECKPOINT, token, ca_cert) == timestamp_gen_time(token)

"""RFC 3161 timestamps: asking a Time-Stamp Authority, and checking a token years later.

The authority is one small interface, :class:`TimestampAuthority`; :class:`HttpTimestampAuthority`
speaks the RFC 3161 HTTP transport (``application/timestamp-query`` →
``application/timestamp-reply``). Tokens are kept as the complete DER ``TimeStampResp`` (the
``.tsr`` file ``openssl ts -reply`` writes), because that is what ``openssl ts -verify -in``
reads and what inspectors get in ``data/checkpoints/<size>.tsr``.

Requests always use SHA-256 and a random nonce and ask for the TSA certificate. The answer is
accepted only when the status is granted and the token covers exactly ``sha256(data)`` and our
nonce; the signature itself is checked by :func:`verify_timestamp`, which runs the same
``openssl ts -verify`` an inspector would run by hand, at the token's own genTime (``-attime``), so
a token stays verifiable after the TSA certificate expires.

Parsing uses ``asn1crypto`` (pure Python; installed with pyHanko), so no network or OpenSSL is
needed to read a token's genTime (:func:`timestamp_gen_time`).
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import secrets
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from asn1crypto import algos, cms, tsp

QUERY_CONTENT_TYPE = "application/timestamp-query"
REPLY_CONTENT_TYPE = "application/timestamp-reply"
_GRANTED = {"granted", "granted_with_mods"}


class _TimeStampResp(tsp.TimeStampResp):  # type: ignore[misc]
    """RFC 3161 §2.4.2: the token is OPTIONAL (absent on refusal); asn1crypto requires it."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class TimestampError(Exception):
    """A timestamp could not be obtained, parsed or verified."""


class TimestampAuthority(Protocol):
    """Anything that timestamps bytes and returns a DER ``TimeStampResp`` (``.tsr``)."""

    def timestamp(self, data: bytes) -> bytes: ...


def build_request(data: bytes, *, nonce: int | None = None) -> tuple[bytes, int]:
    """DER ``TimeStampReq`` over ``sha256(data)``, ``certReq`` true; returns ``(der, nonce)``."""
    if nonce is None:
        nonce = secrets.randbits(63)
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "hashed_message": hashlib.sha256(data).digest(),
            },
            "nonce": nonce,
            "cert_req": True,
        }
    )
    return request.dump(), nonce


def _tst_info(tsr: bytes) -> tsp.TSTInfo:
    """Parse a DER ``TimeStampResp`` and return its TSTInfo; TimestampError if not granted."""
    try:
        response = _TimeStampResp.load(tsr)
        status_info = response["status"]
        status = status_info["status"].native
    except (ValueError, TypeError, KeyError) as exc:
        raise TimestampError(f"not a DER TimeStampResp: {exc}") from exc
    if status not in _GRANTED:
        text = status_info["status_string"].native if status_info["status_string"] else None
        failure = status_info["fail_info"].native if status_info["fail_info"] else None
        raise TimestampError(f"TSA refused: status {status}, {text or ''} {failure or ''}".strip())
    try:
        token = response["time_stamp_token"]
        if not token:
            raise TimestampError("granted response without a time stamp token")
        if token["content_type"].native != "signed_data":
            raise TimestampError("time stamp token is not CMS SignedData")
        encap = token["content"]["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise TimestampError("time stamp token does not hold a TSTInfo")
        info = encap["content"].parsed
        _ = info.native  # parse everything now, so a damaged token fails here
    except TimestampError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TimestampError(f"damaged time stamp token: {exc}") from exc
    return info


def timestamp_gen_time(tsr: bytes) -> dt.datetime:
    """The token's genTime (timezone-aware UTC), without checking the signature."""
    gen_time: dt.datetime = _tst_info(tsr)["gen_time"].native
    return gen_time.astimezone(dt.UTC)


def timestamp_imprint(tsr: bytes) -> tuple[str, bytes]:
    """``(hash algorithm, hashed message)`` the token covers, without checking the signature."""
    imprint = _tst_info(tsr)["message_imprint"]
    return imprint["hash_algorithm"]["algorithm"].native, imprint["hashed_message"].native


def check_response(data: bytes, tsr: bytes, *, nonce: int | None = None) -> dt.datetime:
    """Check that a granted response covers ``sha256(data)`` (and ``nonce``); return genTime."""
    info = _tst_info(tsr)
    imprint = info["message_imprint"]
    algorithm = imprint["hash_algorithm"]["algorithm"].native
    if algorithm != "sha256":
        raise TimestampError(f"token uses {algorithm}, expected sha256")
    if imprint["hashed_message"].native != hashlib.sha256(data).digest():
        raise TimestampError("token message imprint does not match sha256 of the data")
    if nonce is not None and info["nonce"].native != nonce:
        raise TimestampError("token nonce does not match the request")
    gen_time: dt.datetime = info["gen_time"].native
    return gen_time.astimezone(dt.UTC)


class HttpTimestampAuthority:
    """An RFC 3161 TSA reached over HTTP(S) with ``urllib``."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"TSA URL must be http(s): {url!r}")
        self.url = url
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"HttpTimestampAuthority({self.url!r})"

    def timestamp(self, data: bytes) -> bytes:
        """Timestamp ``data``; return the DER ``TimeStampResp`` once status and imprint match."""
        query, nonce = build_request(data)
        request = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            self.url,
            data=query,
            method="POST",
            headers={"Content-Type": QUERY_CONTENT_TYPE, "Accept": REPLY_CONTENT_TYPE},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                content_type = answer.headers.get_content_type()
                body: bytes = answer.read()
        except urllib.error.HTTPError as exc:
            raise TimestampError(f"TSA {self.url} answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise TimestampError(f"TSA {self.url} unreachable: {exc}") from exc
        if content_type != REPLY_CONTENT_TYPE:
            raise TimestampError(f"TSA {self.url} answered {content_type}, not a timestamp reply")
        check_response(data, body, nonce=nonce)
        return body


def timestamp_authority_from_config(config: Mapping[str, Any]) -> HttpTimestampAuthority | None:
    """The TSA named by ``TSA_URL`` (timeout ``TSA_TIMEOUT`` seconds), or None when unset."""
    url = config.get("TSA_URL")
    if not url:
        return None
    return HttpTimestampAuthority(str(url), float(config.get("TSA_TIMEOUT") or 10.0))


def configured_timestamper() -> HttpTimestampAuthority | None:
    """The TSA of the running app's configuration, or None outside an app or without TSA_URL."""
    from flask import current_app, has_app_context

    if not has_app_context():
        return None
    return timestamp_authority_from_config(current_app.config)


def verify_timestamp(
    data: bytes,
    tsr: bytes,
    ca_cert_pem_path: Path | str,
    tsa_cert_pem_path: Path | str | None = None,
    *,
    openssl: str = "openssl",
) -> dt.datetime:
    """Verify ``tsr`` over ``data`` with ``openssl ts -verify``; return genTime (UTC).

    Runs ``openssl ts -verify -data DATA -in TSR -CAfile CA [-untrusted TSA] -attime GENTIME``: the
    chain is checked as of the moment the token was made, so tokens outlive the TSA certificate.
    ``tsa_cert_pem_path`` supplies the TSA certificate (and intermediates) when the token does not
    embed them. Raises TimestampError when the token is damaged, does not cover ``data``, or does
    not chain to the CA.
    """
    gen_time = check_response(data, tsr)
    executable = shutil.which(openssl)
    if executable is None:
        raise TimestampError(f"{openssl} not found: it is needed to verify timestamps")
    with tempfile.TemporaryDirectory(prefix="tsverify-") as work:
        data_path = Path(work) / "data"
        tsr_path = Path(work) / "token.tsr"
        data_path.write_bytes(data)
        tsr_path.write_bytes(tsr)
        command = [
            executable,
            "ts",
            "-verify",
            "-data",
            str(data_path),
            "-in",
            str(tsr_path),
            "-CAfile",
            str(ca_cert_pem_path),
            "-attime",
            str(calendar.timegm(gen_time.utctimetuple())),
        ]
        if tsa_cert_pem_path is not None:
            command += ["-untrusted", str(tsa_cert_pem_path)]
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or "Verification: OK" not in result.stdout:
        raise TimestampError(f"openssl ts -verify failed: {output}")
    return gen_time

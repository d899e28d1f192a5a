"""Fixtures for the archive tests: a real SeaweedFS and a real local RFC 3161 TSA, one of each per
test session (per xdist worker). The starting code is in ``tests/archive/services.py``."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.archive.services import ServiceUnavailable, start_local_tsa, start_seaweedfs
from tests.external import missing


@dataclass(frozen=True)
class SeaweedFS:
    endpoint: str
    access_key: str
    secret_key: str
    ports: dict[str, int] = field(default_factory=dict)  # s3, filer, master, volume

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )


@dataclass(frozen=True)
class LocalTSA:
    url: str
    ca_cert: Path
    tsa_cert: Path


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """``weed mini`` on 127.0.0.1 with free ports, admin credentials, telemetry off."""
    ports: dict[str, int] = {}
    try:
        endpoint, access_key, secret_key, stop = start_seaweedfs(
            tmp_path_factory.mktemp("seaweedfs"), ports=ports
        )
    except ServiceUnavailable as exc:
        missing(str(exc))
    try:
        yield SeaweedFS(endpoint, access_key, secret_key, ports)
    finally:
        stop()


@pytest.fixture(scope="session")
def local_tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTSA]:
    """An RFC 3161 TSA on 127.0.0.1 answering with ``openssl ts -reply``."""
    try:
        url, ca_cert, tsa_cert, stop = start_local_tsa(tmp_path_factory.mktemp("tsa"))
    except ServiceUnavailable as exc:
        missing(str(exc))
    try:
        yield LocalTSA(url, ca_cert, tsa_cert)
    finally:
        stop()


@pytest.fixture
def s3_client(seaweedfs: SeaweedFS) -> Iterator[Any]:
    client = seaweedfs.client()
    yield client
    client.close()


@pytest.fixture
def lock_bucket(s3_client: Any) -> str:
    """A fresh bucket name per test (created by the test through ``ensure_bucket``)."""
    return "archive-" + secrets.token_hex(6)


@pytest.fixture(scope="session")
def real_bags(tmp_path_factory: pytest.TempPathFactory, databases: Any, local_tsa: LocalTSA) -> Any:
    """Bags made by the archive job (tests/archive/real_bags.py), once per test session."""
    from tests.archive.real_bags import build_real_bags

    return build_real_bags(
        tmp_path_factory.mktemp("real-bags"),
        databases.create("sqlite"),
        local_tsa.url,
        local_tsa.ca_cert,
    )

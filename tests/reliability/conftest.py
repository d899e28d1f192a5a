"""Fixtures of the reliability tests: a live journal on its own PostgreSQL database.

The default runs are short; ``JOURNAL_LONG_TESTS=1`` runs the long versions (more kills, more
examples) of the same tests.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import Databases
from ..external import missing
from .servers import LiveJournal, PrivatePostgres, postgresql_bin_dir

LONG_TESTS = os.environ.get("JOURNAL_LONG_TESTS", "").lower() in {"1", "true", "yes"}


def scaled(default: int, long: int) -> int:
    """The default figure, or the long one under JOURNAL_LONG_TESTS=1."""
    return long if LONG_TESTS else default


@pytest.fixture
def live_journal(databases: Databases, tmp_path: Path) -> Iterator[LiveJournal]:
    journal = LiveJournal.create(databases, tmp_path)
    yield journal
    journal.dispose()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of the test's own, which it may restart. Its folder is made under
    the system's temporary folder: the server's user cannot enter pytest's (mode 0700)."""
    bin_dir = postgresql_bin_dir()
    if bin_dir is None:
        missing("PostgreSQL's server binaries are not installed (/usr/lib/postgresql/*/bin)")
    assert bin_dir is not None
    cluster = PrivatePostgres(bin_dir, Path(tempfile.mkdtemp(prefix="journal-pg-")) / "data")
    cluster.create()
    yield cluster
    cluster.destroy()
    cluster.data_dir.parent.rmdir()


@pytest.fixture
def restartable_journal(private_postgres: PrivatePostgres, tmp_path: Path) -> Iterator[LiveJournal]:
    """A live journal whose PostgreSQL the test may really stop and start."""
    journal = LiveJournal.on(private_postgres.url, tmp_path / "journal")
    yield journal
    journal.dispose()


@pytest.fixture
def replicated_postgres() -> Iterator[tuple[PrivatePostgres, Path]]:
    """A primary of the test's own (its standbys are made by the test, under the folder
    given with it: ``primary.create_standby(folder / name)``). Every cluster under the
    folder is killed and removed at the end."""
    bin_dir = postgresql_bin_dir()
    if bin_dir is None:
        missing("PostgreSQL's server binaries are not installed (/usr/lib/postgresql/*/bin)")
    assert bin_dir is not None
    folder = Path(tempfile.mkdtemp(prefix="journal-pg-ha-"))
    primary = PrivatePostgres(bin_dir, folder / "primary")
    try:
        primary.create()
        yield primary, folder
    finally:
        for data_dir in folder.iterdir():
            PrivatePostgres(bin_dir, data_dir, port=1).destroy()
        folder.rmdir()

"""Fixtures of the reliability tests: a live journal on its own PostgreSQL database.

The default runs are short; ``JOURNAL_LONG_TESTS=1`` runs the long versions (more kills, more
examples) of the same tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import Databases
from .servers import LiveJournal

LONG_TESTS = os.environ.get("JOURNAL_LONG_TESTS", "").lower() in {"1", "true", "yes"}


def scaled(default: int, long: int) -> int:
    """The default figure, or the long one under JOURNAL_LONG_TESTS=1."""
    return long if LONG_TESTS else default


@pytest.fixture
def live_journal(databases: Databases, tmp_path: Path) -> Iterator[LiveJournal]:
    journal = LiveJournal.create(databases, tmp_path)
    yield journal
    journal.dispose()

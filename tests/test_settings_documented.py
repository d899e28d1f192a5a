"""The README and the operations guide list every setting the code reads (issue 16): a setting
nobody can find is one nobody sets."""

from __future__ import annotations

import re
from pathlib import Path

from journal.config import REQUIRED_SECRETS, defaults

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("journal", "auth", "exports", "archive")
READS = re.compile(
    r"""config(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]+)["']|_limit\(\s*["']([A-Z][A-Z0-9_]+)["']"""
)
NOT_FROM_THE_ENVIRONMENT = {"AUTH_CLOCK"}  # a callable: tests set it in Python


def settings_read() -> set[str]:
    found = set(REQUIRED_SECRETS) | set(defaults("/instance"))
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for match in READS.finditer(path.read_text(encoding="utf-8")):
                found.add(match.group(1) or match.group(2))
    return found


def test_the_scan_finds_the_settings_it_should() -> None:
    found = settings_read()
    assert {"TSA_CA_CERTS", "ARCHIVE_STAGING_DIR", "ARCHIVE_TRUSTED_VKEYS", "KEYS_DIR"} <= found
    assert {"ARCHIVE_INSPECT_MAX_FILES", "PDF_TRUST_ROOTS", "SECRET_KEY"} <= found


def test_readme_and_operations_guide_list_every_setting() -> None:
    documents = {
        name: (ROOT / name).read_text(encoding="utf-8")
        for name in ("README.md", "docs/operations.md")
    }
    missing = {
        name: sorted(
            key
            for key in settings_read()
            if (key if key in NOT_FROM_THE_ENVIRONMENT else f"JOURNAL_{key}") not in text
        )
        for name, text in documents.items()
    }
    assert missing == {name: [] for name in documents}

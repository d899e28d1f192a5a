"""Configuration: defaults here, then ``JOURNAL_*`` environment variables, then test overrides.

Secrets have no defaults: outside tests the app refuses to start without them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

REQUIRED_SECRETS = ("SECRET_KEY", "IIN_ENCRYPTION_KEY", "IIN_HMAC_KEY")


def defaults(instance_path: str) -> dict[str, Any]:
    instance = Path(instance_path)
    return {
        "DATABASE_URL": f"sqlite:///{instance / 'journal.db'}",
        # Private keys (school log key, PDF signing key) live here, never in the database.
        "KEYS_DIR": str(instance / "keys"),
        "ARCHIVE_STORAGE": "local",
        "ARCHIVE_LOCAL_ROOT": str(instance / "archive"),
        "BACKUP_DIR": str(instance / "backups"),
        "TSA_URL": None,
        "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
        "SYNC_MAX_BATCH": 500,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": True,
        # Reverse proxies in front of the app that set X-Forwarded-For/-Proto/-Host: with 0,
        # those headers are ignored (a client could forge them); behind one proxy, set 1.
        "PROXY_HOPS": 0,
        # kz-criteria version 2 (a whole percent before banding) applies to terms ending on or
        # after this date; "" keeps version 1 everywhere. GRADING_RULES_FILE: a JSON file of
        # further rule versions (journal.grading.rules_from_json), when the ministry changes them.
        "GRADING_WHOLE_PERCENT_FROM": "2026-09-01",
        "GRADING_RULES_FILE": None,
        "TESTING": False,
    }


def instance_path() -> str:
    return os.environ.get("JOURNAL_INSTANCE") or str(Path.cwd() / "instance")


def check_secrets(config: dict[str, Any]) -> None:
    if config.get("TESTING"):
        return
    missing = [name for name in REQUIRED_SECRETS if not config.get(name)]
    if missing:
        names = ", ".join(f"JOURNAL_{name}" for name in missing)
        raise RuntimeError(
            f"missing secrets: {names}. Set them in the environment "
            "(`make run` writes development values to instance/dev.env)."
        )

"""Configuration: defaults here, then ``JOURNAL_*`` environment variables, then test overrides.

Secrets have no defaults: outside tests the app refuses to start without them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REQUIRED_SECRETS = ("SECRET_KEY", "IIN_ENCRYPTION_KEY", "IIN_HMAC_KEY")
ENVIRONMENTS = ("production", "development")


def defaults(instance_path: str) -> dict[str, Any]:
    instance = Path(instance_path)
    return {
        # "development" only on a developer's machine (`make run` sets it): the demo school,
        # and a server that answers for whatever host it is asked on.
        "ENV": "production",
        # The address people use, e.g. https://journal.school17.kz: links in letters, QR codes,
        # and the WebAuthn relying party (id and origin) come from it, never from the request's
        # Host header. Required outside development.
        "PUBLIC_URL": None,
        "DATABASE_URL": f"sqlite:///{instance / 'journal.db'}",
        # Private keys (school log key, PDF signing key) live here, never in the database.
        "KEYS_DIR": str(instance / "keys"),
        "ARCHIVE_STORAGE": "local",
        "ARCHIVE_LOCAL_ROOT": str(instance / "archive"),
        "BACKUP_DIR": str(instance / "backups"),
        "TSA_URL": None,
        "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
        "SYNC_MAX_BATCH": 500,
        # Entries signed by an unknown or revoked device key that one user may leave in
        # quarantine per 24 hours; past it they are refused ("quarantine_full") and stay on
        # the device until its key is enrolled.
        "SYNC_QUARANTINE_DAILY_QUOTA": 500,
        # Seconds a writer waits for a journal's lock on PostgreSQL before the sync API answers
        # 503 with Retry-After (nothing written; the device sends again). 0 waits for ever.
        "APPEND_LOCK_TIMEOUT": 5,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": True,
        # The cookie names a server-side session whose lifetime (12 hours for staff, 14 days
        # for others) is shorter than the cookie's (31 days): re-signing and re-sending it on
        # every response would extend nothing.
        "SESSION_REFRESH_EACH_REQUEST": False,
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


DEVELOPMENT_ENV_FILE = "dev.env"


def load_development_env(environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """On a developer's machine, take the settings `make run` wrote to INSTANCE/dev.env, so that
    `flask --app wsgi ...` works in any new terminal. Variables already set win over the file.

    Only a file that says ``JOURNAL_ENV=development`` is read (the one `make run` writes), and
    never when the environment says ``JOURNAL_ENV=production``. Returns the file read, if any."""
    if environ.get("JOURNAL_ENV") == "production":
        return None
    instance = environ.get("JOURNAL_INSTANCE") or str(Path.cwd() / "instance")
    path = Path(instance) / DEVELOPMENT_ENV_FILE
    if not path.is_file():
        return None
    from dotenv import dotenv_values

    values = dotenv_values(path)
    if values.get("JOURNAL_ENV") != "development":
        return None
    for name, value in values.items():
        if value is not None and name not in environ:
            environ[name] = value
    return path


def is_development(config: Mapping[str, Any]) -> bool:
    """A developer's machine (or the test suite), where conveniences unsafe in production are
    allowed."""
    return bool(config.get("TESTING")) or config.get("ENV") == "development"


def check_secrets(config: dict[str, Any]) -> None:
    if config.get("ENV") not in ENVIRONMENTS:
        raise RuntimeError(f"JOURNAL_ENV must be one of {', '.join(ENVIRONMENTS)}")
    if config.get("PUBLIC_URL"):
        parts = urlsplit(str(config["PUBLIC_URL"]))
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise RuntimeError("JOURNAL_PUBLIC_URL must look like https://journal.example.kz")
    if config.get("TESTING"):
        return
    missing = [name for name in REQUIRED_SECRETS if not config.get(name)]
    if missing:
        names = ", ".join(f"JOURNAL_{name}" for name in missing)
        raise RuntimeError(
            f"missing secrets: {names}. Set them in the environment "
            "(`make run` writes development values to instance/dev.env)."
        )
    if not is_development(config) and not config.get("PUBLIC_URL"):
        raise RuntimeError(
            "missing JOURNAL_PUBLIC_URL (the https address people use): letters, QR codes and "
            "passkeys are bound to it. Set JOURNAL_ENV=development only on a developer's machine."
        )

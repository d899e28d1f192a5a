"""The offline app shell: the files a service worker keeps, and the version that changes
whenever one of them does (a new service worker then installs)."""

from __future__ import annotations

import hashlib
import hmac
from functools import cache
from pathlib import Path

from flask import current_app

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SHELL_FILES = (
    "journal.css",
    "grid/grid.css",
    "grid/grid.js",
    "grid/cells.js",
    "grid/jcs.js",
    "grid/keys.js",
    "grid/store.js",
    "grid/outbox.js",
    "grid/sync.js",
    "grid/offline.js",
    "grid/send-waiting.js",  # on "My classes", which is kept for work offline too
)

# The service worker keeps the teacher's pages (children's names and grades) for work without
# network. It may keep and show them only for the person signed in, and must drop them when the
# session ends, however it ends (signing out, expiry, "sign out everywhere", a reset), or when
# someone else signs in. The session cookie is HttpOnly, so this companion cookie tells the
# worker who that is: an opaque value per user, present exactly while someone is fully signed in
# (password and second factor), kept in step with the session on every answer (views.py).
PAGES_OWNER_COOKIE = "journal_pages_owner"


@cache
def static_version(*extra: str) -> str:
    """Changes whenever a file of the app shell changes: a new service worker then installs."""
    digest = hashlib.sha256()
    template = Path(__file__).resolve().parent.parent / "templates" / "teacher" / "sw.js"
    for path in [*(STATIC_DIR / name for name in SHELL_FILES), template]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for value in extra:
        digest.update(value.encode())
    return digest.hexdigest()[:16]


def app_version() -> str:
    return static_version(str(current_app.config.get("OFFLINE_APP_VERSION", "")))


def pages_owner(user_id: int) -> str:
    """The opaque name of a user's kept pages (not their id, so the cookie says nothing)."""
    key = current_app.secret_key
    key_bytes = key.encode() if isinstance(key, str) else bytes(key or b"")
    message = f"class-journal/pages-owner\n{user_id}".encode()
    return hmac.new(key_bytes, message, hashlib.sha256).hexdigest()[:32]

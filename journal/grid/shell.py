"""The offline app shell: the files a service worker keeps, and the version that changes
whenever one of them does (a new service worker then installs)."""

from __future__ import annotations

import hashlib
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
)


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

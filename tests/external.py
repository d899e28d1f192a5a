"""Access to the real outside tools the tests use (PostgreSQL, poppler, qpdf, openssl, Chromium,
SeaweedFS). Under ``CI=true`` a missing tool fails the test; elsewhere it skips, saying why."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(reason: str) -> None:
    """Fail in CI, skip elsewhere: a missing tool must never hide a missing feature in CI."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def need_tool(*names: str) -> dict[str, str]:
    """Return the absolute paths of the named executables, or fail/skip."""
    paths = {}
    for name in names:
        path = shutil.which(name)
        if path is None:
            missing(f"{name} is not installed (scripts/install-debian-packages.sh installs it)")
        else:
            paths[name] = path
    return paths

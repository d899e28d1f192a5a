"""The Content-Security-Policy, checked where it matters: in a real browser.

A test-only blueprint on a real app instance serves a page with an injected inline script, an
inline event handler and an inline style, next to a script file from the app itself. The app's
own ``after_request`` adds the CSP header. Chromium must run the app's script file (so the page
did execute JavaScript), run none of the injected code, apply no inline style, and report each
refusal as a CSP violation.

(The other security checks of ``make test``: ``make security`` runs pip-audit on the installed
dependencies; ``make lint`` runs ruff with its security rules ``S``.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Response
from werkzeug.serving import make_server

from auth.access import public
from journal.app import CONTENT_SECURITY_POLICY

from ..conftest import make_app
from ..external import missing

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [  # as docs RECIPES.md says for Debian's chromium
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

INJECTED_PAGE = """<!doctype html>
<html lang="kk"><head><meta charset="utf-8"><title>Өмірзақ Іңкәр</title>
<script src="/csp-probe/allowed.js"></script>
<script>window.inlineScriptRan = true;</script>
</head><body>
<p id="styled" style="color: rgb(255, 0, 0)">Сәлем</p>
<img id="broken" src="/csp-probe/missing.png" onerror="window.inlineHandlerRan = true">
<button id="button" onclick="window.inlineClickRan = true">Бас</button>
<a id="link" href="javascript:window.javascriptUrlRan = true">сілтеме</a>
</body></html>
"""
ALLOWED_SCRIPT = "window.selfScriptRan = true;\n"
# Listens before any page script (Playwright's init scripts are not subject to the page's CSP).
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(event.effectiveDirective);
});
"""

probe = Blueprint("csp_probe", __name__, url_prefix="/csp-probe")


@probe.get("/page")
@public
def injected_page() -> Response:
    return Response(INJECTED_PAGE, mimetype="text/html")


@probe.get("/allowed.js")
@public
def allowed_script() -> Response:
    return Response(ALLOWED_SCRIPT, mimetype="text/javascript")


@pytest.fixture(scope="module")
def probe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real app instance (its database is never touched) with the probe blueprint."""
    tmp = tmp_path_factory.mktemp("csp")
    app = make_app(f"sqlite:///{tmp / 'unused.db'}", tmp / "keys")
    app.register_blueprint(probe)
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}"
    http.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} is not installed (scripts/install-debian-packages.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.mark.e2e
def test_an_injected_inline_script_does_not_run_in_the_browser(probe_server: str, chromium: Any):
    context = chromium.new_context()
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    console = []
    page.on("console", lambda message: console.append(message.text))
    response = page.goto(f"{probe_server}/csp-probe/page")
    assert response is not None and response.status == 200
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    page.click("#button")
    page.click("#link")
    page.wait_for_function("() => window.cspViolations.length >= 5", timeout=5000)

    ran = page.evaluate(
        """() => ({
            self: window.selfScriptRan === true,
            inline: window.inlineScriptRan === true,
            handler: window.inlineHandlerRan === true,
            click: window.inlineClickRan === true,
            javascriptUrl: window.javascriptUrlRan === true,
            red: getComputedStyle(document.getElementById("styled")).color === "rgb(255, 0, 0)",
        })"""
    )
    assert ran == {
        "self": True,  # the app's own script file runs: JavaScript works on this page
        "inline": False,
        "handler": False,
        "click": False,
        "javascriptUrl": False,
        "red": False,
    }
    violations = page.evaluate("() => window.cspViolations")
    assert {"script-src-elem", "script-src-attr", "style-src-attr"} <= set(violations)
    assert any("Content Security Policy" in text for text in console)
    context.close()


# -- the dependency audit (make security) ------------------------------------------------------


def load_audit_script() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "audit_dependencies.py"
    spec = importlib.util.spec_from_file_location("audit_dependencies", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


AUDITED = {"name": "flask", "version": "3.1.2", "vulns": []}
VULNERABLE = {
    "name": "werkzeug",
    "version": "3.0.0",
    "vulns": [{"id": "GHSA-xxxx-yyyy-zzzz", "fix_versions": ["3.0.6"]}],
}
NOT_FOUND = {"name": "boto3", "skip_reason": "Dependency not found on PyPI and could not be..."}


@pytest.mark.parametrize("in_ci", [False, True], ids=["local", "ci"])
def test_the_dependency_audit_fails_on_a_known_vulnerability(in_ci: bool) -> None:
    status, message = load_audit_script().verdict(
        {"dependencies": [AUDITED, VULNERABLE]}, in_ci=in_ci
    )
    assert status == 1
    assert "werkzeug 3.0.0: GHSA-xxxx-yyyy-zzzz (fixed in: 3.0.6)" in message


@pytest.mark.parametrize(("in_ci", "status"), [(False, 0), (True, 1)], ids=["local", "ci"])
def test_an_incomplete_audit_fails_where_required_and_is_skipped_elsewhere(in_ci, status):
    """PyPI unreachable (or a mirror without its vulnerability data): pip-audit reports the
    packages as "not found" and would pass."""
    verdict = load_audit_script().verdict({"dependencies": [AUDITED, NOT_FOUND]}, in_ci=in_ci)
    assert verdict[0] == status
    assert "did not answer for 1 of 2 packages (boto3)" in verdict[1]
    assert ("FAILED" if in_ci else "SKIPPED") in verdict[1]


def test_a_complete_clean_dependency_audit_passes() -> None:
    status, message = load_audit_script().verdict({"dependencies": [AUDITED]}, in_ci=True)
    assert (status, message) == (0, "security: no known vulnerabilities in 1 packages")

"""Device names from User-Agent headers: "Chrome on Android", not the raw header (issue 17)."""

from __future__ import annotations

import pytest
from flask import Flask

from auth.browsers import device_name, parse_user_agent

AGENTS = {
    "Chrome on Android": (
        "Mozilla/5.0 (Linux; Android 14; SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.6478.122 Mobile Safari/537.36"
    ),
    "Chrome on Windows": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36"
    ),
    "Chrome on Linux": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/131.0.6778.139 Safari/537.36"
    ),
    "Chrome on ChromeOS": (
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36"
    ),
    "Chrome on iPad": (
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1"
    ),
    "Safari on iPhone": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
    ),
    "Safari on macOS": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Safari/605.1.15"
    ),
    "Firefox on Windows": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0"
    ),
    "Firefox on Linux": (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
    ),
    "Edge on Windows": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.87"
    ),
    "Opera on Windows": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36 OPR/112.0.0.0"
    ),
    "Yandex Browser on Android": (
        "Mozilla/5.0 (Linux; Android 12; Redmi Note 10) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 YaBrowser/24.4.4.96.00 SA/3 Mobile Safari/537.36"
    ),
    "Samsung Internet on Android": (
        "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-A536B) AppleWebKit/537.36 (KHTML, like "
        "Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36"
    ),
}


@pytest.fixture(scope="module")
def english():  # type: ignore[no-untyped-def]
    app = Flask(__name__)
    from flask_babel import Babel

    Babel(app, locale_selector=lambda: "en")
    with app.test_request_context():
        yield


@pytest.mark.parametrize(("expected", "header"), sorted(AGENTS.items()))
def test_common_browsers_get_a_name_a_person_recognises(english, expected, header):
    assert device_name(header) == expected


@pytest.mark.parametrize("header", [None, "", "curl/8.5.0", "x" * 10_000])
def test_an_unknown_agent_has_no_name(english, header):
    assert device_name(header) is None


def test_a_browser_or_a_system_alone_is_still_said():
    assert parse_user_agent("Mozilla/5.0 (Windows NT 10.0) SomeBrowser/1").system == "Windows"
    assert parse_user_agent("Firefox/127.0").name == "Firefox"

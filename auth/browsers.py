"""Which browser on which system a User-Agent header names ("Chrome on Android"): enough for a
person to tell their devices apart in "My devices" and in the access log. Never used to decide
anything: the header is whatever the client says.

A dozen patterns instead of a parsing library: we only need the families people in schools use,
and a wrong guess costs a less helpful default name, which the person can change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask_babel import gettext as _

# Order matters: Edge, Opera, Yandex and Samsung Internet also say "Chrome"; Chrome says
# "Safari"; every browser on an iPhone says "Safari".
_BROWSERS = (
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/")),
    ("Opera", re.compile(r"\bOPR/|\bOpera\b")),
    ("Yandex Browser", re.compile(r"\bYaBrowser/")),
    ("Samsung Internet", re.compile(r"\bSamsungBrowser/")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/")),
    ("Chrome", re.compile(r"\b(?:HeadlessChrome|Chrome|CriOS|Chromium)/")),
    ("Safari", re.compile(r"\bVersion/[\d.]+.*\bSafari/")),
)
# iPhones and iPads say "like Mac OS X", Android and ChromeOS say "Linux".
_SYSTEMS = (
    ("iPhone", re.compile(r"\biPhone\b")),
    ("iPad", re.compile(r"\biPad\b")),
    ("Android", re.compile(r"\bAndroid\b")),
    ("ChromeOS", re.compile(r"\bCrOS\b")),
    ("Windows", re.compile(r"\bWindows\b")),
    ("macOS", re.compile(r"\bMacintosh\b|\bMac OS X\b")),
    ("Linux", re.compile(r"\bLinux\b|\bX11\b")),
)


@dataclass(frozen=True)
class Browser:
    name: str | None  # "Chrome", "Firefox"...: None when not recognised
    system: str | None  # "Android", "Windows"...: None when not recognised


def parse_user_agent(user_agent: str | None) -> Browser:
    text = (user_agent or "")[:500]
    name = next((found for found, pattern in _BROWSERS if pattern.search(text)), None)
    system = next((found for found, pattern in _SYSTEMS if pattern.search(text)), None)
    return Browser(name, system)


def device_name(user_agent: str | None) -> str | None:
    """The device as a person names it ("Chrome on Android"), in the language of the request;
    None when nothing is recognised."""
    browser = parse_user_agent(user_agent)
    if browser.name and browser.system:
        return _("%(browser)s on %(system)s", browser=browser.name, system=browser.system)
    return browser.name or browser.system

"""The grid's words: memoized per language, since the grid asks for dozens on every page, and
kept inside the page so that it reads the same offline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_babel import get_locale, lazy_gettext
from flask_babel import gettext as _

ATTENDANCE_LABELS = {
    "absent": lazy_gettext("abs."),
    "late": lazy_gettext("late"),
    "sick": lazy_gettext("sick"),
    "excused": lazy_gettext("exc."),
}


def translated(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Memoize a dict of UI strings per language: the grid asks for dozens on every page."""
    by_locale: dict[str, dict[str, Any]] = {}

    def strings() -> dict[str, Any]:
        locale = str(get_locale())
        if locale not in by_locale:
            by_locale[locale] = build()
        return by_locale[locale]

    return strings


@translated
def attendance_labels() -> dict[str, str]:
    return {value: str(label) for value, label in ATTENDANCE_LABELS.items()}


# Head values by leaf hash. A leaf never changes, so its value is computed once per process


@translated
def layer_names() -> dict[str, str]:
    return {
        "att": _("Attendance"),
        "FO": _("FO"),
        "SOR": _("SOR"),
        "SOCh": _("SOCh"),
        "all": _("All together"),
        "topic": _("Topic"),
    }


@translated
def weekday_names() -> dict[str, Any]:
    """Short weekday names by ``date.weekday()`` (Monday 0), in the page's language."""
    from babel.dates import get_day_names

    names = get_day_names("abbreviated", locale=str(get_locale()))
    return {"days": [str(names[day]) for day in range(7)]}


@translated
def status_names() -> dict[str, str]:
    return {
        "accepted": _("accepted"),
        "duplicate": _("already stored"),
        "conflict": _("conflict"),
        "rejected": _("rejected"),
        "quarantined": _("held: unknown or revoked device key"),
    }


@translated
def grid_strings() -> dict[str, Any]:
    """The grid's messages, translated on the server (the page keeps them offline)."""
    return {
        "layers": layer_names(),
        "topic": _("Topic"),
        "states": {
            "synced": _("saved on the server"),
            "pending": _("waiting to be sent"),
            "quarantined": _("held by the server: this device's key is not enrolled"),
        },
        "net": {
            "idle": _("Online: everything is sent"),
            "syncing": _("Sending…"),
            "offline": _("Offline: your changes are kept on this device"),
            "retrying": _("The server cannot be reached; trying again in {seconds} s"),
            "signed-out": _("Signed out: sign in again to send your changes"),
        },
        "conflictHelp": _(
            "Two values were written for this cell on different devices. Type the right value "
            "and give a reason: it replaces both."
        ),
        "refused": _("{value}: not stored ({status}): {message}"),
        "discard": _("Discard"),
        "attKeys": _("Attendance: 1 absent, 2 late, 3 sick, 4 excused."),
        "foRange": _("FO is a whole number from 1 to 10."),
        "pointsFormat": _("Type points/max, e.g. 7/10 (the max is remembered per lesson)."),
        "pointsRange": _("Points must be from 0 to the max, and the max from 1 to 100."),
        "readonly": _("This term is closed: nothing can be written."),
        "noKey": _("This device has no signing key yet."),
        "noKeyReason": _("This browser cannot make a signing key: {reason}"),
        "notEnrolled": _("The student is not in the class on that day."),
        "futureLesson": _("This lesson has not taken place yet: no marks or attendance."),
        "tooLong": _("The entry is too long."),
        "keyEnrolled": _("the device key is enrolled"),
        "keyRevoked": _("this device's key was revoked: new entries are held by the server"),
        "keyNotEnrolled": _(
            "this device's key is not enrolled yet: entries are held by the server until it is"
        ),
        "keyNeedsSecondFactor": _("confirm your second factor to enrol this device"),
        "gaps": _("The server has not received this device's entries number {seqs}."),
        "nothingToExport": _("There are no unsynced entries to export."),
        "exported": _("{n} unsynced entries exported. Import the file where there is network."),
        "termConfirmed": _("confirmed"),
        "termNothing": _("Every computed term grade is already confirmed."),
        "termQueued": _("{n} term grades signed and queued for sending."),
        "yearQueued": _("{n} year grades signed and queued for sending."),
        "offlineReady": _("Ready to work offline"),
        "voided": _("Emptied by a correction"),
        "chooseLayer": _("Choose attendance, FO, SOR or SOCh above to type in a cell."),
        "maxOnce": _(
            "This lesson's results are out of {max}: one maximum per lesson. Type the points only."
        ),
        "persisted": _("Storage: kept by the browser"),
        "notPersisted": _("Storage: the browser may clear it when space runs low"),
    }

"""School set-up for the school admin: the year and its terms and holidays (``calendar``),
classes, subjects, teachers, the weekly timetable and the lessons made from it (``classes``),
enrollments and transfers (``enrollment``), and the ``setup`` blueprint's pages (``views``).

Services come first (session first, flush, never commit); the views call them and commit.
Service errors carry an English message id that views translate when shown.
"""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _

WEEKDAYS = range(6)  # Monday to Saturday: some schools teach six days a week
PERIODS = range(1, 9)
TERM_COUNTS = {"quarter": 4, "half": 2}
TEACHING_ROLES = ("teacher", "class_teacher")


def N_(message: str) -> str:
    """Mark a message for extraction; it is translated where it is shown (view or command)."""
    return message


class SetupError(Exception):
    """A set-up request that cannot be done; nothing was written."""

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message % params if params else message)
        self.message = message
        self.params = params

    def translated(self) -> str:
        return _(self.message, **self.params)

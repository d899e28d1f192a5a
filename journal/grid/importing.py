"""Reading an export of unsynced entries: the file the grid writes for a teacher to carry to the
room with internet (``/teacher/import`` sends its entries as one sync batch)."""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired

from ..ledger import entry as ledger_entry

EXPORT_FORMAT = "class-journal/unsynced-entries"
IMPORT_MAX_BYTES = 8 * 1024 * 1024


class ImportForm(FlaskForm):
    file = FileField("file", validators=[FileRequired()])


class ImportRefused(ValueError):
    pass


def read_export(data: bytes) -> list[Any]:
    """The entries of an export file made by the grid's "export unsynced entries"."""
    try:
        document = ledger_entry.parse_json(data, max_bytes=IMPORT_MAX_BYTES)
    except ledger_entry.PayloadError as exc:
        raise ImportRefused(_("The file is not a readable export: %(reason)s", reason=exc)) from exc
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise ImportRefused(_("This file is not an export of unsynced journal entries."))
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise ImportRefused(_("The export holds no list of entries."))
    return entries


def file_too_large_message() -> str:
    return _(
        "The file is larger than %(limit)d MB. Export from the grid again in smaller parts.",
        limit=IMPORT_MAX_BYTES // (1024 * 1024),
    )

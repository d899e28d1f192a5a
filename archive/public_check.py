"""The public document check page, ``/check``: where a printout's QR code leads.

Anyone (a parent, an employer, another school) uploads a printout or an extract and learns
whether it verifies the way ``journal-verify pdf`` checks it, which school issued it, which
document and which period it is. The school is found from the checkpoint embedded in the PDF
(its origin starts with the school's domain) and checked with that school's published key.
Nothing of the upload is kept; the only row written is an access-log line with the file's hash
and the visitor's address, and those lines also rate-limit the page (across every worker).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from typing import Any

from flask import Blueprint, current_app, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from sqlalchemy import Select, func, select
from werkzeug.exceptions import RequestEntityTooLarge

from auth.access import client_address, clock, log_access, public
from auth.models import AccessLogEntry
from journal.app import csrf
from journal.db import db
from journal.ledger import note
from journal.models import School

from .verify.verify import Report, verify_pdf

bp = Blueprint("check", __name__, template_folder="templates")

ACTION = "check.upload"
MAX_UPLOAD = 20 * 1024 * 1024  # a printout of a whole class-year is a few MB
PER_MINUTE = 10  # checks from one address in a minute
DOCUMENTS = {
    "journal_quarter": _l("Class journal for a quarter"),
    "journal_half": _l("Class journal for a half-year"),
    "summary_ledger": _l("Summary ledger"),
    "duplicate_extract": _l("Extract for a duplicate certificate"),
    "certificate_duplicate": _l("Extract for a duplicate certificate"),
}


class CheckForm(FlaskForm):
    file = FileField("file", validators=[FileRequired()])


def _named_checkpoint() -> dict[str, Any] | None:
    """What the QR code's query names (``?o=origin&s=size&r=root``), when it is well formed."""
    origin, size, root = (request.args.get(k, "") for k in ("o", "s", "r"))
    if not (origin and size.isdigit() and root):
        return None
    try:
        raw = base64.urlsafe_b64decode(root + "=" * (-len(root) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 32:
        return None
    return {"origin": origin, "size": int(size), "root": base64.b64encode(raw).decode()}


def _school_of(origin: str) -> School | None:
    domain = origin.split("/", 1)[0]
    return db.session.scalar(select(School).where(School.domain == domain))


def _embedded(data: bytes) -> tuple[str | None, dict[str, Any]]:
    """The embedded checkpoint's origin and printout.json, as far as they can be read."""
    from exports.pdf import extract_embedded_files

    try:
        files = extract_embedded_files(data)
        origin = note.parse_checkpoint(note.split_note(files["checkpoint"].decode())[0]).origin
    except Exception:  # noqa: BLE001 - not our printout: said so below
        return None, {}
    try:
        described = json.loads(files.get("printout.json", b"{}"))
    except ValueError:
        described = {}
    return origin, described if isinstance(described, dict) else {}


def uploads_since(address: str | None, since: dt.datetime) -> Select[tuple[int]]:
    """How many uploads came from ``address`` after ``since`` (ix_access_log_check_ip)."""
    return (
        select(func.count())
        .select_from(AccessLogEntry)
        .where(
            AccessLogEntry.action == ACTION,
            AccessLogEntry.ip == address,
            AccessLogEntry.at > since,
        )
    )


def _too_many() -> bool:
    since = clock() - dt.timedelta(minutes=1)
    count = db.session.scalar(uploads_since(client_address(), since))
    return int(count or 0) >= PER_MINUTE


def _render(form: CheckForm, status: int = 200, **context: Any) -> tuple[str, int]:
    context.setdefault("named", _named_checkpoint())
    page = render_template(
        "archive/check.html",
        form=form,
        documents=DOCUMENTS,
        limit=MAX_UPLOAD // (1024 * 1024),
        **context,
    )
    return page, status


@bp.route("/check", methods=["GET", "POST"])
@public
def check_page() -> Any:
    """The upload form (naming the QR's checkpoint); on POST the verdict on the upload."""
    request.max_content_length = MAX_UPLOAD + 64 * 1024
    form = CheckForm()
    if request.method == "GET":
        return _render(form)
    if _too_many():
        page, _status = _render(form, error=_("Too many checks from your address. Wait a minute."))
        return page, 429, {"Retry-After": "60"}
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            expired = _("The form has expired. Reload the page and try again.")
            return _render(form, 400, error=expired)
        return _render(form, 400, error=_("Choose the PDF file to check."))
    upload = form.file.data
    try:
        data = upload.stream.read(MAX_UPLOAD + 1)
    finally:
        upload.close()
    if len(data) > MAX_UPLOAD:
        return _render(form, 413, error=_too_large())
    digest = hashlib.sha256(data).hexdigest()
    origin, described = _embedded(data) if data.startswith(b"%PDF-") else (None, {})
    school = _school_of(origin) if origin else None
    log_access(ACTION, "document", digest[:16], school_id=school.id if school else None)
    db.session.commit()
    if not data.startswith(b"%PDF-"):
        return _render(form, 400, error=_("This is not a PDF file."))
    if origin is None:
        return _render(form, verdict=False, reason=_("It carries no proof of this journal."))
    if school is None or not school.log_vkey:
        elsewhere = _("It was not issued by a school of this server.")
        return _render(form, verdict=False, reason=elsewhere)
    from .services import pdf_trust_roots

    report: Report = verify_pdf(
        data,
        note.parse_vkey(school.log_vkey),
        subject="upload",
        trust=pdf_trust_roots(current_app.config),
    )
    return _render(
        form,
        verdict=report.ok,
        reason=None
        if report.ok
        else _(
            "The file was changed after it was signed, or its signature or proof does not hold."
        ),
        school=school,
        described=described,
        sha256=digest,
    )


def _too_large() -> str:
    limit = MAX_UPLOAD // (1024 * 1024)
    return _("The file is larger than %(limit)d MB, the most this page accepts.", limit=limit)


# The form checks its CSRF token itself (FlaskForm), once the body may be read.
csrf.exempt(f"{check_page.__module__}.{check_page.__name__}")


@bp.errorhandler(RequestEntityTooLarge)
def too_large(_exc: RequestEntityTooLarge) -> Any:
    return _render(CheckForm(formdata=None), 413, error=_too_large())

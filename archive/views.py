"""The inspector's page: upload an archive package (zip or tar) or a printout (PDF), get the same
report as ``journal-verify``.

Read-only: the upload is checked in memory (``archive.verify.verify.verify_upload`` unpacks zip
and tar files itself, refusing absolute paths, ``..``, links, and more files or bytes than the
limits) and discarded; the only row written is the access-log entry saying who checked what.
The school's verifier key is a form field, filled with the school's published key: the inspector
may replace it with the key they got from the school, which is the point of checking.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import DateField, StringField
from wtforms.validators import DataRequired, Optional

from auth.access import current_user, log_access, roles_required
from auth.iin import InvalidIIN, iin_lookup_hash, validate_iin
from auth.models import User
from exports.printouts import PRINTOUT_LANGUAGE_NAMES, PRINTOUT_LANGUAGES
from exports.views import interface_printout_language
from journal.app import csrf
from journal.db import db
from journal.ledger import note
from journal.models import School

from .registrar import (
    RECORD_KINDS,
    DuplicateRequest,
    FoundRecord,
    Query,
    RegistrarError,
    find_records,
    issue_duplicate,
    issue_extract,
    pinned_ledger_bags,
    registrar_scope,
)
from .storage import storage_from_config
from .verify.verify import FAILED, OK, WARNING, Report, verify_upload

bp = Blueprint(
    "archive", __name__, url_prefix="/archive", template_folder="templates", static_folder="static"
)

INSPECTOR_ROLES = ("inspector", "school_admin")
DEFAULT_MAX_UPLOAD = 256 * 1024 * 1024  # ARCHIVE_INSPECT_MAX_UPLOAD: bytes of the upload
DEFAULT_MAX_UNPACKED = 1024 * 1024 * 1024  # ARCHIVE_INSPECT_MAX_UNPACKED: bytes once unpacked
DEFAULT_MAX_FILES = 20_000  # ARCHIVE_INSPECT_MAX_FILES: files in a bag
CHECK_TITLES = {
    "identity": _l("Which bag this is"),
    "bag": _l("BagIt structure and manifests"),
    "seal": _l("Seal by the school's key"),
    "keys": _l("Keys in the package"),
    "log": _l("Entries, checkpoints and consistency proofs"),
    "certificates": _l("Certificates in the package"),
    "timestamps": _l("RFC 3161 timestamps"),
    "printouts": _l("Printouts: signer, class and period, embedded records"),
    "pdf": _l("Printout: signatures and embedded records"),
}
STATUS_LABELS = {OK: _l("OK"), WARNING: _l("Warning"), FAILED: _l("Failed")}


class VerifyForm(FlaskForm):
    file = FileField("file", validators=[FileRequired()])
    vkey = StringField("vkey", validators=[DataRequired()])


def _limit(name: str, default: int) -> int:
    return int(current_app.config.get(name) or default)


def _default_vkey() -> str:
    user = current_user()
    school = db.session.get(School, user.school_id) if user and user.school_id else None
    return (school.log_vkey or "") if school is not None else ""


def _size_text(size: int) -> str:
    if size >= 1024 * 1024:
        return _("%(count)d MB", count=size // (1024 * 1024))
    return _("%(count)d KB", count=max(1, size // 1024))


def _too_large_message() -> str:
    limit = _size_text(_limit("ARCHIVE_INSPECT_MAX_UPLOAD", DEFAULT_MAX_UPLOAD))
    return _("The file is larger than %(limit)s, the most this page accepts.", limit=limit)


def _render(
    form: VerifyForm,
    *,
    report: Report | None = None,
    upload: dict[str, Any] | None = None,
    error: str | None = None,
    status: int = 200,
) -> tuple[str, int]:
    page = render_template(
        "archive/verify.html",
        form=form,
        report=report,
        upload=upload,
        error=error,
        check_titles=CHECK_TITLES,
        status_labels=STATUS_LABELS,
        limit=_size_text(_limit("ARCHIVE_INSPECT_MAX_UPLOAD", DEFAULT_MAX_UPLOAD)),
    )
    return page, status


@bp.route("/verify", methods=["GET", "POST"])
@roles_required(*INSPECTOR_ROLES)
def verify_page() -> Any:
    """Show the upload form; on POST verify the file against the given key and show the report."""
    max_upload = _limit("ARCHIVE_INSPECT_MAX_UPLOAD", DEFAULT_MAX_UPLOAD)
    # Packages are larger than the app-wide MAX_CONTENT_LENGTH. The limit is raised only here,
    # after the role check and before the body is read; so the app-wide CSRF check, which
    # would read the body first, is replaced by the form's own (see the exemption below).
    request.max_content_length = max_upload + 64 * 1024
    form = VerifyForm()
    if request.method == "GET":
        form.vkey.data = _default_vkey()
        return _render(form)
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            message = _("The form has expired. Reload the page and try again.")
        else:
            message = _("Choose a file and give the school's key.")
        return _render(form, error=message, status=400)
    try:
        verifier = note.parse_vkey((form.vkey.data or "").strip())
    except note.NoteError:
        message = _("This is not a verifier key: it looks like name+1a2b3c4d+AbCd…=.")
        return _render(form, error=message, status=400)
    upload = form.file.data
    try:
        data = upload.stream.read(max_upload + 1)
    finally:
        upload.close()
    if len(data) > max_upload:
        return _render(form, error=_too_large_message(), status=413)
    name = upload.filename or "upload"
    from .services import pdf_trust_roots

    report = verify_upload(
        data,
        verifier,
        name=name,
        max_files=_limit("ARCHIVE_INSPECT_MAX_FILES", DEFAULT_MAX_FILES),
        max_bytes=_limit("ARCHIVE_INSPECT_MAX_UNPACKED", DEFAULT_MAX_UNPACKED),
        trust=pdf_trust_roots(current_app.config),  # PDF_TRUST_ROOTS, e.g. the national CA's
    )
    digest = hashlib.sha256(data).hexdigest()
    user = current_user()
    log_access(
        "archive.verify_upload",
        "upload",
        digest[:16],
        school_id=user.school_id if user is not None else None,
    )
    db.session.commit()
    details = {"name": name, "size": len(data), "sha256": digest, "vkey": verifier.vkey()}
    return _render(form, report=report, upload=details)


# The form checks its CSRF token itself (FlaskForm), once the body may be read.
csrf.exempt(f"{verify_page.__module__}.{verify_page.__name__}")


@bp.errorhandler(RequestEntityTooLarge)
def too_large(exc: RequestEntityTooLarge) -> Any:
    if request.path == url_for("archive.verify_page"):
        return _render(VerifyForm(formdata=None), error=_too_large_message(), status=413)
    return exc


# -- the registrar: duplicate certificates from the archive alone --------------------------------


class RegistrarSearchForm(FlaskForm):
    iin = StringField(_l("IIN"))
    last_name = StringField(_l("Last name"))
    first_name = StringField(_l("First name"))
    birth_date = DateField(_l("Date of birth"), validators=[Optional()])
    # A duplicate certificate: its own series and number, the date and the reason.
    series = StringField(_l("Series"))
    number = StringField(_l("Number"))
    issued_on = DateField(_l("Date of issue"), validators=[Optional()])
    reason = StringField(_l("Reason"))


def _registrar_query(form: RegistrarSearchForm) -> Query | None:
    iin = (form.iin.data or "").strip()
    if iin:
        try:
            valid = validate_iin(iin)
        except InvalidIIN as exc:
            form.iin.errors = [iin_problem(exc)]
            return None
        key = current_app.config["IIN_HMAC_KEY"]
        return Query(iin_hmac=base64.b64encode(iin_lookup_hash(valid, key)).decode())
    if form.last_name.data and form.first_name.data and form.birth_date.data:
        return Query(
            last_name=form.last_name.data,
            first_name=form.first_name.data,
            birth_date=form.birth_date.data,
        )
    form.iin.errors = [_("Give an IIN, or a last name, first name and date of birth.")]
    return None


def iin_problem(error: InvalidIIN) -> str:
    """Why a typed IIN is not one, in the reader's language."""
    if error.code == "length":
        return _("An IIN has exactly 12 digits.")
    if error.code == "birth_date":
        return _("An IIN begins with the date of birth (YYMMDD): these digits are not a date.")
    return _("The last digit of this IIN does not match the others: check it for a typo.")


def search_target(query: Query) -> tuple[str, str]:
    """What a search looked for, as the access log keeps it: the keyed hash of the IIN (hex),
    or the same keyed hash of the name and birth date; never the IIN or the name itself."""
    if query.iin_hmac is not None:
        return "iin", base64.b64decode(query.iin_hmac).hex()
    assert query.last_name and query.first_name and query.birth_date
    # A prefix no IIN has: a name's hash never equals an IIN's.
    text = "\n".join(
        (
            "name",
            query.last_name.strip().casefold(),
            query.first_name.strip().casefold(),
            query.birth_date.isoformat(),
        )
    )
    return "name", iin_lookup_hash(text, current_app.config["IIN_HMAC_KEY"]).hex()


def _registrar_scope(user: User) -> tuple[set[str], list[str] | None]:
    return registrar_scope(db.session, current_app.config, user)


def _pinned_ledger_bags() -> dict[str, str | None]:
    return pinned_ledger_bags(db.session)


@bp.route("/registrar", methods=["GET", "POST"])
@roles_required("registrar")
def registrar() -> Any:
    form = RegistrarSearchForm()
    records: list[FoundRecord] | None = None
    error = None
    if form.validate_on_submit():
        query = _registrar_query(form)
        if query is not None:
            user = current_user()
            assert user is not None
            trusted, prefixes = _registrar_scope(user)
            try:
                records = find_records(
                    storage_from_config(current_app.config),
                    query,
                    trusted_vkeys=trusted,
                    prefixes=prefixes,
                    pinned=_pinned_ledger_bags(),
                    kinds=RECORD_KINDS,
                )
            except RegistrarError as exc:
                error = str(exc)
            target_type, target = search_target(query)
            log_access("registrar_search", target_type, target)
            language = request.form.get("language") or interface_printout_language()
            if language not in PRINTOUT_LANGUAGES:
                abort(400)
            if request.form.get("duplicate") and records:
                duplicate = DuplicateRequest(
                    form.series.data or "",
                    form.number.data or "",
                    form.issued_on.data or dt.date.today(),
                    form.reason.data or "",
                )
                try:
                    data, _fields = issue_duplicate(
                        db.session,
                        current_app.config,
                        records,
                        duplicate,
                        registrar=user,
                        language=language,
                    )
                except (RegistrarError, LookupError) as exc:
                    db.session.rollback()
                    log_access("registrar_search", target_type, target)
                    error = str(exc)
                else:
                    log_access("issue_duplicate", target_type, target)
                    db.session.commit()
                    return Response(
                        data,
                        mimetype="application/pdf",
                        headers={"Content-Disposition": 'attachment; filename="duplicate.pdf"'},
                    )
            if request.form.get("issue") and records:
                try:
                    data = issue_extract(
                        db.session, current_app.config, records, registrar=user, language=language
                    )
                except (RegistrarError, LookupError) as exc:
                    error = str(exc)
                else:
                    log_access("issue_duplicate", target_type, target)
                    db.session.commit()
                    return Response(
                        data,
                        mimetype="application/pdf",
                        headers={"Content-Disposition": 'attachment; filename="extract.pdf"'},
                    )
            db.session.commit()
    return render_template(
        "archive/registrar.html",
        form=form,
        records=records,
        error=error,
        languages=PRINTOUT_LANGUAGE_NAMES,
        document_language=interface_printout_language(),
    )

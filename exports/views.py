"""Download pages for printouts: school admins (every class) and class teachers (their class)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template, request
from flask_babel import get_locale
from flask_babel import gettext as _
from sqlalchemy import select

from auth import policy
from auth.access import current_user, roles_required
from auth.services import record_access
from journal.collation import class_key
from journal.db import db
from journal.models import ClassGroup, SchoolYear, Term

from . import printouts
from .queries import ExportError

bp = Blueprint("exports", __name__, template_folder="templates")
STAFF_WHO_PRINT = ("school_admin", "class_teacher")


def _readable_class(class_id: int) -> ClassGroup:
    class_group = db.session.get(ClassGroup, class_id)
    user = current_user()
    if class_group is None or not policy.can_read_class(user, class_group):
        abort(404)  # the same answer for "no such class" and "not yours"
    return class_group


@bp.get("/exports")
@roles_required(*STAFF_WHO_PRINT)
def index() -> Any:
    user = current_user()
    assert user is not None
    classes = sorted(
        (
            c
            for c in db.session.scalars(
                select(ClassGroup).where(ClassGroup.school_id == user.school_id)
            )
            if policy.can_read_class(user, c)
        ),
        key=lambda c: class_key(c.name, c.grade_level),
    )
    years = {y.id: y for y in db.session.scalars(select(SchoolYear))}
    quarters = {
        year_id: list(
            db.session.scalars(
                select(Term)
                .where(Term.school_year_id == year_id)
                .order_by(Term.kind.desc(), Term.number)
            )
        )
        for year_id in years
    }
    return render_template(
        "exports/index.html",
        classes=classes,
        years=years,
        quarters=quarters,
        printout_language=printout_language(),
        languages=printouts.PRINTOUT_LANGUAGE_NAMES,
    )


def printout_language() -> str:
    """The language a printout is made in: ``?lang=kk|ru`` when the reader chose one, else the
    interface's language (Kazakh for a Kazakh interface, Russian otherwise)."""
    chosen = request.args.get("lang", "")
    if chosen in printouts.PRINTOUT_LANGUAGES:
        return chosen
    if chosen:
        abort(404)
    return interface_printout_language()


def interface_printout_language() -> str:
    """The printout language that goes with the interface's: Kazakh for a Kazakh interface,
    Russian otherwise."""
    locale = get_locale()
    return "kk" if locale is not None and locale.language == "kk" else "ru"


def _pdf(data: bytes, filename: str) -> Response:
    return Response(
        data,
        mimetype="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.get("/exports/journal/<int:class_id>/<int:quarter>.pdf")
@roles_required(*STAFF_WHO_PRINT)
def journal_pdf(class_id: int, quarter: int) -> Any:
    """The journal of a quarter, or with ``?kind=half`` of a half-year (the subjects graded by
    half-years)."""
    kind = "half" if request.args.get("kind") == "half" else "quarter"
    class_group = _readable_class(class_id)
    if not 1 <= quarter <= (2 if kind == "half" else 4):
        abort(404)
    try:
        data = printouts.journal_pdf(
            db.session,
            current_app.config,
            class_group,
            quarter,
            kind=kind,
            language=printout_language(),
        )
    except (ExportError, LookupError) as exc:
        abort(409, description=printout_refusal(exc))
    record_access(
        db.session,
        current_user(),
        "export_journal",
        "class_group",
        class_id,
        request.remote_addr,
        school_id=class_group.school_id,
    )
    db.session.commit()
    return _pdf(data, f"journal-{class_id}-{'h' if kind == 'half' else 'q'}{quarter}.pdf")


@bp.get("/exports/ledger/<int:class_id>.pdf")
@roles_required(*STAFF_WHO_PRINT)
def ledger_pdf(class_id: int) -> Any:
    class_group = _readable_class(class_id)
    try:
        data = printouts.ledger_pdf(
            db.session, current_app.config, class_group, language=printout_language()
        )
    except (ExportError, LookupError) as exc:
        abort(409, description=printout_refusal(exc))
    record_access(
        db.session,
        current_user(),
        "export_ledger",
        "class_group",
        class_id,
        request.remote_addr,
        school_id=class_group.school_id,
    )
    db.session.commit()
    return _pdf(data, f"ledger-{class_id}.pdf")


def printout_refusal(error: LookupError) -> str:
    """Why a printout cannot be made, in the reader's language (the exception's English stays
    in the server's log)."""
    current_app.logger.info("printout refused: %s", error)
    text = str(error)
    if "checkpoint" in text:
        return _(
            "No signed checkpoint covers this period yet. Try again after the next daily "
            "checkpoint, or when the quarter is closed."
        )
    if "no quarter" in text:
        return _("This school year has no such quarter.")
    if "log key" in text:
        return _("The school has no published log key yet: the operator creates it.")
    return _("This printout cannot be made yet.")

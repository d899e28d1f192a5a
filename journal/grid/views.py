"""The teacher's pages: the class × subject × term grid that works offline, the class teacher's
read-only view of their class and its summary, and the import of an exported outbox file (the
USB stick carried to the room with internet).

The grid page is rendered on the server from the journal's heads (entries no correction has
superseded) and carries the same state as JSON for the ES modules in ``static/grid``; those
sign every change on the device, keep it in an IndexedDB outbox and sync it (``journal.sync``).
A service worker served at ``/sw.js`` (scope ``/``) keeps the app shell and the week's grids.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from auth import policy
from auth.access import (
    PREFETCH_HEADER,
    current_user,
    fully_authenticated,
    personal_data,
    public,
    read_with_session,
    roles_required,
    target_school,
    with_session_lookup,
)

from ..charts.pages import class_charts
from ..clock import today_at
from ..db import db
from ..ids import id_arg
from ..models import ClassGroup
from ..sync import UPLOADER_ROLES, BatchOutcome, upload_batch
from ..year.rules import rule_for_subject
from .build import GridUnavailable, open_grid
from .frame import GRID_FRAME_WITH_SESSION
from .importing import (
    IMPORT_MAX_BYTES,
    ImportForm,
    ImportRefused,
    file_too_large_message,
    read_export,
)
from .links import grid_links, week_grid_urls
from .pages import grid_body, grid_page
from .shell import PAGES_OWNER_COOKIE, SHELL_FILES, app_version, pages_owner
from .strings import status_names
from .summary import class_summary, summary_terms

bp = Blueprint("teacher", __name__)


@bp.get("/teacher/")
@roles_required(*UPLOADER_ROLES)
def index() -> Any:
    user = current_user()
    assert user is not None
    links = grid_links(db.session, user, today_at(db.session, user.school_id))
    return render_template("teacher/index.html", links=links, classes=own_classes(user))


@bp.get("/teacher/grid/<int:class_id>/<int:subject_id>/<int:term_id>")
@with_session_lookup(GRID_FRAME_WITH_SESSION)
@roles_required(*UPLOADER_ROLES)
@personal_data("class_group", "class_id")
def grid(class_id: int, subject_id: int, term_id: int) -> Any:
    user = current_user()
    assert user is not None
    try:
        # The frame alone (read with the session, else one query): the body is kept, patched
        # or built (``pages``).
        frame = read_with_session(GRID_FRAME_WITH_SESSION)
        loaded = open_grid(
            db.session, user, class_id, subject_id, term_id, details=False, frame=frame
        )
    except GridUnavailable as refused:
        abort(refused.status)
    if loaded.created_log:
        db.session.commit()
    target_school(loaded.class_group.school_id)
    rule = rule_for_subject(loaded.subject, loaded.class_group, loaded.term.ends_on)
    key = (user.id, str(get_locale()), rule.rule_id, rule.version, app_version(), loaded.frame_key)
    body = grid_body(db.session, loaded, user, rule, key)
    return grid_page(loaded, user, body)


@bp.after_app_request
def keep_pages_owner_in_step(response: Response) -> Response:
    """The pages-owner cookie names whoever is fully signed in, and goes when nobody is."""
    if request.endpoint == "static":
        return response
    try:
        user = current_user() if fully_authenticated() else None
    except SQLAlchemyError:  # a request whose database session failed: leave it as it is
        return response
    owner = pages_owner(user.id) if user is not None else None
    if request.cookies.get(PAGES_OWNER_COOKIE) == owner:
        return response
    secure = bool(current_app.config.get("SESSION_COOKIE_SECURE"))
    if owner is None:
        response.delete_cookie(PAGES_OWNER_COOKIE, path="/", secure=secure, samesite="Lax")
    else:
        response.set_cookie(
            PAGES_OWNER_COOKIE,
            owner,
            max_age=current_app.permanent_session_lifetime,
            path="/",
            secure=secure,
            httponly=False,  # read by the service worker (Cookie Store API)
            samesite="Lax",
        )
    return response


@bp.get("/teacher/offline.json")
@roles_required(*UPLOADER_ROLES)
def offline_manifest() -> Response:
    """What the service worker keeps for a day without network: the week's grids."""
    user = current_user()
    assert user is not None
    today = today_at(db.session, user.school_id)
    urls = [url_for("teacher.index"), *week_grid_urls(db.session, user, today)]
    return Response(
        json.dumps({"version": app_version(), "pages": urls}), mimetype="application/json"
    )


@bp.get("/sw.js")
@public
def service_worker() -> Response:
    """The service worker, served from the root so that its scope covers every page."""
    shell = [url_for("static", filename=name) for name in SHELL_FILES]
    body = render_template(
        "teacher/sw.js",
        version=app_version(),
        shell=shell,
        manifest=url_for("teacher.offline_manifest"),
        login=url_for("auth.login"),
        logout=url_for("auth.logout"),
        owner_cookie=PAGES_OWNER_COOKIE,
        prefetch_header=PREFETCH_HEADER,
        offline_page=render_template("teacher/offline.html"),
        signed_out_offline_page=render_template("teacher/signed_out_offline.html"),
    )
    response = Response(body, mimetype="text/javascript")
    response.headers["Service-Worker-Allowed"] = "/"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.route("/teacher/import", methods=["GET", "POST"])
@roles_required(*UPLOADER_ROLES)
def import_file() -> Any:
    """Upload an export of unsynced entries; each entry gets the same result as in a sync."""
    form = ImportForm()
    outcome: BatchOutcome | None = None
    error = None
    if form.validate_on_submit():
        upload = form.file.data
        try:
            data = upload.stream.read(IMPORT_MAX_BYTES + 1)
        finally:
            upload.close()
        try:
            if len(data) > IMPORT_MAX_BYTES:
                raise ImportRefused(file_too_large_message())
            entries = read_export(data)
            limit = current_app.config["SYNC_MAX_BATCH"]
            if len(entries) > limit:  # as many as one sync batch, no more
                raise ImportRefused(
                    _(
                        "The file holds %(count)d entries; at most %(limit)d are imported at "
                        "once. Export from the grid again: it saves them in smaller parts.",
                        count=len(entries),
                        limit=limit,
                    )
                )
        except ImportRefused as refused:
            error = str(refused)
        else:
            user = current_user()
            assert user is not None
            outcome = upload_batch(
                db.session,
                user,
                entries,
                quarantine_quota=current_app.config["SYNC_QUARANTINE_DAILY_QUOTA"],
            )
            db.session.commit()
    elif form.is_submitted():
        error = _("Choose the exported file first.")
    return render_import(form, outcome, error, 400 if error else 200)


def render_import(
    form: ImportForm, outcome: BatchOutcome | None, error: str | None, status: int
) -> Any:
    return (
        render_template(
            "teacher/import.html",
            form=form,
            outcome=outcome,
            error=error,
            limit_mb=IMPORT_MAX_BYTES // (1024 * 1024),
            status_names=status_names(),
        ),
        status,
    )


@bp.errorhandler(RequestEntityTooLarge)
def too_large(_exc: RequestEntityTooLarge) -> Any:
    if request.path == url_for("teacher.import_file"):
        return render_import(ImportForm(formdata=None), None, file_too_large_message(), 413)
    return _exc


# -- the class teacher's class ---------------------------------------------------------------------


def own_classes(user: Any) -> list[ClassGroup]:
    """The classes whose grids and summary the user reads (their own class, as class teacher)."""
    from sqlalchemy import select

    from ..collation import class_key

    classes = db.session.scalars(select(ClassGroup).where(ClassGroup.class_teacher_id == user.id))
    readable = [c for c in classes if policy.can_read_class_grids(user, c)]
    return sorted(readable, key=lambda c: class_key(c.name, c.grade_level))


def readable_class(class_id: int) -> ClassGroup:
    user = current_user()
    class_group = db.session.get(ClassGroup, class_id)
    if class_group is None:
        abort(404)
    policy.require(policy.can_read_class_grids(user, class_group), "not your class")
    return class_group


@bp.get("/teacher/class/<int:class_id>")
@roles_required(*UPLOADER_ROLES)
@personal_data("class_group", "class_id")
def class_page(class_id: int) -> Any:
    """Every subject's grid of the class (read-only unless the user teaches it) and the
    summary of one term: each pupil × subject, attendance in lessons and days."""
    class_group = readable_class(class_id)
    user = current_user()
    assert user is not None
    today = today_at(db.session, class_group.school_id)
    terms = summary_terms(db.session, class_group)
    wanted = id_arg(request.args, "term")
    term = next((t for t in terms if t.id == wanted), None) or next(
        (t for t in terms if t.covers(today)), terms[-1] if terms else None
    )
    if term is None:
        abort(404)
    summary = class_summary(db.session, class_group, term)
    pupils = [(row.number, row.pupil.id, row.pupil.full_name) for row in summary.rows]
    chosen = id_arg(request.args, "pupil")
    return render_template(
        "teacher/class.html",
        class_group=class_group,
        terms=terms,
        term=term,
        summary=summary,
        charts=class_charts(db.session, class_group, term, pupils, chosen, today, summary.cells),
    )

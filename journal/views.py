"""Pages of the journal itself: the home page that sends each person to their work."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, session, url_for
from flask_babel import get_locale

from auth.access import current_user, login_required, public

from .app import LANGUAGES
from .db import db

bp = Blueprint("journal", __name__)


def layout_context() -> dict[str, Any]:
    return {"current_user": current_user(), "languages": LANGUAGES, "get_locale": get_locale}


@bp.get("/")
@login_required
def home() -> Any:
    return render_template("home.html", user=current_user())


@bp.post("/language")
@public
def set_language() -> Any:
    language = request.form.get("language", "")
    if language not in LANGUAGES:
        abort(400)
    session["language"] = language
    user = current_user()
    if user is not None:
        user.language = language
        db.session.commit()
    target = request.form.get("next", "")
    # Only local paths: never redirect to another site.
    if not target.startswith("/") or target.startswith("//"):
        target = url_for("journal.home")
    return redirect(target)

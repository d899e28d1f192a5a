"""Error pages in the reader's language (kk, ru, en): one template for 400, 403, 404, 405, 409,
413, 429, 500 and 503, and the same sentences as JSON under /api/.

The 503 of an unreachable database is not here: it must answer without the database and
without templates (``journal.views.database_unavailable``), and does, in the three languages.
"""

from __future__ import annotations

import contextlib
from typing import Any

from flask import Flask, Response, current_app, jsonify, render_template, request
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .db import db

ERROR_CODES = (400, 403, 404, 405, 409, 413, 429, 500, 503)

TITLES = {
    400: _l("The request is not valid"),
    403: _l("Not allowed"),
    404: _l("Page not found"),
    405: _l("This address does not take this kind of request"),
    409: _l("Not possible right now"),
    413: _l("Too large"),
    429: _l("Too many requests"),
    500: _l("Something went wrong on the server"),
    503: _l("The journal is not available right now"),
}
MESSAGES = {
    400: _l("What was sent could not be understood. Go back, check the form and try again."),
    403: _l("Your account may not see or change this."),
    404: _l("There is no page at this address. Check the link, or start from the home page."),
    405: _l("Go back and use the page's own buttons and links."),
    409: _l("This cannot be done in the journal's present state."),
    413: _l("What was sent is larger than the journal accepts."),
    429: _l("Too many requests in a short time. Wait a minute and try again."),
    500: _l(
        "The error is recorded on the server. Try again in a moment; if it happens again, tell "
        "the school's administrator what you were doing."
    ),
    503: _l("The journal is being updated or restarted. Try again in a moment."),
}
CSRF_MESSAGE = _l(
    "The form has expired or did not come from this page. Reload the page and send it again."
)
# When the error page itself cannot be rendered (the database went away with the error).
PLAIN = (
    "Қате орын алды. Сәлден кейін қайталаңыз.\n"
    "Произошла ошибка. Повторите попытку чуть позже.\n"
    "Something went wrong. Try again in a moment.\n"
)


def error_words(error: HTTPException) -> tuple[int, str, str, str | None]:
    """(status, title, message, reason) in the request's language. ``reason`` is what the view
    said when it refused (``abort(400, description=_(...))``): only views give translated
    descriptions, Werkzeug's own defaults and Flask-WTF's are English and never shown."""
    status = error.code or 500
    title = str(TITLES.get(status, TITLES[500 if status >= 500 else 400]))
    message = str(MESSAGES.get(status, MESSAGES[500 if status >= 500 else 400]))
    reason = None
    if isinstance(error, CSRFError):
        message = str(CSRF_MESSAGE)
    elif error.description and error.description != type(error).description:
        reason = str(error.description)
    return status, title, message, reason


def error_page(error: HTTPException) -> Any:
    status, title, message, reason = error_words(error)
    if status >= 500:
        # The request's transaction may be what failed: the page must not reuse it.
        with contextlib.suppress(Exception):
            db.session.rollback()
    if request.path.startswith("/api/"):
        response = jsonify(
            error=error.name.lower().replace(" ", "_"),
            message=" ".join(filter(None, (reason, message))),
        )
    else:
        try:
            html = render_template(
                "error.html", status=status, title=title, message=message, reason=reason
            )
        except Exception:  # the layout needs the database, which may be what failed
            current_app.logger.exception("the error page for %s could not be rendered", status)
            return Response(PLAIN, status=status, mimetype="text/plain")
        response = current_app.make_response(html)
    response.status_code = status
    if status == 429 and error.response is None:
        response.headers.setdefault("Retry-After", "60")
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers.setdefault(name, value)  # Allow on a 405
    return response


def register(app: Flask) -> None:
    """Every code in ERROR_CODES; an exception no view handled arrives as a 500."""
    for code in ERROR_CODES:
        app.register_error_handler(code, error_page)

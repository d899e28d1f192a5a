"""Who is asking: the signed-in user, and the decorators views use to require roles.

Authorization decisions that concern data (may this user write this class's journal, read this
child's grades) live in ``auth.policy`` and are called by services, not only by views.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    abort,
    current_app,
    has_request_context,
    make_response,
    redirect,
    request,
    session,
    url_for,
)

from journal.db import db, utcnow

from . import sessions
from .models import STAFF_ROLES, User, UserSession
from .signin import needs_second_factor

F = TypeVar("F", bound=Callable[..., Any])


def clock() -> dt.datetime:
    """Now, in UTC; tests move time with ``app.config["AUTH_CLOCK"]`` (a callable)."""
    override = current_app.config.get("AUTH_CLOCK")
    return override() if callable(override) else utcnow()


def client_address() -> str | None:
    """The address the request came from (deployments behind a proxy set JOURNAL_PROXY_HOPS)."""
    return request.remote_addr


# The signed-in session and its user are cached per request (in the WSGI environ, not in ``g``:
# tests run many requests inside one application context).
_CURRENT_SESSION = "journal.current_session"
# The cookie (Flask's signed session) holds the server-side session's id under this key.
SESSION_KEY = "sid"


def current_session() -> UserSession | None:
    """The server-side session this request carries, if it still stands."""
    if not has_request_context():
        return None
    if _CURRENT_SESSION not in request.environ:
        token = session.get(SESSION_KEY)
        along = request.environ.pop(_ALONG, None)
        row: UserSession | None = None
        if isinstance(token, str) and along is not None:
            statement, params = along
            row, columns = sessions.find_session_with(db.session, token, clock(), statement, params)
            if row is not None:
                request.environ[_ALONG_ROW] = (statement, columns)
        elif isinstance(token, str):
            row = sessions.find_session(db.session, token, clock())
        request.environ[_CURRENT_SESSION] = row
    row = request.environ[_CURRENT_SESSION]
    return row if isinstance(row, UserSession) else None


# A view's own query read in the same statement as the session (``with_session_lookup``).
_ALONG = "journal.read_with_session"
_ALONG_ROW = "journal.read_with_session_row"


def with_session_lookup(statement: Any) -> Callable[[F], F]:
    """Read ``statement`` (``sessions.FIND_SESSION`` with the view's columns added, its
    parameters named as the view's URL arguments) in the same statement as the request's
    session look-up, when that has not run yet: one round trip less. The session is checked
    exactly as ``find_session`` checks it, and the access decorators below decide as always.
    The view takes the columns with ``read_with_session``. Put it above the access decorator."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if _CURRENT_SESSION not in request.environ:
                request.environ[_ALONG] = (statement, kwargs)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


def read_with_session(statement: Any) -> tuple[Any, ...] | None:
    """The columns ``statement`` added to this request's session look-up (taken once), or None
    when it did not run with the look-up (the view then reads them itself)."""
    along = request.environ.pop(_ALONG_ROW, None)
    if along is None or along[0] is not statement:
        return None
    columns: tuple[Any, ...] = along[1]
    return columns


def current_user() -> User | None:
    row = current_session()
    return row.user if row is not None else None


def is_staff(user: User) -> bool:
    return any(grant.role in STAFF_ROLES for grant in user.roles)


def fully_authenticated() -> bool:
    """Signed in, and staff have passed their second factor in this session."""
    row = current_session()
    if row is None:
        return False
    return not needs_second_factor(row.user) or row.second_factor_at is not None


def _keep_only_language() -> None:
    language = session.get("language")
    session.clear()
    if language:
        session["language"] = language


def login_user(user: User, *, second_factor_ok: bool) -> None:
    """Start a fresh server-side session for the user (a new id; the cookie's earlier session,
    if any, ends). The caller commits."""
    previous = current_session()
    if previous is not None:
        sessions.end_session(db.session, previous, "replaced", clock())
    row, token = sessions.start_session(
        db.session,
        user,
        second_factor_passed=second_factor_ok,
        ip=client_address(),
        user_agent=request.headers.get("User-Agent"),
        now=clock(),
    )
    _keep_only_language()
    session.permanent = True
    session[SESSION_KEY] = token
    request.environ[_CURRENT_SESSION] = row


def mark_second_factor_passed() -> None:
    """The second factor was checked just now (device-key enrolment asks for a fresh one).
    The caller commits."""
    row = current_session()
    if row is not None:
        row.second_factor_at = clock()
        db.session.flush()


def second_factor_checked_at() -> dt.datetime | None:
    row = current_session()
    return row.second_factor_at if row is not None else None


def logout_user(reason: str = "logout") -> None:
    """End this browser's session on the server and forget it in the cookie. The caller
    commits."""
    row = current_session()
    if row is not None:
        sessions.end_session(db.session, row, reason, clock())
    _keep_only_language()
    request.environ[_CURRENT_SESSION] = None


def public_url(endpoint: str, **values: Any) -> str:
    """An absolute link to ``endpoint`` for a letter or a QR code: on JOURNAL_PUBLIC_URL when
    set (never on the Host header a request came with), else on this development server."""
    base = current_app.config.get("PUBLIC_URL")
    if base:
        return str(base).rstrip("/") + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)


def local_redirect_target(value: str | None, default: str) -> str:
    """``value`` when it is a path on this site, else ``default``: never another site.

    Browsers drop tabs and newlines inside URLs and read a backslash as a slash, so a tab
    between two slashes would leave the site: control characters are removed and backslashes
    read as slashes before the check. A CR or LF is refused outright (400), before anything is
    written: it can only be an attempt to split headers."""
    if not value:
        return default
    if "\r" in value or "\n" in value:
        abort(400)
    cleaned = "".join(ch for ch in value if ch >= " " and ch != "\x7f").replace("\\", "/")
    parts = urlsplit(cleaned)
    if parts.scheme or parts.netloc or not cleaned.startswith("/") or cleaned.startswith("//"):
        return default
    return cleaned


# Which access check refused a request ("sign_in", "second_factor", "role"), kept in the WSGI
# environ: the authorization matrix test reads it to tell the access layer's refusals from a
# view's own (a 403 for someone else's data, a 404), whatever error pages blueprints render.
REFUSED_BY = "journal.access_refused"


def _send_to_sign_in() -> Any:
    request.environ[REFUSED_BY] = "sign_in"
    if request.path.startswith("/api/"):
        abort(401)
    return redirect(url_for("auth.login", next=request.full_path))


def login_required(view: F) -> F:
    """Signed in and, for staff, past the second factor."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return _send_to_sign_in()
        if not fully_authenticated():
            request.environ[REFUSED_BY] = "second_factor"
            if request.path.startswith("/api/"):
                abort(401)
            return redirect(url_for("auth.second_factor", next=request.full_path))
        return view(*args, **kwargs)

    wrapped.access_rule = "login"  # type: ignore[attr-defined]
    return wrapped  # type: ignore[return-value]


def roles_required(*roles: str) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        @login_required
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            assert user is not None
            if not any(user.has_role(role) for role in roles):
                request.environ[REFUSED_BY] = "role"
                abort(403)
            return view(*args, **kwargs)

        wrapped.access_rule = ("roles", frozenset(roles))  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator


def signed_in_required(view: F) -> F:
    """Signed in, second factor or not: the second-factor pages themselves, and signing out."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return _send_to_sign_in()
        return view(*args, **kwargs)

    wrapped.access_rule = "signed_in"  # type: ignore[attr-defined]
    return wrapped  # type: ignore[return-value]


def log_access(
    action: str,
    target_type: str,
    target_id: object,
    *,
    school_id: int | None = None,
    detail: str | None = None,
    page_view: bool = False,
) -> None:
    """Record in the access log that the signed-in user did ``action`` on a record, now, from
    this request's address and browser (``page_view``: see ``services.RECORD_VIEW``)."""
    from .services import record_access

    record_access(
        db.session,
        current_user(),
        action,
        target_type,
        target_id,
        client_address(),
        school_id=school_id,
        now=clock(),
        user_agent=request.headers.get("User-Agent"),
        detail=detail,
        page_view=page_view,
    )


# The service worker (journal/templates/teacher/sw.js) sends this header with the pages it
# fetches in the background to keep them for work offline: nobody opened them. Browsers' own
# speculative loads say "Sec-Purpose: prefetch". A client can send either header, so it only
# tells the kind of row apart: the personal data it fetched is logged all the same.
PREFETCH_HEADER = "X-Journal-Prefetch"


def is_prefetch() -> bool:
    purpose = request.headers.get("Sec-Purpose", "") + " " + request.headers.get("Purpose", "")
    return bool(request.headers.get(PREFETCH_HEADER)) or "prefetch" in purpose.lower()


def request_detail(id_arg: str | None) -> str | None:
    """The URL's other values (a grid's subject and term) as compact JSON, for the log row."""
    values = {
        name: value
        for name, value in (request.view_args or {}).items()
        if name != id_arg and isinstance(value, int | str)
    }
    if not values:
        return None
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= 200 else None


# A view that has its target's school at hand says so (``target_school``): its access-log row
# then needs no query to find it.
_TARGET_SCHOOL = "journal.target_school"


def target_school(school_id: int) -> None:
    """The school of the record this ``personal_data`` view shows, known to the view."""
    request.environ[_TARGET_SCHOOL] = school_id


def personal_data(target_type: str, id_arg: str | None = None) -> Callable[[F], F]:
    """Mark a view that shows students' personal data (names, grades, attendance, IIN).

    Each successful view, and each view refused by ``auth.policy``, leaves an access-log row
    naming the user, the endpoint and the target (``kwargs[id_arg]``): ``view:<endpoint>``, or
    ``prefetch:<endpoint>`` for a page fetched in the background (``is_prefetch``), or
    ``denied:<endpoint>``. The URL's other values go to the row's detail. The authorization test
    finds every view marked so and checks that names render escaped and that the row appears.
    Put it under the access decorator: ``@roles_required(...)`` then ``@personal_data(...)``.
    """
    from .policy import Forbidden

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            target_id = kwargs.get(id_arg) if id_arg else None
            detail = request_detail(id_arg)
            try:
                response = make_response(view(*args, **kwargs))
            except Forbidden:
                log_access(f"denied:{request.endpoint}", target_type, target_id, detail=detail)
                db.session.commit()
                raise
            if 200 <= response.status_code < 300:
                school_id = request.environ.get(_TARGET_SCHOOL)
                kind = "prefetch" if is_prefetch() else "view"
                log_access(
                    f"{kind}:{request.endpoint}",
                    target_type,
                    target_id,
                    school_id=school_id,
                    detail=detail,
                    page_view=request.method in ("GET", "HEAD"),
                )
                db.session.commit()
            return response

        wrapped.personal_data = (target_type, id_arg)  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator


# Every view carries an ``access_rule``: "public", "signed_in" (second factor not needed),
# "login" (signed in and past the second factor) or ("roles", {...}); the authorization matrix
# test (tests/auth/test_authorization_matrix.py) fails on any endpoint without one.


def public(view: F) -> F:
    """Mark a view as reachable without signing in (the authorization matrix reads this)."""
    view.access_rule = "public"  # type: ignore[attr-defined]
    return view

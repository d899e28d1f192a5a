"""Who is asking: the signed-in user, and the decorators views use to require roles.

Authorization decisions that concern data (may this user write this class's journal, read this
child's grades) live in ``auth.policy`` and are called by services, not only by views.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any, TypeVar

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
from sqlalchemy.orm import joinedload

from journal.db import db, utcnow

from .models import STAFF_ROLES, User
from .services import needs_second_factor

F = TypeVar("F", bound=Callable[..., Any])


# A session ends this long after sign-in, whatever happens in between.
STAFF_SESSION_LIFETIME = dt.timedelta(hours=12)
OTHER_SESSION_LIFETIME = dt.timedelta(days=14)


def clock() -> dt.datetime:
    """Now, in UTC; tests move time with ``app.config["AUTH_CLOCK"]`` (a callable)."""
    override = current_app.config.get("AUTH_CLOCK")
    return override() if callable(override) else utcnow()


def client_address() -> str | None:
    """The address the request came from (deployments behind a proxy configure ProxyFix)."""
    return request.remote_addr


# The signed-in user is cached per request (in the WSGI environ, not in ``g``: tests run many
# requests inside one application context).
_CURRENT_USER = "journal.current_user"


def current_user() -> User | None:
    if not has_request_context():
        return None
    if _CURRENT_USER not in request.environ:
        user_id = session.get("user_id")
        # Roles come in the same query: every access rule asks for them.
        user = (
            db.session.get(User, user_id, options=[joinedload(User.roles)])
            if isinstance(user_id, int)
            else None
        )
        if user is not None and session.get("auth_version") != user.auth_version:
            user = None  # password reset, lock or 2FA reset since this session signed in
        if user is not None and _session_expired(user):
            user = None
        request.environ[_CURRENT_USER] = user
    user = request.environ[_CURRENT_USER]
    return user if isinstance(user, User) else None


def _session_expired(user: User) -> bool:
    signed_in_at = session.get("signed_in_at")
    if not isinstance(signed_in_at, int):
        return True
    lifetime = STAFF_SESSION_LIFETIME if is_staff(user) else OTHER_SESSION_LIFETIME
    age = clock() - dt.datetime.fromtimestamp(signed_in_at, dt.UTC)
    return not dt.timedelta(seconds=-60) <= age <= lifetime


def is_staff(user: User) -> bool:
    return any(grant.role in STAFF_ROLES for grant in user.roles)


def fully_authenticated() -> bool:
    """Signed in, and staff have passed their second factor in this session."""
    user = current_user()
    if user is None:
        return False
    return not needs_second_factor(user) or bool(session.get("second_factor_ok"))


def login_user(user: User, *, second_factor_ok: bool) -> None:
    """Start a fresh session for the user: a new session id, nothing carried over."""
    language = session.get("language")
    session.clear()
    session.permanent = True
    session["user_id"] = user.id
    session["auth_version"] = user.auth_version
    session["signed_in_at"] = int(clock().timestamp())
    session["second_factor_ok"] = second_factor_ok
    if second_factor_ok:
        session["second_factor_at"] = session["signed_in_at"]
    if language:
        session["language"] = language
    request.environ[_CURRENT_USER] = user


def mark_second_factor_passed() -> None:
    """The second factor was checked just now (device-key enrolment asks for a fresh one)."""
    session["second_factor_ok"] = True
    session["second_factor_at"] = int(clock().timestamp())


def second_factor_checked_at() -> dt.datetime | None:
    checked = session.get("second_factor_at")
    return dt.datetime.fromtimestamp(checked, dt.UTC) if isinstance(checked, int) else None


def logout_user() -> None:
    language = session.get("language")
    session.clear()
    if language:
        session["language"] = language
    request.environ.pop(_CURRENT_USER, None)


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
    action: str, target_type: str, target_id: object, *, school_id: int | None = None
) -> None:
    """Record in the access log that the signed-in user did ``action`` on a record, now."""
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
    )


# A view that has its target's school at hand says so (``target_school``): its access-log row
# then needs no query to find it.
_TARGET_SCHOOL = "journal.target_school"


def target_school(school_id: int) -> None:
    """The school of the record this ``personal_data`` view shows, known to the view."""
    request.environ[_TARGET_SCHOOL] = school_id


def personal_data(target_type: str, id_arg: str | None = None) -> Callable[[F], F]:
    """Mark a view that shows students' personal data (names, grades, attendance, IIN).

    Each successful view, and each view refused by ``auth.policy``, leaves an access-log row
    naming the user, the endpoint and the target (``kwargs[id_arg]``). The authorization test
    finds every view marked so and checks that names render escaped and that the row appears.
    Put it under the access decorator: ``@roles_required(...)`` then ``@personal_data(...)``.
    """
    from .policy import Forbidden

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            target_id = kwargs.get(id_arg) if id_arg else None
            try:
                response = make_response(view(*args, **kwargs))
            except Forbidden:
                log_access(f"denied:{request.endpoint}", target_type, target_id)
                db.session.commit()
                raise
            if 200 <= response.status_code < 300:
                school_id = request.environ.get(_TARGET_SCHOOL)
                log_access(f"view:{request.endpoint}", target_type, target_id, school_id=school_id)
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

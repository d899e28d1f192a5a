"""Who is asking: the signed-in user, and the decorators views use to require roles.

Authorization decisions that concern data (may this user write this class's journal, read this
child's grades) live in ``auth.policy`` and are called by services, not only by views.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import abort, g, redirect, request, session, url_for

from journal.db import db

from .models import STAFF_ROLES, User

F = TypeVar("F", bound=Callable[..., Any])


def current_user() -> User | None:
    if "current_user" not in g:
        user_id = session.get("user_id")
        user = db.session.get(User, user_id) if isinstance(user_id, int) else None
        if user is not None and session.get("auth_version") != user.auth_version:
            user = None  # password reset, lock or 2FA reset since this session signed in
        g.current_user = user
    user = g.current_user
    return user if isinstance(user, User) else None


def is_staff(user: User) -> bool:
    return any(grant.role in STAFF_ROLES for grant in user.roles)


def fully_authenticated() -> bool:
    """Signed in, and staff have passed their second factor in this session."""
    user = current_user()
    if user is None:
        return False
    return not is_staff(user) or bool(session.get("second_factor_ok"))


def login_user(user: User, *, second_factor_ok: bool) -> None:
    """Start a fresh session for the user: a new session id, nothing carried over."""
    language = session.get("language")
    session.clear()
    session.permanent = True
    session["user_id"] = user.id
    session["auth_version"] = user.auth_version
    session["second_factor_ok"] = second_factor_ok
    if language:
        session["language"] = language
    g.current_user = user


def logout_user() -> None:
    language = session.get("language")
    session.clear()
    if language:
        session["language"] = language
    g.pop("current_user", None)


def login_required(view: F) -> F:
    """Signed in and, for staff, past the second factor."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        user = current_user()
        if user is None:
            if request.path.startswith("/api/"):
                abort(401)
            return redirect(url_for("auth.login", next=request.full_path))
        if not fully_authenticated():
            if request.path.startswith("/api/"):
                abort(401)
            return redirect(url_for("auth.second_factor"))
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
                abort(403)
            return view(*args, **kwargs)

        wrapped.access_rule = ("roles", frozenset(roles))  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator


# Every view carries an ``access_rule`` ("public", "login", ("roles", {...}), or one set by
# auth's own decorators); the authorization matrix test fails on any endpoint without one.


def public(view: F) -> F:
    """Mark a view as reachable without signing in (the authorization matrix reads this)."""
    view.access_rule = "public"  # type: ignore[attr-defined]
    return view

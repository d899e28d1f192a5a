"""Signing in (password, passkey), the second factor, signing out; the known-device cookie."""

from __future__ import annotations

import secrets
from typing import Any

from flask import (
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from itsdangerous import BadSignature, URLSafeSerializer

from journal.db import db

from .. import factors, resets, signin
from ..access import (
    client_address,
    clock,
    current_session,
    login_user,
    logout_user,
    mark_second_factor_passed,
    needs_second_factor,
    public,
    signed_in_required,
)
from ..models import STAFF_ROLES, User
from ..services import AuthError
from . import (
    _json_body,
    _json_error,
    _next_url,
    _relying_party,
    _start_passkey_ceremony,
    _take_challenge,
    _user,
    bp,
    explain,
)

# -- known devices -------------------------------------------------------------------------------
# A browser where someone signed in fully keeps a long-lived signed cookie naming them (with a
# random id per person): its password attempts count only against that id, so strangers'
# failures never slow the person down there (auth.signin).

DEVICE_COOKIE = "journal_device"
DEVICE_COOKIE_AGE = 400 * 24 * 3600  # the longest browsers keep a cookie
DEVICE_COOKIE_PEOPLE = 5


def _device_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="journal-known-device")


def _known_devices() -> dict[str, str]:
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw:
        return {}
    try:
        value = _device_serializer().loads(raw)
    except BadSignature:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str)}


def _known_device(username: str) -> str | None:
    return _known_devices().get(username.strip().lower()[:100])


def _remember_device(response: Response, user: User) -> Response:
    known = _known_devices()
    known.pop(user.username, None)
    known[user.username] = known.get(user.username) or secrets.token_hex(16)
    kept = dict(list(known.items())[-DEVICE_COOKIE_PEOPLE:])
    response.set_cookie(
        DEVICE_COOKIE,
        _device_serializer().dumps(kept),
        max_age=DEVICE_COOKIE_AGE,
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )
    return response


def _signed_in(user: User, target: str) -> Response:
    """The answer that ends a full sign-in: first the news of a reset, if there is some."""
    if resets.unacknowledged_resets(db.session, user):
        target = url_for(".reset_notice", next=target)
    return _remember_device(redirect(target), user)


def _throttled_page(error: signin.Throttled, template: str, **context: Any) -> Any:
    flash(explain(error), "error")
    response = current_app.make_response((render_template(template, **context), 429))
    response.headers["Retry-After"] = str(error.retry_after)
    return response


# -- signing in ----------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    if request.method == "POST":
        target = _next_url()  # before anything is written: a CR or LF answers 400
        username = request.form.get("username", "")
        try:
            user = signin.authenticate(
                db.session,
                username,
                request.form.get("password", ""),
                address=client_address(),
                now=clock(),
                device=_known_device(username),
            )
        except signin.Throttled as error:
            return _throttled_page(error, "auth/login.html", username=username)
        except AuthError as error:
            db.session.commit()  # the failure counts
            flash(explain(error), "error")
            return render_template("auth/login.html", username=username), 200
        two_step = needs_second_factor(user)
        login_user(user, second_factor_ok=not two_step)
        db.session.commit()
        if two_step:
            return redirect(url_for("auth.second_factor", next=target))
        return _signed_in(user, target)
    return render_template("auth/login.html", username="")


@bp.post("/login/passkey/options")
@public
def login_passkey_options() -> Any:
    rp_id, _origin = _relying_party()
    options, challenge = factors.passkey_authentication_options(db.session, rp_id=rp_id)
    return _start_passkey_ceremony("login", options, challenge)


@bp.post("/login/passkey")
@public
def login_passkey() -> Any:
    """Password-free sign-in for parents and students; staff sign in with a password first."""
    target = _next_url()
    rp_id, origin = _relying_party()
    try:
        user = factors.authenticate_passkey(
            db.session,
            _json_body(),
            challenge=_take_challenge("login"),
            rp_id=rp_id,
            origin=origin,
            now=clock(),
        )
    except AuthError as error:
        return _json_error(error)
    if any(grant.role in STAFF_ROLES for grant in user.roles):
        message = _("Staff sign in with their password, then use the passkey.")
        return jsonify(error="staff_use_password", message=message), 403
    login_user(user, second_factor_ok=True)
    db.session.commit()
    landing = _signed_in(user, target)
    response = jsonify(redirect=landing.headers["Location"])
    for cookie in landing.headers.getlist("Set-Cookie"):
        response.headers.add("Set-Cookie", cookie)
    return response


@bp.post("/logout")
@signed_in_required
def logout() -> Any:
    logout_user()
    db.session.commit()
    response = redirect(url_for("auth.login"))
    # Personal pages out of the HTTP and back/forward caches. Not "storage": that would also
    # wipe the outbox of unsent signed entries; the sign-in page drops the service worker's
    # copies of pages instead (journal/static/grid/signed-out.js).
    response.headers["Clear-Site-Data"] = '"cache"'
    return response


# -- second factor -------------------------------------------------------------------------------


@bp.route("/second-factor", methods=["GET", "POST"])
@signed_in_required
def second_factor() -> Any:
    """The code after the password (also the fresh check before enrolling a device key)."""
    user = _user()
    target = _next_url()
    if not factors.has_second_factor(db.session, user):
        return redirect(url_for("auth.enrol_second_factor", next=target))
    if request.method == "POST":
        try:
            factors.verify_second_factor(
                db.session,
                user,
                request.form.get("code", ""),
                address=client_address(),
                now=clock(),
            )
        except AuthError as error:
            flash(explain(error), "error")
            if error.code in ("locked", "disabled"):
                logout_user()
                db.session.commit()
                return redirect(url_for("auth.login"))
            db.session.commit()
            return render_template("auth/second_factor.html", next=target), 200
        mark_second_factor_passed()
        db.session.commit()
        return _signed_in(user, target)
    return render_template("auth/second_factor.html", next=target)


@bp.post("/second-factor/passkey/options")
@signed_in_required
def second_factor_passkey_options() -> Any:
    rp_id, _origin = _relying_party()
    options, challenge = factors.passkey_authentication_options(
        db.session, rp_id=rp_id, user=_user()
    )
    return _start_passkey_ceremony("second_factor", options, challenge)


@bp.post("/second-factor/passkey")
@signed_in_required
def second_factor_passkey() -> Any:
    target = _next_url()
    rp_id, origin = _relying_party()
    user = _user()
    try:
        factors.authenticate_passkey(
            db.session,
            _json_body(),
            challenge=_take_challenge("second_factor"),
            rp_id=rp_id,
            origin=origin,
            now=clock(),
            user=user,
        )
    except AuthError as error:
        return _json_error(error)
    mark_second_factor_passed()
    db.session.commit()
    landing = _signed_in(user, target)
    response = jsonify(redirect=landing.headers["Location"])
    for cookie in landing.headers.getlist("Set-Cookie"):
        response.headers.add("Set-Cookie", cookie)
    return response


@bp.route("/second-factor/enrol", methods=["GET", "POST"])
@signed_in_required
def enrol_second_factor() -> Any:
    """First second factor: an authenticator app (TOTP), or a passkey. The secret shown waits
    in the server-side session until confirmed, never in the cookie."""
    user = _user()
    target = _next_url()
    if factors.has_second_factor(db.session, user):
        return redirect(url_for("auth.second_factor", next=target))
    row = current_session()
    assert row is not None
    secret = row.totp_pending
    if not secret:
        row.totp_pending = secret = factors.new_totp_secret()
        db.session.commit()
    if request.method == "POST":
        try:
            codes = factors.confirm_totp(
                db.session, user, secret, request.form.get("code", ""), now=clock()
            )
        except AuthError as error:
            flash(explain(error), "error")
        else:
            row.totp_pending = None
            mark_second_factor_passed()
            db.session.commit()
            after = _signed_in(user, target)
            page = render_template(
                "auth/recovery_codes.html", codes=codes, next=after.headers["Location"]
            )
            response = current_app.make_response(page)
            for cookie in after.headers.getlist("Set-Cookie"):
                response.headers.add("Set-Cookie", cookie)
            return response
    uri = factors.totp_uri(user, secret)
    return render_template(
        "auth/enrol.html",
        secret=secret,
        grouped_secret=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        qr=factors.qr_data_uri(uri),
        next=target,
    )

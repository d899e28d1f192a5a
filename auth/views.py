"""Accounts and trust on the web: sign-in, second factor, sessions, invitations, resets and
letters, device keys, account administration, the access log, and a parent's read-only view of
their own child.

Views parse the request, call one service, commit, and render; decisions about data live in
``auth.policy`` and the service modules (``auth.signin``, ``auth.factors``, ``auth.resets``...).
"""

from __future__ import annotations

import base64
import math
import secrets
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select

from journal.clock import school_zone
from journal.config import is_development
from journal.db import db
from journal.ids import id_arg
from journal.keys import LogKey, load_log_key
from journal.models import School, Student

from . import access_log as access_log_reading
from . import devices as device_keys
from . import factors, invitations, policy, resets, services, sessions, signin
from .access import (
    REFUSED_BY,
    client_address,
    clock,
    current_session,
    current_user,
    fully_authenticated,
    local_redirect_target,
    login_required,
    login_user,
    logout_user,
    mark_second_factor_passed,
    needs_second_factor,
    personal_data,
    public,
    public_url,
    roles_required,
    second_factor_checked_at,
    signed_in_required,
)
from .browsers import device_name
from .models import STAFF_ROLES, AccountReset, DeviceKey, User
from .policy import Forbidden
from .services import AuthError

bp = Blueprint("auth", __name__, template_folder="templates")

# Roles an administrator may give on the staff form; operators are made with `flask user create`.
ADMIN_GRANTABLE = ("teacher", "class_teacher", "school_admin", "registrar", "inspector")


@bp.app_errorhandler(Forbidden)
def forbidden(_error: Forbidden) -> Any:
    """A refusal by ``auth.policy`` (the data), as opposed to a role decorator (the page)."""
    if request.path.startswith("/api/"):
        response = jsonify(error="forbidden", message=_("You may not see or change this."))
    else:
        response = current_app.make_response(render_template("auth/forbidden.html"))
    response.status_code = 403
    return response


@bp.app_template_filter("device_name")
def device_name_filter(user_agent: str | None) -> str | None:
    """``{{ row.user_agent|device_name }}``: "Chrome on Android" (None when unknown)."""
    return device_name(user_agent)


@bp.after_app_request
def expose_access_refusal(response: Response) -> Response:
    """Under test, say which access check refused the request (the authorization matrix reads
    it; the werkzeug test client does not hand back the request's environ)."""
    refused = request.environ.get(REFUSED_BY)
    if refused and current_app.testing:
        response.headers["X-Access-Refused"] = refused
    return response


def explain(error: AuthError) -> str:
    """The sentence a person reads for a refusal."""
    if error.code == "locked" and error.until is not None:
        minutes = max(1, math.ceil((error.until - clock()).total_seconds() / 60))
        return _(
            "Too many wrong codes: the account is locked. Try again in %(minutes)d min.",
            minutes=minutes,
        )
    if isinstance(error, signin.Throttled):
        return _(
            "Too many failed attempts. Wait %(seconds)d seconds and try again.",
            seconds=error.retry_after,
        )
    messages = {
        "bad_credentials": _(
            "Wrong username or password, or the account is locked. If this goes on, ask the "
            "school administrator."
        ),
        "disabled": _("This account is locked. Ask the school administrator."),
        "bad_code": _("Wrong code. Check the time on your phone and try again."),
        "replayed": _("This code was used already. Wait for the next code in your app."),
        "already_enrolled": _("A second factor is enrolled already."),
        "bad_secret": _("The enrolment expired. Start again."),
        "bad_username": _(
            "A username has 3 to 100 characters: latin letters, digits, dot, dash or underscore."
        ),
        "username_taken": _("This username is taken. Choose another."),
        "bad_full_name": _("Write the full name (up to 200 characters)."),
        "weak_password": _(
            "Choose a password of at least 10 characters that is not your username."
        ),
        "password_mismatch": _("The two passwords differ."),
        "bad_invitation": _("This invitation code is unknown or was used already."),
        "expired_invitation": _("This invitation has expired. Ask the school for a new one."),
        "already_linked": _("Your account is linked to this child already."),
        "bad_reset_link": _("This link is unknown, used or expired. Ask for a new one."),
        "bad_reset_code": _(
            "This code is unknown, used, expired, or was opened in another browser already. "
            "Ask the school for a new letter."
        ),
        "bad_role": _("Choose a valid role."),
        "unknown_school": _("No such school."),
        "unknown_student": _("No such student."),
        "bad_passkey": _("The passkey was not accepted."),
        "passkey_exists": _("This passkey is registered already."),
        "unknown_passkey": _("This passkey is not registered here."),
        "last_factor": _("This is your only second factor. Enrol another one first."),
        "not_allowed": _("Only teachers enrol device keys."),
        "bad_alg": _("Unsupported key algorithm."),
        "bad_key": _("The public key is not usable."),
        "key_in_use": _("This key belongs to another account."),
        "revoked_key": _("This key was revoked. Make a new one."),
        "bad_label": _("A device name has at most 100 characters."),
        "empty_label": _("Give the device a name (up to 100 characters)."),
        "bad_reset_kind": _("Choose what to reset."),
        "bad_reason": _("Write why the account is reset (up to 500 characters)."),
        "reset_pending": _("A reset of this account is already waiting for approval."),
        "same_person": _("Another administrator must approve a reset you asked for."),
        "reset_closed": _("This reset was approved or cancelled already."),
        "reset_expired": _("This reset has lapsed. Ask for a new one."),
        "not_your_reset": _(
            "Only the administrator who asked for or approved the reset prints it."
        ),
        "no_letter": _("This reset has no letter to print."),
        "letter_printed": _(
            "The letter was printed already; it is shown only once. Ask for a new reset if it "
            "was lost."
        ),
        "has_password": _("This account has a password already: ask for a reset."),
    }
    return messages.get(error.code, error.message)


def _next_url() -> str:
    """Where to go after this step: a path on this site only (a CR or LF in it answers 400)."""
    return local_redirect_target(request.values.get("next"), url_for("journal.home"))


def _user() -> User:
    user = current_user()
    assert user is not None  # the access decorators guarantee it
    return user


def _relying_party() -> tuple[str, str]:
    """WebAuthn relying-party id and origin, from JOURNAL_PUBLIC_URL (required outside
    development; a development server answers for the host it was asked on)."""
    base = current_app.config.get("PUBLIC_URL")
    if base:
        parts = urlsplit(str(base))
        return str(parts.hostname), f"{parts.scheme}://{parts.netloc}"
    if not is_development(current_app.config):
        abort(500)  # create_app refuses to start like this; never trust the Host header
    return request.host.split(":")[0], request.host_url.rstrip("/")


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400)
    return body


def _start_passkey_ceremony(purpose: str, options_json: str, challenge: bytes) -> Any:
    session["webauthn"] = {"purpose": purpose, "challenge": base64.b64encode(challenge).decode()}
    return current_app.response_class(options_json, mimetype="application/json")


def _take_challenge(purpose: str) -> bytes:
    """The challenge of the ceremony in progress, used once."""
    pending = session.pop("webauthn", None)
    if not isinstance(pending, dict) or pending.get("purpose") != purpose:
        raise AuthError("bad_passkey", "no passkey ceremony in progress")
    return base64.b64decode(pending["challenge"])


def _json_error(error: AuthError, status: int = 400) -> Any:
    return jsonify(error=error.code, message=explain(error)), status


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


def _may_add_passkey(user: User) -> bool:
    """Fully signed in, or enrolling the very first second factor."""
    return fully_authenticated() or not factors.has_second_factor(db.session, user)


@bp.post("/account/passkeys/options")
@signed_in_required
def passkey_registration_options() -> Any:
    user = _user()
    if not _may_add_passkey(user):
        raise Forbidden("sign in with your second factor first")
    rp_id, _origin = _relying_party()
    options, challenge = factors.passkey_registration_options(
        db.session, user, rp_id=rp_id, rp_name=_("Class journal")
    )
    db.session.commit()  # the new WebAuthn user handle
    return _start_passkey_ceremony("register", options, challenge)


@bp.post("/account/passkeys")
@signed_in_required
def add_passkey() -> Any:
    user = _user()
    if not _may_add_passkey(user):
        raise Forbidden("sign in with your second factor first")
    target = _next_url() if request.args.get("next") else url_for(".security")
    body = _json_body()
    rp_id, origin = _relying_party()
    try:
        factors.add_passkey(
            db.session,
            user,
            body.get("credential") or {},
            challenge=_take_challenge("register"),
            rp_id=rp_id,
            origin=origin,
            label=str(body.get("label") or ""),
            now=clock(),
        )
    except AuthError as error:
        return _json_error(error)
    mark_second_factor_passed()
    db.session.commit()
    return jsonify(redirect=target)


@bp.post("/account/passkeys/<int:passkey_id>/remove")
@login_required
def remove_passkey(passkey_id: int) -> Any:
    try:
        factors.remove_passkey(db.session, _user(), passkey_id)
    except AuthError as error:
        flash(explain(error), "error")
    else:
        db.session.commit()
        flash(_("The passkey was removed."), "ok")
    return redirect(url_for(".security"))


@bp.get("/account/security")
@login_required
def security() -> Any:
    user = _user()
    return render_template(
        "auth/security.html",
        user=user,
        passkeys=factors.passkeys_of(db.session, user),
        recovery_left=factors.unused_recovery_codes(db.session, user),
        sessions=sessions.standing_sessions(db.session, user, clock()),
        this_session=current_session(),
        time_zone=school_zone(db.session, user.school_id),
    )


@bp.post("/account/sessions/end-all")
@login_required
def end_all_sessions() -> Any:
    """Sign out everywhere: every session of this person ends, this one too."""
    user = _user()
    ended = sessions.end_sessions_of(db.session, user.id, "everywhere", clock())
    services.record_access(
        db.session, user, "user.sessions.end_all", "user", user.id, client_address(), now=clock()
    )
    logout_user("everywhere")
    db.session.commit()
    flash(_("You are signed out everywhere (%(count)d sessions).", count=ended), "ok")
    return redirect(url_for(".login"))


@bp.post("/account/recovery-codes")
@login_required
def new_recovery_codes() -> Any:
    user = _user()
    if user.totp_confirmed_at is None:
        abort(400)
    if not factors.second_factor_is_fresh(second_factor_checked_at(), clock()):
        flash(_("Confirm it is you: enter a code from your app."), "error")
        return redirect(url_for(".second_factor", next=url_for(".security")))
    codes = factors.replace_recovery_codes(db.session, user, now=clock())
    db.session.commit()
    return render_template("auth/recovery_codes.html", codes=codes, next=url_for(".security"))


@bp.route("/account/reset-notice", methods=["GET", "POST"])
@login_required
def reset_notice() -> Any:
    """Told once, at the first sign-in after it: who reset this account, and when."""
    user = _user()
    target = _next_url()
    if request.method == "POST":
        resets.acknowledge_resets(db.session, user, clock())
        db.session.commit()
        return redirect(target)
    shown = resets.unacknowledged_resets(db.session, user)
    if not shown:
        return redirect(target)
    return render_template("auth/reset_notice.html", resets=shown, next=target)


# -- invitations and letters ---------------------------------------------------------------------


@bp.route("/join", methods=["GET", "POST"])
@public
def join() -> Any:
    """Redeem an invitation: a new account of one's own, or one more child on a signed-in one."""
    user = current_user() if fully_authenticated() else None
    form = request.form
    if request.method == "POST":
        try:
            if user is None and form.get("password") != form.get("password_again"):
                raise AuthError("password_mismatch", "the two passwords differ")
            account = invitations.redeem_invitation(
                db.session,
                form.get("code", ""),
                address=client_address(),
                now=clock(),
                user=user,
                username=form.get("username", ""),
                full_name=form.get("full_name", ""),
                password=form.get("password", "") if user is None else "",
            )
        except signin.Throttled as error:
            return _throttled_page(error, "auth/join.html", user=user, form=form)
        except AuthError as error:
            db.session.commit()  # a wrong code counts against the address; nothing else is kept
            flash(explain(error), "error")
            return render_template("auth/join.html", user=user, form=form), 200
        if user is None:
            login_user(account, second_factor_ok=not needs_second_factor(account))
        db.session.commit()
        flash(_("Welcome! Your account is linked to your child."), "ok")
        response = redirect(url_for(".children"))
        return _remember_device(response, account) if user is None else response
    return render_template("auth/join.html", user=user, form={})


# The value a browser keeps, in its session, for the letter it opened (never the code itself).
_RESET_CLAIM = "reset_claim"


@bp.get("/reset/<token>")
@public
def reset_link(token: str) -> Any:
    """A letter's link (or QR code): the code in the path is exchanged at once for a value in
    this browser's session, and the browser goes on to the plain ``/reset``, so the code stays
    in no history or log beyond this first request."""
    try:
        claim = resets.claim_code(db.session, token, address=client_address(), now=clock())
    except signin.Throttled as error:
        return _throttled_page(error, "auth/reset.html", step="code")
    except AuthError as error:
        db.session.commit()  # a wrong code counts against the address
        flash(explain(error), "error")
        return render_template("auth/reset.html", step="code"), 404
    db.session.commit()
    session[_RESET_CLAIM] = claim
    return redirect(url_for(".reset_password"))


@bp.route("/reset", methods=["GET", "POST"])
@public
def reset_password() -> Any:
    """Set one's password from a letter: first its code (unless the link brought it), then the
    new password. Nobody is signed in by it."""
    claim = session.get(_RESET_CLAIM)
    letter = resets.claimed_letter(db.session, claim, clock()) if isinstance(claim, str) else None
    if request.method == "POST" and letter is None:
        try:
            session[_RESET_CLAIM] = resets.claim_code(
                db.session, request.form.get("code", ""), address=client_address(), now=clock()
            )
        except signin.Throttled as error:
            return _throttled_page(error, "auth/reset.html", step="code")
        except AuthError as error:
            db.session.commit()
            flash(explain(error), "error")
            return render_template("auth/reset.html", step="code"), 200
        db.session.commit()
        return redirect(url_for(".reset_password"))
    if letter is None:
        session.pop(_RESET_CLAIM, None)
        return render_template("auth/reset.html", step="code")
    user = db.session.get_one(User, letter.user_id)
    if request.method == "POST":
        password = request.form.get("password", "")
        try:
            if password != request.form.get("password_again", ""):
                raise AuthError("password_mismatch", "the two passwords differ")
            resets.complete_password_reset(
                db.session, claim, password, ip=client_address(), now=clock()
            )
        except AuthError as error:
            flash(explain(error), "error")
            return render_template("auth/reset.html", step="password", person=user)
        logout_user("password")
        db.session.commit()
        flash(_("Your password is set. Sign in with it."), "ok")
        return redirect(url_for(".login"))
    return render_template("auth/reset.html", step="password", person=user)


# -- device keys ---------------------------------------------------------------------------------


def _log_key(user: User) -> LogKey | None:
    """The school's log key, to sign the key event into the school ledger (None if absent)."""
    school = db.session.get(School, user.school_id) if user.school_id is not None else None
    if school is None:
        return None
    try:
        return load_log_key(current_app.config["KEYS_DIR"], school.domain)
    except (LookupError, ValueError):
        current_app.logger.warning("no log key for %s: key event not in the ledger", school.domain)
        return None


def _device_json(key: DeviceKey) -> dict[str, Any]:
    return {
        "kid": key.kid,
        "alg": key.alg,
        "label": key.label,
        "created_at": key.created_at.isoformat().replace("+00:00", "Z"),
        "revoked_at": key.revoked_at.isoformat().replace("+00:00", "Z") if key.revoked_at else None,
        "last_seen_at": (
            key.last_seen_at.isoformat().replace("+00:00", "Z") if key.last_seen_at else None
        ),
        "after_reset": key.after_reset_id is not None,
    }


def _device_or_404(kid: str) -> DeviceKey:
    key = db.session.get(DeviceKey, kid[:64])
    if key is None:
        abort(404)
    return key


def _device_name(key: DeviceKey) -> str:
    return key.label or _("unnamed device")


@bp.get("/devices")
@login_required
def devices() -> Any:
    user = _user()
    return render_template(
        "auth/devices.html",
        keys=device_keys.device_keys_of(db.session, user),
        fresh=factors.second_factor_is_fresh(second_factor_checked_at(), clock()),
        can_enrol=policy.can_enrol_device(user),
        time_zone=school_zone(db.session, user.school_id),
        this_browser=device_name(request.headers.get("User-Agent")),
    )


@bp.post("/devices/<kid>/name")
@login_required
def rename_device(kid: str) -> Any:
    """The owner names a device on "My devices"."""
    key = _device_or_404(kid)
    try:
        device_keys.rename_device_key(
            db.session,
            key,
            request.form.get("label", ""),
            actor=_user(),
            ip=client_address(),
            now=clock(),
        )
    except AuthError as error:
        flash(explain(error), "error")
        return redirect(url_for(".devices")), 303
    db.session.commit()
    flash(_("The device is now called «%(name)s».", name=_device_name(key)), "ok")
    return redirect(url_for(".devices")), 303


@bp.route("/devices/<kid>/revoke", methods=["GET", "POST"])
@login_required
def revoke_device(kid: str) -> Any:
    """Revoking asks first, naming the device: only a form sent from that question (with
    ``confirmed``) revokes; any other request answers the question again and changes nothing."""
    key = _device_or_404(kid)
    user = _user()
    policy.require(policy.can_revoke_device(user, key), "not your device")
    if key.revoked_at is not None:
        flash(_("«%(name)s» is revoked already.", name=_device_name(key)), "ok")
        return redirect(url_for(".devices"))
    if request.method == "GET" or request.form.get("confirmed") != "yes":
        return render_template(
            "auth/revoke_device.html",
            key=key,
            owner=db.session.get(User, key.user_id),
            time_zone=school_zone(db.session, user.school_id),
        )
    device_keys.revoke_device_key(
        db.session, key, actor=user, ip=client_address(), now=clock(), log_key=_log_key(user)
    )
    db.session.commit()
    flash(
        _(
            "«%(name)s» is revoked. Entries it signs from now on are held back.",
            name=_device_name(key),
        ),
        "ok",
    )
    return redirect(url_for(".devices"))


@bp.get("/api/devices")
@login_required
def api_devices() -> Any:
    user = _user()
    return jsonify(
        devices=[_device_json(key) for key in device_keys.device_keys_of(db.session, user)],
        second_factor_fresh=factors.second_factor_is_fresh(second_factor_checked_at(), clock()),
    )


@bp.post("/api/devices")
@roles_required("teacher", "class_teacher")
def api_enrol_device() -> Any:
    """Enrol this browser's WebCrypto public key: ``{alg, public_key, label}`` -> 201
    ``{kid, ...}`` (200 when it was enrolled already)."""
    user = _user()
    if not factors.second_factor_is_fresh(second_factor_checked_at(), clock()):
        return jsonify(
            error="second_factor_required",
            message=_("Confirm it is you with your second factor, then try again."),
            confirm_url=url_for(
                ".second_factor", next=urlsplit(request.referrer or "").path or url_for(".devices")
            ),
        ), 403
    body = _json_body()
    # Unnamed: the browser and system the request comes from ("Chrome on Android").
    label = str(body.get("label") or "").strip() or device_name(request.headers.get("User-Agent"))
    try:
        key, created = device_keys.enrol_device_key(
            db.session,
            user,
            alg=str(body.get("alg", "")),
            public_key=body.get("public_key"),  # type: ignore[arg-type]
            label=label or "",
            ip=client_address(),
            now=clock(),
            log_key=_log_key(user),
        )
    except AuthError as error:
        return _json_error(error, 409 if error.code in ("key_in_use", "revoked_key") else 400)
    db.session.commit()
    return jsonify(_device_json(key)), 201 if created else 200


@bp.post("/api/devices/<kid>/name")
@login_required
def api_rename_device(kid: str) -> Any:
    """The grid names its device: ``{label}`` -> 200 with the device."""
    key = _device_or_404(kid)
    try:
        device_keys.rename_device_key(
            db.session,
            key,
            _json_body().get("label"),
            actor=_user(),
            ip=client_address(),
            now=clock(),
        )
    except AuthError as error:
        return _json_error(error)
    db.session.commit()
    return jsonify(_device_json(key))


# -- administration ------------------------------------------------------------------------------


def _managed_user(user_id: int) -> User:
    target = db.session.get(User, user_id)
    if target is None:
        abort(404)
    policy.require(policy.can_manage_user(_user(), target), "not a user of your school")
    return target


@bp.get("/admin/users")
@roles_required("school_admin")
def admin_users() -> Any:
    admin = _user()
    users = list(
        db.session.scalars(
            select(User).where(User.school_id == admin.school_id).order_by(User.full_name)
        )
    )
    staff = [u for u in users if any(g.role in STAFF_ROLES for g in u.roles)]
    others = [u for u in users if u not in staff and u.roles]
    return render_template(
        "auth/admin_users.html",
        users=staff,
        others=others,
        now=clock(),
        pending=len(resets.pending_resets(db.session, admin.school_id or 0, clock())),
    )


@bp.route("/admin/users/new", methods=["GET", "POST"])
@roles_required("school_admin")
def admin_new_user() -> Any:
    admin = _user()
    policy.require(policy.can_administer_school(admin, admin.school_id))
    form = request.form
    if request.method == "POST":
        roles = [role for role in form.getlist("roles") if role in ADMIN_GRANTABLE]
        try:
            if not roles:
                raise AuthError("bad_role", "choose at least one role")
            user = services.create_account(
                db.session,
                school_id=admin.school_id,
                username=form.get("username", ""),
                full_name=form.get("full_name", ""),
                roles=roles,
                actor=admin,
                ip=client_address(),
                now=clock(),
            )
            letter = resets.welcome_letter(
                db.session, user, actor=admin, ip=client_address(), now=clock()
            )
        except AuthError as error:
            flash(explain(error), "error")
        else:
            db.session.commit()
            return _render_letter(letter)
    return render_template("auth/admin_user_new.html", roles=ADMIN_GRANTABLE, form=form)


def _render_letter(letter: resets.Letter) -> Any:
    school = db.session.get(School, letter.user.school_id) if letter.user.school_id else None
    link = public_url(".reset_link", token=letter.path_code)
    return render_template(
        "auth/letter.html",
        letter=letter,
        school=school,
        address=public_url(".reset_password"),
        qr=factors.qr_data_uri(link),
    )


@bp.route("/admin/users/<int:user_id>/reset", methods=["GET", "POST"])
@roles_required("school_admin")
def admin_request_reset(user_id: int) -> Any:
    """Ask for a reset of someone's password or second factor; another administrator (or the
    operator) approves it."""
    target = _managed_user(user_id)
    form = request.form
    if request.method == "POST":
        try:
            resets.request_reset(
                db.session,
                target,
                form.get("kind", ""),
                form.get("reason", ""),
                actor=_user(),
                ip=client_address(),
                now=clock(),
            )
        except AuthError as error:
            flash(explain(error), "error")
        else:
            db.session.commit()
            flash(
                _(
                    "The reset of %(name)s waits for a second administrator's approval (or the "
                    "operator's, in a school with one administrator).",
                    name=target.full_name,
                ),
                "ok",
            )
            return redirect(url_for(".admin_resets"))
    return render_template(
        "auth/admin_reset_request.html", target=target, form=form, kinds=resets.RESET_KINDS
    )


@bp.get("/admin/resets")
@roles_required("school_admin")
def admin_resets() -> Any:
    admin = _user()
    policy.require(policy.can_administer_school(admin, admin.school_id))
    return render_template(
        "auth/admin_resets.html",
        pending=resets.pending_resets(db.session, admin.school_id or 0, clock()),
        recent=resets.recent_resets(db.session, admin.school_id or 0),
        now=clock(),
    )


def _school_reset(reset_id: int) -> AccountReset:
    reset = db.session.get(AccountReset, reset_id)
    if reset is None or reset.school_id != _user().school_id:
        abort(404)
    return reset


@bp.post("/admin/resets/<int:reset_id>/approve")
@roles_required("school_admin")
def admin_approve_reset(reset_id: int) -> Any:
    reset = _school_reset(reset_id)
    admin = _user()
    try:
        resets.approve_reset(
            db.session,
            reset,
            approver=admin,
            ip=client_address(),
            now=clock(),
            log_key=_log_key(admin),
        )
    except AuthError as error:
        flash(explain(error), "error")
        return redirect(url_for(".admin_resets"))
    db.session.commit()
    flash(_("The reset is approved and applied."), "ok")
    return redirect(url_for(".admin_resets"))


@bp.post("/admin/resets/<int:reset_id>/cancel")
@roles_required("school_admin")
def admin_cancel_reset(reset_id: int) -> Any:
    reset = _school_reset(reset_id)
    try:
        resets.cancel_reset(db.session, reset, actor=_user(), ip=client_address(), now=clock())
    except AuthError as error:
        flash(explain(error), "error")
    else:
        db.session.commit()
        flash(_("The reset is cancelled."), "ok")
    return redirect(url_for(".admin_resets"))


@bp.post("/admin/resets/<int:reset_id>/letter")
@roles_required("school_admin")
def admin_print_letter(reset_id: int) -> Any:
    """The letter with the code to set a new password: shown this once."""
    reset = _school_reset(reset_id)
    try:
        letter = resets.print_letter(
            db.session, reset, actor=_user(), ip=client_address(), now=clock()
        )
    except AuthError as error:
        flash(explain(error), "error")
        return redirect(url_for(".admin_resets"))
    db.session.commit()
    return _render_letter(letter)


@bp.post("/admin/users/<int:user_id>/lock")
@roles_required("school_admin")
def admin_lock(user_id: int) -> Any:
    target = _managed_user(user_id)
    services.lock_account(db.session, target, actor=_user(), ip=client_address(), now=clock())
    db.session.commit()
    flash(_("%(name)s is locked and signed out everywhere.", name=target.full_name))
    return redirect(url_for(".admin_users"))


@bp.post("/admin/users/<int:user_id>/unlock")
@roles_required("school_admin")
def admin_unlock(user_id: int) -> Any:
    target = _managed_user(user_id)
    services.unlock_account(db.session, target, actor=_user(), ip=client_address(), now=clock())
    db.session.commit()
    flash(_("%(name)s may sign in again.", name=target.full_name))
    return redirect(url_for(".admin_users"))


@bp.route("/admin/invitations", methods=["GET", "POST"])
@roles_required("school_admin")
@personal_data("school")
def admin_invitations() -> Any:
    """Print a one-time code for a parent or student (the page lists the school's students)."""
    admin = _user()
    policy.require(policy.can_administer_school(admin, admin.school_id))
    if request.method == "POST":
        try:
            invitation, code = invitations.create_invitation(
                db.session,
                student_id=id_arg(request.form, "student_id") or 0,
                role=request.form.get("role", ""),
                actor=admin,
                ip=client_address(),
                now=clock(),
            )
        except AuthError as error:
            flash(explain(error), "error")
        else:
            db.session.commit()
            student = db.session.get_one(Student, invitation.student_id)
            school = db.session.get_one(School, invitation.school_id)
            return render_template(
                "auth/invitation_code.html",
                invitation=invitation,
                code=code,
                student=student,
                school=school,
                join_url=public_url(".join"),
            )
    students = list(
        db.session.scalars(
            select(Student)
            .where(Student.school_id == admin.school_id)
            .order_by(Student.last_name, Student.first_name, Student.id)
        )
    )
    by_id = {student.id: student for student in students}
    return render_template(
        "auth/admin_invitations.html",
        students=students,
        pending=[
            (invitation, by_id.get(invitation.student_id))
            for invitation in invitations.pending_invitations(db.session, admin.school_id, clock())
        ],
    )


def _filter_problem(error: access_log_reading.BadFilter) -> str:
    if error.field == "person":
        return _("Choose a person of your school from the list.")
    if error.field == "pupil":
        return _("Choose a pupil of your school from the list.")
    if error.field in ("from", "to"):
        return _("Give dates like 2026-11-21, between 2000 and 2100, the first not after the last.")
    return _("A number in this request is not valid: %(name)s.", name=error.field)


@bp.get("/admin/access-log")
@roles_required("school_admin")
@personal_data("school")
def access_log() -> Any:
    """Who did what, when on the school's clock, from which browser; filtered by person, pupil
    and dates. A filter that is not one answers 400 with the form, and reads no row."""
    admin = _user()
    policy.require(policy.can_read_access_log(admin, admin.school_id))
    school_id = admin.school_id or 0
    time_zone = school_zone(db.session, admin.school_id)
    context: dict[str, Any] = {
        "people": access_log_reading.people_of(db.session, school_id),
        "pupils": access_log_reading.pupils_of(db.session, school_id),
        "time_zone": time_zone,
        "chosen": request.args,
    }
    try:
        found = access_log_reading.parse_filter(db.session, school_id, request.args)
    except access_log_reading.BadFilter as error:
        context.update(lines=[], problem=_filter_problem(error), more=None)
        return render_template("auth/access_log.html", **context), 400
    rows = access_log_reading.log_rows(db.session, school_id, found, time_zone)
    more = (
        found.query_args(before=rows[-1].id) if len(rows) == access_log_reading.PAGE_SIZE else None
    )
    lines = access_log_reading.describe(db.session, rows, time_zone)
    return render_template("auth/access_log.html", lines=lines, problem=None, more=more, **context)


# -- a parent's or student's own child -----------------------------------------------------------
# The portal (journal.portal) is the full read-only view; these pages are the minimal one.


@bp.get("/account/children")
@roles_required("parent", "student")
@personal_data("student_list")
def children() -> Any:
    return render_template("auth/children.html", children=services.children(db.session, _user()))


@bp.get("/account/children/<int:student_id>")
@login_required
@personal_data("student", "student_id")
def child_record(student_id: int) -> Any:
    record = services.student_record(db.session, _user(), student_id)
    return render_template("auth/child_record.html", record=record)


@bp.get("/api/account/children/<int:student_id>/grades")
@login_required
@personal_data("student", "student_id")
def api_child_record(student_id: int) -> Any:
    record = services.student_record(db.session, _user(), student_id)
    return jsonify(
        student={"id": record.student_id, "name": record.name},
        entries=[
            {
                "date": line.date.isoformat() if line.date else None,
                "subject": line.subject,
                "kind": line.kind,
                "component": line.component,
                "value": line.value,
                "corrects": line.corrects,
                "reason": line.reason,
                "superseded": line.superseded,
            }
            for line in record.lines
        ],
    )

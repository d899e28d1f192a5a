"""Accounts and trust on the web: sign-in, second factor, invitations, reset links, device keys,
account administration, the access log, and a parent's read-only view of their own child.

Views parse the request, call one service, commit, and render; decisions about data live in
``auth.policy`` and ``auth.services``.
"""

from __future__ import annotations

import base64
import math
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
from sqlalchemy import select

from journal.db import db
from journal.keys import LogKey, load_log_key
from journal.models import School, Student

from . import policy, services
from .access import (
    REFUSED_BY,
    client_address,
    clock,
    current_user,
    fully_authenticated,
    login_required,
    login_user,
    logout_user,
    mark_second_factor_passed,
    needs_second_factor,
    personal_data,
    public,
    roles_required,
    second_factor_checked_at,
    signed_in_required,
)
from .models import STAFF_ROLES, DeviceKey, User
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
            "Too many failed attempts: the account is locked. Try again in %(minutes)d min.",
            minutes=minutes,
        )
    messages = {
        "bad_credentials": _("Wrong username or password."),
        "address_limited": _(
            "Too many failed attempts from your network. Wait 15 minutes and try again."
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
    }
    return messages.get(error.code, error.message)


def _next_url() -> str:
    target = request.values.get("next", "")
    return (
        target
        if target.startswith("/") and not target.startswith("//")
        else url_for("journal.home")
    )


def _user() -> User:
    user = current_user()
    assert user is not None  # the access decorators guarantee it
    return user


def _relying_party() -> tuple[str, str]:
    """WebAuthn relying-party id and origin: configured, else this request's host."""
    rp_id = current_app.config.get("WEBAUTHN_RP_ID") or (request.host.split(":")[0])
    origin = current_app.config.get("WEBAUTHN_ORIGIN") or request.host_url.rstrip("/")
    return rp_id, origin


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


# -- signing in ----------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    if request.method == "POST":
        try:
            user = services.authenticate(
                db.session,
                request.form.get("username", ""),
                request.form.get("password", ""),
                address=client_address(),
                now=clock(),
            )
        except AuthError as error:
            db.session.commit()  # the failure counts
            flash(explain(error), "error")
            status = 429 if error.code in ("locked", "address_limited") else 200
            return render_template(
                "auth/login.html", username=request.form.get("username", "")
            ), status
        login_user(user, second_factor_ok=not needs_second_factor(user))
        db.session.commit()
        if needs_second_factor(user):
            return redirect(url_for("auth.second_factor", next=_next_url()))
        return redirect(_next_url())
    return render_template("auth/login.html", username="")


@bp.post("/login/passkey/options")
@public
def login_passkey_options() -> Any:
    rp_id, _origin = _relying_party()
    options, challenge = services.passkey_authentication_options(db.session, rp_id=rp_id)
    return _start_passkey_ceremony("login", options, challenge)


@bp.post("/login/passkey")
@public
def login_passkey() -> Any:
    """Password-free sign-in for parents and students; staff sign in with a password first."""
    rp_id, origin = _relying_party()
    try:
        user = services.authenticate_passkey(
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
    return jsonify(redirect=_next_url())


@bp.post("/logout")
@signed_in_required
def logout() -> Any:
    logout_user()
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
    if not services.has_second_factor(db.session, user):
        return redirect(url_for("auth.enrol_second_factor", next=_next_url()))
    if request.method == "POST":
        try:
            services.verify_second_factor(
                db.session,
                user,
                request.form.get("code", ""),
                address=client_address(),
                now=clock(),
            )
        except AuthError as error:
            db.session.commit()
            flash(explain(error), "error")
            if error.code in ("locked", "disabled"):
                logout_user()
                return redirect(url_for("auth.login"))
            return render_template("auth/second_factor.html", next=_next_url()), 200
        mark_second_factor_passed()
        db.session.commit()
        return redirect(_next_url())
    return render_template("auth/second_factor.html", next=_next_url())


@bp.post("/second-factor/passkey/options")
@signed_in_required
def second_factor_passkey_options() -> Any:
    rp_id, _origin = _relying_party()
    options, challenge = services.passkey_authentication_options(
        db.session, rp_id=rp_id, user=_user()
    )
    return _start_passkey_ceremony("second_factor", options, challenge)


@bp.post("/second-factor/passkey")
@signed_in_required
def second_factor_passkey() -> Any:
    rp_id, origin = _relying_party()
    try:
        services.authenticate_passkey(
            db.session,
            _json_body(),
            challenge=_take_challenge("second_factor"),
            rp_id=rp_id,
            origin=origin,
            now=clock(),
            user=_user(),
        )
    except AuthError as error:
        return _json_error(error)
    mark_second_factor_passed()
    db.session.commit()
    return jsonify(redirect=_next_url())


@bp.route("/second-factor/enrol", methods=["GET", "POST"])
@signed_in_required
def enrol_second_factor() -> Any:
    """First second factor: an authenticator app (TOTP), or a passkey."""
    user = _user()
    if services.has_second_factor(db.session, user):
        return redirect(url_for("auth.second_factor", next=_next_url()))
    secret = session.get("totp_pending")
    if not isinstance(secret, str):
        secret = session["totp_pending"] = services.new_totp_secret()
    if request.method == "POST":
        try:
            codes = services.confirm_totp(
                db.session, user, secret, request.form.get("code", ""), now=clock()
            )
        except AuthError as error:
            flash(explain(error), "error")
        else:
            session.pop("totp_pending", None)
            mark_second_factor_passed()
            db.session.commit()
            return render_template("auth/recovery_codes.html", codes=codes, next=_next_url())
    uri = services.totp_uri(user, secret)
    return render_template(
        "auth/enrol.html",
        secret=secret,
        grouped_secret=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        qr=services.qr_data_uri(uri),
        next=_next_url(),
    )


def _may_add_passkey(user: User) -> bool:
    """Fully signed in, or enrolling the very first second factor."""
    return fully_authenticated() or not services.has_second_factor(db.session, user)


@bp.post("/account/passkeys/options")
@signed_in_required
def passkey_registration_options() -> Any:
    user = _user()
    if not _may_add_passkey(user):
        raise Forbidden("sign in with your second factor first")
    rp_id, _origin = _relying_party()
    options, challenge = services.passkey_registration_options(
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
    body = _json_body()
    rp_id, origin = _relying_party()
    try:
        services.add_passkey(
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
    return jsonify(redirect=_next_url() if request.args.get("next") else url_for(".security"))


@bp.post("/account/passkeys/<int:passkey_id>/remove")
@login_required
def remove_passkey(passkey_id: int) -> Any:
    try:
        services.remove_passkey(db.session, _user(), passkey_id)
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
        passkeys=services.passkeys_of(db.session, user),
        recovery_left=services.unused_recovery_codes(db.session, user),
    )


@bp.post("/account/recovery-codes")
@login_required
def new_recovery_codes() -> Any:
    user = _user()
    if user.totp_confirmed_at is None:
        abort(400)
    if not services.second_factor_is_fresh(second_factor_checked_at(), clock()):
        flash(_("Confirm it is you: enter a code from your app."), "error")
        return redirect(url_for(".second_factor", next=url_for(".security")))
    codes = services.replace_recovery_codes(db.session, user, now=clock())
    db.session.commit()
    return render_template("auth/recovery_codes.html", codes=codes, next=url_for(".security"))


# -- invitations and reset links -----------------------------------------------------------------


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
            account = services.redeem_invitation(
                db.session,
                form.get("code", ""),
                address=client_address(),
                now=clock(),
                user=user,
                username=form.get("username", ""),
                full_name=form.get("full_name", ""),
                password=form.get("password", "") if user is None else "",
            )
        except AuthError as error:
            db.session.commit()  # a wrong code counts against the address; nothing else is kept
            flash(explain(error), "error")
            return render_template("auth/join.html", user=user, form=form), 200
        if user is None:
            login_user(account, second_factor_ok=not needs_second_factor(account))
        db.session.commit()
        flash(_("Welcome! Your account is linked to your child."), "ok")
        return redirect(url_for(".children"))
    return render_template("auth/join.html", user=user, form={})


@bp.route("/reset/<token>", methods=["GET", "POST"])
@public
def reset_password(token: str) -> Any:
    if services.find_password_reset(db.session, token, clock()) is None:
        return render_template("auth/reset.html", valid=False), 404
    if request.method == "POST":
        password = request.form.get("password", "")
        try:
            if password != request.form.get("password_again", ""):
                raise AuthError("password_mismatch", "the two passwords differ")
            services.complete_password_reset(
                db.session, token, password, ip=client_address(), now=clock()
            )
        except AuthError as error:
            flash(explain(error), "error")
            return render_template("auth/reset.html", valid=True)
        db.session.commit()
        logout_user()
        flash(_("Your password is set. Sign in with it."), "ok")
        return redirect(url_for(".login"))
    return render_template("auth/reset.html", valid=True)


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
    }


@bp.get("/devices")
@login_required
def devices() -> Any:
    user = _user()
    return render_template(
        "auth/devices.html",
        keys=services.device_keys_of(db.session, user),
        fresh=services.second_factor_is_fresh(second_factor_checked_at(), clock()),
        can_enrol=policy.can_enrol_device(user),
    )


@bp.post("/devices/<kid>/revoke")
@login_required
def revoke_device(kid: str) -> Any:
    key = db.session.get(DeviceKey, kid)
    if key is None:
        abort(404)
    user = _user()
    services.revoke_device_key(
        db.session, key, actor=user, ip=client_address(), now=clock(), log_key=_log_key(user)
    )
    db.session.commit()
    flash(_("The device key was revoked. Entries it signs from now on are held back."), "ok")
    return redirect(url_for(".devices"))


@bp.get("/api/devices")
@login_required
def api_devices() -> Any:
    user = _user()
    return jsonify(
        devices=[_device_json(key) for key in services.device_keys_of(db.session, user)],
        second_factor_fresh=services.second_factor_is_fresh(second_factor_checked_at(), clock()),
    )


@bp.post("/api/devices")
@roles_required("teacher", "class_teacher")
def api_enrol_device() -> Any:
    """Enrol this browser's WebCrypto public key. See docs in the report / README:
    ``{alg, public_key, label}`` -> 201 ``{kid, ...}`` (200 when it was enrolled already)."""
    user = _user()
    if not services.second_factor_is_fresh(second_factor_checked_at(), clock()):
        return jsonify(
            error="second_factor_required",
            message=_("Confirm it is you with your second factor, then try again."),
            confirm_url=url_for(
                ".second_factor", next=urlsplit(request.referrer or "").path or url_for(".devices")
            ),
        ), 403
    body = _json_body()
    try:
        key, created = services.enrol_device_key(
            db.session,
            user,
            alg=str(body.get("alg", "")),
            public_key=body.get("public_key"),  # type: ignore[arg-type]
            label=str(body.get("label") or ""),
            ip=client_address(),
            now=clock(),
            log_key=_log_key(user),
        )
    except AuthError as error:
        return _json_error(error, 409 if error.code in ("key_in_use", "revoked_key") else 400)
    db.session.commit()
    return jsonify(_device_json(key)), 201 if created else 200


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
    return render_template("auth/admin_users.html", users=staff, now=clock())


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
            user, token = services.create_account(
                db.session,
                school_id=admin.school_id,
                username=form.get("username", ""),
                full_name=form.get("full_name", ""),
                roles=roles,
                actor=admin,
                ip=client_address(),
                now=clock(),
            )
        except AuthError as error:
            flash(explain(error), "error")
        else:
            db.session.commit()
            return render_template(
                "auth/one_time_link.html",
                target=user,
                link=url_for(".reset_password", token=token, _external=True),
            )
    return render_template("auth/admin_user_new.html", roles=ADMIN_GRANTABLE, form=form)


@bp.post("/admin/users/<int:user_id>/reset-password")
@roles_required("school_admin")
def admin_reset_password(user_id: int) -> Any:
    target = _managed_user(user_id)
    token = services.issue_password_reset(
        db.session, target, actor=_user(), ip=client_address(), now=clock()
    )
    db.session.commit()
    return render_template(
        "auth/one_time_link.html",
        target=target,
        link=url_for(".reset_password", token=token, _external=True),
    )


@bp.post("/admin/users/<int:user_id>/reset-second-factor")
@roles_required("school_admin")
def admin_reset_second_factor(user_id: int) -> Any:
    target = _managed_user(user_id)
    services.reset_second_factor(
        db.session, target, actor=_user(), ip=client_address(), now=clock()
    )
    db.session.commit()
    flash(_("%(name)s enrols a new second factor at the next sign-in.", name=target.full_name))
    return redirect(url_for(".admin_users"))


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
            invitation, code = services.create_invitation(
                db.session,
                student_id=request.form.get("student_id", type=int) or 0,
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
                join_url=url_for(".join", _external=True),
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
            for invitation in services.pending_invitations(db.session, admin.school_id, clock())
        ],
    )


@bp.get("/admin/access-log")
@roles_required("school_admin")
def access_log() -> Any:
    admin = _user()
    policy.require(policy.can_read_access_log(admin, admin.school_id))
    rows = services.access_log_page(
        db.session, admin.school_id or 0, before_id=request.args.get("before", type=int)
    )
    return render_template("auth/access_log.html", rows=rows)


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

"""A person's own account: passkeys, sessions, recovery codes, the news of a reset; joining
by invitation and resetting by link or letter."""

from __future__ import annotations

from typing import Any

from flask import (
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _

from journal.clock import school_zone
from journal.db import db

from .. import factors, invitations, resets, services, sessions, signin
from ..access import (
    client_address,
    clock,
    current_session,
    current_user,
    fully_authenticated,
    login_required,
    login_user,
    logout_user,
    mark_second_factor_passed,
    needs_second_factor,
    public,
    second_factor_checked_at,
    signed_in_required,
)
from ..models import User
from ..policy import Forbidden
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
from .login import _remember_device, _throttled_page


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

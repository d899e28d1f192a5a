"""Accounts and trust on the web: sign-in, second factor, sessions, invitations, resets and
letters, device keys, account administration, the access log, and a parent's read-only view of
their own child.

The pages live in one module per subject (``login``, ``account``, ``devices``, ``admin``,
``children``), all on the one ``auth`` blueprint made here with the helpers they share.

Views parse the request, call one service, commit, and render; decisions about data live in
``auth.policy`` and the service modules (``auth.signin``, ``auth.factors``, ``auth.resets``...).
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
    jsonify,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _

from journal.config import is_development

from .. import signin
from ..access import REFUSED_BY, clock, current_user, local_redirect_target
from ..browsers import device_name
from ..models import User
from ..policy import Forbidden
from ..services import AuthError

bp = Blueprint("auth", __name__, template_folder="../templates")

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


# The pages register themselves on ``bp`` when imported; they import the helpers above.
from . import account, admin, children, devices, login  # noqa: E402, F401

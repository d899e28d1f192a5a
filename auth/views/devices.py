"""Device keys: the pages and the JSON API that enrol, name and revoke them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import (
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _

from journal.clock import school_zone
from journal.db import db
from journal.keys import LogKey, load_log_key
from journal.models import School

from .. import devices as device_keys
from .. import factors, policy
from ..access import (
    client_address,
    clock,
    login_required,
    roles_required,
    second_factor_checked_at,
)
from ..browsers import device_name
from ..models import DeviceKey, User
from ..services import AuthError
from . import _json_body, _json_error, _user, bp, explain

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

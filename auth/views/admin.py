"""Account administration: staff accounts, resets and their letters, locks, invitations, and
the access log."""

from __future__ import annotations

from typing import Any

from flask import (
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import select

from journal.clock import school_zone
from journal.db import db
from journal.ids import id_arg
from journal.models import School, Student

from .. import access_log as access_log_reading
from .. import factors, invitations, policy, resets, services
from ..access import (
    client_address,
    clock,
    personal_data,
    public_url,
    roles_required,
)
from ..models import STAFF_ROLES, AccountReset, User
from ..services import AuthError
from . import ADMIN_GRANTABLE, _user, bp, explain
from .devices import _log_key

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

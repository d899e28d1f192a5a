"""The school admin's pages for the year's lifecycle: the terms and their closing (the
pre-close report, a second explicit confirmation, a written reason when early or out of order),
the assessment plan of each class, decisions about incomplete pupils, and closing the year.

Also the words every page uses for results and times: ``result_label``, ``term_name`` and the
``school_time`` filter (the school's time zone).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from archive.timestamps import TimestampError
from auth.access import client_address, current_user, roles_required
from auth.services import record_access

from ..collation import class_key
from ..db import db, utcnow
from ..ids import id_arg
from ..keys import load_log_key
from ..models import AssessmentPlan, ClassGroup, School, SchoolYear, Student, Subject, Term
from .closing import (
    HOLD_MESSAGES,
    TermError,
    class_subjects,
    close_term,
    close_year,
    decide_incomplete,
    pre_close_report,
    year_holds,
)
from .plan import PlanError, set_plan
from .rules import rule_id_for, term_kind_of

bp = Blueprint("year", __name__)


# -- words for results and times, on every page ----------------------------------------------------


@bp.app_template_global()
def result_label(code: str) -> str:
    """A term or year result as people read it: the grade itself, or the word for it."""
    words = {
        "pass": _("passed"),
        "fail": _("not passed"),
        "not_attested": _("not attested"),
        "exempt": _("exempt"),
        "incomplete": _("incomplete"),
    }
    return words.get(code, code)


@bp.app_template_filter()
def component_label(code: str) -> str:
    return {"SOR": _("SOR"), "SOCh": _("SOCh"), "FO": _("FO")}.get(code, code)


@bp.app_template_global()
def term_name(term: Term) -> str:
    if term.kind == "half":
        return _("Half-year %(number)s", number=term.number)
    return _("Quarter %(number)s", number=term.number)


# -- terms and closing -----------------------------------------------------------------------------


def admin_school() -> School:
    user = current_user()
    if user is None or user.school_id is None:
        abort(403)
    return db.session.get_one(School, user.school_id)


def own_term(term_id: int) -> Term:
    term = db.session.get(Term, term_id)
    if term is None or db.session.get_one(SchoolYear, term.school_year_id).school_id != (
        admin_school().id
    ):
        abort(404)
    return term


def own_year(year_id: int) -> SchoolYear:
    year = db.session.get(SchoolYear, year_id)
    if year is None or year.school_id != admin_school().id:
        abort(404)
    return year


def refused(error: TermError) -> None:
    flash(_(error.message, **error.params), "error")


@bp.get("/admin/terms")
@roles_required("school_admin")
def terms() -> Any:
    school = admin_school()
    years = db.session.scalars(
        select(SchoolYear).where(SchoolYear.school_id == school.id).order_by(SchoolYear.starts_on)
    ).all()
    classes = {  # the pedagogical council's page of each class, once the year is closed
        year.id: sorted(
            db.session.scalars(select(ClassGroup).where(ClassGroup.school_year_id == year.id)),
            key=lambda c: class_key(c.name, c.grade_level),
        )
        for year in years
        if year.closed_at is not None
    }
    return render_template("admin/terms.html", years=years, classes=classes)


@bp.get("/admin/terms/<int:term_id>/close")
@roles_required("school_admin")
def prepare_close(term_id: int) -> Any:
    """The pre-close report and the closing form: nothing is closed by looking."""
    term = own_term(term_id)
    if term.closed_at is not None:
        flash(_("The term is already closed."), "info")
        return redirect(url_for(".terms"))
    report = pre_close_report(db.session, term)
    holds = [_(HOLD_MESSAGES[h], day=term.ends_on.isoformat()) for h in report.holds]
    return render_template("admin/close_term.html", term=term, report=report, holds=holds)


def _close(closer: Any, what: Any, logged: tuple[str, str, int]) -> str | None:
    """Close a term or a year (``closer``) as the signed-in admin, in a savepoint so that a
    failure leaves nothing half done, and log it; returns the refusal to show, if any."""
    school = admin_school()
    try:
        with db.session.begin_nested():
            closer(
                db.session,
                what,
                load_log_key(current_app.config["KEYS_DIR"], school.domain),
                closed_by=current_user(),
                reason=request.form.get("reason", ""),
            )
    except TermError as error:
        return _(error.message, **error.params)
    except TimestampError:
        return _("The timestamp authority did not answer: nothing was closed.")
    action, target_type, target_id = logged
    record_access(
        db.session, current_user(), action, target_type, target_id, client_address(),
        school_id=school.id,
    )  # fmt: skip
    return None


@bp.post("/admin/terms/<int:term_id>/close")
@roles_required("school_admin")
def close_term_view(term_id: int) -> Any:
    term = own_term(term_id)
    target = url_for(".prepare_close", term_id=term_id)
    if request.form.get("confirm") != "yes":
        flash(_("Nothing was closed: tick the confirmation after reading the report."), "error")
        return redirect(target)
    refusal = _close(close_term, term, ("close_term", "term", term.id))
    if refusal is not None:
        flash(refusal, "error")
        return redirect(target)
    db.session.commit()
    flash(_("%(term)s is closed: the results are sealed in every journal.", term=term_name(term)))
    return redirect(url_for(".terms"))


@bp.post("/admin/terms/<int:term_id>/decisions")
@roles_required("school_admin")
def decide(term_id: int) -> Any:
    """Count what is there for an incomplete pupil (illness, an excused absence), with a reason."""
    term = own_term(term_id)
    school = admin_school()
    class_group = db.session.get(ClassGroup, id_arg(request.form, "class_id") or 0)
    subject = db.session.get(Subject, id_arg(request.form, "subject_id") or 0)
    student = db.session.get(Student, id_arg(request.form, "student_id") or 0)
    if (
        class_group is None
        or subject is None
        or student is None
        or class_group.school_id != school.id
        or subject.school_id != school.id
        or student.school_id != school.id
    ):
        abort(404)
    try:
        decide_incomplete(
            db.session,
            class_group,
            subject,
            term,
            student,
            load_log_key(current_app.config["KEYS_DIR"], school.domain),
            decided_by=current_user(),  # type: ignore[arg-type]
            reason=request.form.get("reason", ""),
        )
    except TermError as error:
        refused(error)
        return redirect(url_for(".prepare_close", term_id=term_id))
    db.session.commit()
    flash(_("Decision recorded: the result is computed from the work there is."))
    return redirect(url_for(".prepare_close", term_id=term_id))


@bp.get("/admin/years/<int:year_id>/close")
@roles_required("school_admin")
def prepare_year_close(year_id: int) -> Any:
    year = own_year(year_id)
    holds = year_holds(db.session, year, utcnow())
    open_terms = [t for t in year.terms if t.closed_at is None]
    return render_template(
        "admin/close_year.html", year=year, open_terms=open_terms, early=bool(holds)
    )


@bp.post("/admin/years/<int:year_id>/close")
@roles_required("school_admin")
def close_year_view(year_id: int) -> Any:
    year = own_year(year_id)
    target = url_for(".prepare_year_close", year_id=year_id)
    if request.form.get("confirm") != "yes":
        flash(_("Nothing was closed: tick the confirmation first."), "error")
        return redirect(target)
    refusal = _close(close_year, year, ("close_year", "school_year", year.id))
    if refusal is not None:
        flash(refusal, "error")
        return redirect(target)
    db.session.commit()
    flash(_("The school year %(name)s is closed: year results are sealed.", name=year.name))
    return redirect(url_for(".terms"))


# -- the assessment plan ---------------------------------------------------------------------------


@bp.route("/admin/classes/<int:class_id>/plan", methods=["GET", "POST"])
@roles_required("school_admin")
def plan(class_id: int) -> Any:
    school = admin_school()
    class_group = db.session.get(ClassGroup, class_id)
    if class_group is None or class_group.school_id != school.id:
        abort(404)
    year_terms = list(
        db.session.scalars(
            select(Term)
            .where(Term.school_year_id == class_group.school_year_id)
            .order_by(Term.kind.desc(), Term.number)
        )
    )
    subjects = [
        s
        for s in class_subjects(db.session, class_group)
        if rule_id_for(s, class_group) != "kz-no-grades"
    ]
    if request.method == "POST":
        try:
            for subject in subjects:
                for term in year_terms:
                    if term.kind != term_kind_of(subject) or term.closed_at is not None:
                        continue
                    prefix = f"{subject.id}-{term.id}"
                    count = request.form.get(f"sor-{prefix}", "0").strip() or "0"
                    set_plan(
                        db.session,
                        class_group,
                        subject,
                        term,
                        soch_planned=request.form.get(f"soch-{prefix}") == "on",
                        sor_count=int(count) if count.isdigit() else -1,
                    )
        except PlanError as error:
            flash(_(error.message), "error")
            return redirect(url_for(".plan", class_id=class_id))
        db.session.commit()
        flash(_("Assessment plan saved."))
        return redirect(url_for(".plan", class_id=class_id))
    plans = {
        (p.subject_id, p.term_id): p
        for p in db.session.scalars(
            select(AssessmentPlan).where(AssessmentPlan.class_group_id == class_id)
        )
    }
    return render_template(
        "admin/plan.html",
        class_group=class_group,
        subjects=subjects,
        terms=year_terms,
        plans=plans,
        term_kind_of=term_kind_of,
    )

"""The school admin's council page for a class: the list made from the sealed year grades with
each pupil's proposed decision, the council's decisions with the protocol (one form, all or
nothing), and for graduating classes the exam commission's exam and final grades."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from auth.access import client_address, current_user, personal_data, roles_required
from auth.services import record_access

from ..db import db
from ..ids import id_arg, parse_id
from ..keys import load_log_key
from ..models import ClassGroup, School, SchoolYear, Student, Subject, TeachingAssignment
from ..pupils import class_pupils
from ..year.closing import class_subjects
from ..year.rules import NO_GRADES_RULE, rule_id_for
from ..year.views import admin_school
from .records import (
    Choice,
    CouncilError,
    proposals,
    record_attestation_grade,
    record_decisions,
    rule_of,
)
from .rules import DECISIONS

bp = Blueprint("council", __name__)

DECISION_WORDS = {
    "promoted": _l("promoted"),
    "promoted_extra_assessment": _l("promoted with an extra assessment"),
    "retained": _l("retained"),
    "admitted_final_attestation": _l("admitted to the final attestation"),
    "graduated": _l("graduated"),
    "left": _l("left the school"),
}


def own_class(class_id: int) -> ClassGroup:
    class_group = db.session.get(ClassGroup, class_id)
    if class_group is None or class_group.school_id != admin_school().id:
        abort(404)
    return class_group


def _refused(error: CouncilError) -> None:
    flash(_(error.message, **error.params), "error")


@bp.get("/admin/classes/<int:class_id>/council")
@roles_required("school_admin")
@personal_data("class_group", "class_id")
def council(class_id: int) -> Any:
    class_group = own_class(class_id)
    year = db.session.get_one(SchoolYear, class_group.school_year_id)
    lines = []
    if year.closed_at is not None:
        lines = proposals(db.session, class_group)
    subjects = [
        s
        for s in class_subjects(db.session, class_group)
        if rule_id_for(s, class_group) != NO_GRADES_RULE
    ]
    return render_template(
        "admin/council.html",
        pupils=class_pupils(db.session, class_group, year.starts_on, year.ends_on),
        class_group=class_group,
        year=year,
        lines=lines,
        subjects=subjects,
        decisions=DECISIONS,
        words=DECISION_WORDS,
        graduating=class_group.grade_level in rule_of(year).graduating_levels,
    )


def _log_key() -> Any:
    return load_log_key(current_app.config["KEYS_DIR"], admin_school().domain)


@bp.post("/admin/classes/<int:class_id>/council")
@roles_required("school_admin")
def decide(class_id: int) -> Any:
    class_group = own_class(class_id)
    form = request.form
    choices = {}
    for key, value in form.items():
        if not key.startswith("decision-") or not value:
            continue
        try:
            student_id = parse_id(key.removeprefix("decision-"))
        except ValueError:
            abort(400)
        choices[student_id] = Choice(
            value,
            form.get(f"reason-{student_id}", ""),
            form.get(f"application-{student_id}") == "on",
        )
    try:
        with db.session.begin_nested():
            count = record_decisions(
                db.session,
                class_group,
                _log_key(),
                choices,
                decided_by=current_user(),  # type: ignore[arg-type]
                protocol_number=form.get("protocol_number", ""),
                protocol_date=form.get("protocol_date", ""),
            )
    except CouncilError as error:
        _refused(error)
        return redirect(url_for(".council", class_id=class_id))
    record_access(
        db.session, current_user(), "council_decision", "class_group", class_group.id,
        client_address(), school_id=class_group.school_id,
    )  # fmt: skip
    db.session.commit()
    flash(_("%(count)s decisions of the council recorded.", count=count))
    return redirect(url_for(".council", class_id=class_id))


@bp.post("/admin/classes/<int:class_id>/attestation")
@roles_required("school_admin")
def attest(class_id: int) -> Any:
    """The exam commission's grades for one pupil and subject, entered by the admin."""
    class_group = own_class(class_id)
    school = admin_school()
    student = db.session.get(Student, id_arg(request.form, "student_id") or 0)
    subject = db.session.get(Subject, id_arg(request.form, "subject_id") or 0)
    if (
        student is None
        or subject is None
        or student.school_id != school.id
        or subject.school_id != school.id
    ):
        abort(404)
    try:
        with db.session.begin_nested():
            record_attestation_grade(
                db.session,
                class_group,
                student,
                subject,
                _log_key(),
                entered_by=current_user(),  # type: ignore[arg-type]
                role="commission",
                exam=request.form.get("exam"),
                final=request.form.get("final"),
            )
    except CouncilError as error:
        _refused(error)
        return redirect(url_for(".council", class_id=class_id))
    record_access(
        db.session, current_user(), "attestation_grade", "student", student.id,
        client_address(), school_id=school.id,
    )  # fmt: skip
    db.session.commit()
    flash(_("Grades recorded."))
    return redirect(url_for(".council", class_id=class_id))


# -- the subject teacher's exam and final grades --------------------------------------------------


def _teacher_subjects(class_group: ClassGroup) -> list[Subject]:
    """The graded subjects the signed-in teacher teaches in the class."""
    user = current_user()
    assert user is not None
    taught = set(
        db.session.scalars(
            select(TeachingAssignment.subject_id).where(
                TeachingAssignment.user_id == user.id,
                TeachingAssignment.class_group_id == class_group.id,
            )
        )
    )
    return [
        s
        for s in class_subjects(db.session, class_group)
        if s.id in taught and rule_id_for(s, class_group) != NO_GRADES_RULE
    ]


@bp.app_template_global()
def attestation_classes() -> list[ClassGroup]:
    """Graduating classes of a closed year in which the signed-in teacher teaches."""
    user = current_user()
    if user is None:
        return []
    found = []
    for class_group in db.session.scalars(
        select(ClassGroup)
        .join(TeachingAssignment, TeachingAssignment.class_group_id == ClassGroup.id)
        .where(TeachingAssignment.user_id == user.id)
        .distinct()
    ):
        year = db.session.get_one(SchoolYear, class_group.school_year_id)
        if (
            year.closed_at is not None
            and class_group.grade_level in rule_of(year).graduating_levels
        ):
            found.append(class_group)
    return found


@bp.route("/teacher/classes/<int:class_id>/attestation", methods=["GET", "POST"])
@roles_required("teacher")
@personal_data("class_group", "class_id")
def teacher_attestation(class_id: int) -> Any:
    """The subject teacher enters a graduating pupil's exam and final grade in their subject."""
    user = current_user()
    assert user is not None
    class_group = db.session.get(ClassGroup, class_id)
    if class_group is None or class_group.school_id != user.school_id:
        abort(404)
    subjects = _teacher_subjects(class_group)
    if not subjects:
        abort(404)
    year = db.session.get_one(SchoolYear, class_group.school_year_id)
    if request.method == "POST":
        student = db.session.get(Student, id_arg(request.form, "student_id") or 0)
        subject = db.session.get(Subject, id_arg(request.form, "subject_id") or 0)
        if student is None or subject is None or student.school_id != class_group.school_id:
            abort(404)
        try:
            with db.session.begin_nested():
                record_attestation_grade(
                    db.session,
                    class_group,
                    student,
                    subject,
                    load_log_key(
                        current_app.config["KEYS_DIR"],
                        db.session.get_one(School, class_group.school_id).domain,
                    ),
                    entered_by=user,
                    role="teacher",
                    exam=request.form.get("exam"),
                    final=request.form.get("final"),
                )
        except CouncilError as error:
            _refused(error)
            return redirect(url_for(".teacher_attestation", class_id=class_id))
        record_access(
            db.session, user, "attestation_grade", "student", student.id, client_address(),
            school_id=class_group.school_id,
        )  # fmt: skip
        db.session.commit()
        flash(_("Grades recorded."))
        return redirect(url_for(".teacher_attestation", class_id=class_id))
    lines = proposals(db.session, class_group) if year.closed_at is not None else []
    return render_template(
        "teacher/attestation.html",
        pupils=class_pupils(db.session, class_group, year.starts_on, year.ends_on),
        class_group=class_group,
        year=year,
        lines=lines,
        subjects=subjects,
    )

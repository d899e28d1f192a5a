"""The ``setup`` blueprint: the school admin's set-up pages over the services of this package."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import BooleanField, DateField, IntegerField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from auth.access import current_user, personal_data, roles_required
from auth.models import User

from ..class_list import year_class_list
from ..collation import class_key
from ..db import db, utcnow
from ..ids import id_arg
from ..models import (
    ClassGroup,
    Enrollment,
    Holiday,
    Lesson,
    School,
    SchoolYear,
    Student,
    Subject,
    TeachingAssignment,
    Term,
    TimetableSlot,
)
from . import PERIODS, WEEKDAYS, SetupError
from .calendar import add_holiday, add_term, change_term_dates, create_school_year, remove_holiday
from .classes import (
    add_class_group,
    add_subject,
    assign_teacher,
    regenerate_lessons,
    remove_assignment,
    school_teachers,
    set_class_teacher,
    set_timetable,
)
from .enrollment import (
    admit_transferred_student,
    class_roster,
    issue_transfer_code,
    record_leaving,
    transfer_student,
)

bp = Blueprint("setup", __name__, url_prefix="/setup")


def admin_school() -> School:
    user = current_user()
    assert user is not None
    school_id = next(
        (g.school_id for g in user.roles if g.role == "school_admin" and g.school_id), None
    )
    school = db.session.get(School, school_id or user.school_id or 0)
    if school is None:
        abort(403)
    return school


def own_year(year_id: int) -> SchoolYear:
    year = db.session.get(SchoolYear, year_id)
    if year is None or year.school_id != admin_school().id:
        abort(404)
    return year


def own_class(class_id: int) -> ClassGroup:
    class_group = db.session.get(ClassGroup, class_id)
    if class_group is None or class_group.school_id != admin_school().id:
        abort(404)
    return class_group


def year_classes(year: SchoolYear) -> list[ClassGroup]:
    classes = db.session.scalars(select(ClassGroup).where(ClassGroup.school_year_id == year.id))
    return sorted(classes, key=lambda c: class_key(c.name, c.grade_level))  # 7А, 7Ә, 7Б


def school_subjects(school: School) -> list[Subject]:
    return list(
        db.session.scalars(
            select(Subject).where(Subject.school_id == school.id).order_by(Subject.name)
        )
    )


def weekday_names() -> list[str]:
    """Monday first, in the page's language (CLDR names, no catalog needed)."""
    locale = get_locale()
    names = locale.days["format"]["wide"] if locale else {}
    return [str(names.get(day, day + 1)).capitalize() for day in WEEKDAYS]


def done(message: str, target: str) -> Any:
    db.session.commit()
    flash(message, "ok")
    return redirect(target)


def refused(error: SetupError) -> None:
    # Services check everything before they write, so there is nothing to roll back; the
    # request ends without a commit.
    flash(error.translated(), "error")


def flash_form_errors(form: FlaskForm) -> None:
    for field_name, errors in form.errors.items():
        label = getattr(form, field_name).label.text if hasattr(form, field_name) else field_name
        for error in errors:
            flash(f"{label}: {error}", "error")


class YearForm(FlaskForm):
    name = StringField(_l("Name (e.g. 2026-2027)"), validators=[DataRequired(), Length(max=20)])
    starts_on = DateField(_l("First day"), validators=[InputRequired()])
    ends_on = DateField(_l("Last day"), validators=[InputRequired()])


class TermForm(FlaskForm):
    kind = SelectField(
        _l("Kind"),
        choices=[SelectChoice("quarter", _l("Quarter")), SelectChoice("half", _l("Half-year"))],
    )
    number = IntegerField(_l("Number"), validators=[InputRequired(), NumberRange(1, 4)])
    starts_on = DateField(_l("First day"), validators=[InputRequired()])
    ends_on = DateField(_l("Last day"), validators=[InputRequired()])


class TermDatesForm(FlaskForm):
    starts_on = DateField(_l("First day"), validators=[InputRequired()])
    ends_on = DateField(_l("Last day"), validators=[InputRequired()])


class HolidayForm(FlaskForm):
    name = StringField(_l("Holiday"), validators=[DataRequired(), Length(max=200)])
    starts_on = DateField(_l("First day"), validators=[InputRequired()])
    ends_on = DateField(_l("Last day"), validators=[InputRequired()])


class ClassForm(FlaskForm):
    name = StringField(_l("Class name (e.g. 7Ә)"), validators=[DataRequired(), Length(max=40)])
    grade_level = IntegerField(_l("Grade level"), validators=[InputRequired(), NumberRange(0, 12)])
    class_teacher = SelectField(_l("Class teacher"), coerce=str, validators=[Optional()])


class SubjectForm(FlaskForm):
    name = StringField(_l("Subject"), validators=[DataRequired(), Length(max=200)])
    graded = BooleanField(_l("Graded"), default=True)
    by_half_year = BooleanField(_l("Graded by half-years"))
    pass_fail = BooleanField(_l("Graded pass/fail"))


class AssignmentForm(FlaskForm):
    teacher = SelectField(_l("Teacher"), coerce=int)
    class_group = SelectField(_l("Class"), coerce=int)
    subject = SelectField(_l("Subject"), coerce=int)


class LessonsForm(FlaskForm):
    from_date = DateField(_l("Starting on"), validators=[InputRequired()])


class TransferForm(FlaskForm):
    to_class = SelectField(_l("New class"), coerce=int)
    on_date = DateField(_l("First day in the new class"), validators=[InputRequired()])


class LeavingForm(FlaskForm):
    last_day = DateField(_l("Last day at school"), validators=[InputRequired()])


class AdmitForm(FlaskForm):
    iin = StringField(_l("IIN"), validators=[DataRequired(), Length(min=12, max=12)])
    transfer_code = StringField(
        _l("Transfer code from the old school"), validators=[Optional(), Length(max=40)]
    )
    class_group = SelectField(_l("Class"), coerce=int)
    on_date = DateField(_l("First day"), validators=[InputRequired()])


@bp.get("/")
@roles_required("school_admin")
def overview() -> Any:
    school = admin_school()
    years = db.session.scalars(
        select(SchoolYear).where(SchoolYear.school_id == school.id).order_by(SchoolYear.starts_on)
    ).all()
    return render_template("setup/overview.html", school=school, years=years, form=YearForm())


@bp.post("/years")
@roles_required("school_admin")
def create_year() -> Any:
    school = admin_school()
    form = YearForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(url_for(".overview"))
    try:
        assert form.starts_on.data and form.ends_on.data
        year = create_school_year(
            db.session, school, form.name.data or "", form.starts_on.data, form.ends_on.data
        )
    except SetupError as error:
        refused(error)
        return redirect(url_for(".overview"))
    return done(
        _("School year %(name)s created.", name=year.name), url_for(".year", year_id=year.id)
    )


@bp.get("/years/<int:year_id>")
@roles_required("school_admin")
def year(year_id: int) -> Any:
    school_year = own_year(year_id)
    holidays = db.session.scalars(
        select(Holiday).where(Holiday.school_year_id == year_id).order_by(Holiday.starts_on)
    ).all()
    return render_template(
        "setup/year.html",
        year=school_year,
        holidays=holidays,
        term_form=TermForm(prefix="term"),
        holiday_form=HolidayForm(prefix="holiday"),
        dates_form=TermDatesForm,
    )


@bp.post("/years/<int:year_id>/terms")
@roles_required("school_admin")
def create_term(year_id: int) -> Any:
    school_year = own_year(year_id)
    form = TermForm(prefix="term")
    target = url_for(".year", year_id=year_id)
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(target)
    try:
        assert form.number.data is not None and form.starts_on.data and form.ends_on.data
        add_term(
            db.session,
            school_year,
            form.kind.data or "",
            form.number.data,
            form.starts_on.data,
            form.ends_on.data,
        )
    except SetupError as error:
        refused(error)
        return redirect(target)
    return done(_("Term added."), target)


@bp.post("/terms/<int:term_id>")
@roles_required("school_admin")
def update_term(term_id: int) -> Any:
    term = db.session.get(Term, term_id)
    if term is None:
        abort(404)
    own_year(term.school_year_id)
    form = TermDatesForm(prefix="dates")
    target = url_for(".year", year_id=term.school_year_id)
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(target)
    try:
        assert form.starts_on.data and form.ends_on.data
        change_term_dates(db.session, term, form.starts_on.data, form.ends_on.data)
    except SetupError as error:
        refused(error)
        return redirect(target)
    return done(_("Term dates saved."), target)


@bp.post("/years/<int:year_id>/holidays")
@roles_required("school_admin")
def create_holiday(year_id: int) -> Any:
    school_year = own_year(year_id)
    form = HolidayForm(prefix="holiday")
    target = url_for(".year", year_id=year_id)
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(target)
    try:
        assert form.starts_on.data and form.ends_on.data
        add_holiday(
            db.session, school_year, form.name.data or "", form.starts_on.data, form.ends_on.data
        )
    except SetupError as error:
        refused(error)
        return redirect(target)
    return done(_("Holiday added. Regenerate the lessons of each class to apply it."), target)


@bp.post("/holidays/<int:holiday_id>/delete")
@roles_required("school_admin")
def delete_holiday(holiday_id: int) -> Any:
    holiday = db.session.get(Holiday, holiday_id)
    if holiday is None:
        abort(404)
    own_year(holiday.school_year_id)
    remove_holiday(db.session, holiday)
    return done(_("Holiday removed."), url_for(".year", year_id=holiday.school_year_id))


@bp.route("/years/<int:year_id>/classes", methods=["GET", "POST"])
@roles_required("school_admin")
def classes(year_id: int) -> Any:
    school_year = own_year(year_id)
    school = admin_school()
    form = ClassForm()
    teachers = school_teachers(db.session, school.id)
    form.class_teacher.choices = [SelectChoice("", _("(none)"))] + [
        SelectChoice(str(t.id), t.full_name) for t in teachers
    ]
    if request.method == "POST":
        if form.validate_on_submit():
            teacher = int(form.class_teacher.data) if form.class_teacher.data else None
            try:
                assert form.grade_level.data is not None
                added = add_class_group(
                    db.session, school_year, form.name.data or "", form.grade_level.data, teacher
                )
            except SetupError as error:
                refused(error)
            else:
                return done(
                    _("Class %(name)s added.", name=added.name),
                    url_for(".classes", year_id=year_id),
                )
        else:
            flash_form_errors(form)
    return render_template(
        "setup/classes.html",
        year=school_year,
        class_groups=year_classes(school_year),
        teaching=year_class_list(db.session, year_id),
        teachers=teachers,
        form=form,
    )


@bp.post("/classes/<int:class_id>/class-teacher")
@roles_required("school_admin")
def change_class_teacher(class_id: int) -> Any:
    class_group = own_class(class_id)
    chosen = id_arg(request.form, "class_teacher")  # empty: no class teacher
    target = url_for(".classes", year_id=class_group.school_year_id)
    try:
        set_class_teacher(db.session, class_group, chosen)
    except SetupError as error:
        refused(error)
        return redirect(target)
    return done(_("Class teacher of %(name)s saved.", name=class_group.name), target)


@bp.route("/subjects", methods=["GET", "POST"])
@roles_required("school_admin")
def subjects() -> Any:
    school = admin_school()
    form = SubjectForm()
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                added = add_subject(
                    db.session,
                    school,
                    form.name.data or "",
                    graded=bool(form.graded.data),
                    by_half_year=bool(form.by_half_year.data),
                    pass_fail=bool(form.pass_fail.data),
                )
            except SetupError as error:
                refused(error)
            else:
                return done(_("Subject %(name)s added.", name=added.name), url_for(".subjects"))
        else:
            flash_form_errors(form)
    return render_template("setup/subjects.html", subjects=school_subjects(school), form=form)


@bp.route("/years/<int:year_id>/assignments", methods=["GET", "POST"])
@roles_required("school_admin")
def assignments(year_id: int) -> Any:
    school_year = own_year(year_id)
    school = admin_school()
    form = AssignmentForm()
    teachers = school_teachers(db.session, school.id)
    class_groups = year_classes(school_year)
    subject_list = school_subjects(school)
    form.teacher.choices = [SelectChoice(t.id, t.full_name) for t in teachers]
    form.class_group.choices = [SelectChoice(c.id, c.name) for c in class_groups]
    form.subject.choices = [SelectChoice(s.id, s.name) for s in subject_list]
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                assert form.class_group.data is not None and form.subject.data is not None
                assign_teacher(
                    db.session,
                    own_class(form.class_group.data),
                    db.session.get_one(Subject, form.subject.data),
                    form.teacher.data or 0,
                )
            except SetupError as error:
                refused(error)
            else:
                return done(_("Assignment added."), url_for(".assignments", year_id=year_id))
        else:
            flash_form_errors(form)
    rows = db.session.execute(
        select(TeachingAssignment, User.full_name, ClassGroup.name, Subject.name)
        .join(User, User.id == TeachingAssignment.user_id)
        .join(ClassGroup, ClassGroup.id == TeachingAssignment.class_group_id)
        .join(Subject, Subject.id == TeachingAssignment.subject_id)
        .where(ClassGroup.school_year_id == year_id)
        .order_by(ClassGroup.grade_level, ClassGroup.name, Subject.name)
    ).all()
    return render_template("setup/assignments.html", year=school_year, rows=rows, form=form)


@bp.post("/assignments/<int:assignment_id>/delete")
@roles_required("school_admin")
def delete_assignment(assignment_id: int) -> Any:
    assignment = db.session.get(TeachingAssignment, assignment_id)
    if assignment is None:
        abort(404)
    class_group = own_class(assignment.class_group_id)
    remove_assignment(db.session, assignment)
    return done(
        _("Assignment removed."), url_for(".assignments", year_id=class_group.school_year_id)
    )


@bp.route("/classes/<int:class_id>/timetable", methods=["GET", "POST"])
@roles_required("school_admin")
def timetable(class_id: int) -> Any:
    class_group = own_class(class_id)
    school = admin_school()
    subject_list = school_subjects(school)
    if request.method == "POST":
        cells = {
            (weekday, period): id_arg(request.form, f"slot-{weekday}-{period}")
            for weekday in WEEKDAYS
            for period in PERIODS
        }
        try:
            set_timetable(db.session, class_group, cells)
        except SetupError as error:
            refused(error)
        else:
            return done(
                _("Timetable saved. Generate the lessons to apply it."),
                url_for(".timetable", class_id=class_id),
            )
    slots = {
        (s.weekday, s.period): s.subject_id
        for s in db.session.scalars(
            select(TimetableSlot).where(TimetableSlot.class_group_id == class_id)
        )
    }
    lesson_count = db.session.scalar(
        select(func.count()).select_from(Lesson).where(Lesson.class_group_id == class_id)
    )
    lessons_form = LessonsForm(from_date=max(dt.date.today(), class_group.school_year.starts_on))
    return render_template(
        "setup/timetable.html",
        class_group=class_group,
        subjects=subject_list,
        slots=slots,
        weekdays=list(zip(WEEKDAYS, weekday_names(), strict=True)),
        periods=PERIODS,
        lesson_count=lesson_count,
        lessons_form=lessons_form,
    )


@bp.post("/classes/<int:class_id>/lessons")
@roles_required("school_admin")
def make_lessons(class_id: int) -> Any:
    class_group = own_class(class_id)
    form = LessonsForm()
    target = url_for(".timetable", class_id=class_id)
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(target)
    assert form.from_date.data
    changes = regenerate_lessons(db.session, class_group, form.from_date.data)
    message = _(
        "Lessons created: %(created)s, removed: %(removed)s.",
        created=changes.created,
        removed=changes.removed,
    )
    if changes.kept_with_entries:
        message += " " + _(
            "%(kept)s lessons no longer fit the timetable but keep their entries.",
            kept=changes.kept_with_entries,
        )
    return done(message, target)


@bp.get("/classes/<int:class_id>/students")
@roles_required("school_admin")
@personal_data("class_group", "class_id")
def students(class_id: int) -> Any:
    class_group = own_class(class_id)
    roster = class_roster(db.session, class_group)
    transfer_form = TransferForm()
    transfer_form.to_class.choices = [
        SelectChoice(c.id, c.name)
        for c in year_classes(class_group.school_year)
        if c.id != class_id
    ]
    # Pupils who have left the school (no open enrollment in any of its classes) get a code.
    staying = set(
        db.session.scalars(
            select(Enrollment.student_id).where(
                Enrollment.student_id.in_([line.student.id for line in roster]),
                Enrollment.ends_on.is_(None),
            )
        )
    )
    return render_template(
        "setup/students.html",
        class_group=class_group,
        roster=roster,
        staying=staying,
        transfer_form=transfer_form,
        leaving_form=LeavingForm(),
    )


def own_enrollment(enrollment_id: int) -> tuple[Enrollment, ClassGroup]:
    enrollment = db.session.get(Enrollment, enrollment_id)
    if enrollment is None:
        abort(404)
    return enrollment, own_class(enrollment.class_group_id)


@bp.post("/enrollments/<int:enrollment_id>/transfer")
@roles_required("school_admin")
def transfer(enrollment_id: int) -> Any:
    enrollment, class_group = own_enrollment(enrollment_id)
    form = TransferForm()
    form.to_class.choices = [
        SelectChoice(c.id, c.name) for c in year_classes(class_group.school_year)
    ]
    target = url_for(".students", class_id=class_group.id)
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(target)
    assert form.to_class.data is not None and form.on_date.data
    try:
        transfer_student(db.session, enrollment, own_class(form.to_class.data), form.on_date.data)
    except SetupError as error:
        refused(error)
        return redirect(target)
    return done(_("Transfer recorded."), target)


@bp.post("/enrollments/<int:enrollment_id>/leave")
@roles_required("school_admin")
def leave(enrollment_id: int) -> Any:
    enrollment, class_group = own_enrollment(enrollment_id)
    form = LeavingForm()
    target = url_for(".students", class_id=class_group.id)
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(target)
    assert form.last_day.data
    try:
        record_leaving(db.session, enrollment, form.last_day.data)
    except SetupError as error:
        refused(error)
        return redirect(target)
    return done(_("Leaving recorded."), target)


@bp.post("/students/<int:student_id>/transfer-code")
@roles_required("school_admin")
def transfer_code(student_id: int) -> Any:
    """Print the one-time transfer code of a pupil who leaves, for the new school."""
    student = db.session.get(Student, student_id)
    school = admin_school()
    if student is None or student.school_id != school.id:
        abort(404)
    last_class = db.session.scalar(
        select(Enrollment.class_group_id)
        .where(Enrollment.student_id == student.id)
        .order_by(Enrollment.starts_on.desc())
    )
    back = url_for(".students", class_id=last_class) if last_class else url_for(".overview")
    try:
        transfer, code = issue_transfer_code(
            db.session,
            school,
            student,
            actor=current_user(),
            ip=request.remote_addr,
            now=utcnow(),
        )
    except SetupError as error:
        refused(error)
        return redirect(back)
    db.session.commit()
    return render_template(
        "setup/transfer_code.html",
        school=school,
        student=student,
        code=code,
        expires_at=transfer.expires_at,
        back=back,
    )


@bp.route("/years/<int:year_id>/admit", methods=["GET", "POST"])
@roles_required("school_admin")
def admit(year_id: int) -> Any:
    school_year = own_year(year_id)
    form = AdmitForm()
    form.class_group.choices = [SelectChoice(c.id, c.name) for c in year_classes(school_year)]
    if request.method == "POST":
        if form.validate_on_submit():
            assert form.class_group.data is not None and form.on_date.data
            try:
                enrollment = admit_transferred_student(
                    db.session,
                    admin_school(),
                    form.iin.data or "",
                    own_class(form.class_group.data),
                    form.on_date.data,
                    hmac_key=current_app.config["IIN_HMAC_KEY"],
                    transfer_code=form.transfer_code.data or "",
                    actor=current_user(),
                    address=request.remote_addr,
                    now=utcnow(),
                )
            except SetupError as error:
                # The lookup's access-log row, and a wrong code's count against the address,
                # are the only rows written: keep them.
                db.session.commit()
                refused(error)
            else:
                student = db.session.get_one(Student, enrollment.student_id)
                return done(
                    _("%(name)s admitted.", name=student.full_name),
                    url_for(".students", class_id=enrollment.class_group_id),
                )
        else:
            flash_form_errors(form)
    form.transfer_code.data = ""  # a code is never shown back
    return render_template("setup/admit.html", year=school_year, form=form)

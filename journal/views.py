"""Pages of the journal itself: the home page that sends each person to their work."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

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
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from wtforms import SelectChoice, SelectField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from auth.access import (
    current_user,
    local_redirect_target,
    login_required,
    public,
    roles_required,
)
from auth.services import record_access

from .app import LANGUAGES
from .cells import cell_key
from .clock import school_zone, today_at
from .collation import in_pupil_order
from .db import db, utcnow
from .home import (
    OPERATOR_COMMANDS,
    admin_term_state,
    early_warnings,
    operator_state,
    pupils_to_watch,
    teacher_days,
)
from .home.devices import STALE_DAYS, device_problems
from .home.glance import FALL_DAYS, FALL_POINTS, class_glance, falling_percents
from .home.outbox import outbox_places
from .ids import IdField, id_arg
from .keys import load_log_key
from .models import (
    ClassGroup,
    Enrollment,
    LateCorrectionApproval,
    Lesson,
    Log,
    School,
    Student,
    Subject,
)
from .school_time import format_local
from .year.closing import approve_late_correction

bp = Blueprint("journal", __name__)


@bp.app_template_filter("school_time")
def school_time(moment: dt.datetime | None, where: int | str | None = None) -> str:
    """A stored (UTC) moment on a school's clock, with its offset: ``where`` is the school's id
    or its time-zone name; by default the signed-in person's school."""
    if isinstance(where, str):
        return format_local(moment, where)
    if where is None:
        user = current_user()
        where = user.school_id if user is not None else None
    return format_local(moment, school_zone(db.session, where))


def layout_context() -> dict[str, Any]:
    return {"current_user": current_user(), "languages": LANGUAGES, "get_locale": get_locale}


# In the three languages at once: choosing one would ask the database for the user's choice.
DATABASE_UNAVAILABLE = (
    "Журнал дерекқорына қазір қосылу мүмкін емес. Сәлден кейін қайталаңыз.\n"
    "База данных журнала сейчас недоступна. Повторите попытку чуть позже.\n"
    "The journal's database cannot be reached right now. Try again in a moment.\n"
)


def database_unavailable(_exc: OperationalError) -> Response:
    """The database is restarting or unreachable: 503 with Retry-After, built without the
    database (no template, no session user), so that clients and the grid's outbox retry."""
    with contextlib.suppress(Exception):
        db.session.rollback()
    if request.path.startswith("/api/"):
        response = jsonify({"error": "unavailable", "message": DATABASE_UNAVAILABLE})
    else:
        response = Response(DATABASE_UNAVAILABLE, mimetype="text/plain")
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return response


@bp.get("/")
@login_required
def home() -> Any:
    user = current_user()
    assert user is not None
    days: list[Any] = []
    watched: list[Any] = []
    glances: list[Any] = []
    places = None
    today = today_at(db.session, user.school_id)
    if user.has_role("teacher") or user.has_role("class_teacher"):
        days = teacher_days(db.session, user, today)
        places = outbox_places(db.session, user, today)
    if user.has_role("class_teacher"):
        # Each reads only the classes whose class teacher the signed-in person is.
        summaries: dict[Any, Any] = {}
        glances = class_glance(db.session, user, today, summaries)
        watched = pupils_to_watch(
            early_warnings(db.session, user, today),
            falling_percents(db.session, user, today, summaries),
        )
    operations = None
    term_state = None
    devices = None
    if user.has_role("school_admin") and user.school_id is not None:
        term_state = admin_term_state(db.session, user.school_id, today)
        devices = device_problems(db.session, user.school_id, utcnow())
    if user.has_role("operator") or user.has_role("school_admin"):
        operations = operator_state(
            db.session,
            current_app.config["BACKUP_DIR"],
            None if user.has_role("operator") else user.school_id,
        )
    return render_template(
        "home.html",
        user=user,
        today=today,
        days=days,
        watched=watched,
        glances=glances,
        fall_days=FALL_DAYS,
        fall_points=int(FALL_POINTS),
        places=places,
        devices=devices,
        stale_days=STALE_DAYS,
        operations=operations,
        term_state=term_state,
        commands=OPERATOR_COMMANDS,
    )


FAVICON = Path(__file__).resolve().parent / "static" / "favicon.ico"


@bp.get("/favicon.ico")
@public
def favicon() -> Response:
    """Browsers ask for it on every site: a small icon (849 bytes) instead of a 404."""
    response = Response(FAVICON.read_bytes(), mimetype="image/vnd.microsoft.icon")
    response.headers["Cache-Control"] = "public, max-age=604800"
    return response


@bp.post("/language")
@public
def set_language() -> Any:
    language = request.form.get("language", "")
    if language not in LANGUAGES:
        abort(400)
    # Checked before anything is written: a CR or LF answers 400.
    target = local_redirect_target(request.form.get("next"), url_for("journal.home"))
    session["language"] = language
    user = current_user()
    if user is not None:
        user.language = language
        db.session.commit()
    return redirect(target)


# -- quarters: closing them, and letting approved late corrections back in -----------------------


def _admin_school_id() -> int:
    user = current_user()
    if user is None or user.school_id is None:
        abort(403)
    return user.school_id


class LateCorrectionForm(FlaskForm):
    journal = SelectField(_l("Class"), coerce=int, validators=[DataRequired()])
    lesson = IdField(_l("Lesson number"), validators=[DataRequired()])
    student = IdField(_l("Student number (empty for a lesson topic)"), validators=[Optional()])
    what = SelectField(
        _l("What is corrected"),
        choices=[
            SelectChoice("att", _l("Attendance")),
            SelectChoice("FO", _l("FO")),
            SelectChoice("SOR", _l("SOR")),
            SelectChoice("SOCh", _l("SOCh")),
            SelectChoice("mark", _l("Mark")),
            SelectChoice("topic", _l("Lesson topic")),
        ],
    )
    reason = TextAreaField(_l("Reason"), validators=[DataRequired(), Length(max=1000)])


@bp.route("/admin/late-corrections", methods=["GET", "POST"])
@roles_required("school_admin")
def late_corrections() -> Any:
    school_id = _admin_school_id()
    journals = db.session.execute(
        select(Log, ClassGroup)
        .join(ClassGroup, ClassGroup.id == Log.class_group_id)
        .where(Log.school_id == school_id)
        .order_by(ClassGroup.name)
    ).all()
    form = LateCorrectionForm()
    form.journal.choices = [SelectChoice(log.id, class_group.name) for log, class_group in journals]
    # Pickers, each step narrowed by the one before (plain GET forms: no script needed).
    chosen_log = id_arg(request.values, "journal")
    class_group = next((cg for log, cg in journals if log.id == chosen_log), None)
    subjects: list[Subject] = []
    lessons: list[Lesson] = []
    pupils: list[Student] = []
    chosen_subject = id_arg(request.values, "subject")
    if class_group is not None:
        subjects = list(
            db.session.scalars(
                select(Subject)
                .where(
                    Subject.id.in_(
                        select(Lesson.subject_id).where(Lesson.class_group_id == class_group.id)
                    )
                )
                .order_by(Subject.name)
            )
        )
        if request.method == "GET":
            form.journal.data = chosen_log
        if chosen_subject is not None and any(sub.id == chosen_subject for sub in subjects):
            lessons = list(
                db.session.scalars(
                    select(Lesson)
                    .where(
                        Lesson.class_group_id == class_group.id,
                        Lesson.subject_id == chosen_subject,
                    )
                    .order_by(Lesson.date.desc(), Lesson.period)
                )
            )
        else:
            chosen_subject = None
        pupils = class_pupils(db.session, class_group)
    if form.validate_on_submit():
        log = db.session.get(Log, form.journal.data)
        lesson = db.session.get(Lesson, form.lesson.data)
        if (
            log is None
            or log.school_id != school_id
            or lesson is None
            or (lesson.class_group_id != log.class_group_id)
        ):
            form.lesson.errors = [_("No such lesson in this class.")]
        elif form.what.data != "topic" and not form.student.data:
            form.student.errors = [_("Say which student.")]
        elif form.student.data and not _enrolled(form.student.data, log.class_group_id):
            form.student.errors = [_("No such pupil in this class.")]
        else:
            cell = cell_key(form.what.data, lesson.id, form.student.data)
            school = db.session.get_one(School, school_id)
            approve_late_correction(
                db.session,
                log,
                cell,
                load_log_key(current_app.config["KEYS_DIR"], school.domain),
                approved_by=current_user(),  # type: ignore[arg-type]
                reason=form.reason.data or "",
            )
            record_access(
                db.session,
                current_user(),
                "approve_late_correction",
                "cell",
                cell,
                request.remote_addr,
                school_id=school_id,
            )
            db.session.commit()
            flash(_("Approved for 7 days: the teacher can now send the correction."), "info")
            return redirect(url_for("journal.late_corrections"))
    approvals = db.session.scalars(
        select(LateCorrectionApproval)
        .join(Log, Log.id == LateCorrectionApproval.log_id)
        .where(Log.school_id == school_id)
        .order_by(LateCorrectionApproval.approved_at.desc())
        .limit(50)
    ).all()
    # A form sent with errors (a number no lesson or student can have, say) is a bad request.
    status = 400 if form.errors else 200
    return render_template(
        "admin/late_corrections.html",
        form=form,
        approvals=approvals,
        class_group=class_group,
        subjects=subjects,
        chosen_subject=chosen_subject,
        lessons=lessons,
        pupils=pupils,
    ), status


def _enrolled(student_id: int, class_group_id: int | None) -> bool:
    return (
        db.session.scalar(
            select(Enrollment.id)
            .where(Enrollment.student_id == student_id, Enrollment.class_group_id == class_group_id)
            .limit(1)
        )
        is not None
    )


def class_pupils(session: Any, class_group: ClassGroup) -> list[Student]:
    """Everyone ever enrolled in the class (a late correction may concern one who left)."""
    found = session.scalars(
        select(Student)
        .join(Enrollment, Enrollment.student_id == Student.id)
        .where(Enrollment.class_group_id == class_group.id)
        .distinct()
    ).all()
    return in_pupil_order(
        class_group.language, found, lambda s: (s.last_name, s.first_name, s.patronymic or "", s.id)
    )

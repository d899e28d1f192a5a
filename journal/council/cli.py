"""``flask --app wsgi council ...``: the council's list, its decisions and the attestation
grades from the command line, as a named school admin (the same checks as the page)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from auth.models import User

from ..db import db
from ..keys import load_log_key
from ..models import ClassGroup, School, Student, Subject
from .records import Choice, CouncilError, proposals, record_attestation_grade, record_decisions

council_cli = AppGroup("council", help="The pedagogical council: list, decide, attest.")


def _class(class_id: int) -> ClassGroup:
    class_group = db.session.get(ClassGroup, class_id)
    if class_group is None:
        raise click.BadParameter(f"no class {class_id}")
    return class_group


def _admin(username: str, class_group: ClassGroup) -> User:
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None or not any(
        g.role == "school_admin" and g.school_id == class_group.school_id for g in user.roles
    ):
        raise click.BadParameter(f"{username} is not an admin of the class's school")
    return user


def _pairs(values: tuple[str, ...], what: str) -> dict[int, str]:
    found = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip().isdigit():
            raise click.BadParameter(f"{what} must be STUDENT_ID=..., not {value!r}")
        found[int(key)] = rest
    return found


@council_cli.command("list")
@click.argument("class_id", type=int)
def council_list(class_id: int) -> None:
    """Each pupil: sealed year grades, the proposed and the recorded decision."""
    class_group = _class(class_id)
    try:
        lines = proposals(db.session, class_group)
    except CouncilError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in lines:
        grades = ", ".join(f"{s} {g}" for s, g in sorted(line.year_grades.items()))
        recorded = line.recorded["decision"] if line.recorded else "-"
        click.echo(
            f"{line.pupil.id}\t{line.pupil.full_name}\t{grades}\t"
            f"proposed: {line.proposed}\trecorded: {recorded}"
        )


@council_cli.command("decide")
@click.argument("class_id", type=int)
@click.option("--protocol", required=True, help="The council protocol's number.")
@click.option("--date", "day", required=True, help="The protocol's date, YYYY-MM-DD.")
@click.option("--as", "username", required=True, help="The school admin who records it.")
@click.option("--pupil", multiple=True, help="STUDENT_ID=DECISION (repeat).")
@click.option("--reason", multiple=True, help="STUDENT_ID=REASON, for a non-proposed decision.")
@click.option("--all-proposed", is_flag=True, help="Every pupil without --pupil: the proposal.")
def council_decide(
    class_id: int,
    protocol: str,
    day: str,
    username: str,
    pupil: tuple[str, ...],
    reason: tuple[str, ...],
    all_proposed: bool,
) -> None:
    """Record the council's decisions (all or nothing) as signed ledger records."""
    class_group = _class(class_id)
    admin = _admin(username, class_group)
    decided = _pairs(pupil, "--pupil")
    reasons = _pairs(reason, "--reason")
    try:
        if all_proposed:
            for line in proposals(db.session, class_group):
                decided.setdefault(line.pupil.id, line.proposed)
        choices = {sid: Choice(d, reasons.get(sid, "")) for sid, d in decided.items()}
        school = db.session.get_one(School, class_group.school_id)
        with db.session.begin_nested():
            count = record_decisions(
                db.session,
                class_group,
                load_log_key(current_app.config["KEYS_DIR"], school.domain),
                choices,
                decided_by=admin,
                protocol_number=protocol,
                protocol_date=day,
            )
    except CouncilError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"recorded {count} decision(s) of protocol {protocol}")


@council_cli.command("attest")
@click.argument("class_id", type=int)
@click.option("--pupil", "student_id", type=int, required=True)
@click.option("--subject", "subject_id", type=int, required=True)
@click.option("--exam", default="", help="The exam grade, when the subject has an exam.")
@click.option("--final", required=True, help="The final grade.")
@click.option("--as", "username", required=True, help="The school admin (exam commission).")
def council_attest(
    class_id: int, student_id: int, subject_id: int, exam: str, final: str, username: str
) -> None:
    """Record the exam commission's exam and final grade of a graduating pupil."""
    class_group = _class(class_id)
    admin = _admin(username, class_group)
    student = db.session.get(Student, student_id)
    subject = db.session.get(Subject, subject_id)
    if student is None or subject is None or subject.school_id != class_group.school_id:
        raise click.BadParameter("no such pupil or subject in the class's school")
    school = db.session.get_one(School, class_group.school_id)
    try:
        with db.session.begin_nested():
            record_attestation_grade(
                db.session,
                class_group,
                student,
                subject,
                load_log_key(current_app.config["KEYS_DIR"], school.domain),
                entered_by=admin,
                role="commission",
                exam=exam,
                final=final,
            )
    except CouncilError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"recorded {subject.name}: exam {exam or '-'}, final {final}")

"""Command groups: ``flask --app wsgi demo ...`` and ``flask --app wsgi journal ...``.

Each command calls services and commits once at its end.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select

from .config import is_development
from .db import db
from .keys import create_demo_pdf_signer, create_log_key, load_log_key
from .models import Checkpoint, Log, School

demo_cli = AppGroup("demo", help="The demo school.")
journal_cli = AppGroup("journal", help="Journals: list, export, verify, checkpoint.")
school_cli = AppGroup("school", help="The schools' set-up as it stands: classes and their ids.")


def register(app: Flask) -> None:
    from exports.cli import export_cli

    app.cli.add_command(demo_cli)
    app.cli.add_command(journal_cli)
    app.cli.add_command(school_cli)
    from auth.cli import user_cli

    app.cli.add_command(user_cli)
    app.cli.add_command(export_cli)
    from archive.cli import register as register_archive_commands

    register_archive_commands(app)
    from .transfers.cli import transfer_cli

    app.cli.add_command(transfer_cli)
    from .roster import roster_cli  # the roster module imports the set-up views

    app.cli.add_command(roster_cli)
    from .council.cli import council_cli

    app.cli.add_command(council_cli)


@demo_cli.command("seed")
@click.option("--students", default=25, show_default=True, help="Students per class.")
@click.option("--classes", default=2, show_default=True, help="Number of classes.")
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Write the current quarter up to the day before this date (default: today).",
)
def demo_seed(students: int, classes: int, today: dt.datetime | None) -> None:
    """Create the demo school (safe to run twice: an existing demo school is left alone)."""
    from .demo import DEMO_DOMAIN, seed_demo

    config = current_app.config
    if not is_development(config):
        raise click.ClickException(
            "the demo school has well-known passwords: it is made only with JOURNAL_ENV=development"
        )
    log_key = create_log_key(config["KEYS_DIR"], DEMO_DOMAIN)
    create_demo_pdf_signer(config["KEYS_DIR"], DEMO_DOMAIN, "Demo school")
    session = db.session
    school = seed_demo(
        session,
        log_key=log_key,
        iin_encryption_key=config["IIN_ENCRYPTION_KEY"],
        iin_hmac_key=config["IIN_HMAC_KEY"],
        students_per_class=students,
        classes=classes,
        progress=lambda message: click.echo(f"  {message}..."),
        today=today.date() if today else None,
    )
    if school is None:
        click.echo(f"The demo school {DEMO_DOMAIN} exists already; nothing changed.")
        return
    session.commit()
    click.echo(f"Seeded {school.name} ({school.domain}).")


@demo_cli.command("logins")
def demo_logins_command() -> None:
    """Print one demo login per role, with each staff account's TOTP key and current code."""
    from auth.models import User

    from .demo import demo_logins, demo_second_factor_hint

    if not is_development(current_app.config):
        raise click.ClickException("demo logins exist only with JOURNAL_ENV=development")
    click.echo("Demo logins (password for all: shown below):")
    for login in demo_logins():
        user = db.session.scalar(select(User).where(User.username == login.username))
        if user is None:
            raise click.ClickException("no demo school yet: run `flask --app wsgi demo seed`")
        hint = demo_second_factor_hint(user)
        click.echo(f"  {login.role:<14} {login.username:<14} {login.password}  {hint}".rstrip())


def _log_or_exit(journal_id: int) -> Log:
    log = db.session.get(Log, journal_id)
    if log is None:
        click.echo(
            f"no journal with id {journal_id} (see `flask --app wsgi journal list`)", err=True
        )
        sys.exit(2)
    return log


@journal_cli.command("list")
def journal_list() -> None:
    """Journals with their id, origin and size."""
    session = db.session
    rows = session.execute(select(Log).order_by(Log.id)).scalars().all()
    click.echo(f"{'id':>4}  {'size':>8}  {'checkpoint':>10}  origin")
    for log in rows:
        checkpoint = session.scalar(
            select(Checkpoint.size)
            .where(Checkpoint.log_id == log.id)
            .order_by(Checkpoint.size.desc())
            .limit(1)
        )
        shown = "-" if checkpoint is None else str(checkpoint)
        click.echo(f"{log.id:>4}  {log.size:>8}  {shown:>10}  {log.origin}")


@journal_cli.command("export")
@click.argument("journal_id", type=int)
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
def journal_export(journal_id: int, outdir: Path) -> None:
    """Write entries.jsonl, checkpoint, log.vkey and device-keys.json to OUTDIR."""
    from .services import export_log

    session = db.session
    log = _log_or_exit(journal_id)
    school = session.get_one(School, log.school_id)
    if not school.log_vkey:
        raise click.ClickException(f"{school.domain} has no log key")
    outdir.mkdir(parents=True, exist_ok=True)
    for name, data in export_log(session, log, school.log_vkey).items():
        (outdir / name).write_bytes(data)
    click.echo(f"Exported {log.origin} ({log.size} entries) to {outdir}")


@journal_cli.command("verify")
@click.argument("journal_id", type=int)
def journal_verify(journal_id: int) -> None:
    """Recompute the root from the database, check every signature and the checkpoints.

    Exits 0 when everything holds, 1 naming the first bad seq.
    """
    from .services import verify_journal

    log = _log_or_exit(journal_id)
    report = verify_journal(db.session, log)
    click.echo(report.summary())
    sys.exit(0 if report.ok else 1)


@journal_cli.command("checkpoint")
@click.argument("journal_ids", type=int, nargs=-1)
def journal_checkpoint(journal_ids: tuple[int, ...]) -> None:
    """Sign a checkpoint of each log that grew (all logs when no id is given)."""
    from archive.timestamps import TimestampError

    from .services import cut_checkpoint, latest_checkpoint

    session = db.session
    logs = (
        [_log_or_exit(i) for i in journal_ids]
        if journal_ids
        else list(session.scalars(select(Log).order_by(Log.id)))
    )
    for log in logs:
        school = session.get_one(School, log.school_id)
        log_key = load_log_key(current_app.config["KEYS_DIR"], school.domain)
        before = latest_checkpoint(session, log)
        try:
            checkpoint = cut_checkpoint(session, log, log_key)
        except TimestampError as exc:
            raise click.ClickException(f"{log.origin}: no checkpoint cut: {exc}") from None
        fresh = before is None or before.id != checkpoint.id
        click.echo(
            f"{log.origin}: {'new' if fresh else 'unchanged'} checkpoint at size {checkpoint.size}"
        )
    session.commit()


@journal_cli.command("close-term")
@click.argument("school_year_id", type=int)
@click.argument("number", type=click.IntRange(1, 4))
@click.option("--half", is_flag=True, help="Close half-year NUMBER instead of a quarter.")
@click.option("--reason", default="", help="Needed before the term's last day or out of order.")
@click.option("--yes", is_flag=True, help="Close after printing the report (else nothing).")
def journal_close_term(
    school_year_id: int, number: int, half: bool, reason: str, yes: bool
) -> None:
    """Close a quarter (or, with --half, a half-year): print the pre-close report, then, with
    --yes, seal every journal's results, checkpoint them and record it in the ledger log."""
    from archive.timestamps import TimestampError

    from .models import SchoolYear, Term
    from .year.closing import HOLD_MESSAGES, TermError, close_term, pre_close_report

    session = db.session
    kind = "half" if half else "quarter"
    year = session.get(SchoolYear, school_year_id)
    term = session.scalar(
        select(Term).where(
            Term.school_year_id == school_year_id, Term.kind == kind, Term.number == number
        )
    )
    if year is None or term is None:
        raise click.BadParameter(f"no {kind} {number} in school year {school_year_id}")
    name = f"{'half-year' if half else 'quarter'} {number} of {year.name}"
    if term.closed_at is not None:
        raise click.ClickException(f"{name} is already closed")
    report = pre_close_report(session, term)
    click.echo(f"Pre-close report for {name} ({term.starts_on} - {term.ends_on}):")
    for line in report_lines(report):
        click.echo(f"  {line}")
    for hold in report.holds:
        click.echo("  needs a reason: " + HOLD_MESSAGES[hold] % {"day": term.ends_on.isoformat()})
    if not yes:
        click.echo("Nothing closed: run again with --yes to close.")
        sys.exit(1)
    school = session.get_one(School, year.school_id)
    try:
        with session.begin_nested():  # a failed close leaves nothing half done behind
            closures = close_term(
                session,
                term,
                load_log_key(current_app.config["KEYS_DIR"], school.domain),
                closed_by=None,
                reason=reason,
            )
    except (TermError, TimestampError) as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"closed {name}: {len(closures)} journal(s) sealed")


@journal_cli.command("close-year")
@click.argument("school_year_id", type=int)
@click.option("--reason", default="", help="Needed before the year's last day.")
@click.option("--yes", is_flag=True, help="Close (else only say what would be closed).")
def journal_close_year(school_year_id: int, reason: str, yes: bool) -> None:
    """Close a school year whose terms are all closed: seal every pupil's year results."""
    from archive.timestamps import TimestampError

    from .models import SchoolYear
    from .year.closing import TermError, close_year

    session = db.session
    year = session.get(SchoolYear, school_year_id)
    if year is None:
        raise click.BadParameter(f"no school year {school_year_id}")
    open_terms = [f"{t.kind} {t.number}" for t in year.terms if t.closed_at is None]
    if open_terms:
        raise click.ClickException(f"still open: {', '.join(open_terms)}")
    if not yes:
        click.echo(f"Would close {year.name} and seal its year results: run again with --yes.")
        sys.exit(1)
    school = session.get_one(School, year.school_id)
    try:
        with session.begin_nested():  # a failed close leaves nothing half done behind
            sealed = close_year(
                session,
                year,
                load_log_key(current_app.config["KEYS_DIR"], school.domain),
                closed_by=None,
                reason=reason,
            )
    except (TermError, TimestampError) as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"closed {year.name}: {sealed} year results sealed")


def report_lines(report: Any) -> list[str]:
    """The pre-close report as plain lines (the admin's page shows the same)."""
    lines = []
    for item in report.subjects:
        if item.clean:
            continue
        where = f"{item.class_group.name} · {item.subject.name}:"
        if item.lessons_without_topic:
            days = ", ".join(d.strftime("%d.%m") for d in item.lessons_without_topic)
            lines.append(f"{where} lessons without a topic: {days}")
        if item.without_result:
            lines.append(f"{where} pupils without a term result: {', '.join(item.without_result)}")
        for _student, name, missing in item.incomplete:
            lines.append(f"{where} incomplete, planned {', '.join(missing)} missing: {name}")
        for name, missing in item.missing_component:
            lines.append(f"{where} computed with {', '.join(missing)}: {name}")
        if item.stale:
            lines.append(
                f"{where} confirmed grades the marks no longer give: {', '.join(item.stale)}"
            )
        if item.conflicts:
            lines.append(f"{where} two confirmations: {', '.join(item.conflicts)}")
    for class_group, approval in report.pending_late_corrections:
        lines.append(f"{class_group.name}: late correction of {approval.cell} not made yet")
    return lines or ["nothing to report"]


@school_cli.command("classes")
@click.option("--school", "domain", default=None, help="Only this school (its domain).")
@click.option("--year", "year_name", default=None, help='Only this school year, e.g. "2026-2027".')
def school_classes(domain: str | None, year_name: str | None) -> None:
    """List classes with the ids other commands take (export --class, journal close-term)."""
    from auth.models import User

    from .collation import class_key
    from .models import ClassGroup, School, SchoolYear

    query = (
        select(ClassGroup, SchoolYear, School, User.full_name)
        .join(SchoolYear, SchoolYear.id == ClassGroup.school_year_id)
        .join(School, School.id == ClassGroup.school_id)
        .outerjoin(User, User.id == ClassGroup.class_teacher_id)
    )
    if domain is not None:
        query = query.where(School.domain == domain)
    if year_name is not None:
        query = query.where(SchoolYear.name == year_name)
    # Classes in the order people read them (7А, 7Ә, 7Б), not by character codes.
    rows = sorted(
        db.session.execute(query).all(),
        key=lambda row: (
            row[2].domain,
            row[1].starts_on,
            class_key(row[0].name, row[0].grade_level),
        ),
    )
    if not rows:
        click.echo("no classes (set them up on the admin's set-up pages, or `demo seed`)", err=True)
        sys.exit(1)
    click.echo(f"{'CLASS ID':>8}  {'CLASS':<6} {'YEAR ID':>7} {'YEAR':<10} {'SCHOOL':<28} TEACHER")
    for class_group, year, school, teacher in rows:
        click.echo(
            f"{class_group.id:>8}  {class_group.name:<6} {year.id:>7} {year.name:<10} "
            f"{school.domain:<28} {teacher or '-'}"
        )

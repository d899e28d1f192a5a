"""Operator commands: ``flask --app wsgi archive run|expire|audit`` and ``backup
create|restore|drill`` (the drill also runs the archive audit).

Each command reads the configuration, calls the services and reports; the archive services commit
per step themselves (a crash loses at most one step, see ``archive/services.py``).
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from journal.db import db

archive_cli = AppGroup(
    "archive", help="Archive packages on write-once storage: run, expire, audit."
)
backup_cli = AppGroup("backup", help="Encrypted database backups: create, restore, drill.")


def register(app: Flask) -> None:
    app.cli.add_command(archive_cli)
    app.cli.add_command(backup_cli)
    app.cli.add_command(registrar_cli)


def _settings(today: dt.date | None = None) -> Any:
    from .services import ArchiveSettings

    try:
        settings = ArchiveSettings.from_config(current_app.config, current_app.instance_path)
    except (ValueError, KeyError) as exc:
        raise click.ClickException(f"archive configuration: {exc}") from None
    return replace(settings, today=today) if today is not None else settings


def _progress(label: str, length: int) -> Any:
    return click.progressbar(length=length, label=label, file=sys.stderr)


@archive_cli.command("run")
@click.option("--school", "domains", multiple=True, help="Only this school (domain); repeatable.")
@click.option(
    "--full-readback",
    is_flag=True,
    help="Read every bag back and verify it completely before sealing it, instead of checking "
    "the store's checksums and retention (slower; archive audit always reads back).",
)
def archive_run(domains: tuple[str, ...], full_readback: bool) -> None:
    """Seal every closed quarter and finished year not yet archived.

    Each uploaded bag is checked before it is sealed: by default the store confirms its size,
    checksums and retention; with --full-readback (or ARCHIVE_FULL_READBACK) it is read back and
    verified completely. Safe to run again at any time, also after a crash: sealed bags are
    skipped and a bag left half-done is finished from where it stopped.
    """
    from .services import run_archive

    settings = _settings()
    if full_readback:
        settings = replace(settings, full_readback=True)
    outcomes = run_archive(db.session, settings, domains=list(domains) or None, progress=_progress)
    _say_write_once(settings)
    failed = False
    for outcome in outcomes:
        if outcome.locked:
            click.echo(f"{outcome.domain}: skipped, another archive run holds this school")
        elif outcome.error:
            failed = True
            click.echo(f"{outcome.domain}: FAILED: {outcome.error}", err=True)
        else:
            click.echo(f"{outcome.domain}: {len(outcome.sealed)} bag(s) sealed")
            for key in outcome.sealed:
                click.echo(f"  sealed {key} ({_CHECKED.get(outcome.checks.get(key, ''), '')})")
            for problem in outcome.failed:
                failed = True
                click.echo(f"  FAILED {problem} (the rest of the school went on)", err=True)
    if not outcomes:
        click.echo("no schools to archive")
    sys.exit(1 if failed else 0)


_CHECKED = {
    "store": "the store confirmed its size, checksums and retention",
    "read-back": "read back and verified completely",
}


def _say_write_once(settings: Any) -> None:
    note = settings.storage.write_once_note()
    if note:
        click.echo(f"WARNING: {note}", err=True)


@archive_cli.command("audit")
@click.option("--school", "domains", multiple=True, help="Only this school (domain); repeatable.")
def archive_audit(domains: tuple[str, ...]) -> None:
    """Read back every stored bag by its pinned version and verify it; report missing objects,
    replaced current versions, delete markers and unexpected objects. The result goes to each
    school's ledger log. Exits 1 on any finding."""
    from .services import run_audit

    settings = _settings()
    outcomes = run_audit(db.session, settings, domains=list(domains) or None)
    sys.exit(0 if _report_audit(settings, outcomes) else 1)


def _report_audit(settings: Any, outcomes: list[Any]) -> bool:
    """Print each school's audit; True when nothing was found."""
    _say_write_once(settings)
    ok = True
    for outcome in outcomes:
        if outcome.locked:
            click.echo(f"{outcome.domain}: skipped, an archive run holds this school")
            continue
        if outcome.error:
            ok = False
            click.echo(f"{outcome.domain}: audit FAILED: {outcome.error}", err=True)
            continue
        where = f", recorded at ledger seq {outcome.ledger_seq}" if outcome.ledger_seq else ""
        click.echo(
            f"{outcome.domain}: {outcome.checked} bag(s) read back by their pinned version and "
            f"verified, {len(outcome.findings)} finding(s){where}"
        )
        if outcome.elsewhere:
            click.echo(f"  {outcome.elsewhere} bag(s) recorded in another store were not audited")
        for finding in outcome.findings:
            ok = False
            click.echo(f"  FINDING {finding}", err=True)
    return ok


@archive_cli.command("expire")
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Count retention as of this day (YYYY-MM-DD) instead of today (UTC).",
)
def archive_expire(today: dt.datetime | None) -> None:
    """Remove journal bags whose 5-year retention has ended; ledger bags stay.

    Each removal is recorded in the school ledger log. A day later than the real one is refused
    outside tests: retention is counted in real days.
    """
    from .services import run_expire

    real_today = dt.datetime.now(dt.UTC).date()
    day = today.date() if today else real_today
    if day > real_today and not current_app.config.get("TESTING"):
        raise click.BadParameter(
            f"{day} is later than today ({real_today}); retention is counted in real days",
            param_hint="--today",
        )
    outcomes = run_expire(db.session, _settings(day), today=day)
    failed = False
    for outcome in outcomes:
        if outcome.locked:
            click.echo(f"{outcome.domain}: skipped, another archive run holds this school")
            continue
        if outcome.error:
            failed = True
            click.echo(f"{outcome.domain}: FAILED: {outcome.error}", err=True)
            continue
        click.echo(
            f"{outcome.domain}: {len(outcome.destroyed)} bag(s) destroyed as of {day}, "
            f"{outcome.kept} kept under retention"
        )
        for key in outcome.destroyed:
            click.echo(f"  destroyed {key} (recorded in the ledger log)")
        for problem in outcome.refused:
            failed = True
            click.echo(f"  refused {problem}", err=True)
        for incident in outcome.incidents:
            failed = True
            click.echo(f"  INCIDENT {incident} (recorded in the ledger log)", err=True)
    sys.exit(1 if failed else 0)


def _backup_key() -> bytes:
    from .backup import BackupError, backup_key_from_config

    try:
        return backup_key_from_config(current_app.config)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None


@backup_cli.command("create")
def backup_create() -> None:
    """Back up the database, encrypted with BACKUP_KEY, into BACKUP_DIR."""
    from .backup import BackupError, create_backup

    key = _backup_key()
    try:
        path = create_backup(
            current_app.config["DATABASE_URL"], Path(current_app.config["BACKUP_DIR"]), key
        )
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {path} ({path.stat().st_size} bytes)")


@backup_cli.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--into", "into_url", required=True, help="URL of a new, empty database.")
def backup_restore(file: Path, into_url: str) -> None:
    """Decrypt FILE and restore it into the empty database at --into."""
    from .backup import BackupError, restore_backup

    key = _backup_key()
    try:
        fmt = restore_backup(file, into_url, key)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"restored {file.name} ({fmt}) into {_hide_password(into_url)}")


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@backup_cli.command("drill")
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def backup_drill(file: Path | None) -> None:
    """Restore FILE (default: the newest backup) into a scratch database and verify every
    journal's recomputed root against its latest checkpoint. Exits 1 when anything fails."""
    from .backup import BackupError, drill_backup, latest_backup

    key = _backup_key()
    config = current_app.config
    try:
        path = file or latest_backup(Path(config["BACKUP_DIR"]))
        report = drill_backup(
            path,
            key,
            database_url=config["DATABASE_URL"],
            work_dir=Path(config.get("BACKUP_DRILL_DIR") or Path(config["BACKUP_DIR"]) / "drill"),
            progress=click.echo,
        )
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    for line in report.lines:
        click.echo(f"  ok {line}")
    for failure in report.failures:
        click.echo(f"  FAILED {failure}", err=True)
    verdict = "PASSED" if report.ok else "FAILED"
    click.echo(f"drill {verdict}: {report.journals} journal(s) verified from {path.name}")
    # The drill proves the database can come back; the archive audit that the bags are there.
    from .services import run_audit

    click.echo("archive audit:")
    settings = _settings()
    audited = _report_audit(settings, run_audit(db.session, settings))
    sys.exit(0 if report.ok and audited else 1)


# -- the registrar: the certificate register and duplicates, from the archive alone --------------

registrar_cli = AppGroup(
    "registrar",
    help="The certificate register from the archive: search, issue (a duplicate), list; "
    "certify records a certificate issued now.",
)


def _registrar(username: str) -> Any:
    from sqlalchemy import select

    from auth.models import User

    user = db.session.scalar(select(User).where(User.username == username))
    if user is None or not any(grant.role == "registrar" for grant in user.roles):
        raise click.ClickException(f"{username} is not a registrar")
    return user


def _query(iin: str | None, last: str | None, first: str | None, born: Any) -> Any:
    import base64

    from auth.iin import InvalidIIN, iin_lookup_hash, validate_iin

    from .registrar import Query

    if iin:
        try:
            valid = validate_iin(iin)
        except InvalidIIN:
            raise click.ClickException("this IIN is not valid: check the 12 digits") from None
        digest = iin_lookup_hash(valid, current_app.config["IIN_HMAC_KEY"])
        return Query(iin_hmac=base64.b64encode(digest).decode())
    if last and first and born:
        return Query(last_name=last, first_name=first, birth_date=born.date())
    raise click.ClickException("give --iin, or --last-name, --first-name and --birth-date")


def _found(user: Any, query: Any, kinds: tuple[str, ...] | None = None) -> list[Any]:
    from .registrar import (
        RECORD_KINDS,
        RegistrarError,
        find_records,
        pinned_ledger_bags,
        registrar_scope,
    )
    from .storage import storage_from_config

    trusted, prefixes = registrar_scope(db.session, current_app.config, user)
    try:
        return find_records(
            storage_from_config(current_app.config),
            query,
            trusted_vkeys=trusted,
            prefixes=prefixes,
            pinned=pinned_ledger_bags(db.session),
            kinds=kinds or RECORD_KINDS,
        )
    except RegistrarError as exc:
        raise click.ClickException(str(exc)) from None


def _who(function: Any) -> Any:
    for option in (
        click.option("--as", "username", required=True, help="The registrar's user name."),
        click.option("--iin"),
        click.option("--last-name"),
        click.option("--first-name"),
        click.option("--birth-date", type=click.DateTime(["%Y-%m-%d"])),
    ):
        function = option(function)
    return function


def _log_search(user: Any, query: Any, action: str) -> None:
    from auth.services import record_access

    from .views import search_target

    target_type, target = search_target(query)
    record_access(db.session, user, action, target_type, target, None, school_id=user.school_id)


@registrar_cli.command("search")
@_who
def registrar_search(
    username: str, iin: str | None, last_name: str | None, first_name: str | None, birth_date: Any
) -> None:
    """The pupil's archived summary-ledger and certificate records (your schools only)."""
    user = _registrar(username)
    query = _query(iin, last_name, first_name, birth_date)
    records = _found(user, query)
    _log_search(user, query, "registrar_search")
    db.session.commit()
    click.echo(f"records found: {len(records)}")
    for record in records:
        student = record.student
        what = record.kind
        if record.kind != "ledger_record":
            number = record.payload["certificate"]
            what += f" {number['series']} {number['number']} {number['issued_on']}"
        click.echo(
            f"{record.origin} seq {record.seq}: {student['last_name']} {student['first_name']} "
            f"{student['birth_date']} {record.school_year} {record.class_name} {what}".rstrip()
        )


@registrar_cli.command("issue")
@_who
@click.option("--series", required=True, help="The duplicate's own series.")
@click.option("--number", required=True, help="The duplicate's own number.")
@click.option("--date", "issued_on", type=click.DateTime(["%Y-%m-%d"]), required=True)
@click.option("--reason", required=True, help="Why a duplicate is issued (lost, damaged, ...).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--language",
    # exports.printouts.PRINTOUT_LANGUAGES; importing it would load the PDF stack for any command
    type=click.Choice(["kk", "ru"]),
    default="kk",
    show_default=True,
    help="The language the extract is issued in.",
)
def registrar_issue(
    username: str,
    iin: str | None,
    last_name: str | None,
    first_name: str | None,
    birth_date: Any,
    series: str,
    number: str,
    issued_on: Any,
    reason: str,
    output: Path,
    language: str,
) -> None:
    """Issue a duplicate certificate from the archive: record it in the register (its own
    number, the reason, a link to the original record) and write the signed extract."""
    from auth.services import record_access

    from .registrar import DuplicateRequest, RegistrarError, issue_duplicate
    from .views import search_target

    user = _registrar(username)
    query = _query(iin, last_name, first_name, birth_date)
    records = _found(user, query)
    request = DuplicateRequest(series, number, issued_on.date(), reason)
    try:
        data, fields = issue_duplicate(
            db.session, current_app.config, records, request, registrar=user, language=language
        )
    except (RegistrarError, LookupError) as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    target_type, target = search_target(query)
    record_access(
        db.session, user, "issue_duplicate", target_type, target, None, school_id=user.school_id
    )
    output.write_bytes(data)
    db.session.commit()
    original = fields["original"]
    click.echo(
        f"duplicate {series} {number} recorded; original {original['series']} "
        f"{original['number']} ({original['origin']} seq {original['seq']}); extract: {output}"
    )


@registrar_cli.command("list")
@click.option("--as", "username", required=True, help="The registrar's user name.")
def registrar_list(username: str) -> None:
    """The certificate register of your schools: certificates and duplicates, from the archive
    and those issued since the last ledger bag."""
    from sqlalchemy import select

    from journal.certificates.register import CERTIFICATE_KINDS
    from journal.models import School

    from .registrar import Query, register_payloads

    user = _registrar(username)
    everyone = Query(match_all=True)
    found = _found(user, everyone, CERTIFICATE_KINDS)
    _trusted, prefixes = _scope(user)
    schools = db.session.scalars(select(School).order_by(School.domain)).all()
    for school in schools:
        if prefixes is not None and f"{school.domain}/" not in prefixes:
            continue
        mine = [r for r in found if r.origin.split("/", 1)[0] == school.domain]
        for payload in register_payloads(db.session, school, mine):
            number = payload["certificate"]
            student = payload["student"]
            line = (
                f"{school.domain} {payload['kind']} {number['series']} {number['number']} "
                f"{number['issued_on']} {student['last_name']} {student['first_name']} "
                f"{student['birth_date']}"
            )
            if payload["kind"] == "certificate_duplicate":
                original = payload["original"]
                line += (
                    f" duplicate of {original['series']} {original['number']}"
                    f" ({original['origin']} seq {original['seq']}): {payload['reason']}"
                )
            click.echo(line)


def _scope(user: Any) -> tuple[set[str], list[str] | None]:
    from .registrar import registrar_scope

    return registrar_scope(db.session, current_app.config, user)


@registrar_cli.command("certify")
@click.option("--student", "student_id", type=int, required=True, help="The pupil's id.")
@click.option("--level", type=click.Choice(["9", "11"]), required=True)
@click.option("--series", required=True)
@click.option("--number", required=True)
@click.option("--date", "issued_on", type=click.DateTime(["%Y-%m-%d"]), required=True)
def registrar_certify(
    student_id: int, level: str, series: str, number: str, issued_on: Any
) -> None:
    """Record a certificate issued now, with the grades of the pupil's summary-ledger records
    in the school ledger log (before the year's ledger bag is sealed, so it is archived)."""
    from journal.certificates.register import CertificateError
    from journal.certificates.services import record_certificate
    from journal.keys import load_log_key
    from journal.models import School, Student

    student = db.session.get(Student, student_id)
    if student is None:
        raise click.ClickException(f"no pupil {student_id}")
    school = db.session.get_one(School, student.school_id)
    log_key = load_log_key(current_app.config["KEYS_DIR"], school.domain)
    try:
        fields = record_certificate(
            db.session,
            school,
            log_key,
            student,
            level=int(level),
            series=series,
            number=number,
            issued_on=issued_on.date(),
        )
    except CertificateError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    grades = ", ".join(f"{s}: {g}" for s, g in fields["grades"].items())
    click.echo(f"certificate {series} {number} recorded for {student.full_name}: {grades}")

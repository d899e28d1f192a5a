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
def archive_run(domains: tuple[str, ...]) -> None:
    """Seal every closed quarter and finished year not yet archived.

    Safe to run again at any time, also after a crash: sealed bags are skipped and a bag left
    half-done is finished from where it stopped.
    """
    from .services import run_archive

    settings = _settings()
    outcomes = run_archive(
        db.session, settings, domains=list(domains) or None, progress=_progress
    )
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
                click.echo(f"  sealed {key}")
            for problem in outcome.failed:
                failed = True
                click.echo(f"  FAILED {problem} (the rest of the school went on)", err=True)
    if not outcomes:
        click.echo("no schools to archive")
    sys.exit(1 if failed else 0)


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

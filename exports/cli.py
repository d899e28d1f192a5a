"""`flask --app wsgi export journal|ledger`: signed PDF/A printouts to a file; `export signer`:
the school's PDF certificate and its registration in the school ledger log."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from journal.db import db
from journal.keys import load_log_key
from journal.ledger.signer import certificate_sha256
from journal.models import ClassGroup, School, SchoolYear

from . import printouts, signing
from .queries import ExportError

export_cli = AppGroup("export", help="Signed PDF/A journals and summary ledgers.")


def _class_group(class_id: int) -> ClassGroup:
    class_group = db.session.get(ClassGroup, class_id)
    if class_group is None:
        raise click.BadParameter(f"no class with id {class_id}", param_hint="--class")
    return class_group


@export_cli.command("journal")
@click.option("--class", "class_id", type=int, required=True, help="Class id.")
@click.option("--quarter", type=click.IntRange(1, 4), help="A quarter's journal.")
@click.option("--half", type=click.IntRange(1, 2), help="A half-year's (half-year subjects).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--language",
    type=click.Choice(printouts.PRINTOUT_LANGUAGES),
    help="The printout's language [default: the class's language of instruction].",
)
def export_journal(
    class_id: int, quarter: int | None, half: int | None, output: Path, language: str | None
) -> None:
    """The class journal of a quarter or a half-year as a signed PDF/A-3b with its proof."""
    if (quarter is None) == (half is None):
        raise click.UsageError("give --quarter or --half")
    class_group = _class_group(class_id)
    try:
        data = printouts.journal_pdf(
            db.session,
            current_app.config,
            class_group,
            quarter or half or 0,
            language=language or printouts.class_language(class_group),
            kind="quarter" if quarter else "half",
        )
    except (ExportError, LookupError) as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()  # the signer's registration, when this printout made it
    output.write_bytes(data)
    click.echo(f"wrote {output} ({len(data):,} bytes)")


@export_cli.command("ledger")
@click.option("--class", "class_id", type=int, required=True, help="Class id.")
@click.option("--year", "year_name", required=True, help='School year, e.g. "2026-2027".')
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--language",
    type=click.Choice(printouts.PRINTOUT_LANGUAGES),
    help="The printout's language [default: the class's language of instruction].",
)
def export_ledger(class_id: int, year_name: str, output: Path, language: str | None) -> None:
    """The class's summary ledger for a school year as a signed PDF/A-3b."""
    class_group = _class_group(class_id)
    year = db.session.scalar(select(SchoolYear).where(SchoolYear.id == class_group.school_year_id))
    if year is None or year.name != year_name:
        raise click.BadParameter(
            f"class {class_id} belongs to {year.name if year else '?'}, not {year_name}",
            param_hint="--year",
        )
    try:
        data = printouts.ledger_pdf(
            db.session,
            current_app.config,
            class_group,
            language=language or printouts.class_language(class_group),
        )
    except (ExportError, LookupError) as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    output.write_bytes(data)
    click.echo(f"wrote {output} ({len(data):,} bytes)")


@export_cli.command("signer")
@click.option("--school", "domain", help="The school's domain (needed when there are several).")
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Register the certificate again, its period ending at the start of this day (UTC): "
    "a key taken out of use. Printouts it signs after that fail verification.",
)
def export_signer(domain: str | None, until: dt.datetime | None) -> None:
    """Show the school's PDF signing certificate and its registration in the school ledger log;
    register it when it is not yet registered (or again, with --until)."""
    schools = list(db.session.scalars(select(School).order_by(School.id)))
    if domain:
        schools = [s for s in schools if s.domain == domain]
    if len(schools) != 1:
        raise click.BadParameter(
            "name one school with --school" if schools else f"no school {domain}",
            param_hint="--school",
        )
    school = schools[0]
    try:
        signer = signing.school_signer(current_app.config, school)
        cert, chain = signing.signer_certificates(signer)
        log_key = load_log_key(current_app.config["KEYS_DIR"], school.domain)
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if school.log_vkey != log_key.vkey:
        raise click.ClickException(f"the key in KEYS_DIR is not {school.domain}'s published key")
    sha256 = certificate_sha256(cert.public_bytes(serialization.Encoding.DER))
    entry = signing.latest_registration(db.session, school, sha256)
    if entry is None or until is not None:
        end = until.replace(tzinfo=dt.UTC) if until is not None else None
        entry = signing.register_signer(db.session, school, log_key, signer, valid_until=end)
        db.session.commit()
        click.echo(f"registered in the school ledger log at seq {entry.seq}")
    payload = json.loads(entry.leaf)["payload"]
    click.echo(f"certificate  {cert.subject.rfc4514_string()}")
    click.echo(f"issued by    {cert.issuer.rfc4514_string()} (chain of {len(chain)})")
    click.echo(f"SHA-256      {sha256}")
    click.echo(f"may sign     {payload['valid_from']} to {payload['valid_until']}")
    click.echo(f"ledger seq   {entry.seq}")

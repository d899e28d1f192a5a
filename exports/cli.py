"""`flask --app wsgi export journal|ledger`: signed PDF/A printouts to a file."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from journal.db import db
from journal.models import ClassGroup, SchoolYear

from . import printouts
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
@click.option("--language", type=click.Choice(["ru", "kk"]), default="ru", show_default=True)
def export_journal(
    class_id: int, quarter: int | None, half: int | None, output: Path, language: str
) -> None:
    """The class journal of a quarter or a half-year as a signed PDF/A-3b with its proof."""
    if (quarter is None) == (half is None):
        raise click.UsageError("give --quarter or --half")
    try:
        data = printouts.journal_pdf(
            db.session,
            current_app.config,
            _class_group(class_id),
            quarter or half or 0,
            language=language,
            kind="quarter" if quarter else "half",
        )
    except (ExportError, LookupError) as exc:
        raise click.ClickException(str(exc)) from exc
    output.write_bytes(data)
    click.echo(f"wrote {output} ({len(data):,} bytes)")


@export_cli.command("ledger")
@click.option("--class", "class_id", type=int, required=True, help="Class id.")
@click.option("--year", "year_name", required=True, help='School year, e.g. "2026-2027".')
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--language", type=click.Choice(["ru", "kk"]), default="ru", show_default=True)
def export_ledger(class_id: int, year_name: str, output: Path, language: str) -> None:
    """The class's summary ledger for a school year as a signed PDF/A-3b."""
    class_group = _class_group(class_id)
    year = db.session.scalar(select(SchoolYear).where(SchoolYear.id == class_group.school_year_id))
    if year is None or year.name != year_name:
        raise click.BadParameter(
            f"class {class_id} belongs to {year.name if year else '?'}, not {year_name}",
            param_hint="--year",
        )
    try:
        data = printouts.ledger_pdf(db.session, current_app.config, class_group, language=language)
    except (ExportError, LookupError) as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    output.write_bytes(data)
    click.echo(f"wrote {output} ({len(data):,} bytes)")

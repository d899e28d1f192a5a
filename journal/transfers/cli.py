"""``flask --app wsgi transfer extract|carry-in``: the signed transfer extract of a leaving
pupil, and carrying it in at the new school. Each command commits once."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from journal.db import db
from journal.keys import load_log_key
from journal.models import ClassGroup, School, Student

from .extract import TransferError, carry_in, transfer_extract

transfer_cli = AppGroup("transfer", help="Transfers between schools: extract, carry-in.")


def _class_and_pupil(student_id: int, class_id: int) -> tuple[Student, ClassGroup, School]:
    student = db.session.get(Student, student_id)
    group = db.session.get(ClassGroup, class_id)
    if student is None or group is None or student.school_id != group.school_id:
        raise click.ClickException("no such pupil in that class's school")
    return student, group, db.session.get_one(School, group.school_id)


@transfer_cli.command("extract")
@click.option("--student", "student_id", type=int, required=True)
@click.option("--class", "class_id", type=int, required=True, help="The class the pupil leaves.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def extract_command(student_id: int, class_id: int, output: Path) -> None:
    """Write the signed extract of the year's СОР/СОЧ results and term grades."""
    student, group, school = _class_and_pupil(student_id, class_id)
    log_key = load_log_key(current_app.config["KEYS_DIR"], school.domain)
    try:
        data = transfer_extract(db.session, log_key, student, group)
    except TransferError as exc:
        raise click.ClickException(str(exc)) from None
    output.write_bytes(data)
    db.session.commit()
    click.echo(f"transfer extract of {student.full_name}: {output}")


@transfer_cli.command("carry-in")
@click.option("--student", "student_id", type=int, required=True)
@click.option("--class", "class_id", type=int, required=True, help="The pupil's new class.")
@click.argument("document", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def carry_in_command(student_id: int, class_id: int, document: Path) -> None:
    """Record a verified extract as "carried in" entries; refused, writing nothing, when it does
    not verify against a school key this server trusts or is for another pupil."""
    student, group, school = _class_and_pupil(student_id, class_id)
    trusted = {vkey for vkey in db.session.scalars(select(School.log_vkey)) if vkey}
    trusted.update(current_app.config.get("ARCHIVE_TRUSTED_VKEYS") or ())
    trusted.discard(school.log_vkey or "")
    log_key = load_log_key(current_app.config["KEYS_DIR"], school.domain)
    try:
        carried = carry_in(
            db.session, log_key, document.read_bytes(), student, group, trusted_vkeys=trusted
        )
    except TransferError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"{len(carried)} value(s) carried in for {student.full_name}")

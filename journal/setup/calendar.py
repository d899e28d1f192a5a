"""The school year, its terms and its holidays."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import (
    Holiday,
    School,
    SchoolYear,
    Term,
)
from . import N_, TERM_COUNTS, SetupError


def create_school_year(
    session: Session, school: School, name: str, starts_on: dt.date, ends_on: dt.date
) -> SchoolYear:
    name = name.strip()
    if not name or len(name) > 20:
        raise SetupError(N_("A school year needs a name of at most 20 characters."))
    if starts_on >= ends_on:
        raise SetupError(N_("The school year must end after it starts."))
    years = session.scalars(select(SchoolYear).where(SchoolYear.school_id == school.id)).all()
    for year in years:
        if year.name == name:
            raise SetupError(N_("The school year %(name)s exists already."), name=name)
        if year.starts_on <= ends_on and starts_on <= year.ends_on:
            raise SetupError(N_("The dates overlap the school year %(name)s."), name=year.name)
    year = SchoolYear(school_id=school.id, name=name, starts_on=starts_on, ends_on=ends_on)
    session.add(year)
    session.flush()
    return year


def _check_term_dates(
    session: Session,
    year: SchoolYear,
    kind: str,
    starts_on: dt.date,
    ends_on: dt.date,
    term_id: int,
) -> None:
    if starts_on > ends_on:
        raise SetupError(N_("A term must end after it starts."))
    if starts_on < year.starts_on or ends_on > year.ends_on:
        raise SetupError(N_("A term must lie inside the school year."))
    others = session.scalars(
        select(Term).where(Term.school_year_id == year.id, Term.kind == kind, Term.id != term_id)
    )
    for other in others:
        if other.starts_on <= ends_on and starts_on <= other.ends_on:
            raise SetupError(N_("The dates overlap another term of the same kind."))


def add_term(
    session: Session,
    year: SchoolYear,
    kind: str,
    number: int,
    starts_on: dt.date,
    ends_on: dt.date,
) -> Term:
    if kind not in TERM_COUNTS:
        raise SetupError(N_("A term is a quarter or a half-year."))
    if not 1 <= number <= TERM_COUNTS[kind]:
        raise SetupError(
            N_("The number must be from 1 to %(count)s for this kind of term."),
            count=TERM_COUNTS[kind],
        )
    taken = session.scalar(
        select(Term.id).where(
            Term.school_year_id == year.id, Term.kind == kind, Term.number == number
        )
    )
    if taken is not None:
        raise SetupError(N_("This term exists already."))
    _check_term_dates(session, year, kind, starts_on, ends_on, term_id=0)
    term = Term(
        school_year_id=year.id, kind=kind, number=number, starts_on=starts_on, ends_on=ends_on
    )
    session.add(term)
    session.flush()
    return term


def change_term_dates(session: Session, term: Term, starts_on: dt.date, ends_on: dt.date) -> None:
    if term.closed_at is not None:
        raise SetupError(N_("A closed term cannot change."))
    _check_term_dates(session, term.school_year, term.kind, starts_on, ends_on, term.id)
    term.starts_on, term.ends_on = starts_on, ends_on
    session.flush()


def add_holiday(
    session: Session, year: SchoolYear, name: str, starts_on: dt.date, ends_on: dt.date
) -> Holiday:
    name = name.strip()
    if not name:
        raise SetupError(N_("A holiday needs a name."))
    if starts_on > ends_on:
        raise SetupError(N_("A holiday must end on or after its first day."))
    if starts_on < year.starts_on or ends_on > year.ends_on:
        raise SetupError(N_("A holiday must lie inside the school year."))
    holiday = Holiday(school_year_id=year.id, name=name, starts_on=starts_on, ends_on=ends_on)
    session.add(holiday)
    session.flush()
    return holiday


def remove_holiday(session: Session, holiday: Holiday) -> None:
    session.delete(holiday)
    session.flush()

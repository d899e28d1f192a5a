"""Signed printouts, ready to hand out: the one place that joins the queries, the school's PDF
certificate, the optional timestamp authority and the renderer (used by the `export`
commands, the download pages and the archive job)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from journal.keys import load_pdf_signer
from journal.models import ClassGroup, School

from . import queries
from .pdf import PdfSigner, render_journal_pdf, render_ledger_pdf


def pdf_signer(config: Mapping[str, Any], school: School) -> PdfSigner:
    files = load_pdf_signer(config["KEYS_DIR"], school.domain)
    return PdfSigner(
        key_pem=files.key_pem,
        cert_pem=files.cert_pem,
        chain_pem=files.chain_pem,
        location=school.name,
    )


def pdf_timestamper(config: Mapping[str, Any]) -> Any:
    """pyHanko's RFC 3161 client for the document timestamp, when a TSA is configured."""
    url = config.get("TSA_URL")
    if not url:
        return None
    from pyhanko.sign.timestamps import HTTPTimeStamper

    return HTTPTimeStamper(url)


def journal_pdf(
    session: Session,
    config: Mapping[str, Any],
    class_group: ClassGroup,
    quarter: int,
    *,
    language: str = "ru",
    kind: str = "quarter",
) -> bytes:
    """The journal of a quarter, or with ``kind="half"`` of a half-year (half-year subjects)."""
    school = session.get_one(School, class_group.school_id)
    document = queries.journal_document(session, class_group, quarter, kind=kind)
    return render_journal_pdf(
        document, pdf_signer(config, school), pdf_timestamper(config), language=language
    )


def ledger_pdf(
    session: Session,
    config: Mapping[str, Any],
    class_group: ClassGroup,
    *,
    language: str = "ru",
) -> bytes:
    school = session.get_one(School, class_group.school_id)
    document = queries.ledger_document(session, class_group)
    return render_ledger_pdf(
        document, pdf_signer(config, school), pdf_timestamper(config), language=language
    )


def printouts_for(session: Session, class_group: ClassGroup, term: Any) -> dict[str, bytes]:
    """The printouts that go into an archive bag: the journal of a quarter (subjects graded by
    quarters) or of a half-year (subjects graded by half-years), the summary ledger for a whole
    year (``term`` None). Uses the app's configuration."""
    from flask import current_app

    config = current_app.config
    if term is not None:
        kind = getattr(term, "kind", "quarter")
        # Names by class id: ASCII, and "7Ә" and "7Б" never collide.
        name = f"journal-class{class_group.id}-{'h' if kind == 'half' else 'q'}{term.number}.pdf"
        return {name: journal_pdf(session, config, class_group, term.number, kind=kind)}
    return {f"ledger-class{class_group.id}.pdf": ledger_pdf(session, config, class_group)}

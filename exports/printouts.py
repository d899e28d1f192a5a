"""Signed printouts, ready to hand out: the one place that joins the queries, the school's PDF
certificate (with its registration in the school ledger log, ``exports/signing.py``), the
optional timestamp authority and the renderer (used by the `export` commands, the download pages
and the archive job).

Besides the proof of its content, every printout embeds ``signer.jsonl`` and
``signer.tlog-proof`` (who may sign for the school) and ``printout.json`` (which document it is:
class, school year, quarter, the log and the range of it shown), so a verifier can bind it to a
bag's class and period.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from journal.ledger import audit
from journal.models import ClassGroup, School, SchoolYear

from . import queries
from .documents import JournalDocument, LedgerDocument, ProofBundle
from .pdf import PdfSigner, render_journal_pdf, render_ledger_pdf
from .signing import anchor_for, printout_file, school_signer

PRINTOUT_LANGUAGES = ("kk", "ru")
# Each language by its own name, for the choice on a page.
PRINTOUT_LANGUAGE_NAMES = {"kk": "Қазақша", "ru": "Русский"}


def pdf_signer(config: Mapping[str, Any], school: School) -> PdfSigner:
    """The school's signer (PKCS#12 or PEM files in KEYS_DIR)."""
    return school_signer(config, school)


def pdf_timestamper(config: Mapping[str, Any]) -> Any:
    """pyHanko's RFC 3161 client for the document timestamp, when a TSA is configured."""
    url = config.get("TSA_URL")
    if not url:
        return None
    from pyhanko.sign.timestamps import HTTPTimeStamper

    return HTTPTimeStamper(url)


def with_files(proof: ProofBundle, *files: tuple[str, bytes]) -> ProofBundle:
    """The proof bundle with more files to embed."""
    return dataclasses.replace(proof, extra_files=(*proof.extra_files, *files))


def _first_seq(proof: ProofBundle) -> int:
    for name, data in proof.extra_files:
        if name == audit.RANGE_FILE:
            return audit.parse_range_file(data.decode("ascii"))[0]
    return 0


def check_url(config: Mapping[str, Any]) -> str | None:
    """The school's public check page, which a printout's QR code points to (None when the
    public address is not configured, as in development)."""
    public = config.get("PUBLIC_URL")
    return f"{str(public).rstrip('/')}/check" if public else None


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
    year = session.get_one(SchoolYear, class_group.school_year_id)
    signer, anchor = anchor_for(session, config, school)
    document: JournalDocument = queries.journal_document(
        session, class_group, quarter, kind=kind, language=language
    )
    assert document.proof is not None
    half = kind == "half"
    described = printout_file(
        {
            "document": "journal_half" if half else "journal_quarter",
            "school_year": year.name,
            "class_id": class_group.id,
            "class_name": class_group.name,
            "quarter": None if half else quarter,
            "half_year": quarter if half else None,
            "log": document.proof.origin,
            "first_seq": _first_seq(document.proof),
            "checkpoint_size": document.proof.tree_size,
        }
    )
    proof = with_files(document.proof, *anchor.files, described)
    return render_journal_pdf(
        dataclasses.replace(document, proof=proof),
        signer,
        pdf_timestamper(config),
        language=language,
        check_url=check_url(config),
    )


def ledger_pdf(
    session: Session,
    config: Mapping[str, Any],
    class_group: ClassGroup,
    *,
    language: str = "ru",
) -> bytes:
    school = session.get_one(School, class_group.school_id)
    year = session.get_one(SchoolYear, class_group.school_year_id)
    signer, anchor = anchor_for(session, config, school)
    document: LedgerDocument = queries.ledger_document(session, class_group)
    assert document.proof is not None
    described = printout_file(
        {
            "document": "summary_ledger",
            "school_year": year.name,
            "class_id": class_group.id,
            "class_name": class_group.name,
            "quarter": None,
            "log": document.proof.origin,
            "first_seq": None,
            "checkpoint_size": document.proof.tree_size,
        }
    )
    proof = with_files(document.proof, *anchor.files, described)
    return render_ledger_pdf(
        dataclasses.replace(document, proof=proof),
        signer,
        pdf_timestamper(config),
        language=language,
        check_url=check_url(config),
    )


def class_language(class_group: ClassGroup) -> str:
    """The language a class's printouts are made in when nobody chose one: its language of
    instruction (Russian for a class that names none we print in)."""
    return class_group.language if class_group.language in PRINTOUT_LANGUAGES else "ru"


def printouts_for(session: Session, class_group: ClassGroup, term: Any) -> dict[str, bytes]:
    """The printouts that go into an archive bag, in the class's language of instruction: the
    journal of a quarter (subjects graded by quarters) or of a half-year (subjects graded by
    half-years), the summary ledger for a whole year (``term`` None). Uses the app's
    configuration."""
    from flask import current_app

    config = current_app.config
    language = class_language(class_group)
    if term is not None:
        kind = getattr(term, "kind", "quarter")
        # Names by class id: ASCII, and "7Ә" and "7Б" never collide.
        name = f"journal-class{class_group.id}-{'h' if kind == 'half' else 'q'}{term.number}.pdf"
        return {
            name: journal_pdf(
                session, config, class_group, term.number, kind=kind, language=language
            )
        }
    return {
        f"ledger-class{class_group.id}.pdf": ledger_pdf(
            session, config, class_group, language=language
        )
    }

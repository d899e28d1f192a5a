"""Archive state: which bags exist, where they are stored, until when, and what was destroyed.

An :class:`ArchivedBag` row walks ``planned`` → ``built`` → ``sealed`` (→ ``destroyed``), one
committed step at a time, so an archive run killed at any point resumes where it stopped
(``archive/services.py`` explains the steps). :class:`BagDestruction` rows are history: the
database refuses UPDATE and DELETE on them (migration ``0007archive``), and each one is also a
leaf of the school ledger log. :class:`ArchiveAudit` rows say when ``archive audit`` read every
bag back and what it found; they are history too.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Date, ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from journal.db import Base, BigId, UTCDateTime, intpk, timestamp, utcnow
from journal.models import ClassGroup, School, SchoolYear, Term

BAG_KINDS = ("journal_quarter", "journal_half", "journal_year", "ledger_year")
BAG_STATES = ("planned", "built", "sealed", "destroyed")
JOURNAL_TIER = "journal-5y"
LEDGER_TIER = "ledger-25y"
TIERS = (JOURNAL_TIER, LEDGER_TIER)


def _sql_in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


class ArchiveRun(Base):
    """One ``archive run`` or ``archive expire`` over one school: when, how it ended, what it did.

    Rows are bookkeeping for operators; the ledger log is the record that matters.
    """

    __tablename__ = "archive_runs"
    __table_args__ = (
        CheckConstraint("kind IN ('archive', 'expire')", name="kind"),
        CheckConstraint("status IN ('running', 'done', 'failed')", name="status"),
    )

    id: Mapped[intpk]
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), default="running")
    started_at: Mapped[timestamp] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    bags_done: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)


class ArchivedBag(Base):
    """One archive package: a class journal for a quarter or a year, or the school-year ledger.

    ``key`` is the storage object name (``<domain>/<bag name>.tar``); ``sha512`` and ``size`` are
    the tar's, recorded before the upload so a rerun never uploads other bytes under the key.
    """

    __tablename__ = "archived_bags"
    __table_args__ = (
        CheckConstraint(f"kind IN {_sql_in(BAG_KINDS)}", name="kind"),
        CheckConstraint(f"state IN {_sql_in(BAG_STATES)}", name="state"),
        CheckConstraint(f"tier IN {_sql_in(TIERS)}", name="tier"),
    )

    id: Mapped[intpk]
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"), index=True)
    school_year_id: Mapped[int] = mapped_column(ForeignKey("school_years.id"))
    class_group_id: Mapped[int | None] = mapped_column(ForeignKey("class_groups.id"))
    term_id: Mapped[int | None] = mapped_column(ForeignKey("terms.id"))
    log_id: Mapped[int] = mapped_column(ForeignKey("logs.id"))
    kind: Mapped[str] = mapped_column(String(20))
    tier: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(300), unique=True)
    state: Mapped[str] = mapped_column(String(10), default="planned")
    # The checkpoint the bag covers: fixed when planned, so a rebuilt bag holds the same leaves.
    checkpoint_size: Mapped[int] = mapped_column(BigId)
    checkpoint_root: Mapped[bytes] = mapped_column(LargeBinary(32))
    bagging_date: Mapped[dt.date] = mapped_column(Date)
    retain_until: Mapped[dt.date] = mapped_column(Date)
    storage: Mapped[str] = mapped_column(String(300))  # e.g. "s3://bucket", "local:/srv/archive"
    sha512: Mapped[str | None] = mapped_column(String(128))
    size: Mapped[int | None] = mapped_column(BigId)
    # The S3 version written at upload: every later read, audit and delete names it, because
    # Object Lock protects versions, not keys. None on the local store (one version per key).
    version_id: Mapped[str | None] = mapped_column(String(1024))
    planned_at: Mapped[timestamp] = mapped_column(default=utcnow)
    sealed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    destroyed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Set (and committed) just before expiry deletes the object: a run that dies between the
    # delete and its record finds the object gone and knows that it was its own doing.
    destroy_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The seq of the ledger-log record that says this bag was sealed.
    ledger_seq: Mapped[int | None] = mapped_column(BigId)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("archive_runs.id"))

    school: Mapped[School] = relationship()
    school_year: Mapped[SchoolYear] = relationship()
    class_group: Mapped[ClassGroup | None] = relationship()
    term: Mapped[Term | None] = relationship()

    @property
    def bag_name(self) -> str:
        """The bag's directory name: the last segment of the key without ``.tar``."""
        return self.key.rsplit("/", 1)[-1].removesuffix(".tar")


class BagDestruction(Base):
    """A journal bag removed from storage after its retention ended (append-only history)."""

    __tablename__ = "bag_destructions"

    id: Mapped[intpk]
    bag_id: Mapped[int] = mapped_column(ForeignKey("archived_bags.id"), unique=True)
    key: Mapped[str] = mapped_column(String(300))
    sha512: Mapped[str] = mapped_column(String(128))
    retain_until: Mapped[dt.date] = mapped_column(Date)
    # The day the operator's command ran as (``--today``) and the real moment it ran.
    destroyed_on: Mapped[dt.date] = mapped_column(Date)
    destroyed_at: Mapped[timestamp] = mapped_column(default=utcnow)
    # False when the object was already gone at expiry (the run that deleted it had crashed).
    object_found: Mapped[bool] = mapped_column(default=True)
    ledger_seq: Mapped[int] = mapped_column(BigId)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("archive_runs.id"))


class ArchiveAudit(Base):
    """One ``archive audit`` of one school's stored bags (append-only history).

    The result is also a ``archive_audited`` record in the school ledger log (``ledger_seq``);
    ``findings`` holds one line per finding, empty when the audit found nothing.
    """

    __tablename__ = "archive_audits"

    id: Mapped[intpk]
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"), index=True)
    storage: Mapped[str] = mapped_column(String(300))
    started_at: Mapped[timestamp] = mapped_column(default=utcnow)
    finished_at: Mapped[timestamp] = mapped_column(default=utcnow)
    bags_checked: Mapped[int] = mapped_column(default=0)
    finding_count: Mapped[int] = mapped_column(default=0)
    findings: Mapped[str] = mapped_column(Text, default="")
    ledger_seq: Mapped[int] = mapped_column(BigId)

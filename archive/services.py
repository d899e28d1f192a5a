"""The archive run and expiry: journals and ledgers sealed as BagIt packages on write-once storage.

**Bags** (DESIGN §5). Per school, as quarters close and years end:

- ``journal_quarter``: one per class per closed quarter (``Term.closed_at`` set);
- ``journal_half``: one per class per closed half-year, with the half-year printout of the
  subjects graded by half-years;
- ``journal_year``: one per class per finished year (year end passed, every quarter closed);
- ``ledger_year``: one per finished school year, once all that year's journal bags are sealed.

Journal bags are the 5-year tier (retained until the school year's end + 5 years), ledger bags the
25-year tier (+ 25 years). A bag holds ``data/entries.jsonl`` (the log's leaves up to the bag's
checkpoint), ``data/checkpoints/`` (every checkpoint up to it with its ``.tsr`` token, and the
consistency proofs between them), ``data/printouts/`` (signed PDFs, from :func:`printouts_for`),
``data/keys/`` (``log.vkey``, ``device-keys.json``, ``tsa-ca.pem`` when configured),
``data/VERIFY.md`` and ``data/verify/`` (``archive/verify/``: the standalone verifier and its
instructions, and the ``journal/ledger`` package, so the bag checks itself with Python and
``cryptography``), and at the top ``bag-seal.note``, the school log key's signature over every
top-level file (:mod:`archive.verify.seal`). The object key is ``<school domain>/<bag
name>.tar``, one deterministic tar per bag (``archive/storage.py``).

**Tag-manifest timestamp: inside the bag.** When a TSA is configured, the bag is built, then
``tagmanifest-sha512.txt`` is timestamped and the token written beside it as the tag file
``tagmanifest-sha512.txt.tsr``, then the bag is sealed, validated and serialized, and only then
uploaded: nothing changes after validation, and the one object is the whole package (one retention
date, one GET, nothing to lose track of). The token cannot be listed in the tag manifest it covers;
BagIt 1.0 allows unlisted tag files, ``bagit.py --validate`` ignores it, and it authenticates
itself: ``openssl ts -verify -data tagmanifest-sha512.txt -in tagmanifest-sha512.txt.tsr``. Because
the tag manifest lists ``bag-info.txt`` and the payload manifest, the token dates every byte of the
package.

**The run, step by step** (each step commits, so a crash loses at most the step under way):

1. *plan*: choose the checkpoint the bag covers and record the bag row (``planned``) with its
   size and root, the bagging date and retain-until, so a rebuilt bag holds the same leaves. A
   quarter bag covers the first checkpoint cut at or after the quarter was closed (closing a
   quarter cuts one), so a late run does not sweep later quarters' entries into it; a year or
   ledger bag, and a quarter without such a checkpoint, gets a new one cut now (timestamped when
   ``TSA_URL`` is set);
2. *build*: build the bag in the staging directory, timestamp its tag manifest, seal and validate
   it, write its tar to ``<staging>/<bag>-<id>.tar`` (fsynced, renamed into place) and record the
   tar's sha512 (``built``). Before this commit nothing is uploaded; after it, only those bytes ever
   are. Bag content is deterministic (sorted files, fixed dates, the planned checkpoint), but
   timestamp tokens and signed PDFs are not, so the staged tar, not a rebuild, is what gets uploaded
   after a crash;
3. *upload*: put the staged tar (a second put of the same bytes is a no-op on both stores);
4. *check and seal*: confirm the store holds what was built (:func:`confirm_upload`, the
   ``store`` check: one HEAD of the pinned version shows the size, the sha512, the SHA-256 and
   MD5 the store computed on receipt, COMPLIANCE mode and retain-until, compared with the staged
   tar), or, with ``ARCHIVE_FULL_READBACK`` (``archive run --full-readback``) or when the store
   cannot vouch, read the object back and run the verifier the bag ships with on it
   (:func:`verify_stored_bag`, the ``read-back`` check: seal, keys, every leaf signature, the
   Merkle tree against every checkpoint, the consistency proofs, the timestamp tokens, the
   printouts, the planned bag-info) in a worker process while the next bag is built; then mark
   it ``sealed`` and append a ``journal_sealed`` / ``ledger_sealed`` record naming the check
   (``checked``) with the final checkpoint to the school ledger log, in one commit. The full
   read-back of every sealed bag is ``archive audit``'s job (weekly).

A rerun skips sealed bags, so running twice stores nothing twice. One school is archived at a
time under a PostgreSQL advisory transaction lock held on its own connection (:func:`school_lock`;
a no-op on SQLite, whose writers queue on the database lock anyway). A bag (or a class's summary
ledger) that fails is named in the outcome and the rest of the school goes on; a year's ledger
bag waits until all its journal bags are sealed. The upload pins the version the store wrote
(``ArchivedBag.version_id``, also in the seal record): every later read names it. Every run that
added ledger records ends with a signed, timestamped ledger checkpoint (:func:`checkpoint_ledger`).

**Expiry** (:func:`expire_school`) deletes the pinned version of sealed journal bags whose
retain-until has come, and never earlier (the app checks, and the store refuses on its own); each
destruction is a :class:`~archive.models.BagDestruction` row and a ``package_destroyed`` record in
the ledger log. A bag the store does not hold as pinned (missing, hidden by a delete marker,
replaced by a newer version) is not destroyed: it is an ``integrity_incident`` record. Ledger bags
are never expired by it.

**Audit** (:func:`audit_school`, ``flask archive audit`` and ``backup drill``) reads every bag back
by its pinned version, verifies it completely, compares the store's objects and versions with the
records, and records the result as an ``archive_audited`` record (and an
:class:`~archive.models.ArchiveAudit` row).

**Ledger records** (``journal_sealed``, ``ledger_sealed``, ``package_destroyed``,
``integrity_incident``, ``archive_audited``; ``docs/formats.md`` §10) are made by the server with
:func:`journal.services.append_ledger_record`: signed with the school log key (checked against the
school's published vkey first), ``device_id`` = its kid, ``author`` null. They verify with
``flask journal verify <ledger log id>`` like any other log.

Configuration read by :meth:`ArchiveSettings.from_config`: ``ARCHIVE_STORAGE`` and friends
(``archive/storage.py``), ``ARCHIVE_STAGING_DIR`` (default ``<instance>/archive-staging``),
``KEYS_DIR``, ``TSA_URL`` (+ ``TSA_TIMEOUT``), ``TSA_CA_CERTS`` (a PEM file with the TSA's CA
certificate(s): copied into each bag as ``data/keys/tsa-ca.pem`` and used to verify tokens) and
``PDF_TRUST_ROOTS`` (roots whose PDF signatures count without a registration).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.orm import Session

from journal.db import utcnow
from journal.keys import LogKey, load_log_key
from journal.models import Checkpoint, ClassGroup, Entry, Log, School, SchoolYear, Term
from journal.services import (
    append_ledger_record,
    cut_checkpoint,
    device_keys_document,
    ensure_ledger_log,
    server_keys_document,
)

from .bag import bag_to_tar, build_bag, validate_bag
from .models import (
    JOURNAL_TIER,
    LEDGER_TIER,
    ArchiveAudit,
    ArchivedBag,
    ArchiveRun,
    BagDestruction,
)
from .readback import READ_BACK, BagChecker, confirm_upload
from .storage import (
    ArchiveStorage,
    Expected,
    Finding,
    LocalWormStorage,
    ObjectNotFound,
    Pinned,
    RetentionError,
    S3ObjectLockStorage,
    StorageError,
    _flag,
    storage_from_config,
)
from .timestamps import TimestampAuthority, check_response, timestamp_authority_from_config
from .verify import seal
from .verify.verify import Report

log = logging.getLogger(__name__)

JOURNAL_YEARS = 5
LEDGER_YEARS = 25
TAGMANIFEST = "tagmanifest-sha512.txt"
TAGMANIFEST_TOKEN = TAGMANIFEST + ".tsr"
# pg_try_advisory_xact_lock(namespace, school id): "ARCH" keeps clear of other lock users.
LOCK_NAMESPACE = 0x41524348
_REPO = Path(__file__).resolve().parent.parent
CRASH_ENV = "JOURNAL_ARCHIVE_CRASH_AT"
_crash_counts: dict[str, int] = {}

Progress = Callable[[str, int], AbstractContextManager[Any]]


class ArchiveError(Exception):
    """The archive run cannot go on for this school (the message says why)."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ArchiveSettings:
    """Where bags go and what signs and dates them; ``today`` overrides the clock (tests)."""

    storage: ArchiveStorage
    staging_dir: Path
    keys_dir: Path
    timestamper: TimestampAuthority | None = None
    tsa_ca_certs: Path | None = None
    today: dt.date | None = None
    # Roots whose PDF signatures count without a registration (PDF_TRUST_ROOTS: PEM files).
    pdf_trust: tuple[x509.Certificate, ...] = ()
    # ARCHIVE_FULL_READBACK: the run reads every bag back and verifies it completely before
    # sealing it, instead of the store's checksums (the audit always does).
    full_readback: bool = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any], instance_path: str | Path) -> ArchiveSettings:
        ca = config.get("TSA_CA_CERTS")
        if ca and not Path(ca).is_file():
            raise ValueError(f"TSA_CA_CERTS {ca} is not a file")
        if config.get("TSA_URL") and not ca:
            log.warning(
                "TSA_URL is set without TSA_CA_CERTS: bags carry no TSA CA certificate, so "
                "nobody can check the tokens' certificate chains from the bag alone"
            )
        return cls(
            pdf_trust=pdf_trust_roots(config),
            storage=storage_from_config(config),
            staging_dir=Path(
                config.get("ARCHIVE_STAGING_DIR") or Path(instance_path) / "archive-staging"
            ),
            keys_dir=Path(config["KEYS_DIR"]),
            timestamper=timestamp_authority_from_config(config),
            tsa_ca_certs=Path(ca) if ca else None,
            full_readback=_flag(config.get("ARCHIVE_FULL_READBACK", False)),
        )

    def day(self) -> dt.date:
        return self.today or utcnow().date()


def pdf_trust_roots(config: Mapping[str, Any]) -> tuple[x509.Certificate, ...]:
    """``PDF_TRUST_ROOTS``: PEM files (a list, or one path) of the roots whose PDF signatures
    count without a registration in the school ledger log, e.g. the national certificate
    authority's for qualified signatures. ValueError when a file holds no certificate."""
    value = config.get("PDF_TRUST_ROOTS") or ()
    paths = [value] if isinstance(value, str | Path) else list(value)
    roots: list[x509.Certificate] = []
    for path in paths:
        try:
            found = x509.load_pem_x509_certificates(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise ValueError(f"PDF_TRUST_ROOTS {path}: {exc}") from None
        roots += found
    return tuple(roots)


def storage_label(storage: ArchiveStorage) -> str:
    """Where a bag is stored, for the bag row and the ledger record."""
    if isinstance(storage, S3ObjectLockStorage):
        return f"s3://{storage.bucket}"
    if isinstance(storage, LocalWormStorage):
        return f"local:{storage.root}"
    return repr(storage)


def prepare_storage(storage: ArchiveStorage) -> None:
    """Create the S3 bucket with Object Lock when it is missing, or check it has the lock."""
    if isinstance(storage, S3ObjectLockStorage):
        storage.ensure_bucket()


def _crash_point(step: str) -> None:
    """Test hook: ``JOURNAL_ARCHIVE_CRASH_AT=<step>[:<n>]`` SIGKILLs this process the n-th time
    (default the first) it reaches ``step``, to prove a rerun recovers from exactly there."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition(":")
    if name != step:
        return
    _crash_counts[step] = _crash_counts.get(step, 0) + 1
    if _crash_counts[step] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------- locking


@contextmanager
def school_lock(session: Session, school_id: int) -> Iterator[bool]:
    """Hold the school's archive lock for the block; yields False when another run holds it.

    PostgreSQL: ``pg_try_advisory_xact_lock`` in a transaction on a dedicated connection, kept
    open for the block and rolled back at its end (or when the process dies), which releases
    the lock. SQLite: always True.
    """
    bind = session.get_bind()
    engine: Engine = bind.engine if isinstance(bind, Connection) else bind
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as connection:
        got = bool(
            connection.scalar(select(func.pg_try_advisory_xact_lock(LOCK_NAMESPACE, school_id)))
        )
        try:
            yield got
        finally:
            connection.rollback()


# --------------------------------------------------------------------------- printouts


def printouts_for(session: Session, class_group: ClassGroup, term: Term | None) -> dict[str, bytes]:
    """Signed PDF printouts for a class's bag: the journal of a quarter or a half-year when
    ``term`` is one, the year's summary ledger when ``term`` is None. ``{file name: PDF bytes}``.

    A school without a PDF signing key cannot seal: printouts are part of what a bag promises.
    """
    from exports.printouts import printouts_for as render_printouts

    try:
        return dict(render_printouts(session, class_group, term))
    except LookupError as exc:
        raise ArchiveError(f"cannot print {class_group.name}: {exc}") from exc


def signer_chain_files(session: Session, school: School) -> dict[str, bytes]:
    """``keys/pdf-signer.pem`` (the certificate that signs the printouts) and ``keys/pdf-ca.pem``
    (the certificates that issued it): what ``pdfsig -nssdir`` needs to call it trusted."""
    from flask import current_app

    from exports.signing import chain_pem, school_signer

    try:
        signer_pem, issuers_pem = chain_pem(school_signer(current_app.config, school))
    except LookupError as exc:
        raise ArchiveError(f"cannot print for {school.domain}: {exc}") from exc
    files = {"keys/pdf-signer.pem": signer_pem}
    if issuers_pem:
        files["keys/pdf-ca.pem"] = issuers_pem
    return files


# --------------------------------------------------------------------------- planning


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February: keep it one day longer rather than shorter
        return dt.date(day.year + years, 3, 1)


def retain_until_for(year: SchoolYear, tier: str) -> dt.date:
    return _add_years(year.ends_on, JOURNAL_YEARS if tier == JOURNAL_TIER else LEDGER_YEARS)


def bag_name(
    kind: str, year: SchoolYear, class_group: ClassGroup | None = None, term: Term | None = None
) -> str:
    if kind == "ledger_year":
        return f"ledger-{year.name}"
    assert class_group is not None
    period = "year"
    if kind in ("journal_quarter", "journal_half") and term is not None:
        period = f"{'h' if kind == 'journal_half' else 'q'}{term.number}"
    return f"journal-{year.name}-class{class_group.id}-{period}"


def object_key(school: School, name: str) -> str:
    return f"{school.domain}/{name}.tar"


@dataclass(frozen=True)
class DueBag:
    """A bag that should exist by now and has no row yet."""

    kind: str
    year: SchoolYear
    log: Log
    class_group: ClassGroup | None = None
    term: Term | None = None


def _year_finished(year: SchoolYear, today: dt.date) -> bool:
    quarters = [t for t in year.terms if t.kind == "quarter"]
    return year.ends_on < today and bool(quarters) and all(t.closed_at for t in quarters)


def due_journal_bags(session: Session, school: School, today: dt.date) -> list[DueBag]:
    """Journal bags that should exist now and have no row yet, in a stable order."""
    have = set(session.scalars(select(ArchivedBag.key).where(ArchivedBag.school_id == school.id)))
    due = []
    years = session.scalars(
        select(SchoolYear).where(SchoolYear.school_id == school.id).order_by(SchoolYear.starts_on)
    )
    for year in years:
        closed = sorted(
            (t for t in year.terms if t.closed_at is not None),
            key=lambda t: (t.kind != "quarter", t.number),
        )
        finished = _year_finished(year, today)
        rows = session.execute(
            select(ClassGroup, Log)
            .join(Log, Log.class_group_id == ClassGroup.id)
            .where(ClassGroup.school_year_id == year.id)
            .order_by(ClassGroup.id)
        ).all()
        for class_group, journal in rows:
            wanted = [
                DueBag(
                    "journal_quarter" if t.kind == "quarter" else "journal_half",
                    year,
                    journal,
                    class_group,
                    t,
                )
                for t in closed
            ]
            if finished:
                wanted.append(DueBag("journal_year", year, journal, class_group))
            due += [item for item in wanted if object_key(school, _due_name(item)) not in have]
    return due


def due_ledger_bags(session: Session, school: School, today: dt.date) -> list[DueBag]:
    """Ledger bags of finished years whose journal bags are all sealed, without a row yet."""
    rows = list(session.scalars(select(ArchivedBag).where(ArchivedBag.school_id == school.id)))
    have = {row.key for row in rows}
    unfinished_years = {row.school_year_id for row in rows if row.state in ("planned", "built")}
    unfinished_years |= {due.year.id for due in due_journal_bags(session, school, today)}
    due = []
    years = session.scalars(
        select(SchoolYear).where(SchoolYear.school_id == school.id).order_by(SchoolYear.starts_on)
    )
    for year in years:
        if (
            _year_finished(year, today)
            and year.id not in unfinished_years
            and object_key(school, bag_name("ledger_year", year)) not in have
        ):
            due.append(DueBag("ledger_year", year, ensure_ledger_log(session, school)))
    return due


def _due_name(due: DueBag) -> str:
    return bag_name(due.kind, due.year, due.class_group, due.term)


def plan_bag(
    session: Session,
    settings: ArchiveSettings,
    school: School,
    due: DueBag,
    log_key: LogKey,
    run: ArchiveRun | None = None,
) -> ArchivedBag:
    """Choose the checkpoint the bag will cover and record the bag as ``planned``. Flushes."""
    checkpoint = None
    if (
        due.kind in ("journal_quarter", "journal_half")
        and due.term is not None
        and due.term.closed_at is not None
    ):
        checkpoint = session.scalar(
            select(Checkpoint)
            .where(Checkpoint.log_id == due.log.id, Checkpoint.created_at >= due.term.closed_at)
            .order_by(Checkpoint.size)
            .limit(1)
        )
    if checkpoint is None:
        checkpoint = cut_checkpoint(session, due.log, log_key, timestamper=settings.timestamper)
    tier = LEDGER_TIER if due.kind == "ledger_year" else JOURNAL_TIER
    bag = ArchivedBag(
        school_id=school.id,
        school_year_id=due.year.id,
        class_group_id=due.class_group.id if due.class_group else None,
        term_id=due.term.id if due.term else None,
        log_id=due.log.id,
        kind=due.kind,
        tier=tier,
        key=object_key(school, _due_name(due)),
        state="planned",
        checkpoint_size=checkpoint.size,
        checkpoint_root=checkpoint.root_hash,
        bagging_date=settings.day(),
        retain_until=retain_until_for(due.year, tier),
        storage=storage_label(settings.storage),
        run_id=run.id if run else None,
    )
    session.add(bag)
    session.flush()
    return bag


# --------------------------------------------------------------------------- bag content


def _source_files(directory: Path, target: str) -> dict[str, bytes]:
    if not directory.is_dir():
        return {}
    return {
        f"{target}/{path.name}": path.read_bytes()
        for path in sorted(directory.glob("*.py"))
        if path.is_file()
    }


def verifier_files() -> dict[str, bytes]:
    """``verify/``, ``VERIFY.md`` and ``FORMATS.md``: the standalone verifier, the ledger package
    it imports, its instructions and the formats, as they are in this version of the code."""
    files = _source_files(_REPO / "archive" / "verify", "verify")
    files.update(_source_files(_REPO / "journal" / "ledger", "verify/ledger"))
    instructions = _REPO / "archive" / "verify" / "VERIFY.md"
    if instructions.is_file():
        files["VERIFY.md"] = instructions.read_bytes()
    formats = _REPO / "docs" / "formats.md"  # the exact formats, for whoever has only the bag
    if formats.is_file():
        files["FORMATS.md"] = formats.read_bytes()
    return files


def bag_content(
    session: Session, bag: ArchivedBag, settings: ArchiveSettings
) -> tuple[dict[str, bytes], dict[str, str]]:
    """The payload files (paths under ``data/``) and ``bag-info.txt`` of a planned bag."""
    journal = session.get_one(Log, bag.log_id)
    school = session.get_one(School, bag.school_id)
    year = session.get_one(SchoolYear, bag.school_year_id)
    if not school.log_vkey:
        raise ArchiveError(f"{school.domain} has no published log key")
    size = bag.checkpoint_size
    leaves = list(
        session.scalars(
            select(Entry.leaf)
            .where(Entry.log_id == journal.id, Entry.seq < size)
            .order_by(Entry.seq)
        )
    )
    if len(leaves) != size:
        raise ArchiveError(f"{journal.origin} has {len(leaves)} of the {size} entries to archive")
    files: dict[str, bytes] = {"entries.jsonl": b"".join(leaf + b"\n" for leaf in leaves)}

    checkpoints = list(
        session.scalars(
            select(Checkpoint)
            .where(Checkpoint.log_id == journal.id, Checkpoint.size <= size)
            .order_by(Checkpoint.size)
        )
    )
    if not checkpoints or checkpoints[-1].size != size:
        raise ArchiveError(f"{journal.origin} has no checkpoint of size {size}")
    if checkpoints[-1].root_hash != bag.checkpoint_root:
        raise ArchiveError(f"{journal.origin} checkpoint {size} does not have the planned root")
    for checkpoint in checkpoints:
        files[f"checkpoints/{checkpoint.size}.checkpoint"] = checkpoint.note.encode("utf-8")
        if checkpoint.timestamp_token:
            files[f"checkpoints/{checkpoint.size}.tsr"] = bytes(checkpoint.timestamp_token)
        if checkpoint.previous_size and checkpoint.consistency_proof is not None:
            name = f"checkpoints/consistency-{checkpoint.previous_size}-{checkpoint.size}.txt"
            files[name] = checkpoint.consistency_proof.encode("ascii")

    kids = {
        kid
        for kid in session.scalars(
            select(Entry.device_kid).where(Entry.log_id == journal.id, Entry.seq < size).distinct()
        )
        if kid is not None
    }
    keys = device_keys_document(session, kids)
    keys.update(server_keys_document(session, journal))
    files["keys/log.vkey"] = (school.log_vkey + "\n").encode("ascii")
    files["keys/device-keys.json"] = json.dumps(keys, indent=2, sort_keys=True).encode() + b"\n"
    if settings.tsa_ca_certs is not None:
        files["keys/tsa-ca.pem"] = settings.tsa_ca_certs.read_bytes()

    class_group = session.get(ClassGroup, bag.class_group_id) if bag.class_group_id else None
    term = session.get(Term, bag.term_id) if bag.term_id else None
    files.update(signer_chain_files(session, school))
    if class_group is not None:
        printouts = printouts_for(session, class_group, term)
        files.update({f"printouts/{name}": data for name, data in printouts.items()})
    else:
        classes = session.scalars(
            select(ClassGroup).where(ClassGroup.school_year_id == year.id).order_by(ClassGroup.id)
        )
        for each in classes:
            printouts = printouts_for(session, each, None)
            files.update(
                {f"printouts/class{each.id}/{name}": data for name, data in printouts.items()}
            )

    files.update(verifier_files())

    info = {
        "External-Identifier": bag.key.removesuffix(".tar"),
        "Tier": bag.tier,
        "Retention-Until": bag.retain_until.isoformat(),
        "Source-Organization": school.name,
        "Bagging-Date": bag.bagging_date.isoformat(),
        "Bag-Kind": bag.kind,
        "School-Year": year.name,
        "Log-Origin": journal.origin,
        "Checkpoint-Size": str(size),
        "Checkpoint-Root": base64.b64encode(bag.checkpoint_root).decode(),
    }
    if class_group is not None:
        info["Class-Name"] = class_group.name
        info["Class-Id"] = str(class_group.id)
    if term is not None:
        info["Half-Year" if term.kind == "half" else "Quarter"] = str(term.number)
    # The printouts the bag must hold: a verifier fails a bag where one is missing or added.
    printouts = sorted(name for name in files if name.startswith("printouts/"))
    if printouts:
        info["Printouts"] = " ".join(printouts)
    return files, info


# --------------------------------------------------------------------------- build, upload


def staged_path(settings: ArchiveSettings, bag: ArchivedBag) -> Path:
    return settings.staging_dir / f"{bag.bag_name}-{bag.id}.tar"


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def build_staged_bag(
    session: Session, bag: ArchivedBag, settings: ArchiveSettings, log_key: LogKey
) -> Path:
    """Build, timestamp, seal and validate the bag, stage its tar, record its sha512 (``built``).

    The seal (``bag-seal.note``, :mod:`archive.verify.seal`) is the school log key's signature
    over every top-level file, the timestamp token included: written last.
    """
    files, info = bag_content(session, bag, settings)
    work = settings.staging_dir / f".build-{bag.id}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        bag_dir = build_bag(work / bag.bag_name, files, info)
        if settings.timestamper is not None:
            manifest = (bag_dir / TAGMANIFEST).read_bytes()
            token = settings.timestamper.timestamp(manifest)
            # Checked here, whatever the timestamper did: the run seals without reading back.
            check_response(manifest, token)
            (bag_dir / TAGMANIFEST_TOKEN).write_bytes(token)
        seal.seal_bag(bag_dir, log_key.name, log_key.private_key)
        validate_bag(bag_dir)
        data = bag_to_tar(bag_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    target = staged_path(settings, bag)
    for leftover in settings.staging_dir.glob(f".{target.name}.*"):
        leftover.unlink()  # a temporary file of a run killed while writing
    _write_atomically(target, data)
    _crash_point("staged")
    bag.sha512 = hashlib.sha512(data).hexdigest()
    bag.size = len(data)
    bag.state = "built"
    session.flush()
    return target


def upload_bag(
    session: Session, bag: ArchivedBag, settings: ArchiveSettings, log_key: LogKey
) -> Expected | None:
    """Put the staged tar under the bag's key with its retain-until (a no-op when it is there),
    and pin the version the store wrote (``version_id``): every later read names it. Returns
    what the store must now hold (the staged tar's size and digests) when it was put now.

    When the staged tar is gone (another machine, a cleaned disk) and the store does not hold
    the recorded bytes either, the bag is built again and its new sha512 recorded: nothing was
    uploaded under the key, so nothing is replaced.
    """
    assert bag.sha512 is not None
    stored = settings.storage.head(bag.key, bag.version_id)
    if stored is not None:
        if stored.sha512 != bag.sha512:
            raise ArchiveError(
                f"{bag.key} is stored with other bytes than the bag recorded (sha512 "
                f"{stored.sha512[:16]}… not {bag.sha512[:16]}…); refusing to go on"
            )
        bag.version_id = stored.version_id  # uploaded by a run that died before recording it
        return None
    if bag.version_id is not None:
        raise ArchiveError(f"{bag.key}: the version {bag.version_id} uploaded earlier is gone")
    path = staged_path(settings, bag)
    # One pass for every digest: the sha512 says whether the staged tar is the built one, the
    # others are what the store must report afterwards (confirm_upload).
    expected = Expected.of(path, bag.retain_until) if path.is_file() else None
    if expected is None or expected.sha512 != bag.sha512:
        log.warning("staged tar of %s is missing or changed: building it again", bag.key)
        path = build_staged_bag(session, bag, settings, log_key)
        expected = Expected.of(path, bag.retain_until)
    _crash_point("uploading")
    stored = settings.storage.put(bag.key, path, retain_until=bag.retain_until, sha512=bag.sha512)
    bag.version_id = stored.version_id
    return expected


# --------------------------------------------------------------------------- verification


def read_bag_info(data: bytes) -> dict[str, str]:
    info = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        label, _, value = line.partition(":")
        info[label.strip()] = value.strip()
    return info


def seal_bag(
    session: Session,
    bag: ArchivedBag,
    settings: ArchiveSettings,
    log_key: LogKey,
    checked: str = READ_BACK,
) -> int:
    """Mark a checked bag sealed and record it, with its final checkpoint and the check it had
    (``store`` or ``read-back``, :mod:`archive.readback`), in the ledger log."""
    school = session.get_one(School, bag.school_id)
    year = session.get_one(SchoolYear, bag.school_year_id)
    checkpoint = session.scalar(
        select(Checkpoint).where(
            Checkpoint.log_id == bag.log_id, Checkpoint.size == bag.checkpoint_size
        )
    )
    assert checkpoint is not None and bag.sha512 is not None and bag.size is not None
    class_group = session.get(ClassGroup, bag.class_group_id) if bag.class_group_id else None
    term = session.get(Term, bag.term_id) if bag.term_id else None
    now = utcnow()
    seq = append_ledger_record(
        session,
        school,
        log_key,
        "ledger_sealed" if bag.kind == "ledger_year" else "journal_sealed",
        {
            "package": {
                "key": bag.key,
                "kind": bag.kind,
                "tier": bag.tier,
                "sha512": bag.sha512,
                "size": bag.size,
                "bagging_date": bag.bagging_date.isoformat(),
                "retain_until": bag.retain_until.isoformat(),
                "storage": bag.storage,
                "version_id": bag.version_id,
            },
            "school_year": year.name,
            "class_group": class_group.id if class_group else None,
            "class_name": class_group.name if class_group else None,
            "quarter": term.number if term and term.kind == "quarter" else None,
            "half_year": term.number if term and term.kind == "half" else None,
            "checkpoint": checkpoint.note,
            "checked": checked,
        },
        now=now,
    ).seq
    bag.state = "sealed"
    bag.sealed_at = now
    bag.ledger_seq = seq
    session.flush()
    return seq


# --------------------------------------------------------------------------- the job


@dataclass
class SchoolOutcome:
    """What one run did for one school. ``failed`` names each bag (or class) that could not be
    finished this time, with why; the others went on. ``incidents`` are integrity findings."""

    domain: str
    sealed: list[str] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    incidents: list[str] = field(default_factory=list)
    kept: int = 0
    locked: bool = False
    error: str | None = None
    checks: dict[str, str] = field(default_factory=dict)  # sealed key: "store" or "read-back"

    @property
    def ok(self) -> bool:
        return not (self.error or self.failed or self.incidents or self.refused)


def _no_progress(_label: str, _length: int) -> AbstractContextManager[Any]:
    class _Bar:
        def update(self, _steps: int) -> None:
            pass

    return nullcontext(_Bar())


def _load_key(settings: ArchiveSettings, school: School) -> LogKey:
    log_key = load_log_key(settings.keys_dir, school.domain)
    if school.log_vkey != log_key.vkey:
        raise ArchiveError(f"the key in {settings.keys_dir} is not {school.domain}'s published key")
    return log_key


def _unfinished(session: Session, school: School) -> list[ArchivedBag]:
    return list(
        session.scalars(
            select(ArchivedBag)
            .where(
                ArchivedBag.school_id == school.id,
                ArchivedBag.state.in_(("planned", "built")),
            )
            .order_by(ArchivedBag.id)
        )
    )


def sweep_staging(session: Session, settings: ArchiveSettings, school: School) -> None:
    """Remove what killed runs left in the staging directory for this school's sealed bags."""
    if not settings.staging_dir.is_dir():
        return
    names = {
        bag.id: bag.bag_name
        for bag in session.scalars(
            select(ArchivedBag).where(
                ArchivedBag.school_id == school.id,
                ArchivedBag.state.in_(("sealed", "destroyed")),
            )
        )
    }
    for bag_id, name in names.items():
        staged = settings.staging_dir / f"{name}-{bag_id}.tar"
        staged.unlink(missing_ok=True)
        for leftover in settings.staging_dir.glob(f".{staged.name}.*"):
            leftover.unlink(missing_ok=True)
        shutil.rmtree(settings.staging_dir / f".build-{bag_id}", ignore_errors=True)


def _build_and_upload(
    session: Session, bag: ArchivedBag, settings: ArchiveSettings, log_key: LogKey
) -> Expected | None:
    """Take one bag from wherever it stopped to uploaded, committing after each step; the
    check and the seal follow (:func:`_check_uploaded`, :func:`_seal_checked`)."""
    label = storage_label(settings.storage)
    if bag.storage != label:
        bag.storage = label  # never uploaded anywhere else: it is sealed only where it was put
    if bag.state == "planned":
        build_staged_bag(session, bag, settings, log_key)
        session.commit()
        _crash_point("built")
    expected = upload_bag(session, bag, settings, log_key)
    session.commit()  # the pinned version, and a new sha512 when upload_bag had to rebuild
    _crash_point("uploaded")
    return expected


def _check_uploaded(
    bag: ArchivedBag, settings: ArchiveSettings, checker: BagChecker, expected: Expected | None
) -> None:
    """Queue the uploaded bag's check: the store's (at once), else a full read-back."""
    report = None
    if not settings.full_readback:
        report = confirm_upload(bag, expected or staged_path(settings, bag), settings)
    if report is None:
        checker.submit(bag)
    else:
        checker.confirmed(bag, report)


def _seal_checked(
    session: Session,
    bag: ArchivedBag,
    settings: ArchiveSettings,
    log_key: LogKey,
    report: Report,
    checked: str,
) -> None:
    """Seal a bag whose check has finished: only when it passed."""
    if not report.ok:
        log.error("%s failed its %s check after upload:\n%s", bag.key, checked, report.text())
        raise ArchiveError(f"failed its {checked} check after upload: {report.first_failure}")
    _crash_point("verified")
    seal_bag(session, bag, settings, log_key, checked)
    session.commit()
    _crash_point("sealed")
    staged_path(settings, bag).unlink(missing_ok=True)


def _close_interrupted_runs(session: Session, school: School) -> None:
    """Runs still ``running`` while we hold the school's lock died on the way: say so."""
    for stale in session.scalars(
        select(ArchiveRun).where(ArchiveRun.school_id == school.id, ArchiveRun.status == "running")
    ):
        stale.status = "failed"
        stale.error = "interrupted: the process stopped before the run finished"


def checkpoint_ledger(
    session: Session, settings: ArchiveSettings, school: School, log_key: LogKey
) -> Checkpoint:
    """End a run that added ledger records: a signed (and, with a TSA, timestamped) checkpoint
    of the school ledger log, so no record is left outside every checkpoint. Commits."""
    checkpoint = cut_checkpoint(
        session, ensure_ledger_log(session, school), log_key, timestamper=settings.timestamper
    )
    session.commit()
    return checkpoint


def _failure(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:1000] or type(exc).__name__


@dataclass
class _BagRun:
    """One phase's bags: seal those whose check finished; a failure is reported and the
    others go on (the failed bag is tried again by the next run)."""

    session: Session
    settings: ArchiveSettings
    log_key: LogKey
    checker: BagChecker
    outcome: SchoolOutcome
    given_up: set[str]
    bar: Any

    def give_up(self, key: str, exc: BaseException) -> None:
        self.session.rollback()
        log.error("archiving %s failed", key, exc_info=exc)
        self.outcome.failed.append(f"{key}: {_failure(exc)}")
        self.given_up.add(key)  # once per run: the next run tries it again
        self.bar.update(1)

    def seal_finished(self, *, all_of_them: bool = False) -> None:
        for bag, report, checked in self.checker.done(all_of_them=all_of_them):
            key = bag.key
            try:
                _seal_checked(self.session, bag, self.settings, self.log_key, report, checked)
            except Exception as exc:  # noqa: BLE001 - reported, and the others go on
                self.give_up(key, exc)
            else:
                self.outcome.sealed.append(key)
                self.outcome.checks[key] = checked
                self.bar.update(1)


def archive_school(
    session: Session,
    settings: ArchiveSettings,
    school: School,
    *,
    progress: Progress = _no_progress,
) -> SchoolOutcome:
    """Seal every bag of one school that is due (the lock must be held). Commits per step.

    One bag (or one class's summary ledger) failing is reported in ``outcome.failed`` and the
    others go on; the failed bag stays planned or built and the next run takes it up again. A
    year's ledger bag waits until every journal bag of that year is sealed.
    """
    outcome = SchoolOutcome(school.domain)
    log_key = _load_key(settings, school)
    _close_interrupted_runs(session, school)
    run = ArchiveRun(school_id=school.id, kind="archive")
    session.add(run)
    session.commit()
    today = settings.day()
    given_up: set[str] = set()
    try:
        for phase in ("journal", "ledger"):
            if phase == "ledger":
                _record_summary_ledgers(session, school, today, log_key, outcome)
            due = (
                due_journal_bags(session, school, today)
                if phase == "journal"
                else due_ledger_bags(session, school, today)
            )
            for item in due:
                try:
                    plan_bag(session, settings, school, item, log_key, run)
                    session.commit()
                except Exception as exc:  # noqa: BLE001 - reported, and the others go on
                    session.rollback()
                    log.exception("planning %s failed", _due_name(item))
                    outcome.failed.append(f"{_due_name(item)}: {_failure(exc)}")
            _crash_point("planned")
            pending = [bag for bag in _unfinished(session, school) if bag.key not in given_up]
            if not pending:
                continue
            # A full read-back of bag N runs in a worker while bag N+1 is built and uploaded.
            checker = BagChecker(settings, log_key.vkey, workers=1 if len(pending) > 1 else 0)
            with progress(f"{school.domain} {phase} bags", len(pending)) as bar, checker:
                run_bags = _BagRun(session, settings, log_key, checker, outcome, given_up, bar)
                for bag in pending:
                    key = bag.key
                    try:
                        expected = _build_and_upload(session, bag, settings, log_key)
                        _check_uploaded(bag, settings, checker, expected)
                    except Exception as exc:  # noqa: BLE001 - reported, and the others go on
                        run_bags.give_up(key, exc)
                    run_bags.seal_finished()
                run_bags.seal_finished(all_of_them=True)
        if outcome.sealed:
            checkpoint_ledger(session, settings, school, log_key)
    except Exception as exc:
        session.rollback()
        run.status, run.error = "failed", str(exc)[:2000]
        run.finished_at, run.bags_done = utcnow(), len(outcome.sealed)
        session.commit()
        raise
    run.status = "failed" if outcome.failed else "done"
    run.error = "\n".join(outcome.failed)[:2000] or None
    run.finished_at, run.bags_done = utcnow(), len(outcome.sealed)
    session.commit()
    sweep_staging(session, settings, school)
    return outcome


def _record_summary_ledgers(
    session: Session, school: School, today: dt.date, log_key: LogKey, outcome: SchoolOutcome
) -> None:
    """Before a finished year's ledger bag: each class's summary-ledger records (one per
    student, the 25-year record registrars issue duplicates from) go to the school ledger log.
    A class that fails is reported; the others are recorded."""
    from exports.queries import record_summary_ledger

    due_years = {due.year.id for due in due_ledger_bags(session, school, today)}
    for class_group in session.scalars(
        select(ClassGroup).where(ClassGroup.school_year_id.in_(due_years)).order_by(ClassGroup.id)
    ).all():
        name = class_group.name
        try:
            record_summary_ledger(session, class_group, log_key)
            session.commit()
        except Exception as exc:  # noqa: BLE001 - reported, and the others go on
            session.rollback()
            log.exception("summary ledger of %s failed", name)
            outcome.failed.append(f"summary ledger of class {name}: {_failure(exc)}")


def run_archive(
    session: Session,
    settings: ArchiveSettings,
    *,
    domains: list[str] | None = None,
    progress: Progress = _no_progress,
) -> list[SchoolOutcome]:
    """The archive job: every school (or the named ones), one at a time under its lock.

    A failing school is reported in its outcome and the others still run. Commits.
    """
    settings.staging_dir.mkdir(parents=True, exist_ok=True)
    prepare_storage(settings.storage)
    query = select(School).order_by(School.id)
    if domains:
        query = query.where(School.domain.in_(domains))
    outcomes = []
    for school in list(session.scalars(query)):
        with school_lock(session, school.id) as locked:
            if not locked:
                outcomes.append(SchoolOutcome(school.domain, locked=True))
                continue
            try:
                outcomes.append(archive_school(session, settings, school, progress=progress))
            except Exception as exc:  # noqa: BLE001 - one school's failure must not stop the rest
                log.exception("archive run failed for %s", school.domain)
                outcomes.append(SchoolOutcome(school.domain, error=str(exc)))
    return outcomes


# --------------------------------------------------------------------------- integrity


class IntegrityIncident(StorageError):
    """The store does not hold what the archive recorded: missing, hidden or replaced."""


def _pinned(bag: ArchivedBag) -> Pinned:
    assert bag.sha512 is not None
    return Pinned(bag.key, bag.sha512, bag.version_id)


def _package(bag: ArchivedBag) -> dict[str, Any]:
    return {
        "key": bag.key,
        "kind": bag.kind,
        "tier": bag.tier,
        "sha512": bag.sha512,
        "version_id": bag.version_id,
        "retain_until": bag.retain_until.isoformat(),
        "storage": bag.storage,
        "sealed_at_seq": bag.ledger_seq,
    }


def bag_findings(settings: ArchiveSettings, bag: ArchivedBag) -> list[Finding]:
    """What the store says about one bag's pinned object (missing, hidden, replaced)."""
    found = settings.storage.audit_objects({bag.key: _pinned(bag)}, bag.key)
    return [finding for finding in found if finding.key == bag.key]


def record_incident(
    session: Session,
    school: School,
    log_key: LogKey,
    bag: ArchivedBag,
    findings: list[str],
    *,
    found_by: str,
    today: dt.date,
) -> int:
    """An ``integrity_incident`` record in the school ledger log: a sealed bag the store does not
    hold as recorded. Flushes; returns the record's seq."""
    return append_ledger_record(
        session,
        school,
        log_key,
        "integrity_incident",
        {
            "package": _package(bag),
            "findings": findings[:100],
            "found_by": found_by,
            "found_on": today.isoformat(),
        },
    ).seq


# --------------------------------------------------------------------------- expiry


def destroy_bag(
    session: Session,
    bag: ArchivedBag,
    settings: ArchiveSettings,
    log_key: LogKey,
    *,
    today: dt.date,
    run: ArchiveRun | None = None,
) -> BagDestruction:
    """Delete a sealed journal bag's pinned version whose retention has ended and record the
    destruction.

    Raises :class:`~archive.storage.RetentionError` (nothing recorded) when the bag is still
    retained or under a legal hold, by the app's reckoning or the store's, and
    :class:`IntegrityIncident` when the pinned object is not there to delete, unless this bag's
    own deletion was begun by an earlier run (``destroy_started_at``) that died before recording
    it: then the destruction is recorded with ``object_found`` false.
    """
    if bag.tier != JOURNAL_TIER:
        raise RetentionError(f"{bag.key} is a {bag.tier} bag: expiry never removes those")
    if bag.state != "sealed":
        raise ValueError(f"{bag.key} is {bag.state}, not sealed")
    if today < bag.retain_until:
        raise RetentionError(f"{bag.key} is retained until {bag.retain_until}")
    assert bag.sha512 is not None
    found = True
    try:
        settings.storage.delete(bag.key, today=today, version_id=bag.version_id)
    except ObjectNotFound as exc:
        if bag.destroy_started_at is None:
            raise IntegrityIncident(f"{bag.key}: the pinned object is gone: {exc}") from exc
        found = False  # this run's predecessor deleted it and died before recording it
    _crash_point("deleted")
    school = session.get_one(School, bag.school_id)
    now = utcnow()
    seq = append_ledger_record(
        session,
        school,
        log_key,
        "package_destroyed",
        {
            "package": _package(bag),
            "destroyed_on": today.isoformat(),
            "object_found": found,
        },
        now=now,
    ).seq
    destruction = BagDestruction(
        bag_id=bag.id,
        key=bag.key,
        sha512=bag.sha512,
        retain_until=bag.retain_until,
        destroyed_on=today,
        destroyed_at=now,
        object_found=found,
        ledger_seq=seq,
        run_id=run.id if run else None,
    )
    session.add(destruction)
    bag.state = "destroyed"
    bag.destroyed_at = now
    session.flush()
    return destruction


def expire_school(
    session: Session, settings: ArchiveSettings, school: School, *, today: dt.date
) -> SchoolOutcome:
    """Destroy every sealed journal bag of a school whose retention ended by ``today``. Commits.

    Before deleting, the store must hold the bag's pinned version as the current one, with no
    delete marker and no other version on top: otherwise the bag is not destroyed but recorded
    as an integrity incident (``outcome.incidents``). The intent to delete is committed before
    the delete, so a run that dies in between is finished honestly by the next one.
    """
    outcome = SchoolOutcome(school.domain)
    log_key = _load_key(settings, school)
    here = storage_label(settings.storage)
    _close_interrupted_runs(session, school)
    run = ArchiveRun(school_id=school.id, kind="expire")
    session.add(run)
    session.commit()
    records = False
    bags = session.scalars(
        select(ArchivedBag)
        .where(ArchivedBag.school_id == school.id, ArchivedBag.state == "sealed")
        .order_by(ArchivedBag.id)
    )
    for bag in list(bags):
        if bag.tier != JOURNAL_TIER or today < bag.retain_until:
            outcome.kept += 1
            continue
        if bag.storage != here:
            outcome.refused.append(f"{bag.key}: stored in {bag.storage}, not in {here}")
            continue
        key = bag.key
        try:
            if bag.destroy_started_at is None:
                findings = [str(f) for f in bag_findings(settings, bag)]
                if findings:
                    raise IntegrityIncident("; ".join(findings))
                bag.destroy_started_at = utcnow()
                session.commit()
            destroy_bag(session, bag, settings, log_key, today=today, run=run)
        except IntegrityIncident as exc:
            session.rollback()
            record_incident(
                session, school, log_key, bag, [str(exc)], found_by="archive expire", today=today
            )
            session.commit()
            records = True
            outcome.incidents.append(f"{key}: not destroyed, an integrity incident: {exc}")
            continue
        except RetentionError as exc:
            session.rollback()
            bag.destroy_started_at = None  # nothing was deleted: no intent stays behind
            session.commit()
            outcome.refused.append(f"{key}: {exc}")
            continue
        session.commit()
        records = True
        outcome.destroyed.append(key)
    if records:
        checkpoint_ledger(session, settings, school, log_key)
    run.status = "done" if outcome.ok else "failed"
    run.error = "\n".join(outcome.incidents + outcome.refused)[:2000] or None
    run.finished_at, run.bags_done = utcnow(), len(outcome.destroyed)
    session.commit()
    return outcome


def run_expire(
    session: Session, settings: ArchiveSettings, *, today: dt.date
) -> list[SchoolOutcome]:
    """The expiry job over every school, one at a time under its archive lock. Commits."""
    outcomes = []
    for school in list(session.scalars(select(School).order_by(School.id))):
        with school_lock(session, school.id) as locked:
            if not locked:
                outcomes.append(SchoolOutcome(school.domain, locked=True))
                continue
            try:
                outcomes.append(expire_school(session, settings, school, today=today))
            except (ArchiveError, StorageError, LookupError) as exc:
                log.exception("archive expire failed for %s", school.domain)
                outcomes.append(SchoolOutcome(school.domain, error=str(exc)))
    return outcomes


# --------------------------------------------------------------------------- audit


@dataclass
class AuditOutcome:
    """One school's ``archive audit``: what was read back and verified, and every finding."""

    domain: str
    checked: int = 0
    findings: list[str] = field(default_factory=list)
    elsewhere: int = 0  # sealed bags recorded in another store, not audited here
    ledger_seq: int | None = None
    locked: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.error or self.findings)


def audit_school(
    session: Session, settings: ArchiveSettings, school: School, *, today: dt.date | None = None
) -> AuditOutcome:
    """Read back every stored bag of a school by its pinned version and verify it fully; compare
    what the store holds with what the archive recorded (missing objects, replaced current
    versions, delete markers, unexpected objects, files that lost their protection). Records the
    result as an ``archive_audited`` record in the school ledger log (and an
    :class:`~archive.models.ArchiveAudit` row), then a signed, timestamped ledger checkpoint.
    Commits."""
    outcome = AuditOutcome(school.domain)
    here = storage_label(settings.storage)
    started = utcnow()
    rows = list(
        session.scalars(
            select(ArchivedBag)
            .where(
                ArchivedBag.school_id == school.id,
                ArchivedBag.state.in_(("built", "sealed")),
                ArchivedBag.sha512.is_not(None),
            )
            .order_by(ArchivedBag.id)
        )
    )
    mine = [bag for bag in rows if bag.storage == here]
    outcome.elsewhere = sum(1 for bag in rows if bag.storage != here and bag.state == "sealed")
    pinned = {bag.key: _pinned(bag) for bag in mine}
    outcome.findings += [
        str(finding) for finding in settings.storage.audit_objects(pinned, f"{school.domain}/")
    ]
    # Uploaded by a run that has not sealed it yet: the next run checks it.
    sealed = [bag for bag in mine if bag.state == "sealed"]
    # Read back here, verified in worker processes on every core (the published key is enough).
    workers = min(os.cpu_count() or 1, len(sealed)) if len(sealed) > 1 else 0
    with BagChecker(settings, school.log_vkey or "", workers=workers, ahead=workers) as checker:

        def tally(*, all_of_them: bool = False) -> None:
            for bag, report, _checked in checker.done(all_of_them=all_of_them):
                outcome.checked += 1
                if not report.ok:
                    outcome.findings.append(f"{bag.key}: {report.first_failure}")

        for bag in sealed:
            checker.submit(bag)
            tally()
        tally(all_of_them=True)
    if not rows and not outcome.findings:
        return outcome  # nothing archived, nothing stray: nothing to record
    log_key = _load_key(settings, school)
    finished = utcnow()
    outcome.ledger_seq = append_ledger_record(
        session,
        school,
        log_key,
        "archive_audited",
        {
            "storage": here,
            "started_at": started.isoformat(timespec="seconds"),
            "bags_checked": outcome.checked,
            "finding_count": len(outcome.findings),
            "findings": outcome.findings[:100],
            "on": (today or finished.date()).isoformat(),
        },
        now=finished,
    ).seq
    session.add(
        ArchiveAudit(
            school_id=school.id,
            storage=here,
            started_at=started,
            finished_at=finished,
            bags_checked=outcome.checked,
            finding_count=len(outcome.findings),
            findings="\n".join(outcome.findings),
            ledger_seq=outcome.ledger_seq,
        )
    )
    session.commit()
    checkpoint_ledger(session, settings, school, log_key)
    return outcome


def run_audit(
    session: Session, settings: ArchiveSettings, *, domains: list[str] | None = None
) -> list[AuditOutcome]:
    """``archive audit`` over every school (or the named ones), each under its archive lock."""
    query = select(School).order_by(School.id)
    if domains:
        query = query.where(School.domain.in_(domains))
    outcomes = []
    for school in list(session.scalars(query)):
        with school_lock(session, school.id) as locked:
            if not locked:
                outcomes.append(AuditOutcome(school.domain, locked=True))
                continue
            try:
                outcomes.append(audit_school(session, settings, school))
            except (ArchiveError, StorageError, LookupError) as exc:
                session.rollback()
                log.exception("archive audit failed for %s", school.domain)
                outcomes.append(AuditOutcome(school.domain, error=str(exc)))
    return outcomes

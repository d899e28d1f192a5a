"""Checking a stored bag after upload, and reading it back to check it completely.

Two checks, named in each seal record (``checked``) and in the run's report:

- ``store`` (the archive run's default, :func:`confirm_upload`): the store proves it holds what
  was built. On S3 every PUT carries Content-MD5 and x-amz-checksum-sha256 and the store refuses
  it unless the bytes it received match both; one HEAD of the pinned version then shows the
  size, the sha512 metadata, the SHA-256 and MD5 the store computed, COMPLIANCE mode and the
  retain-until date, each compared with the staged tar. The local store hashes its file again.
  Costs a HEAD and a hash of the staged tar, not a download and a verification.
- ``read-back`` (:func:`verify_stored_bag`; ``archive audit`` always, the run with
  ``--full-readback`` or when the store cannot vouch): the pinned version is downloaded and the
  bag's own verifier runs on those bytes. Reading is I/O and stays in the caller's process; the
  check (unpack, ``bagit`` validation, every signature, the tree, the tokens, the printouts) is
  CPU work and goes to worker processes (:class:`BagChecker`), so bag N is checked while bag N+1
  is built, or several bags are checked at once by the audit.

Nothing is sealed before its own check has passed, and bags are sealed in the order they were
handed in, whichever check they had.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from journal.ledger import note

from .bag import tar_to_bag, validate_bag
from .models import ArchivedBag
from .storage import Expected, StorageError
from .verify.verify import Report, read_bag_directory, verify_bag_files

if TYPE_CHECKING:
    from .services import ArchiveSettings

STORE = "store"  # the store confirmed size, checksums and retention of what was built
READ_BACK = "read-back"  # downloaded and verified completely


@dataclass(frozen=True)
class Planned:
    """What a stored bag must be, as plain values (it crosses to a worker process)."""

    key: str
    bag_name: str
    retain_until: str
    tier: str
    checkpoint_size: int
    checkpoint_root: str

    @classmethod
    def of(cls, bag: ArchivedBag) -> Planned:
        return cls(
            bag.key,
            bag.bag_name,
            bag.retain_until.isoformat(),
            bag.tier,
            bag.checkpoint_size,
            base64.b64encode(bag.checkpoint_root).decode(),
        )


def read_back(bag: ArchivedBag, settings: ArchiveSettings) -> bytes | Report:
    """The pinned version's bytes, or a failed report when they cannot be read or differ."""
    report = Report("bag", bag.key)
    check = report.check("archive", "The stored object is the bag that was planned")
    try:
        data = settings.storage.get(bag.key, bag.version_id)
    except StorageError as exc:
        check.fail(bag.key, f"cannot be read back: {exc}")
        return report
    if hashlib.sha512(data).hexdigest() != bag.sha512:
        check.fail(bag.key, "read back with other bytes than were recorded")
        return report
    return data


def _read_bag_info(data: bytes) -> dict[str, str]:
    info = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        label, _, value = line.partition(":")
        info[label.strip()] = value.strip()
    return info


def check_bag_bytes(
    data: bytes, planned: Planned, vkey: str, trust_der: tuple[bytes, ...] = ()
) -> Report:
    """Unpack and validate the bag, run its own verifier with the school's published ``vkey``,
    and compare ``bag-info.txt`` with what was planned. Plain arguments: runs in a worker."""
    report = Report("bag", planned.key)
    check = report.check("archive", "The stored object is the bag that was planned")
    with tempfile.TemporaryDirectory(prefix="bag-check-") as work:
        try:
            bag_dir = tar_to_bag(data, Path(work))
            validate_bag(bag_dir)
            files = read_bag_directory(bag_dir)
        except Exception as exc:  # noqa: BLE001 - any failure is a verdict on the bag
            check.fail(planned.key, f"is not a valid bag: {exc}")
            return report
    if bag_dir.name != planned.bag_name:
        check.fail(planned.key, f"holds the bag {bag_dir.name}, not {planned.bag_name}")
    info = _read_bag_info(files.get("bag-info.txt", b""))
    expected = {
        "External-Identifier": planned.key.removesuffix(".tar"),
        "Retention-Until": planned.retain_until,
        "Tier": planned.tier,
        "Checkpoint-Size": str(planned.checkpoint_size),
        "Checkpoint-Root": planned.checkpoint_root,
    }
    for label, value in expected.items():
        if info.get(label) != value:
            check.fail("bag-info.txt", f"{label} is {info.get(label)!r}, not {value!r}")
    shipped = verify_bag_files(
        files,
        note.parse_vkey(vkey),
        subject=planned.key,
        openssl="openssl" if shutil.which("openssl") else None,
        trust=tuple(x509.load_der_x509_certificate(der) for der in trust_der),
    )
    report.checks += shipped.checks
    return report


def _trust_der(settings: ArchiveSettings) -> tuple[bytes, ...]:
    return tuple(cert.public_bytes(Encoding.DER) for cert in settings.pdf_trust)


def verify_stored_bag(bag: ArchivedBag, settings: ArchiveSettings, vkey: str) -> Report:
    """Read the bag back from storage and check it completely, as an inspector would.

    The pinned version is read (never merely the current one); its bytes must be the recorded
    ones; the tar must unpack into a bag that ``bagit`` validates; then the standalone verifier
    that ships in every bag (:func:`archive.verify.verify.verify_bag_files`, with the school's
    published ``vkey``) checks the seal, the keys, every entry's signature, the Merkle tree
    against every checkpoint, the consistency proofs, the RFC 3161 tokens and the printouts; and
    ``bag-info.txt`` must name the key, checkpoint and retention this bag was planned with.
    """
    data = read_back(bag, settings)
    if isinstance(data, Report):
        return data
    return check_bag_bytes(data, Planned.of(bag), vkey, _trust_der(settings))


def confirm_upload(
    bag: ArchivedBag, staged: Path | Expected, settings: ArchiveSettings
) -> Report | None:
    """The ``store`` check of an uploaded bag against its staged tar, or the digests of the
    staged tar just put (see the module's doc).

    None when it cannot be done, so the bag is read back instead: the staged tar is gone or is
    not the recorded one (a run on another machine uploaded it), or the store keeps no checksum
    of its own. A report naming every difference when the store holds something else."""
    if isinstance(staged, Path):
        if not staged.is_file():
            return None
        staged = Expected.of(staged, bag.retain_until)
    expected = staged
    if expected.sha512 != bag.sha512:
        return None
    problems = settings.storage.confirm(bag.key, bag.version_id, expected)
    if problems is None:
        return None
    report = Report("bag", bag.key)
    check = report.check("archive", "The store holds the bag that was built, under retention")
    for problem in problems:
        check.fail(bag.key, problem)
    return report


class BagChecker:
    """Seals wait here for their checks, in the order the bags were handed in.

    ``submit`` reads the bag back here and queues its full check (in worker processes, started
    at the first one); ``confirmed`` queues a check already done (``store``). ``done`` yields
    ``(bag, report, check)`` for the finished ones, oldest first, keeping at most ``ahead`` full
    checks outstanding (the bytes of each wait in memory). With ``workers=0`` every full check
    runs here, at once.
    """

    def __init__(self, settings: ArchiveSettings, vkey: str, *, workers: int = 1, ahead: int = 1):
        self.settings, self.vkey, self.ahead, self.workers = settings, vkey, ahead, workers
        self._queue: collections.deque[tuple[ArchivedBag, Future[Report] | Report, str]] = (
            collections.deque()
        )
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> BagChecker:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def confirmed(self, bag: ArchivedBag, report: Report) -> None:
        self._queue.append((bag, report, STORE))

    def submit(self, bag: ArchivedBag) -> None:
        data = read_back(bag, self.settings)
        if isinstance(data, Report):
            self._queue.append((bag, data, READ_BACK))
            return
        args = (data, Planned.of(bag), self.vkey, _trust_der(self.settings))
        if not self.workers:
            self._queue.append((bag, check_bag_bytes(*args), READ_BACK))
            return
        if self._pool is None:
            self._pool = check_pool(self.workers)
        self._queue.append((bag, self._pool.submit(check_bag_bytes, *args), READ_BACK))

    def done(self, *, all_of_them: bool = False) -> Iterator[tuple[ArchivedBag, Report, str]]:
        """Finished checks, oldest first; waits while more than ``ahead`` are outstanding."""
        while self._queue and (
            all_of_them or self._outstanding() > self.ahead or _finished(self._queue[0][1])
        ):
            bag, pending, how = self._queue.popleft()
            if isinstance(pending, Future):
                try:
                    pending = pending.result()
                except Exception as exc:  # noqa: BLE001 - a check that broke is a failed check
                    failed = Report("bag", bag.key)
                    failed.check("archive", "The stored object is the bag that was planned").fail(
                        bag.key, f"could not be checked: {exc}"
                    )
                    pending = failed
            yield bag, pending, how

    def _outstanding(self) -> int:
        return sum(1 for _bag, pending, _how in self._queue if isinstance(pending, Future))


def check_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for bag checks. Spawned, not forked: a worker holds none of the run's
    files, sockets or pipes (a forked one kept a caller's stdout open after the run was
    killed), and it ends itself when the run is gone."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_start,
        initargs=(os.getpid(),),
    )


def _worker_start(parent: int) -> None:
    """In the worker: let go of the terminal or pipes the run was started with (a caller waiting
    for their end, as a supervisor or a test does, must not wait for this process), and exit
    within a second of the run's death, even in the middle of a check."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="watch-run").start()


def _finished(pending: Future[Report] | Report) -> bool:
    return not isinstance(pending, Future) or pending.done()

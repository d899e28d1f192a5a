"""Bags made by the archive job itself, once per test session: what VERIFY.md and the
verifier's report are checked on.

A finished school year of two classes. Each quarter gets entries signed alternately by the
teacher's Ed25519 and ECDSA P-256 keys, then is closed the way an admin closes it (`close_term`:
every checkpoint timestamped by the local TSA), and `archive run` seals everything with the TSA
configured. Made on SQLite: these tests are about the bags, which do not depend on the database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archive.services import ArchiveSettings, run_archive
from archive.storage import LocalWormStorage, fetch_bag
from auth.models import User
from journal.db import db
from journal.keys import LogKey
from journal.year.closing import close_term
from tests.archive.school import build_past_school
from tests.conftest import make_app, migrate
from tests.factories import add_device


@dataclass(frozen=True)
class RealBags:
    vkey: str
    domain: str
    log_key: LogKey
    tsa_ca: Path
    bags: dict[str, Path]  # "q1", "q2", "year", "ledger": class 1's; "other-q1": class 2's
    class_ids: tuple[int, int]


def build_real_bags(work: Path, database_url: str, tsa_url: str, tsa_ca: Path) -> RealBags:
    app = make_app(
        database_url,
        work / "keys",
        TSA_URL=tsa_url,
        TSA_CA_CERTS=str(tsa_ca),
        ARCHIVE_LOCAL_ROOT=str(work / "store"),
        ARCHIVE_STAGING_DIR=str(work / "staging"),
    )
    migrate(app)
    try:
        with app.app_context():
            session = db.session
            past = build_past_school(
                session, app.config["KEYS_DIR"], classes=2, entries_per_quarter=0, close=0
            )
            teacher = session.get_one(User, past.devices[0].user_id)
            past.devices.append(add_device(session, teacher, "ecdsa-p256"))
            for term in past.quarters:
                for index in range(2):
                    for day in range(3):
                        past.record(session, index, term, day, device=day % 2)
                moment = dt.datetime.combine(term.ends_on, dt.time(18), dt.UTC)
                close_term(session, term, past.log_key, closed_by=None, now=moment)
            session.commit()
            settings = ArchiveSettings.from_config(app.config, app.instance_path)
            [outcome] = run_archive(session, settings)
            assert outcome.ok, outcome
            first, second = (group.id for group in past.classes)
            year = past.year.name
            names = {
                "q1": f"journal-{year}-class{first}-q1",
                "q2": f"journal-{year}-class{first}-q2",
                "year": f"journal-{year}-class{first}-year",
                "ledger": f"ledger-{year}",
                "other-q1": f"journal-{year}-class{second}-q1",
            }
            store = LocalWormStorage(work / "store")
            bags: dict[str, Path] = {}
            for label, name in names.items():
                bags[label] = fetch_bag(
                    store, f"{past.school.domain}/{name}.tar", work / "bags" / label
                )
            return RealBags(
                past.school.log_vkey or "",
                past.school.domain,
                past.log_key,
                tsa_ca,
                bags,
                (first, second),
            )
    finally:
        app.extensions["journal_db"].engine.dispose()


def files_of(bag: Path) -> dict[str, bytes]:
    from archive.verify.verify import read_bag_directory

    return read_bag_directory(bag)


def reseal(files: dict[str, bytes], log_key: LogKey) -> dict[str, bytes]:
    """What someone holding the school's key could make of changed files: manifests recomputed
    and the seal signed again, so only the checks of meaning can catch the change."""
    import hashlib

    from archive.verify import seal

    out = dict(files)
    payload = sorted(name for name in out if name.startswith("data/"))
    oxum = f"{sum(len(out[n]) for n in payload)}.{len(payload)}"
    info = out["bag-info.txt"].decode().splitlines()
    out["bag-info.txt"] = (
        "\n".join(
            f"Payload-Oxum: {oxum}" if line.startswith("Payload-Oxum:") else line for line in info
        )
        + "\n"
    ).encode()
    out["manifest-sha512.txt"] = "".join(
        f"{hashlib.sha512(out[name]).hexdigest()}  {name}\n" for name in payload
    ).encode()
    tags = ("bag-info.txt", "bagit.txt", "manifest-sha512.txt")
    out["tagmanifest-sha512.txt"] = "".join(
        f"{hashlib.sha512(out[name]).hexdigest()}  {name}\n" for name in tags
    ).encode()
    out.pop("tagmanifest-sha512.txt.tsr", None)
    top = {name: data for name, data in out.items() if "/" not in name and name != seal.SEAL_FILE}
    text = seal.seal_text(top)
    from journal.ledger import note

    out[seal.SEAL_FILE] = note.sign_note(text, log_key.name, log_key.private_key).encode()
    return out


def set_info(files: dict[str, bytes], **labels: Any) -> dict[str, bytes]:
    """bag-info.txt with some labels changed (``Class_Id`` for ``Class-Id``)."""
    wanted = {label.replace("_", "-"): str(value) for label, value in labels.items()}
    lines = []
    for line in files["bag-info.txt"].decode().splitlines():
        label = line.split(":", 1)[0]
        lines.append(f"{label}: {wanted.pop(label)}" if label in wanted else line)
    lines += [f"{label}: {value}" for label, value in wanted.items()]
    return {**files, "bag-info.txt": ("\n".join(sorted(lines)) + "\n").encode()}

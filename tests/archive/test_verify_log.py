"""`journal-verify log DIR --vkey VKEY` on what `flask --app wsgi journal export` writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from journal.ledger import note
from journal.ledger.entry import canonical_json
from journal.recording.recorder import record_entry
from journal.services import cut_checkpoint
from tests.factories import NOW

JOURNAL_VERIFY = Path(sys.executable).parent / "journal-verify"


def verify(directory: Path, vkey: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(JOURNAL_VERIFY), "log", str(directory), "--vkey", vkey],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_an_export_verifies_offline_and_a_change_is_named(
    world: Any, app: Any, tmp_path: Path
) -> None:
    for kind in ("grade", "attendance", "grade", "topic"):
        fields = {"value": "absent"} if kind == "attendance" else {}
        if kind == "topic":
            fields = {"topic": "Бөлшектер", "homework": "№ 12"}
        record_entry(world.session, world.signed(kind, **fields), now=NOW)
    cut_checkpoint(world.session, world.log, world.log_key)
    record_entry(world.session, world.signed("grade"), now=NOW)  # after the checkpoint
    out = tmp_path / "export"
    result = app.test_cli_runner().invoke(args=["journal", "export", str(world.log.id), str(out)])
    assert result.exit_code == 0, result.output
    vkey = world.school.log_vkey

    done = verify(out, vkey)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checkpoint of size 4 signed by" in done.stdout
    assert "5 entries, each a canonical record" in done.stdout
    assert "1 entries after the checkpoint (seq 4 on)" in done.stdout
    assert "RESULT: OK" in done.stdout

    entries = (out / "entries.jsonl").read_bytes().split(b"\n")
    record = json.loads(entries[2])
    record["payload"]["value"]["score"] = 10 if record["payload"]["value"]["score"] != 10 else 1
    entries[2] = canonical_json(record)
    (out / "entries.jsonl").write_bytes(b"\n".join(entries))
    done = verify(out, vkey)
    assert done.returncode == 1
    assert "entries.jsonl line 3 (seq 2): the signature does not match the entry" in done.stdout

    other = note.vkey(world.school.domain, Ed25519PrivateKey.generate().public_key())
    done = verify(out, other)
    assert done.returncode == 1 and ", not the key given with --vkey" in done.stdout

    (out / "checkpoint").unlink()
    done = verify(out, vkey)
    assert done.returncode == 1 and "checkpoint: is missing" in done.stdout
    assert verify(tmp_path / "nowhere", vkey).returncode == 2
    usage = subprocess.run(
        [str(JOURNAL_VERIFY), "log", str(out)], capture_output=True, text=True, check=False
    )
    assert usage.returncode == 2 and "--vkey" in usage.stderr

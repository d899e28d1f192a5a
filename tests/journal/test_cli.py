"""The commands newcomers and operators run: demo seed, journal list/export/verify/checkpoint."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from journal.ledger import audit
from journal.models import Entry, Log, School, Student

from ..factories import build_world

SMALL = ["--students", "4", "--classes", "1"]


@pytest.fixture
def cli(app, session):
    runner = app.test_cli_runner()

    def invoke(*args: str):
        return runner.invoke(args=list(args), catch_exceptions=False)

    return invoke


@pytest.fixture
def demo(cli, session):
    result = cli("demo", "seed", *SMALL)
    assert result.exit_code == 0, result.output
    return session.scalar(sa.select(Log).where(Log.kind == "journal"))


def test_demo_seed_is_safe_to_run_twice(cli, demo, session):
    students = session.scalar(sa.select(sa.func.count()).select_from(Student))
    entries = session.scalar(sa.select(sa.func.count()).select_from(Entry))
    again = cli("demo", "seed", *SMALL)
    assert again.exit_code == 0 and "nothing changed" in again.output
    assert session.scalar(sa.select(sa.func.count()).select_from(Student)) == students == 4
    assert session.scalar(sa.select(sa.func.count()).select_from(Entry)) == entries > 0


def test_demo_logins_print_each_staff_accounts_own_random_totp_key(cli, demo, session):
    import pyotp

    from auth.models import User

    output = cli("demo", "logins").output
    users = {u.username: u for u in session.scalars(sa.select(User))}
    staff_secrets = set()
    for line in output.splitlines()[1:]:
        role, username = line.split()[:2]
        user = users[username]
        if role in ("parent", "student"):
            assert "TOTP" not in line
            continue
        assert user.totp_secret in line
        code = re.search(r"code now (\d{6})", line).group(1)
        assert pyotp.TOTP(user.totp_secret).verify(code, valid_window=1)
        # Random, not derived from the username as before.
        derived = hashlib.sha256(b"class-journal demo totp\n" + username.encode()).digest()
        assert user.totp_secret != base64.b32encode(derived[:20]).decode()
        staff_secrets.add(user.totp_secret)
    assert len(staff_secrets) >= 6
    # One password, but each account hashes it with a salt of its own.
    hashes = [u.password_hash for u in users.values() if u.password_hash]
    assert len(set(hashes)) == len(hashes) > 8


def test_the_demo_school_is_never_made_in_production(app, tmp_path):
    from ..conftest import make_app

    production = make_app(
        app.config["DATABASE_URL"], tmp_path / "keys", TESTING=False,
        ENV="production", PUBLIC_URL="https://journal.example.kz",
    )  # fmt: skip
    runner = production.test_cli_runner()
    for command in (["demo", "seed", *SMALL], ["demo", "logins"]):
        result = runner.invoke(args=command)
        assert result.exit_code == 1 and "JOURNAL_ENV=development" in result.output
    with production.app_context():
        from journal.db import db

        assert db.session.scalar(sa.select(School).where(School.domain.like("mektep17%"))) is None
    production.extensions["journal_db"].engine.dispose()


def test_demo_has_kazakh_names(demo, session):
    names = " ".join(s.full_name for s in session.scalars(sa.select(Student)))
    school = session.scalar(sa.select(School))
    assert re.search("[әғқңөұүһі]", names + school.name)


def test_journal_list_shows_id_origin_and_size(cli, demo):
    out = cli("journal", "list").output
    assert re.search(
        rf"^\s*{demo.id}\s+{demo.size}\s+{demo.size}\s+{re.escape(demo.origin)}$", out, re.M
    ), out


def test_journal_verify_passes_on_the_demo(cli, demo):
    result = cli("journal", "verify", str(demo.id))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK ")


def test_unknown_journal_is_a_usage_error(cli, demo):
    result = cli("journal", "verify", "9999")
    assert result.exit_code == 2 and "no journal" in result.output


def test_checkpoint_command_cuts_only_when_the_log_grew(cli, demo):
    out = cli("journal", "checkpoint", str(demo.id)).output
    assert "unchanged" in out


def tamper(session, log: Log, seq: int, offset: int, backend: str) -> None:
    """Flip one byte of a stored leaf by raw SQL, with the history trigger dropped."""
    if backend == "postgresql":
        session.execute(sa.text("DROP TRIGGER entries_append_only ON entries"))
    else:
        session.execute(sa.text("DROP TRIGGER entries_no_update"))
    leaf = session.execute(
        sa.text("SELECT leaf FROM entries WHERE log_id = :l AND seq = :s"), {"l": log.id, "s": seq}
    ).scalar_one()
    leaf = bytes(leaf)
    changed = leaf[:offset] + bytes([leaf[offset] ^ 0x01]) + leaf[offset + 1 :]
    session.execute(
        sa.text("UPDATE entries SET leaf = :leaf WHERE log_id = :l AND seq = :s"),
        {"leaf": changed, "l": log.id, "s": seq},
    )
    session.expire_all()


@pytest.mark.parametrize("field", ["payload", "received_at", "sig", "seq", "first", "last"])
def test_one_changed_byte_fails_verify_and_names_the_seq(cli, demo, session, backend, field):
    seq = demo.size // 2
    leaf = session.scalar(sa.select(Entry.leaf).where(Entry.log_id == demo.id, Entry.seq == seq))
    offsets = {
        "payload": leaf.index(b'"journal":"') + 12,
        "received_at": leaf.index(b'"received_at":"') + 20,
        "sig": leaf.index(b'"sig":"') + 10,
        "seq": leaf.index(b'"seq":') + 6,
        "first": 0,
        "last": len(leaf) - 1,
    }
    tamper(session, demo, seq, offsets[field], backend)
    result = cli("journal", "verify", str(demo.id))
    assert result.exit_code == 1, result.output
    assert f"first bad seq {seq}" in result.output


def test_verify_on_two_processes_says_what_one_says(cli, demo, session, backend, monkeypatch):
    """`journal verify` starts its checking processes before it reads the rows; a log checked in
    chunks on two of them gets the same report and exit code as in one process."""
    seq = demo.size // 2
    leaf = session.scalar(sa.select(Entry.leaf).where(Entry.log_id == demo.id, Entry.seq == seq))
    honest = cli("journal", "verify", str(demo.id))
    tamper(session, demo, seq, leaf.index(b'"sig":"') + 10, backend)
    session.commit()
    alone = cli("journal", "verify", str(demo.id))
    happened: list[str | int] = []
    new_pool = audit._new_pool
    monkeypatch.setattr(audit, "_CHUNK", 7)  # several chunks even for the demo's journal
    monkeypatch.setattr(audit, "_worker_count", lambda workers, size: workers or 2)
    monkeypatch.setattr(audit, "_new_pool", lambda count: happened.append(count) or new_pool(count))

    def reads(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if "entries.leaf_hash" in statement:
            happened.append("rows read")

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", reads)
    try:
        shared = cli("journal", "verify", str(demo.id))
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", reads)
    assert happened == [2, "rows read"]  # two processes, started before the read
    assert (honest.exit_code, alone.exit_code) == (0, 1)
    assert f"first bad seq {seq}" in alone.output
    assert (shared.exit_code, shared.output) == (alone.exit_code, alone.output)


# An independent check of the exported files: RFC 9162 and C2SP written out again here by hand,
# sharing no code with journal.ledger.


def _mth(hashes: list[bytes]) -> bytes:
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(hashes[:k]) + _mth(hashes[k:])).digest()


def test_exported_journal_verifies_independently(cli, demo, tmp_path):
    result = cli("journal", "export", str(demo.id), str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "entries.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""
    lines = lines[:-1]
    assert len(lines) == demo.size

    keys = json.loads((tmp_path / "device-keys.json").read_text())
    for index, line in enumerate(lines):
        record = json.loads(line)
        assert (
            json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
            == line
        )
        assert record["seq"] == index
        payload = json.dumps(
            record["payload"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        key = keys[record["kid"]]
        assert key["alg"] == "ed25519"
        Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"])).verify(
            base64.b64decode(record["sig"]), b"class-journal/entry/v1\n" + payload
        )

    root = _mth([hashlib.sha256(b"\x00" + line).digest() for line in lines])
    vkey = (tmp_path / "log.vkey").read_text().strip()
    name, key_id_hex, key_b64 = vkey.split("+", 2)
    key_bytes = base64.b64decode(key_b64)
    assert key_bytes[0] == 1 and len(key_bytes) == 33
    assert hashlib.sha256(name.encode() + b"\n" + key_bytes).digest()[:4].hex() == key_id_hex

    checkpoint = (tmp_path / "checkpoint").read_text()
    body, signatures = checkpoint.split("\n\n", 1)
    body += "\n"
    assert body == f"{demo.origin}\n{demo.size}\n{base64.b64encode(root).decode()}\n"
    (line,) = signatures.splitlines()
    assert line.startswith(f"\u2014 {name} ")
    blob = base64.b64decode(line.rsplit(" ", 1)[1])
    assert blob[:4].hex() == key_id_hex
    Ed25519PublicKey.from_public_bytes(key_bytes[1:]).verify(blob[4:], body.encode())


def test_school_classes_lists_the_ids_export_takes(app, cli, world, session):
    """`flask school classes` names each class with the id `export --class` and the year id
    `journal close-term` take (issue 17)."""
    other = build_world(session, app.config["KEYS_DIR"])
    output = cli("school", "classes", "--school", world.school.domain).output
    lines = output.splitlines()
    assert lines[0].split()[:4] == ["CLASS", "ID", "CLASS", "YEAR"]
    assert [line.split()[:5] for line in lines[1:]] == [
        [str(world.class_group.id), "7Ә", str(world.year.id), "2026-2027", world.school.domain]
    ]
    assert other.school.domain not in output
    everything = cli("school", "classes").output
    assert world.school.domain in everything and other.school.domain in everything
    missing = cli("school", "classes", "--year", "1999-2000")
    assert missing.exit_code == 1 and "no classes" in missing.output

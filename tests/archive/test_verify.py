"""``journal-verify``: bags, printouts and proofs checked with the package alone.

The sample bag (``tests/archive/sample_bag.py``) is what the archive job writes; one test builds
a bag from a real journal in the database, copies it to a folder outside the repository and runs
the bag's own ``data/verify/verify.py`` with ``python -I`` and an empty environment.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pikepdf
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from archive.bag import build_bag
from archive.verify import pdf, seal, verify
from archive.verify.verify import ArchiveRefused, main, read_archive, read_vkey, verify_bag_files
from exports.pdf import extract_embedded_files
from journal.ledger import entry as ledger_entry
from journal.ledger import merkle, note, tlogproof
from journal.ledger.audit import parse_leaf_fast
from journal.models import Checkpoint
from journal.recording.recorder import record_entry
from journal.services import cut_checkpoint, export_log
from tests.archive.sample_bag import (
    KEY_NAME,
    LocalTimestamper,
    SampleBag,
    attacker_rewrites_manifests,
    build_sample_bag,
    make_log,
    make_printout,
    verifier_files,
)
from tests.archive.services import ServiceUnavailable
from tests.external import missing, need_tool

from ..factories import NOW


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleBag:
    try:
        return build_sample_bag(tmp_path_factory.mktemp("sample") / "bag")
    except ServiceUnavailable as exc:
        missing(str(exc))
        raise


@pytest.fixture(scope="module")
def files(sample: SampleBag) -> dict[str, bytes]:
    return sample.files()


def statuses(report: verify.Report) -> dict[str, str]:
    return {check.key: check.status for check in report.checks}


def resealed(files: Mapping[str, bytes], sample: SampleBag) -> dict[str, bytes]:
    """The bag as a careless archive job would write it: manifests and seal redone with the
    school's own key, so that only the checks of meaning can object."""
    payload = [data for name, data in files.items() if name.startswith("data/")]
    oxum = f"Payload-Oxum: {sum(map(len, payload))}.{len(payload)}"
    info = [
        oxum if line.startswith("Payload-Oxum:") else line
        for line in files["bag-info.txt"].decode().splitlines()
    ]
    changed = {name: data for name, data in files.items() if name != verify.TAG_TOKEN}
    changed["bag-info.txt"] = "".join(line + "\n" for line in info).encode()
    out = attacker_rewrites_manifests(changed)
    top = {name: data for name, data in out.items() if "/" not in name}
    out[seal.SEAL_FILE] = note.sign_note(seal.seal_text(top), KEY_NAME, sample.log_key).encode()
    return out


# --- the whole bag ------------------------------------------------------------------------------


def test_sample_bag_verifies_with_every_check_ok(sample: SampleBag, files: dict[str, bytes]):
    need_tool("openssl")
    report = verify_bag_files(files, read_vkey(sample.vkey))
    assert report.ok, report.text()
    assert set(statuses(report).values()) == {"ok"}, report.text()
    text = report.text()
    assert "60 entries" in text and "sizes 20, 40, 60" in text and "20->40, 40->60" in text
    assert "openssl ts -verify -attime <genTime> agrees on all 4 tokens" in text
    assert "40 embedded records (seq 0..39) hash to the signed checkpoint" in text
    assert "the bag's data/entries.jsonl holds the same records" in text
    assert text.startswith("journal-verify bag .\n[ OK ] Which bag this is\n")
    assert "class 7Ә (id 7), school year 2026-2027, up to the close of quarter 2" in text
    assert "the quarterly journal of class 7Ә (id 7), 2026-2027, quarter 2" in text
    assert text.endswith("RESULT: OK, everything checked holds.\n")


def test_cli_exit_codes(sample: SampleBag, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["bag", str(sample.path), "--vkey", sample.vkey]) == 0
    assert "RESULT: OK" in capsys.readouterr().out

    vkey_file = tmp_path / "school.vkey"
    vkey_file.write_text(sample.vkey + "\n")
    assert main(["bag", str(sample.path), "--vkey", str(vkey_file)]) == 0
    capsys.readouterr()

    copy = tmp_path / "copy"
    shutil.copytree(sample.path, copy)
    with (copy / "data" / "entries.jsonl").open("r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 1]))
    assert main(["bag", str(copy), "--vkey", sample.vkey]) == 1
    out = capsys.readouterr().out
    assert "RESULT: FAILED. First failure: BagIt structure and manifests: data/entries.jsonl" in out
    assert "data/entries.jsonl line 1 (seq 0)" in out  # the log check names the entry too

    assert main(["bag", str(sample.path)]) == 2
    assert "--vkey" in capsys.readouterr().err
    assert main(["bag", str(sample.path), "--vkey", "not-a-key"]) == 2
    assert "neither a verifier key nor a readable file" in capsys.readouterr().err
    assert main(["bag", str(tmp_path / "nowhere"), "--vkey", sample.vkey]) == 2
    assert main(["frobnicate"]) == 2
    assert main([]) == 2


def test_the_key_must_be_the_schools_not_the_bags(sample: SampleBag, files: dict[str, bytes]):
    other = note.vkey(KEY_NAME, Ed25519PrivateKey.generate().public_key())
    report = verify_bag_files(files, read_vkey(other), openssl=None)
    assert not report.ok
    assert statuses(report)["seal"] == "failed"
    keys = next(c for c in report.checks if c.key == "keys")
    assert any("not the key given with --vkey" in p for p in keys.problems)
    log = next(c for c in report.checks if c.key == "log")
    assert any("checkpoint signature or format invalid" in p for p in log.problems)


def test_a_bag_without_seal_fails(sample: SampleBag, files: dict[str, bytes]):
    unsealed = {name: data for name, data in files.items() if name != seal.SEAL_FILE}
    report = verify_bag_files(unsealed, read_vkey(sample.vkey), openssl=None)
    assert not report.ok
    assert report.first_failure is not None and report.first_failure.startswith("Seal")
    assert statuses(report)["log"] == "ok"


def test_changed_device_key_name_is_caught_by_the_seal(sample: SampleBag, files: dict[str, bytes]):
    """The one thing no other signature covers: who a key belongs to, as the bag says."""
    changed = dict(files)
    changed["data/keys/device-keys.json"] = files["data/keys/device-keys.json"].replace(
        b"teacher1", b"teacher9"
    )
    report = verify_bag_files(attacker_rewrites_manifests(changed), read_vkey(sample.vkey))
    assert statuses(report)["bag"] == "ok" and statuses(report)["log"] == "ok"
    assert statuses(report)["seal"] == "failed"
    seal_check = next(c for c in report.checks if c.key == "seal")
    assert "manifest-sha512.txt changed after the bag was sealed" in seal_check.problems[0]


def test_meaning_is_checked_even_under_a_valid_seal(sample: SampleBag, files: dict[str, bytes]):
    vkey = read_vkey(sample.vkey)
    leaves = verify.split_leaves(files["data/entries.jsonl"])

    # A changed grade after the last checkpoint: the device signature no longer matches.
    record = json.loads(leaves[59])
    record["payload"]["value"]["score"] = 10 if record["payload"]["value"]["score"] != 10 else 9
    forged = ledger_entry.canonical_json(record)
    bad = dict(files)
    bad["data/entries.jsonl"] = b"".join(line + b"\n" for line in [*leaves[:59], forged])
    report = verify_bag_files(resealed(bad, sample), vkey, openssl=None)
    log = next(c for c in report.checks if c.key == "log")
    assert "data/entries.jsonl line 60 (seq 59): the signature does not match the entry" in (
        log.problems
    )

    # Entries appended after the last signed checkpoint are reported as uncovered.
    extra = dict(files)
    extra["data/entries.jsonl"] = files["data/entries.jsonl"] + leaves[0] + b"\n"
    report = verify_bag_files(resealed(extra, sample), vkey, openssl=None)
    log = next(c for c in report.checks if c.key == "log")
    assert any("not covered by any signed checkpoint" in p for p in log.problems)

    # A wrong consistency proof.
    proof = dict(files)
    hashes = verify.parse_proof_lines(files["data/checkpoints/consistency-20-40.txt"])
    proof["data/checkpoints/consistency-20-40.txt"] = b"".join(
        base64.b64encode(h) + b"\n" for h in reversed(hashes)
    )
    report = verify_bag_files(resealed(proof, sample), vkey, openssl=None)
    log = next(c for c in report.checks if c.key == "log")
    assert any("consistency proof 20->40 fails" in p for p in log.problems)

    # A printout whose embedded checkpoint is not the bag's tree.
    printout = dict(files)
    other_log = build_printout_for_other_entries(files, sample)
    printout["data/printouts/journal-q2.pdf"] = other_log
    report = verify_bag_files(resealed(printout, sample), vkey, openssl=None)
    printouts = next(c for c in report.checks if c.key == "printouts")
    assert any("does not hash to its checkpoint's root" in p for p in printouts.problems)


def build_printout_for_other_entries(files: Mapping[str, bytes], sample: SampleBag) -> bytes:
    """An unsigned PDF embedding the first ten entries and a checkpoint of size 10, signed by
    the school, over other entries (entries 1 to 10)."""
    all_leaves = verify.split_leaves(files["data/entries.jsonl"])
    leaves = all_leaves[:10]
    root = merkle.root([merkle.leaf_hash(leaf) for leaf in all_leaves[1:11]])
    checkpoint = note.sign_checkpoint(
        note.Checkpoint(sample.origin, 10, root), KEY_NAME, sample.log_key
    )
    with pikepdf.new() as document:
        document.add_blank_page()
        document.attachments["entries.jsonl"] = pikepdf.AttachedFileSpec(
            document, b"".join(line + b"\n" for line in leaves)
        )
        document.attachments["checkpoint"] = pikepdf.AttachedFileSpec(document, checkpoint.encode())
        out = io.BytesIO()
        document.save(out)
    return out.getvalue()


# --- a real journal, archived and checked offline -------------------------------------------------


def test_bag_from_a_journal_verifies_offline_with_python_isolated(world, tmp_path: Path):
    """A bag built from the database's export, copied to a folder with no server, no database
    and no repository: the bag's own verifier, run with ``python -I`` and an empty environment."""
    try:
        timestamper = LocalTimestamper(tmp_path / "tsa")
    except ServiceUnavailable as exc:
        missing(str(exc))
    session = world.session
    for _ in range(7):
        record_entry(session, world.signed("grade"), now=NOW)
    cut_checkpoint(session, world.log, world.log_key, timestamper=timestamper, now=NOW)
    for _ in range(5):
        record_entry(session, world.signed("attendance"), now=NOW)
    cut_checkpoint(session, world.log, world.log_key, timestamper=timestamper, now=NOW)

    exported = export_log(session, world.log, world.log_key.vkey)
    files = {
        "entries.jsonl": exported["entries.jsonl"],
        "keys/log.vkey": exported["log.vkey"],
        "keys/device-keys.json": exported["device-keys.json"],
        "keys/tsa-ca.pem": timestamper.ca_cert.read_bytes(),
        **verifier_files(),
    }
    checkpoints = session.query(Checkpoint).filter_by(log_id=world.log.id).order_by("size").all()
    for checkpoint in checkpoints:
        files[f"checkpoints/{checkpoint.size}.checkpoint"] = checkpoint.note.encode()
        assert checkpoint.timestamp_token is not None
        files[f"checkpoints/{checkpoint.size}.tsr"] = bytes(checkpoint.timestamp_token)
        if checkpoint.previous_size:
            name = f"checkpoints/consistency-{checkpoint.previous_size}-{checkpoint.size}.txt"
            files[name] = (checkpoint.consistency_proof or "").encode()
    built = build_bag(tmp_path / "built", files, {"Bagging-Date": "2026-12-29"})
    seal.seal_bag(built, world.log_key.name, world.log_key.private_key)

    elsewhere = tmp_path / "usb-stick" / "bag"
    shutil.copytree(built, elsewhere)
    command = [sys.executable, "-I", "data/verify/verify.py", "bag", ".", "--vkey"]
    done = subprocess.run(
        [*command, world.log_key.vkey], cwd=elsewhere, env={}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "12 entries" in done.stdout and "sizes 7, 12" in done.stdout
    assert "RESULT: OK" in done.stdout

    # It is the bag's own copy of the ledger package that runs, not the repository's.
    (elsewhere / "data" / "verify" / "ledger" / "tlogproof.py").unlink()
    done = subprocess.run(
        [*command, world.log_key.vkey], cwd=elsewhere, env={}, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "cannot import name 'tlogproof' from 'ledger'" in done.stderr
    assert str(elsewhere / "data" / "verify" / "ledger" / "__init__.py") in done.stderr


# --- printouts ----------------------------------------------------------------------------------


def test_pdf_command(sample: SampleBag, files: dict[str, bytes], tmp_path: Path, capsys):
    printout = tmp_path / "journal.pdf"
    printout.write_bytes(files["data/printouts/journal-q2.pdf"])
    assert main(["pdf", str(printout), "--vkey", sample.vkey]) == 0
    out = capsys.readouterr().out
    assert "40 embedded records (seq 0..39) hash to the signed checkpoint" in out
    assert "signatures checked against the embedded device keys" in out

    data = bytearray(printout.read_bytes())
    at = data.index(b"/Producer")  # in the first revision: inside both signed ranges
    data[at + 2] ^= 0x01
    printout.write_bytes(bytes(data))
    assert main(["pdf", str(printout), "--vkey", sample.vkey]) == 1
    assert "digest of the signed bytes does not match" in capsys.readouterr().out

    unsigned = tmp_path / "unsigned.pdf"
    unsigned.write_bytes(build_printout_for_other_entries(files, sample))
    assert main(["pdf", str(unsigned), "--vkey", sample.vkey]) == 1
    assert "is not signed: nothing protects its pages" in capsys.readouterr().out


def test_pdf_reader_matches_pikepdf(files: dict[str, bytes]):
    """Object streams and xref streams (as written), and classic xref tables (rewritten)."""
    signed = files["data/printouts/journal-q2.pdf"]
    assert pdf.read_embedded_files(signed) == extract_embedded_files(signed)
    modes = [(pikepdf.ObjectStreamMode.disable, False), (pikepdf.ObjectStreamMode.generate, True)]
    with pikepdf.open(io.BytesIO(signed)) as document:
        for mode, compress in modes:
            out = io.BytesIO()
            document.save(out, object_stream_mode=mode, compress_streams=compress)
            rewritten = out.getvalue()
            assert pdf.read_embedded_files(rewritten) == extract_embedded_files(rewritten)
    names = sorted(pdf.read_embedded_files(signed))
    assert names == ["checkpoint", "device-keys.json", "entries.jsonl", "entry-5.tlog-proof",
                     "log.vkey", "printout.json", "signer.jsonl", "signer.tlog-proof"]  # fmt: skip


def test_printouts_of_a_slice_or_of_chosen_records(sample: SampleBag, tmp_path: Path):
    """A quarter's journal embeds a run of entries and the compact range before it; a student's
    extract embeds chosen entries, each with its inclusion proof. Both verify on their own."""
    log = make_log(60, (20, 40, 60), sample.log_key)
    vkey = read_vkey(sample.vkey)
    quarter = make_printout(
        log, 40, sample.vkey, timestamper=None, start=20, log_key=sample.log_key
    )
    assert sorted(pdf.read_embedded_files(quarter)) == [
        "checkpoint", "device-keys.json", "entries-range.txt", "entries.jsonl",
        "entry-25.tlog-proof", "log.vkey", "signer.jsonl", "signer.tlog-proof",
    ]  # fmt: skip
    report = verify.verify_pdf(quarter, vkey, subject="q2.pdf")
    assert report.ok, report.text()
    assert "20 embedded records (seq 20..39) with entries-range.txt, hash to" in report.text()
    assert "signatures checked against the embedded device keys" in report.text()

    extract = make_printout(
        log, 60, sample.vkey, timestamper=None, chosen=(3, 17, 42), log_key=sample.log_key
    )
    report = verify.verify_pdf(extract, vkey, subject="extract.pdf")
    assert report.ok, report.text()
    assert "3 embedded records (seq 3..42) each have an inclusion proof" in report.text()

    # The range file must describe the entries before the run exactly.
    with pikepdf.open(io.BytesIO(quarter)) as document:
        spec = document.attachments["entries-range.txt"]
        lines = spec.get_file().read_bytes().decode().splitlines()
        lines[0] = "start 21"
        document.attachments["entries-range.txt"] = pikepdf.AttachedFileSpec(
            document, ("\n".join(lines) + "\n").encode()
        )
        out = io.BytesIO()
        document.save(out)
    report = verify.verify_pdf(out.getvalue(), vkey, subject="q2.pdf")
    assert "q2.pdf entries-range.txt: the range starts at 21, the records at seq 20" in (
        report.text()
    )


def test_signature_contents_must_be_one_case_and_zero_padded(files: dict[str, bytes]):
    signed = files["data/printouts/journal-q2.pdf"]
    signature = pdf.PdfDocument(signed).signatures()[0]
    start = signature.byte_range[1] + 1
    digits = signed[start : signature.byte_range[2] - 1]
    letter = next(i for i, b in enumerate(digits) if chr(b) in "ABCDEF")
    mixed = bytearray(signed)
    mixed[start + letter] ^= 0x20  # same value, other case
    with pytest.raises(pdf.PdfError, match="mixes upper- and lower-case"):
        pdf.PdfDocument(bytes(mixed)).signatures()
    padded = bytearray(signed)
    padded[start + len(digits) - 1] = ord("1")  # a non-zero digit in the padding
    document = pdf.PdfDocument(bytes(padded))
    contents = document.signatures()[0].contents
    with pytest.raises(verify.cms.CmsError, match="bytes follow the DER structure"):
        verify.cms.parse_der(contents, zero_padding=True)


# --- proofs -------------------------------------------------------------------------------------


def test_proof_command(sample: SampleBag, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    tree = merkle.MerkleTree([merkle.leaf_hash(leaf) for leaf in sample.leaves])
    checkpoint = note.sign_checkpoint(
        note.Checkpoint(sample.origin, 60, tree.root()), KEY_NAME, sample.log_key
    )
    proof = tmp_path / "entry-17.tlog-proof"
    proof.write_text(tlogproof.format_tlog_proof(tlogproof.make_tlog_proof(tree, 17, checkpoint)))
    leaf = tmp_path / "leaf.json"
    leaf.write_bytes(sample.leaves[17] + b"\n")
    assert main(["proof", "--vkey", sample.vkey, "--leaf", str(leaf), str(proof)]) == 0
    out = capsys.readouterr().out
    assert f"the leaf is entry 17 of {sample.origin}, in the checkpoint of size 60" in out

    leaf.write_bytes(sample.leaves[18])
    assert main(["proof", "--vkey", sample.vkey, "--leaf", str(leaf), str(proof)]) == 1
    assert "proof does not lead to the root hash" in capsys.readouterr().out

    other = note.vkey(KEY_NAME, Ed25519PrivateKey.generate().public_key())
    leaf.write_bytes(sample.leaves[17])
    assert main(["proof", "--vkey", other, "--leaf", str(leaf), str(proof)]) == 1
    assert "checkpoint does not verify" in capsys.readouterr().out
    assert main(["proof", "--vkey", sample.vkey, "--leaf", str(tmp_path / "no"), str(proof)]) == 2


# --- timestamps ---------------------------------------------------------------------------------


def test_tokens_without_openssl_are_checked_here_and_say_so(
    sample: SampleBag, files: dict[str, bytes]
):
    report = verify_bag_files(files, read_vkey(sample.vkey), openssl=None)
    assert report.ok
    timestamps = next(c for c in report.checks if c.key == "timestamps")
    assert timestamps.warnings == [
        "skipped: openssl not found; the tokens were checked by this verifier alone"
    ]
    swapped = dict(files)
    swapped["data/checkpoints/20.tsr"] = files["data/checkpoints/40.tsr"]
    report = verify_bag_files(resealed(swapped, sample), read_vkey(sample.vkey), openssl=None)
    timestamps = next(c for c in report.checks if c.key == "timestamps")
    assert timestamps.problems == [
        "data/checkpoints/20.tsr: the token's sha256 imprint does not match the data"
    ]


def test_openssl_is_asked_at_the_tokens_gen_time(sample: SampleBag, files, monkeypatch):
    need_tool("openssl")
    seen: list[list[str]] = []
    real_run = subprocess.run

    def spy(command, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(list(command))
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(verify.subprocess, "run", spy)
    report = verify_bag_files(files, read_vkey(sample.vkey))
    assert report.ok
    assert len(seen) == 4 and all("-attime" in command for command in seen)
    gen_time = verify.cms.read_gen_time(files["data/checkpoints/20.tsr"])
    assert str(int(gen_time.timestamp())) in seen[0]


# --- uploads as zip or tar ----------------------------------------------------------------------


def zipped(entries: Mapping[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16) | 0x20
            archive.writestr(info, "/etc/passwd")
    return out.getvalue()


def test_zip_and_tar_of_a_bag_verify(sample: SampleBag, files: dict[str, bytes]):
    archive = zipped({f"bag/{name}": data for name, data in files.items()})
    report = verify.verify_upload(archive, read_vkey(sample.vkey), name="bag.zip", openssl=None)
    assert report.ok, report.text()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(sample.path, arcname="bag")
    report = verify.verify_upload(out.getvalue(), read_vkey(sample.vkey), openssl=None)
    assert report.ok, report.text()


@pytest.mark.parametrize(
    ("entries", "links", "message"),
    [
        ({"../evil.txt": b"x", "bagit.txt": b""}, (), "unsafe file name"),
        ({"/etc/evil": b"x", "bagit.txt": b""}, (), "unsafe file name"),
        ({"bag/data/../../evil": b"x"}, (), "unsafe file name"),
        ({"C:/evil": b"x"}, (), "unsafe file name"),
        ({"bagit.txt": b""}, ("data/link",), "is a link or special file"),
        ({"a.txt": b"x"}, (), "no bagit.txt"),
    ],
)
def test_unsafe_archives_are_refused(entries, links, message):
    with pytest.raises(ArchiveRefused, match=message):
        read_archive(zipped(entries, links))


def test_archive_limits(tmp_path: Path):
    many = {f"data/{i}.txt": b"x" for i in range(30)} | {"bagit.txt": b""}
    with pytest.raises(ArchiveRefused, match="more than 10 files"):
        read_archive(zipped(many), max_files=10)
    big = {"bagit.txt": b"", "data/big.bin": b"\0" * 100_000}  # compresses to almost nothing
    with pytest.raises(ArchiveRefused, match="more than 50000 bytes"):
        read_archive(zipped(big), max_bytes=50_000)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        link = tarfile.TarInfo("bag/data/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(ArchiveRefused, match="link or special file"):
        read_archive(out.getvalue())
    directory = tmp_path / "bag"
    directory.mkdir()
    (directory / "bagit.txt").write_bytes(b"")
    os.symlink("/etc/passwd", directory / "passwd")
    with pytest.raises(ArchiveRefused, match="symbolic link"):
        verify.read_bag_directory(directory)


# --- the fast leaf parser ----------------------------------------------------------------------


def test_fast_leaf_parser_agrees_with_parse_leaf(sample: SampleBag):
    """On thousands of damaged leaves and on the tricky spellings: the fast path either gives
    exactly what ``parse_leaf`` gives, or steps aside (None) for it."""
    import random

    rng = random.Random(2026)
    leaf = sample.leaves[3]
    text = leaf.decode()
    candidates = [leaf, *sample.leaves[:20]]
    for _ in range(3000):
        damaged = bytearray(leaf)
        damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        candidates.append(bytes(damaged))
    score = '"score":'
    candidates += [
        text.replace(score, score + " ").encode(),
        text.replace('"v":1', '"v":1.0').encode(),
        text.replace('"v":1', '"v":9007199254740993').encode(),
        text.replace('"v":1', '"v":-0').encode(),
        text.replace('"v":1', '"v":1,"v":1').encode(),
        text.replace('"kind":"grade"', '"kind":"gr\\u0061de"').encode(),
        text.replace('"kind":"grade"', '"kind":"\\ud800"').encode(),
        text.replace('"kind":"grade"', '"kind":"\U0001f600"').encode(),
        text.replace('"kind":"grade"', '"\U0001f600":1,"kind":"grade","\ue000":2').encode(),
        text.replace('Z","seq"', '.000000Z","seq"').encode(),
        text.replace('"v":1', '"v":NaN').encode(),
        text.replace('"v":1', '"v":true').encode(),
        text.replace('"v":1', '"v":' + "[" * 40 + "]" * 40).encode(),
    ]
    agreed = fast = 0
    for candidate in candidates:
        try:
            expected = ledger_entry.parse_leaf(candidate)
        except (ledger_entry.PayloadError, ValueError, KeyError, TypeError):
            expected = None
        got = parse_leaf_fast(candidate)
        if got is not None:
            fast += 1
            assert got == expected, candidate
        agreed += 1
    assert fast > 20 and agreed == len(candidates)


def test_sha512_manifest_lines_must_be_exact(sample: SampleBag, files: dict[str, bytes]):
    """Upper-case hex means the same digest to sha512sum: only an exact form makes every byte
    of a manifest count."""
    upper = dict(files)
    first, rest = files["manifest-sha512.txt"].split(b"  ", 1)
    upper["manifest-sha512.txt"] = first.upper() + b"  " + rest
    report = verify_bag_files(upper, read_vkey(sample.vkey), openssl=None)
    bag = next(c for c in report.checks if c.key == "bag")
    assert bag.problems[0] == (
        "manifest-sha512.txt line 1: is not '<lowercase hex digest>  <path>'"
    )

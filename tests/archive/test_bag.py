"""Archive bags: BagIt 1.0 layout, validation by the library and by the tools an inspector has."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from archive.bag import BagInvalid, bag_to_tar, build_bag, tar_to_bag, validate_bag
from tests.external import need_tool

FILES = {
    "entries.jsonl": b'{"seq":0}\n{"seq":1}\n',
    "checkpoints/12.checkpoint": b"example.com/journal/2024/7A\n12\nAAAA\n\n- key sig\n",
    "checkpoints/12.tsr": bytes(range(256)),
    "printouts/q1.pdf": b"%PDF-1.7\n" + b"\x00\xff" * 1000,
    "keys/log.vkey": b"school+abcd1234+AQID\n",
    "VERIFY.md": "# Как проверить / Қалай тексеру керек\n".encode(),
    "verify/verify.py": b"print('ok')\n",
}
INFO = {
    "External-Identifier": "school.example.kz/journal/2024-2025/7A",
    "Tier": "journal-5y",
    "Retention-Until": "2030-08-31",
    "Source-Organization": "Школа №1",
    "Bagging-Date": "2025-06-30",
}
BAGIT_SCRIPT = Path(sys.executable).parent / "bagit.py"


@pytest.fixture
def bag(tmp_path: Path) -> Path:
    return build_bag(tmp_path / "journal-7A", FILES, INFO)


def flip_byte(path: Path, offset: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def test_layout_is_bagit_1_0_with_sha512_manifests_only(bag: Path) -> None:
    names = sorted(p.relative_to(bag).as_posix() for p in bag.rglob("*") if p.is_file())
    assert names == sorted(
        ["bagit.txt", "bag-info.txt", "manifest-sha512.txt", "tagmanifest-sha512.txt"]
        + [f"data/{name}" for name in FILES]
    )
    assert (bag / "bagit.txt").read_bytes() == (
        b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
    )
    info = (bag / "bag-info.txt").read_text(encoding="utf-8").splitlines()
    assert info == sorted(info)
    assert "Source-Organization: Школа №1" in info
    total = sum(len(data) for data in FILES.values())
    assert f"Payload-Oxum: {total}.{len(FILES)}" in info
    manifest = (bag / "manifest-sha512.txt").read_text().splitlines()
    assert manifest[0] == f"{hashlib.sha512(FILES['VERIFY.md']).hexdigest()}  data/VERIFY.md"
    assert [line.split("  ")[1] for line in manifest] == sorted(f"data/{n}" for n in FILES)
    tags = [
        line.split("  ")[1]
        for line in (bag / "tagmanifest-sha512.txt").read_text().split("\n")
        if line
    ]
    assert tags == ["bag-info.txt", "bagit.txt", "manifest-sha512.txt"]
    for name, data in FILES.items():
        assert (bag / "data" / name).read_bytes() == data


def test_valid_bag_validates(bag: Path) -> None:
    validate_bag(bag)


def test_same_inputs_make_identical_bags(tmp_path: Path) -> None:
    first = build_bag(tmp_path / "a" / "bag", FILES, INFO)
    second = build_bag(
        tmp_path / "b" / "bag", dict(reversed(FILES.items())), dict(reversed(INFO.items()))
    )
    for path in first.rglob("*"):
        twin = second / path.relative_to(first)
        assert twin.is_file() == path.is_file()
        if path.is_file():
            assert twin.read_bytes() == path.read_bytes()
    assert bag_to_tar(first) == bag_to_tar(second)


def test_bagit_command_line_validates(bag: Path) -> None:
    assert BAGIT_SCRIPT.exists(), "the bagit package installs bagit.py into the venv"
    result = subprocess.run(
        [sys.executable, str(BAGIT_SCRIPT), "--validate", str(bag)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stderr


def test_sha512sum_checks_manifests(bag: Path) -> None:
    sha512sum = need_tool("sha512sum")["sha512sum"]
    for manifest in ("manifest-sha512.txt", "tagmanifest-sha512.txt"):
        result = subprocess.run(
            [sha512sum, "--strict", "-c", manifest],
            cwd=bag,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_changed_data_byte_fails(bag: Path) -> None:
    flip_byte(bag / "data" / "printouts" / "q1.pdf", 100)
    with pytest.raises(BagInvalid) as failure:
        validate_bag(bag)
    assert "data/printouts/q1.pdf" in str(failure.value)
    result = subprocess.run(
        [sys.executable, str(BAGIT_SCRIPT), "--validate", str(bag)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0


@pytest.mark.parametrize("tag_file", ["bag-info.txt", "bagit.txt", "manifest-sha512.txt"])
def test_changed_tag_byte_fails(bag: Path, tag_file: str) -> None:
    path = bag / tag_file
    text = path.read_bytes()
    # Change a letter that keeps the file parseable, so the checksum is what catches it.
    offset = text.index(b"a" if tag_file != "manifest-sha512.txt" else b"data/") + 1
    flip_byte(path, offset)
    with pytest.raises(BagInvalid):
        validate_bag(bag)
    result = subprocess.run(
        [sys.executable, str(BAGIT_SCRIPT), "--validate", str(bag)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0


def test_added_payload_file_fails(bag: Path) -> None:
    (bag / "data" / "extra.txt").write_bytes(b"smuggled")
    with pytest.raises(BagInvalid, match="extra.txt"):
        validate_bag(bag)


def test_removed_payload_file_fails(bag: Path) -> None:
    (bag / "data" / "entries.jsonl").unlink()
    with pytest.raises(BagInvalid, match="entries.jsonl"):
        validate_bag(bag)


def test_missing_tagmanifest_fails(bag: Path) -> None:
    (bag / "tagmanifest-sha512.txt").unlink()
    with pytest.raises(BagInvalid, match="tagmanifest-sha512.txt is missing"):
        validate_bag(bag)


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\\b", "a\nb", "50%.txt", ""],
)
def test_unsafe_payload_paths_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        build_bag(tmp_path / "bag", {name: b"x"}, INFO)
    assert not (tmp_path / "bag").exists()


def test_bagging_date_is_required(tmp_path: Path) -> None:
    info = {k: v for k, v in INFO.items() if k != "Bagging-Date"}
    with pytest.raises(ValueError, match="Bagging-Date"):
        build_bag(tmp_path / "bag", FILES, info)


def test_existing_destination_is_refused(bag: Path) -> None:
    with pytest.raises(FileExistsError):
        build_bag(bag, FILES, INFO)


def test_tar_is_deterministic_and_round_trips(bag: Path, tmp_path: Path) -> None:
    data = bag_to_tar(bag)
    assert data == bag_to_tar(bag)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names[0] == "journal-7A"
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == "" for m in members)
    assert {m.mode for m in members if m.isfile()} == {0o644}
    assert {m.mtime for m in members} == {1751241600}  # 2025-06-30T00:00:00Z, the Bagging-Date
    restored = tar_to_bag(data, tmp_path / "restored")
    assert restored == tmp_path / "restored" / "journal-7A"
    validate_bag(restored)
    assert bag_to_tar(restored) == data
    assert bag_to_tar(bag, mtime=0) != data


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, payload in members:
            if payload is not None:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def _file(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), b"evil"


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize(
    "members",
    [
        [_file("/tmp/evil")],
        [_file("bag/../../evil")],
        [_file("../evil")],
        [_file("bag/./x")],
        [_link("bag/link", "/etc/passwd", tarfile.SYMTYPE)],
        [_link("bag/hard", "/etc/passwd", tarfile.LNKTYPE)],
        [_file("bag/a"), _file("other/b")],
        [_file("top-level-file")],
        [_file("bag/a"), _file("bag/a")],
    ],
    ids=[
        "absolute",
        "dotdot-inside",
        "dotdot",
        "dot",
        "symlink",
        "hardlink",
        "two-tops",
        "top-file",
        "duplicate",
    ],
)
def test_malicious_tar_is_rejected(tmp_path: Path, members: list) -> None:
    dest = tmp_path / "out"
    with pytest.raises(ValueError):
        tar_to_bag(_tar(*members), dest)
    assert not dest.exists() or not any(dest.iterdir())
    assert not (tmp_path / "evil").exists()


def test_device_member_is_rejected(tmp_path: Path) -> None:
    info = tarfile.TarInfo("bag/dev")
    info.type = tarfile.CHRTYPE
    with pytest.raises(ValueError, match="not a regular file"):
        tar_to_bag(_tar((info, None)), tmp_path / "out")


def test_extraction_refuses_existing_bag(bag: Path) -> None:
    with pytest.raises(FileExistsError):
        tar_to_bag(bag_to_tar(bag), bag.parent)


def test_tampered_tar_extracts_but_does_not_validate(bag: Path, tmp_path: Path) -> None:
    data = bytearray(bag_to_tar(bag))
    offset = data.index(b"print('ok')")
    data[offset] ^= 0x01
    restored = tar_to_bag(bytes(data), tmp_path / "restored")
    with pytest.raises(BagInvalid, match="verify/verify.py"):
        validate_bag(restored)

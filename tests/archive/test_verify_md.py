"""VERIFY.md works as written: every shell block of it, run in order in one bash as a reader
would, on bags the archive job made (a Q1 bag, a Q2 bag whose entries are half ECDSA P-256, and
a ledger bag), prints what the text right after the block says it prints, and nothing FAILED.

The one thing replaced is the example key in the first block: the reader puts the school's key
there. The blocks come from the bag's own data/VERIFY.md; the Russian half must give the very
same commands.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.archive.real_bags import RealBags
from tests.external import need_tool

EXAMPLE_KEY = "school17.edu.kz+1a2b3c4d+AXd0...="
REPO_VERIFY_MD = Path(__file__).resolve().parents[2] / "archive" / "verify" / "VERIFY.md"
_BLOCK = re.compile(r"```sh\n(.*?)\n```\n\n([^\n].*?)(?:\n\n|\Z)", re.S)


def blocks(text: str) -> list[tuple[str, list[str]]]:
    """Each ```sh block with the strings the paragraph after it says it prints."""
    found = []
    for code, after in _BLOCK.findall(text):
        said = re.match(r"(Prints|Печатает) (.*)", after, re.S)
        assert said, f"no 'Prints' after the block:\n{code}"
        found.append((code, re.findall(r"`([^`]+)`", first_sentence(said.group(2)))))
    return found


def first_sentence(text: str) -> str:
    """Up to the first full stop outside backticks (the quoted output may hold full stops)."""
    quoted = False
    for index, char in enumerate(text):
        if char == "`":
            quoted = not quoted
        elif char == "." and not quoted:
            return text[:index]
    return text


def test_both_languages_give_the_same_commands() -> None:
    english, russian = REPO_VERIFY_MD.read_text(encoding="utf-8").split("\n---\n")
    assert [code for code, _ in blocks(english)] == [code for code, _ in blocks(russian)]
    assert len(blocks(english)) >= 10


@pytest.mark.parametrize("label", ["q1", "q2", "ledger"])
def test_every_block_prints_what_verify_md_says(
    real_bags: RealBags, label: str, tmp_path: Path
) -> None:
    tools = need_tool(
        "bash", "sha512sum", "openssl", "pdfsig", "pdfdetach", "certutil", "awk", "sed"
    )
    bag = tmp_path / "bag"
    shutil.copytree(real_bags.bags[label], bag)
    text = (bag / "data" / "VERIFY.md").read_text(encoding="utf-8")
    assert text == REPO_VERIFY_MD.read_text(encoding="utf-8")
    english = text.split("\n---\n")[0]
    steps = blocks(english)
    assert EXAMPLE_KEY in steps[0][0]
    script = "\n".join(
        f'echo "=== block {index}"\n{code}\necho "=== status $?"'
        for index, (code, _) in enumerate(steps)
    ).replace(EXAMPLE_KEY, real_bags.vkey)
    environment = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # python3, bagit.py
        "LC_ALL": "C.UTF-8",
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [tools["bash"], "-c", script],
        cwd=bag,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    outputs = re.split(r"^=== block \d+\n", done.stdout, flags=re.M)[1:]
    assert len(outputs) == len(steps), (done.stdout, done.stderr)
    for (code, expected), output in zip(steps, outputs, strict=True):
        context = f"{label} bag, block:\n{code}\n--- printed:\n{output}\n--- stderr:\n{done.stderr}"
        assert output.rstrip().endswith("=== status 0"), context
        assert "FAILED" not in output, context
        for phrase in expected:
            assert phrase in output, f"{phrase!r} missing; {context}"
    if label == "q2":  # the entries checked by hand include one signed with ECDSA P-256
        assert "ecdsa-p256 key" in done.stdout and "ed25519 key" in done.stdout
    if label == "q1":  # and the steps by hand are not blind: a changed grade, a changed seal
        entries = bag / "data" / "entries.jsonl"
        entries.chmod(0o644)
        lines = entries.read_bytes().split(b"\n")
        lines[1] = re.sub(rb'"score":(\d+)', lambda m: b'"score":1' + m.group(1), lines[1])
        entries.write_bytes(b"\n".join(lines))
        seal = bag / "bag-seal.note"
        seal.chmod(0o644)
        seal.write_bytes(seal.read_bytes().replace(b"bagit.txt", b"bagit.txt ", 1))
        changed = subprocess.run(
            [tools["bash"], "-c", script], cwd=bag, env=environment, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip
        assert "line 2: FAILED, the signature does not verify" in changed.stdout
        assert "bag-seal.note: FAILED, the signature does not verify" in changed.stdout
        assert "line 1: ed25519 key" in changed.stdout  # the other line still holds
    assert not (bag / "data" / "verify" / "__pycache__").exists()

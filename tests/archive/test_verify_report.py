"""What the verifier's report says about real bags from the archive job: which bag it looks at,
first; printouts bound to the bag's class and period and present where the bag says they are;
token counts that are true; a changed entry named at its own seq.

Most changes here are made by someone holding the school's key (manifests recomputed, the seal
signed again): then only the checks of meaning stand between the change and an inspector.
"""

from __future__ import annotations

import json
from typing import Any

from archive.verify.verify import Report, read_vkey, verify_bag_files
from tests.archive.real_bags import RealBags, files_of, reseal, set_info


def check(report: Report, key: str) -> Any:
    return next(c for c in report.checks if c.key == key)


def verify(bags: RealBags, files: dict[str, bytes]) -> Report:
    return verify_bag_files(files, read_vkey(bags.vkey), openssl=None)


def test_the_report_says_first_which_bag_it_is_looking_at(real_bags: RealBags) -> None:
    report = verify(real_bags, files_of(real_bags.bags["q2"]))
    assert report.ok, report.text()
    identity = report.checks[0]
    assert identity.key == "identity" and identity.status == "ok"
    first = real_bags.class_ids[0]
    text = "\n".join(identity.notes)
    assert f"External-Identifier: {real_bags.domain}/journal-2024-2025-class{first}-q2" in text
    assert f"(id {first}), school year 2024-2025, up to the close of quarter 2" in text
    assert "tier journal-5y, retained until 2030-05-25" in text
    # Q1's 3 entries and the result it sealed, then Q2's 3 and its sealed result.
    assert "seq 0..7 under its checkpoint of size 8" in text
    printouts = "\n".join(check(report, "printouts").notes)
    assert f"the quarterly journal of class 5Ғ (id {first}), 2024-2025, quarter 2" in printouts
    assert "4 embedded records (seq 4..7) with entries-range.txt" in printouts
    ledger = verify(real_bags, files_of(real_bags.bags["ledger"]))
    assert ledger.ok, ledger.text()
    assert "the school ledger log of the school year 2024-2025" in "\n".join(ledger.checks[0].notes)


def test_a_printout_of_another_class_fails(real_bags: RealBags) -> None:
    files = files_of(real_bags.bags["q1"])
    other = files_of(real_bags.bags["other-q1"])
    [mine] = [n for n in files if n.startswith("data/printouts/")]
    [theirs] = [n for n in other if n.startswith("data/printouts/")]
    report = verify(real_bags, reseal({**files, mine: other[theirs]}, real_bags.log_key))
    printouts = check(report, "printouts")
    assert any(
        f"{mine}: is the quarterly journal of class 6Ғ" in p and "this bag's class id" in p
        for p in printouts.problems
    ), printouts.problems
    assert check(report, "seal").status == "ok" and check(report, "log").status == "ok"


def test_a_bag_without_the_printout_it_lists_fails(real_bags: RealBags) -> None:
    files = files_of(real_bags.bags["q1"])
    [printout] = [n for n in files if n.startswith("data/printouts/")]
    gone = {name: data for name, data in files.items() if name != printout}
    report = verify(real_bags, reseal(gone, real_bags.log_key))
    assert any(
        f"{printout}: is listed in bag-info.txt (Printouts) but is not in the bag" in p
        for p in check(report, "printouts").problems
    )
    unlisted = {
        **gone,
        "bag-info.txt": b"".join(
            line + b"\n"
            for line in gone["bag-info.txt"].splitlines()
            if not line.startswith(b"Printouts:")
        ),
    }
    report = verify(real_bags, reseal(unlisted, real_bags.log_key))
    assert "bag-info.txt: does not list the bag's printouts (Printouts)" in (
        check(report, "printouts").problems
    )


def test_a_q2_bag_rolled_back_to_its_q1_state_fails_more_than_the_seal(
    real_bags: RealBags,
) -> None:
    q1 = files_of(real_bags.bags["q1"])
    q2 = files_of(real_bags.bags["q2"])
    [q1_printout] = [n for n in q1 if n.startswith("data/printouts/")]
    [q2_printout] = [n for n in q2 if n.startswith("data/printouts/")]
    rolled = {name: data for name, data in q2.items() if not name.startswith("data/")}
    rolled.update({n: d for n, d in q1.items() if n.startswith("data/") and n != q1_printout})
    rolled[q2_printout] = q1[q1_printout]
    info = dict(line.split(": ", 1) for line in q1["bag-info.txt"].decode().splitlines())
    rolled = set_info(
        rolled, Checkpoint_Size=info["Checkpoint-Size"], Checkpoint_Root=info["Checkpoint-Root"]
    )
    for variant in (rolled, reseal(rolled, real_bags.log_key)):
        report = verify(real_bags, variant)
        problems = check(report, "printouts").problems
        assert any(
            "is the quarterly journal of class 5Ғ" in p and "quarter 1" in p for p in problems
        ), report.text()
    assert check(verify(real_bags, rolled), "seal").status == "failed"


def test_token_counts_are_true(real_bags: RealBags) -> None:
    from tests.external import need_tool

    need_tool("openssl")
    files = files_of(real_bags.bags["q2"])
    tokens = sorted(n for n in files if n.endswith(".tsr"))
    assert len(tokens) >= 3
    first, second = [n for n in tokens if n.startswith("data/checkpoints/")][:2]
    swapped = reseal({**files, first: files[second]}, real_bags.log_key)  # another's token
    count = sum(1 for name in swapped if name.endswith(".tsr"))
    report = verify_bag_files(swapped, read_vkey(real_bags.vkey))
    timestamps = check(report, "timestamps")
    assert any(first in p for p in timestamps.problems)
    assert f"agrees on {count - 1} of the {count} tokens" in "\n".join(timestamps.notes)
    assert not any("agrees on all" in n for n in timestamps.notes)


def test_a_changed_entry_is_named_at_its_own_seq(real_bags: RealBags) -> None:
    """``received_at`` is the server's, not signed by the device: changing it at seq 1 keeps
    every signature valid; the authentic copy in the Q1 printout names seq 1."""
    files = files_of(real_bags.bags["q1"])
    lines = files["data/entries.jsonl"].split(b"\n")
    record = json.loads(lines[1])
    record["received_at"] = "2024-09-03T11:00:00Z"
    from journal.ledger.entry import canonical_json

    lines[1] = canonical_json(record)
    changed = reseal({**files, "data/entries.jsonl": b"\n".join(lines)}, real_bags.log_key)
    log = check(verify(real_bags, changed), "log")
    assert any(
        p.startswith("data/entries.jsonl line 2 (seq 1): differs from the copy of seq 1 in ")
        for p in log.problems
    ), log.problems
    assert not any(p.startswith("data/entries.jsonl line 1 (seq 0)") for p in log.problems)
    assert any(
        p.startswith("data/checkpoints/4.checkpoint: the entries do not hash") for p in log.problems
    ), log.problems

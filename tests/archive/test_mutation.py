"""The mutation campaign: 1,000 random single-byte changes to a bag's files, each verified twice,
with the manifests left as they are and with the manifests recomputed by the attacker. Every one
must be detected.

Why every byte counts: the manifests cover the payload and tag files against accidents; against
someone who recomputes them, the seal (``bag-seal.note``, signed by the school's key that the
inspector brings) covers every top-level file, and through the manifests every byte. The checks
of meaning come on top: a changed entry, checkpoint or consistency proof must also fail the log
check itself (asserted below), a changed printout its PDF signature or embedded-records check,
a changed token its CMS check. Runs in-process (``verify_bag_files``, no openssl) in about half a
minute on one core; ``JOURNAL_MUTATION_SEED`` picks other changes.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections import Counter
from collections.abc import Callable, Mapping

import pytest

from archive.verify import seal
from archive.verify.verify import TAG_TOKEN, read_vkey, verify_bag_files
from tests.archive.sample_bag import SampleBag, build_sample_bag
from tests.archive.services import ServiceUnavailable
from tests.external import missing

MUTATIONS = 1000
SEED = int(os.environ.get("JOURNAL_MUTATION_SEED", "20261229"))

CATEGORIES: dict[str, Callable[[str], bool]] = {
    "entries": lambda name: name == "data/entries.jsonl",
    "checkpoints": lambda name: name.endswith(".checkpoint"),
    "consistency proofs": lambda name: "/consistency-" in name,
    "timestamp tokens": lambda name: name.endswith(".tsr"),
    "printouts": lambda name: name.startswith("data/printouts/"),
    "keys": lambda name: name.startswith("data/keys/"),
    "manifests": lambda name: name in ("manifest-sha512.txt", "tagmanifest-sha512.txt"),
    "seal and bag declarations": lambda name: name in (seal.SEAL_FILE, "bagit.txt", "bag-info.txt"),
    "instructions and verifier": lambda name: (
        name == "data/VERIFY.md" or name.startswith("data/verify/")
    ),
}
# Changes to these must fail the log check itself, not only the manifests and the seal.
LOG_FILES = ("entries", "checkpoints", "consistency proofs")


def manifest(files: Mapping[str, bytes], names: list[str]) -> bytes:
    return "".join(f"{hashlib.sha512(files[n]).hexdigest()}  {n}\n" for n in names).encode()


def recompute_manifests(files: Mapping[str, bytes], changed: str) -> dict[str, bytes]:
    """What an attacker who changed ``changed`` recomputes: every manifest above it."""
    out = dict(files)
    tags = ["bag-info.txt", "bagit.txt", "manifest-sha512.txt"]
    if changed.startswith("data/"):
        out["manifest-sha512.txt"] = manifest(out, sorted(n for n in out if n.startswith("data/")))
    if changed.startswith("data/") or changed in tags:
        out["tagmanifest-sha512.txt"] = manifest(out, tags)
    return out


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleBag:
    try:
        return build_sample_bag(tmp_path_factory.mktemp("mutation") / "bag")
    except ServiceUnavailable as exc:
        missing(str(exc))
        raise


def test_every_single_byte_change_is_detected(sample: SampleBag):
    files = sample.files()
    verifier = read_vkey(sample.vkey)
    assert verify_bag_files(files, verifier, openssl=None).ok
    by_category = {
        category: sorted(name for name in files if matches(name) and files[name])
        for category, matches in CATEGORIES.items()
    }
    assert all(by_category.values()), by_category
    assert TAG_TOKEN in by_category["timestamp tokens"]

    rng = random.Random(SEED)
    undetected: list[str] = []
    log_not_failing: list[str] = []
    caught_by: Counter[str] = Counter()
    for _ in range(MUTATIONS):
        category = rng.choice(list(by_category))
        name = rng.choice(by_category[category])
        offset = rng.randrange(len(files[name]))
        old = files[name][offset]
        new = rng.randrange(255)
        new += new >= old  # any other byte value
        changed = bytearray(files[name])
        changed[offset] = new
        mutated = {**files, name: bytes(changed)}
        for variant, bag in (
            ("manifests kept", mutated),
            ("manifests recomputed", recompute_manifests(mutated, name)),
        ):
            report = verify_bag_files(bag, verifier, openssl=None)
            where = f"{name} byte {offset} {old:#04x}->{new:#04x} ({variant}, seed {SEED})"
            if report.ok:
                undetected.append(where)
                continue
            failed = {check.key for check in report.checks if check.problems}
            caught_by.update(failed)
            if category in LOG_FILES and "log" not in failed:
                log_not_failing.append(f"{where}: only {sorted(failed)}")
    assert not undetected, f"{len(undetected)} changes went unnoticed: {undetected[:10]}"
    assert not log_not_failing, log_not_failing[:10]
    # Each layer did its part: the seal and the checks of meaning, not the manifests alone.
    assert {"bag", "seal", "log", "printouts", "timestamps"} <= set(caught_by), caught_by

"""How fast ``journal-verify bag`` checks a large bag, against raw Ed25519 verification.

    .venv/bin/python bench/verify_bag.py [--entries N] [--rounds R] [--keep DIR]

Builds a bag of N entries (default 100,000) signed by a few device keys, with three checkpoints,
consistency proofs and the seal (no printouts or timestamps: those cost the same whatever the
size), then in the same run measures

- raw Ed25519 verifications per second over the bag's own (key, message, signature) triples,
  keys loaded beforehand: the floor no verifier can beat;
- the whole ``verify_bag`` (read every file, manifests, seal, every entry's canonical form and
  signature, Merkle tree, checkpoints, consistency proofs) in entries per second.

The raw rate is measured in CPU time of this process (one core). ``verify_bag`` checks
signatures on every core (worker processes), so it is measured in wall-clock time: on a busy
machine that only makes it look slower. Each is measured ``R`` times (default 3), alternately,
and the best of each is compared; the serial verifier (one process, CPU time) is printed beside.
Target: verify_bag entries/s ≥ 1.5 × raw verify/s on one core (issue 18; 1.8 beyond).
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Run from the repository root: `python bench/verify_bag.py` (the tests' bag builder is reused).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: E402

from archive.verify.verify import read_vkey, verify_bag  # noqa: E402
from journal.ledger import audit  # noqa: E402
from journal.ledger.entry import SIGNING_CONTEXT, load_public_key, parse_leaf  # noqa: E402

TARGET = 1.5


def raw_verify_rate(leaves: tuple[bytes, ...], keys: dict[str, bytes], sample: int) -> float:
    """Ed25519 verifications per second over the first ``sample`` leaves, keys preloaded."""
    loaded = {}
    for kid, raw in keys.items():
        key = load_public_key("ed25519", raw)
        assert isinstance(key, Ed25519PublicKey)
        loaded[kid] = key
    triples = []
    for leaf in leaves[:sample]:
        record = parse_leaf(leaf)
        triples.append((loaded[record.kid], record.sig, SIGNING_CONTEXT + record.payload_bytes))
    started = time.process_time()
    for key, sig, message in triples:
        key.verify(sig, message)
    return len(triples) / (time.process_time() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sample", type=int, default=20_000, help="leaves for the raw rate")
    parser.add_argument("--keep", type=Path, help="build the bag here and keep it")
    args = parser.parse_args()
    # Imported here, not above: the verifier's spawned workers re-import this file, and need
    # none of the bag builder (its import alone costs them a quarter of a second each).
    from tests.archive.sample_bag import build_sample_bag

    work = Path(tempfile.mkdtemp(prefix="verify-bench-"))
    target = args.keep or work / "bag"
    try:
        third = args.entries // 3
        started = time.perf_counter()
        bag = build_sample_bag(
            target,
            entries=args.entries,
            checkpoints=(third, 2 * third, args.entries),
            printout_size=None,
            timestamps=False,
            devices=8,
        )
        built = time.perf_counter() - started
        size = sum(len(data) for data in bag.files().values())
        verifier = read_vkey(bag.vkey)
        document = json.loads((target / "data/keys/device-keys.json").read_text())
        keys = {kid: base64.b64decode(info["public_key"]) for kid, info in document.items()}

        raw_rates, bag_rates, serial_rates = [], [], []
        parallel_from = audit.PARALLEL_MIN_LEAVES
        for _ in range(args.rounds):
            raw_rates.append(raw_verify_rate(bag.leaves, keys, args.sample))
            audit.PARALLEL_MIN_LEAVES = parallel_from
            started = time.perf_counter()
            report = verify_bag(target, verifier, openssl=None)
            elapsed = time.perf_counter() - started
            if not report.ok:
                print(report.text())
                return 1
            bag_rates.append(args.entries / elapsed)
            audit.PARALLEL_MIN_LEAVES = 2**62  # the same verifier on one process
            started = time.process_time()
            verify_bag(target, verifier, openssl=None)
            serial_rates.append(args.entries / (time.process_time() - started))
        audit.PARALLEL_MIN_LEAVES = parallel_from
        raw, whole, serial = max(raw_rates), max(bag_rates), max(serial_rates)
        ratio = whole / raw
        cores = audit._worker_count(None, args.entries)
        print(f"python {platform.python_version()} on {platform.machine()}, {cores} core(s)")
        print(f"bag: {args.entries:,} entries, {size / 1e6:.1f} MB, built in {built:.1f} s")
        print(f"raw Ed25519 verify:      {raw:10,.0f} /s  (best of {args.rounds})")
        print(
            f"verify_bag:              {whole:10,.0f} entries/s  (best of {args.rounds}, "
            f"{args.entries / whole:.2f} s)"
        )
        print(f"verify_bag, one process: {serial:10,.0f} entries/s  ({serial / raw:.2f} of raw)")
        print(
            f"ratio:                   {ratio:10.2f}  (target >= {TARGET}: "
            f"{'met' if ratio >= TARGET else 'NOT met'})"
        )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

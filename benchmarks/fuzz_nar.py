"""Fuzz the NAR reader: random mutations of valid NARs are valid NARs or NarError, nothing else.

    .venv/bin/python benchmarks/fuzz_nar.py --cases 100000 [--seed 1]

Seeds are the NARs in tests/vectors/nar and tests/vectors/nar-verdicts plus NARs of small random trees written by
storelab's writer; each case flips bits, inserts, deletes or duplicates a few bytes, or
truncates. Prints how many inputs were tried and how they ended; exits 1 if any input raised
anything but NarError.
"""

from __future__ import annotations

import argparse
import collections
import io
import random
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from storelab.nar import NarError, read_nar  # noqa: E402
from storelab.nar.writer import nar_string  # noqa: E402

S = nar_string


def random_nar(rng: random.Random, depth: int = 0) -> bytes:
    def node(d: int) -> bytes:
        kind = rng.choice(["file", "link", "dir"] if d < 3 else ["file", "link"])
        if kind == "file":
            exe = [S(b"executable"), S(b"")] if rng.random() < 0.3 else []
            return S(b"(") + S(b"type") + S(b"regular") + b"".join(exe) + S(b"contents") + S(rng.randbytes(rng.randrange(40))) + S(b")")
        if kind == "link":
            return S(b"(") + S(b"type") + S(b"symlink") + S(b"target") + S(b"t" * rng.randrange(1, 20)) + S(b")")
        names = sorted({bytes(rng.choice(b"abcxyz") for _ in range(rng.randrange(1, 4))) for _ in range(rng.randrange(4))})
        entries = b"".join(S(b"entry") + S(b"(") + S(b"name") + S(n) + S(b"node") + node(d + 1) + S(b")") for n in names)
        return S(b"(") + S(b"type") + S(b"directory") + entries + S(b")")

    return S(b"nix-archive-1") + node(depth)


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        op = rng.randrange(5)
        pos = rng.randrange(len(out) + 1)
        if op == 0 and pos < len(out):
            out[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            out[pos:pos] = bytes([rng.randrange(256)])
        elif op == 2 and pos < len(out):
            del out[pos : pos + rng.randrange(1, 9)]
        elif op == 3:
            start = rng.randrange(len(out) + 1)
            out[pos:pos] = out[start : start + rng.randrange(1, 17)]
        else:
            del out[pos:]
    return bytes(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    vectors = REPO / "tests" / "vectors"
    found = sorted(vectors.glob("nar/*.nar")) + sorted(vectors.glob("nar-verdicts/*.nar"))
    seeds = [p.read_bytes() for p in found] + [random_nar(rng) for _ in range(200)]
    outcomes: collections.Counter[str] = collections.Counter()
    started = time.perf_counter()
    failures = 0
    for case in range(args.cases):
        data = mutate(rng, rng.choice(seeds))
        try:
            for event in read_nar(io.BytesIO(data), f"case {case}"):
                for _ in getattr(event, "pieces", ()):
                    pass
            outcomes["valid NAR"] += 1
        except NarError as err:
            outcomes["NarError: " + str(err).split(": ", 2)[-1].split(" (")[0][:40]] += 1
        except Exception:  # noqa: BLE001 — exactly what the fuzzer is looking for
            failures += 1
            outcomes["OTHER EXCEPTION"] += 1
            if failures <= 3:
                traceback.print_exc()
    seconds = time.perf_counter() - started
    print(f"{args.cases} inputs tried in {seconds:.1f} s (seed {args.seed}); {failures} raised anything but NarError")
    for outcome, count in outcomes.most_common(12):
        print(f"  {count:7d}  {outcome}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

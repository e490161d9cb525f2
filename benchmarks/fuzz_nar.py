"""Fuzz the NAR reader: random mutations of valid NARs are valid NARs or NarError, nothing else,
and its C road (runs of entries, ``read_nar(digest_files_upto=…)``) reads each the same.

    .venv/bin/python benchmarks/fuzz_nar.py --cases 100000 [--seed 1]

Seeds are the NARs in tests/vectors/nar and tests/vectors/nar-verdicts plus NARs of small random trees written by
storelab's writer; each case flips bits, inserts, deletes or duplicates a few bytes, or
truncates. Each case is read twice more, with and without runs (a random file-size limit),
whole and through a small buffer: the events and the error must be the same. Prints how many
inputs were tried and how they ended; exits 1 if any input raised anything but NarError or
read differently on the two roads.
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
from storelab.testing.nars import digested_events, mutate, random_nar  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    vectors = REPO / "tests" / "vectors"
    found = sorted(vectors.glob("nar/*.nar")) + sorted(vectors.glob("nar-verdicts/*.nar"))
    seeds = [p.read_bytes() for p in found] + [random_nar(rng, largest=rng.choice([40, 300])) for _ in range(200)]
    seeds += [random_nar(rng, deep_chain=depth) for depth in (62, 63, 64)]  # around Nix's nesting limit
    outcomes: collections.Counter[str] = collections.Counter()
    started = time.perf_counter()
    failures = runs = 0
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
            continue
        limit = rng.choice([0, 8, 64, 1 << 20])
        stream = io.BytesIO(data) if rng.random() < 0.5 else io.BufferedReader(io.BytesIO(data), buffer_size=rng.randrange(8, 600))
        plain, with_runs = digested_events(io.BytesIO(data)), digested_events(stream, limit)
        runs += with_runs[2]
        if plain[:2] != with_runs[:2]:
            failures += 1
            outcomes["ROADS DIFFER"] += 1
            kept = REPO / "build" / "fuzz-nar" / f"seed{args.seed}-case{case}.nar"
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_bytes(data)
            if failures <= 3:
                print(f"case {case}: read differently with runs of files up to {limit} bytes (the input: {kept})", file=sys.stderr)
    seconds = time.perf_counter() - started
    print(
        f"{args.cases} inputs tried in {seconds:.1f} s (seed {args.seed}); "
        f"{failures} raised anything but NarError or read differently in runs ({runs:,} runs read in C)"
    )
    for outcome, count in outcomes.most_common(12):
        print(f"  {count:7d}  {outcome}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

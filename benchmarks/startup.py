"""How long the command takes to start: ``storelab --help`` (every command is loaded lazily, so
it must stay ≤ 0.1 s) and ``storelab stats --help`` (one command group loaded), beside the
interpreter starting and doing nothing, measured in the same run.

    .venv/bin/python benchmarks/startup.py [--runs 20]

Prints the median and spread of each, and the ratio to the bare interpreter. storelab's modules
are byte-compiled first, as an installed package's are.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STORELAB = Path(sys.executable).with_name("storelab")
GOAL = 0.1
"""Seconds `storelab --help` may take."""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "storelab")], check=True, stdout=subprocess.DEVNULL)
    cases = {
        "python -c pass (the floor)": [sys.executable, "-c", "pass"],
        "storelab --help": [str(STORELAB), "--help"],
        "storelab stats --help": [str(STORELAB), "stats", "--help"],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):  # round-robin: drift in the machine's speed hits every case alike
        for name, command in cases.items():
            times[name].append(timed(command))
    floor = statistics.median(times["python -c pass (the floor)"])
    print(f"\nmedian of {args.runs} runs each\n")
    print(f"| {'command':<28} | {'median s':>8} | {'min–max s':>13} | {'÷ floor':>7} |")
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 15}|{'-' * 9}|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name:<28} | {median:8.3f} | {min(values):5.3f}–{max(values):5.3f} | {median / floor:6.1f}× |")
    helped = statistics.median(times["storelab --help"])
    print(f"\nstorelab --help: {helped:.3f} s against a goal of {GOAL} s: {'met' if helped <= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()

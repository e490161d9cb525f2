"""How long `layers plan` takes on large and hostile closures, against the goal that a closure
of 100,000 paths plans in at most 10 s.

    .venv/bin/python benchmarks/layers.py [--paths 100000] [--runs 3]

Graphs (seeded, so every run plans the same ones): flat (paths that refer to nothing), a chain
(each path refers to the one before: every closure differs), and a nixpkgs-like DAG (a core
that nearly everything needs, then each path referring to a few earlier ones), the last both
with Nix's ``closureSize`` in the input (as exportReferencesGraph writes it) and without (storelab
computes every closure). Each is written as JSON and planned with `storelab.layers.load_graph`
+ `plan_layers`, popularity and size-first, budget 94. Prints the median wall time per case and
its share of the goal.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from storelab.layers import load_graph, plan_layers

GOAL_SECONDS = 10.0
GOAL_PATHS = 100_000


def store_path(i: int) -> str:
    return f"/nix/store/{i:032d}-pkg-{i}"


def flat(n: int, rng: random.Random) -> list[dict]:
    return [{"path": store_path(i), "narSize": rng.randrange(1, 1 << 20), "references": []} for i in range(n)]


def chain(n: int, rng: random.Random) -> list[dict]:
    return [{"path": store_path(i), "narSize": rng.randrange(1, 1 << 20), "references": [store_path(i - 1)] if i else []} for i in range(n)]


def nixpkgs_like(n: int, rng: random.Random) -> list[dict]:
    core = min(50, n)
    nodes = []
    for i in range(n):
        if i < core:
            refs = [store_path(j) for j in range(i)]
        else:
            refs = {store_path(rng.randrange(core))} | {store_path(rng.randrange(i)) for _ in range(rng.randrange(1, 5))}
        nodes.append({"path": store_path(i), "narSize": rng.randrange(1, 1 << 22), "references": sorted(refs)})
    return nodes


def with_closure_sizes(nodes: list[dict]) -> list[dict]:
    from storelab.layers.graph import ClosureGraph, StorePath

    graph = ClosureGraph.build(StorePath(n["path"], n["narSize"], tuple(n["references"])) for n in nodes)
    return [{**n, "closureSize": graph.closure_size(n["path"])} for n in nodes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", type=int, default=GOAL_PATHS)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="storelab-layers-bench-"))
    n = args.paths
    graphs = {
        f"flat, {n // 5:,} paths": flat(n // 5, random.Random(1)),
        f"chain, {n // 5:,} paths": chain(n // 5, random.Random(2)),
        f"nixpkgs-like, {n:,} paths, closureSize given": with_closure_sizes(nixpkgs_like(n, random.Random(3))),
        f"nixpkgs-like, {n:,} paths, closureSize computed": nixpkgs_like(n, random.Random(3)),
    }
    print(f"\nmedian of {args.runs} runs; goal: {GOAL_PATHS:,} paths in ≤ {GOAL_SECONDS:g} s\n")
    print(f"| {'graph':<48} | {'algorithm':<10} | {'median s':>8} | {'÷ goal':>6} |")
    print(f"|{'-' * 50}|{'-' * 12}|{'-' * 10}|{'-' * 8}|")
    for name, nodes in graphs.items():
        path = work / "closure.json"
        path.write_text(json.dumps(nodes))
        for algorithm in ("popularity", "size-first"):
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                plan_layers(load_graph(path), algorithm, 94)
                times.append(time.perf_counter() - started)
            median = statistics.median(times)
            print(f"| {name:<48} | {algorithm:<10} | {median:8.2f} | {median / GOAL_SECONDS:5.2f}× |", flush=True)


if __name__ == "__main__":
    main()

"""Pulling a sequence of images through a layer cache, as a registry and a host would.

Images are pulled in order; a layer is keyed by its identity (the hash of its sorted member
paths). A layer already in the cache is reused; any other is pulled and kept. Bytes are exact
sums of member NAR sizes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from storelab.errors import InputError, InputNotFoundError
from storelab.layers.graph import ClosureGraph, load_graph
from storelab.layers.plan import LayerPlan, plan_layers

__all__ = ["simulate_pulls", "load_images", "load_popularity", "write_pulls", "PULL_COLUMNS"]

PULL_COLUMNS = [
    "algorithm", "step", "image", "layers", "layers_reused", "layers_pulled", "image_bytes", "bytes_pulled",
    "bytes_reused", "layer_hit_rate", "byte_hit_rate", "cache_layers", "cache_bytes",
]  # fmt: skip


def simulate_pulls(
    images: Sequence[ClosureGraph],
    algorithms: Sequence[str],
    budget: int = 94,
    popularity: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """One row per (algorithm, image): what pulling it cost after the images before it.

    >>> from storelab.layers.graph import StorePath
    >>> lib = StorePath("/nix/store/l-lib", 100, ())
    >>> a = ClosureGraph.build([StorePath("/nix/store/a-a", 10, (lib.path,)), lib], name="a")
    >>> b = ClosureGraph.build([StorePath("/nix/store/b-b", 20, (lib.path,)), lib], name="b")
    >>> rows = simulate_pulls([a, b], ["per-path"])
    >>> list(rows.bytes_pulled), list(rows.bytes_reused)
    ([110, 20], [0, 100])
    """
    rows: list[dict[str, object]] = []
    for algorithm in algorithms:
        cache: dict[str, int] = {}
        for step, graph in enumerate(images):
            plan = plan_layers(graph, algorithm, budget, popularity)
            rows.append(_pull(plan, step, cache))
    return pd.DataFrame(rows, columns=PULL_COLUMNS)


def _pull(plan: LayerPlan, step: int, cache: dict[str, int]) -> dict[str, object]:
    reused = pulled = bytes_pulled = bytes_reused = 0
    for layer in plan.layers:
        if layer.identity in cache:
            reused += 1
            bytes_reused += layer.nar_size
        else:
            pulled += 1
            bytes_pulled += layer.nar_size
            cache[layer.identity] = layer.nar_size
    total = bytes_pulled + bytes_reused
    return {
        "algorithm": plan.algorithm,
        "step": step,
        "image": plan.image,
        "layers": len(plan.layers),
        "layers_reused": reused,
        "layers_pulled": pulled,
        "image_bytes": total,
        "bytes_pulled": bytes_pulled,
        "bytes_reused": bytes_reused,
        "layer_hit_rate": reused / len(plan.layers) if plan.layers else 0.0,
        "byte_hit_rate": bytes_reused / total if total else 0.0,
        "cache_layers": len(cache),
        "cache_bytes": sum(cache.values()),
    }


def load_images(folder: str | os.PathLike[str]) -> list[ClosureGraph]:
    """Every ``*.json`` closure in ``folder`` in name order (``popularity.json`` and ``manifest.json`` aside)."""
    root = Path(folder)
    if not root.is_dir():
        raise InputNotFoundError(f"{root}: no such folder")
    files = sorted(p for p in root.glob("*.json") if p.name not in ("popularity.json", "manifest.json"))
    if not files:
        raise InputError(f"{root}: no closure files (*.json) in it")
    return [load_graph(p) for p in files]


def load_popularity(path: str | os.PathLike[str]) -> dict[str, int]:
    """A popularity map: JSON object of path name → reference count."""
    source = Path(path)
    try:
        document = json.loads(source.read_text())
    except FileNotFoundError:
        raise InputNotFoundError(f"{source}: no such file") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{source}: unreadable popularity file ({err})") from None
    if not isinstance(document, dict) or not all(isinstance(v, int) for v in document.values()):
        raise InputError(f"{source}: a popularity file maps names to integer counts")
    return document


def write_pulls(pulls: pd.DataFrame, folder: str | os.PathLike[str]) -> Path:
    """Write :func:`simulate_pulls`' table to ``folder/pulls.parquet`` (whole or not at all)."""
    from storelab.outputs import atomic_output, output_folder

    path = output_folder(folder) / "pulls.parquet"
    with atomic_output(path) as f:
        pulls.to_parquet(f, index=False)
    return path

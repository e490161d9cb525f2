"""Grouping an image's store paths into container layers.

- ``popularity``: Nixery's algorithm (see :func:`popularity_layers` for the exact rule);
- ``size-first``: nixpkgs dockerTools' auto-layer (NixOS/nixpkgs#355189): the largest paths
  become layer roots one at a time, each path grouped by the set of roots above it;
- ``per-path``: every path its own layer while the budget lasts, largest first;
- ``single``: one layer.

Every plan ends with one more layer, the image's symlink farm (its identity: the image's
top-level paths; its bytes are not modelled and count 0).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from storelab.errors import ConfigError
from storelab.layers.graph import ClosureGraph, path_name

__all__ = [
    "ALGORITHMS",
    "Layer",
    "LayerPlan",
    "plan_layers",
    "popularity_layers",
    "size_first_layers",
    "per_path_layers",
    "single_layer",
    "path_popularity",
    "BIG_CLOSURE",
    "POPULAR",
    "FORCED_POPULARITY",
]

ALGORITHMS = ("popularity", "size-first", "per-path", "single")
BIG_CLOSURE = 100_000_000
"""A path whose closure exceeds this many bytes gets an edge from the root (Nixery)."""
POPULAR = 100
"""A path at least this popular gets an edge from the root."""
FORCED_POPULARITY = {"nss-cacert": 500_000, "iana-etc": 500_000}
"""Name prefixes whose popularity is forced (they are in nearly every image)."""


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer: its member paths (sorted), their bytes, and its merge rating."""

    members: tuple[str, ...]
    nar_size: int
    rating: int = 0
    kind: str = "paths"
    """``paths`` or ``symlinks`` (the image's symlink farm)."""
    identity: str = ""
    """What the layer is keyed by in a registry: a hash of its sorted member paths."""

    @classmethod
    def of(cls, members: Sequence[str], graph: ClosureGraph, rating: int = 0) -> Layer:
        ordered = tuple(sorted(members))
        return cls(ordered, sum(graph.paths[m].nar_size for m in ordered), rating, "paths", layer_identity(ordered))

    @classmethod
    def symlink_farm(cls, graph: ClosureGraph) -> Layer:
        return cls((), 0, 0, "symlinks", layer_identity(("symlinks", *graph.top_level)))


def layer_identity(members: Sequence[str]) -> str:
    """SHA-1 of the sorted member paths joined by ``:`` (as Nixery names layers).

    >>> layer_identity(["/nix/store/b", "/nix/store/a"]) == layer_identity(["/nix/store/a", "/nix/store/b"])
    True
    """
    return hashlib.sha1(":".join(sorted(members)).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class LayerPlan:
    """An image's layers, in order, the symlink farm last."""

    image: str
    algorithm: str
    budget: int
    layers: tuple[Layer, ...]

    @property
    def nar_size(self) -> int:
        return sum(layer.nar_size for layer in self.layers)


def path_popularity(path: str, popularity: Mapping[str, int]) -> int:
    """A path's popularity: the map's count for its name, 1 if absent; forced for CA certs
    and /etc/services.

    >>> path_popularity("/nix/store/abc-nss-cacert-3.101", {}), path_popularity("/nix/store/abc-zlib-1.3", {"zlib-1.3": 7})
    (500000, 7)
    """
    name = path_name(path)
    for prefix, forced in FORCED_POPULARITY.items():
        if name.startswith(prefix):
            return forced
    return int(popularity.get(name, 1))


def popularity_layers(graph: ClosureGraph, budget: int, popularity: Mapping[str, int] | None = None) -> list[Layer]:
    """Nixery's layering.

    1. Each path's size for rating is its closure size; its popularity comes from
       ``popularity`` (:func:`path_popularity`).
    2. Edges: a synthetic root → each top-level path; each path → its references; root →
       every path whose closure exceeds :data:`BIG_CLOSURE` bytes or whose popularity is at
       least :data:`POPULAR`.
    3. Dominator tree from the root; each child of the root becomes a layer with
       everything it dominates; rating = the child's popularity × the sum of its members'
       closure sizes.
    4. Sorted by rating, ascending (ties by member paths); while there are more layers than
       ``budget``, the lowest is folded into the next, and the result keeps the first place
       without re-sorting, as Nixery does.
    """
    popularity = popularity or {}
    paths = list(graph.paths)
    pop = {p: path_popularity(p, popularity) for p in paths}
    number = {p: i + 1 for i, p in enumerate(paths)}  # 0 is the image's root
    successors: list[list[int]] = [[number[t] for t in graph.top_level]]
    for path in paths:
        successors.append([number[ref] for ref in graph.paths[path].references])
        if graph.closure_size(path) > BIG_CLOSURE or pop[path] >= POPULAR:
            successors[0].append(number[path])
    order = _reverse_postorder(successors)
    if len(order) <= len(paths):  # a path nothing leads to would be lost: treat it as top-level
        reached = set(order)
        successors[0].extend(i for i in range(1, len(paths) + 1) if i not in reached)
        order = _reverse_postorder(successors)
    idom = _immediate_dominators(successors, order)
    dominated: dict[int, list[int]] = {}
    for node in order[1:]:
        dominated.setdefault(idom[node], []).append(node)
    candidates: list[tuple[int, tuple[str, ...]]] = []
    for head in dominated.get(0, []):
        members: list[str] = []
        todo = [head]
        while todo:
            member = todo.pop()
            members.append(paths[member - 1])
            todo.extend(dominated.get(member, []))
        rating = pop[paths[head - 1]] * sum(graph.closure_size(m) for m in members)
        candidates.append((rating, tuple(sorted(members))))
    candidates.sort()
    if len(candidates) > budget:
        # folding the lowest into the next, over and over, keeping the merged layer first: the
        # first layer ends as the union of the lowest len − budget + 1, their ratings summed
        folded = candidates[: len(candidates) - budget + 1]
        merged = (sum(rating for rating, _ in folded), tuple(m for _, members in folded for m in members))
        candidates = [merged, *candidates[len(folded) :]]
    return [Layer.of(members, graph, rating) for rating, members in candidates]


def _reverse_postorder(successors: Sequence[Sequence[int]]) -> list[int]:
    """The nodes reachable from node 0, in reverse postorder of a depth-first walk."""
    seen = [False] * len(successors)
    seen[0] = True
    post: list[int] = []
    stack = [(0, iter(successors[0]))]
    while stack:
        node, children = stack[-1]
        for child in children:
            if not seen[child]:
                seen[child] = True
                stack.append((child, iter(successors[child])))
                break
        else:
            stack.pop()
            post.append(node)
    post.reverse()
    return post


def _immediate_dominators(successors: Sequence[Sequence[int]], order: Sequence[int]) -> dict[int, int]:
    """Each reachable node's immediate dominator from node 0 (Cooper, Harvey and Kennedy's
    iterative algorithm, as networkx's; the dominator tree is unique, so any correct algorithm
    gives Nixery's)."""
    size = len(successors)
    rank = [0] * size  # reverse-postorder number; 0 is the root
    for i, node in enumerate(order):
        rank[node] = i
    predecessors: list[list[int]] = [[] for _ in range(size)]
    for node in order:
        for child in successors[node]:
            predecessors[child].append(node)
    idom = [-1] * size  # -1: not yet known
    idom[0] = 0
    changed = True
    while changed:
        changed = False
        for node in order[1:]:
            new = -1
            for pred in predecessors[node]:
                if idom[pred] < 0:
                    continue
                if new < 0:
                    new = pred
                    continue
                a, b = pred, new  # the nearest common dominator of the two
                while a != b:
                    while rank[a] > rank[b]:
                        a = idom[a]
                    while rank[b] > rank[a]:
                        b = idom[b]
                new = a
            if new >= 0 and idom[node] != new:
                idom[node] = new
                changed = True
    return {node: idom[node] for node in order}


def size_first_layers(graph: ClosureGraph, budget: int) -> list[Layer]:
    """nixpkgs' auto-layer (NixOS/nixpkgs#355189).

    Paths are taken largest first (by NAR size; ties: the greater path first) as the
    primaries of new layers. Every path is labelled with the set of primaries it belongs
    under: a new primary P takes P itself, and each dependency D of P drops the primaries
    that depend on P, then joins P unless one of its remaining primaries is itself a
    dependency of P. Paths with the same label share a layer. Primaries are added while the
    number of distinct labels stays within ``budget``. Layers are ordered by closure size.
    """
    order = sorted(graph.paths.values(), key=lambda n: (n.nar_size, n.path))
    label: dict[str, frozenset[str]] = dict.fromkeys(graph.paths, frozenset())
    while order:
        primary = order.pop().path
        trial = dict(label)
        trial[primary] = frozenset({primary})
        deps = graph.closure(primary) - {primary}
        users = _users_closure(graph, primary) - {primary}
        for dep in deps:
            kept = trial[dep] - users
            trial[dep] = kept if kept & deps else kept | {primary}
        if len(set(trial.values())) > budget:
            break
        label = trial
    groups: dict[frozenset[str], list[str]] = {}
    for path, key in label.items():
        groups.setdefault(key, []).append(path)
    layers = [Layer.of(members, graph) for members in groups.values()]
    layers.sort(key=lambda layer: (sum(graph.paths[p].nar_size for p in graph.closure(*layer.members)), layer.members))
    return layers


def _users_closure(graph: ClosureGraph, path: str) -> set[str]:
    seen: set[str] = set()
    todo = [path]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.users[node])
    return seen


def per_path_layers(graph: ClosureGraph, budget: int) -> list[Layer]:
    """Every path its own layer, largest first; past ``budget − 1`` layers, the rest share one."""
    order = sorted(graph.paths.values(), key=lambda n: (-n.nar_size, n.path))
    if len(order) <= budget:
        return [Layer.of([n.path], graph) for n in order]
    own = [Layer.of([n.path], graph) for n in order[: budget - 1]]
    return [*own, Layer.of([n.path for n in order[budget - 1 :]], graph)]


def single_layer(graph: ClosureGraph) -> list[Layer]:
    return [Layer.of(list(graph.paths), graph)] if graph.paths else []


def plan_layers(
    graph: ClosureGraph, algorithm: str, budget: int = 94, popularity: Mapping[str, int] | None = None
) -> LayerPlan:
    """The layers of one image under ``algorithm``, plus its symlink-farm layer.

    >>> from storelab.layers.graph import StorePath
    >>> g = ClosureGraph.build([StorePath("/nix/store/a-app", 10, ("/nix/store/b-lib",)), StorePath("/nix/store/b-lib", 5, ())])
    >>> [layer.members for layer in plan_layers(g, "per-path").layers]
    [('/nix/store/a-app',), ('/nix/store/b-lib',), ()]
    """
    if budget < 1:
        raise ConfigError(f"the layer budget must be at least 1, not {budget}")
    if algorithm == "popularity":
        layers = popularity_layers(graph, budget, popularity)
    elif algorithm == "size-first":
        layers = size_first_layers(graph, budget)
    elif algorithm == "per-path":
        layers = per_path_layers(graph, budget)
    elif algorithm == "single":
        layers = single_layer(graph)
    else:
        raise ConfigError(f"unknown layering algorithm {algorithm!r} (one of {', '.join(ALGORITHMS)})")
    return LayerPlan(graph.name, algorithm, budget, (*layers, Layer.symlink_farm(graph)))

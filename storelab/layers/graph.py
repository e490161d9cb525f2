"""Runtime reference graphs of store paths: what an image holds and what needs what.

Two formats, both as Nix writes them:

- ``exportReferencesGraph`` (what Nixery reads from ``.attrs.json``): an object with
  ``"graph": [{"path", "narSize", "references", …}, …]`` and the top-level paths in
  ``"exportReferencesGraph": {"<name>": [paths]}``;
- ``nix path-info --json --recursive``: a list of ``{"path", "narSize", "references"}``
  (Nix before 2.19, also nixpkgs' ``writeReferencesGraph``) or an object keyed by path (Nix
  2.19 and later). Top-level paths are the ones nothing else refers to.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from storelab.errors import InputError, InputNotFoundError

__all__ = ["StorePath", "ClosureGraph", "load_graph", "path_name", "graphs_from_dataset"]

_STORE_PREFIX = re.compile(r"^/nix/store/[a-z0-9]+-")


def path_name(path: str) -> str:
    """A store path without its store directory and hash, as Nixery keys popularity.

    >>> path_name("/nix/store/0c0njx0wxbvdbcfacnha7d9nsc9wwmcw-glibc-2.40-36")
    'glibc-2.40-36'
    """
    return _STORE_PREFIX.sub("", path)


@dataclass(frozen=True, slots=True)
class StorePath:
    """One node of the graph."""

    path: str
    nar_size: int
    references: tuple[str, ...]
    """Other paths it refers to (self references removed)."""
    closure_size: int | None = None
    """The NAR bytes of the path and everything it reaches, where the input says (Nix writes
    ``closureSize`` into exportReferencesGraph); computed from the graph otherwise."""


@dataclass(frozen=True)
class ClosureGraph:
    """An image's runtime closure: every path, its size and references, and the top-level paths.

    >>> g = ClosureGraph.build([StorePath("a", 10, ("b",)), StorePath("b", 5, ())], ["a"])
    >>> g.closure_size("a"), g.closure_size("b"), g.total_size
    (15, 5, 15)
    """

    paths: Mapping[str, StorePath]
    top_level: tuple[str, ...]
    name: str = ""

    @classmethod
    def build(cls, nodes: Iterable[StorePath], top_level: Iterable[str] | None = None, name: str = "", where: str = "") -> ClosureGraph:
        """The graph of ``nodes``; ``where`` (default: ``name``) is what errors name."""
        where = where or name or "graph"
        table = {node.path: node for node in nodes}
        for node in table.values():
            for ref in node.references:
                if ref not in table:
                    raise InputError(f"{where}: {node.path} refers to {ref}, which is not in the graph")
        if top_level is None:
            referenced = {ref for node in table.values() for ref in node.references}
            top_level = [p for p in table if p not in referenced]
        tops = tuple(sorted(set(top_level)))
        for path in tops:
            if path not in table:
                raise InputError(f"{where}: top-level path {path} is not in the graph")
        return cls(table, tops, name)

    @property
    def total_size(self) -> int:
        return sum(node.nar_size for node in self.paths.values())

    @cached_property
    def users(self) -> dict[str, set[str]]:
        """Path → the paths that refer to it directly."""
        users: dict[str, set[str]] = {p: set() for p in self.paths}
        for node in self.paths.values():
            for ref in node.references:
                users[ref].add(node.path)
        return users

    def closure(self, *roots: str) -> set[str]:
        """The roots and everything they reach."""
        seen: set[str] = set()
        todo = list(roots)
        while todo:
            path = todo.pop()
            if path not in seen:
                seen.add(path)
                todo.extend(self.paths[path].references)
        return seen

    @cached_property
    def _closure_sizes(self) -> dict[str, int]:
        """Every path's closure size: the input's ``closureSize`` where every path has one;
        else computed once for all, each closure a bitset built from its references' (taken
        references first; paths in a dependency loop share one), so a long chain costs n
        bitset unions, not n walks."""
        given = {p: node.closure_size for p, node in self.paths.items()}
        if all(size is not None for size in given.values()):
            return given  # type: ignore[return-value]
        components = _components_references_first(self.paths)
        order = [path for component in components for path in component]
        position = {path: i for i, path in enumerate(order)}
        weigh = _ByteWeights([self.paths[p].nar_size for p in order])
        waiting = {path: len(self.users[path]) for path in order}  # users not yet folded in
        reach: dict[str, int] = {}
        result: dict[str, int] = {}
        paths = self.paths
        for component in components:
            if len(component) == 1:  # nearly every path (a loop is a component of several)
                node = paths[component[0]]
                own_bits, own_size, outside = 1 << position[node.path], node.nar_size, node.references
            else:
                inside = set(component)
                own_bits = sum(1 << position[path] for path in component)
                own_size = sum(paths[p].nar_size for p in component)
                outside = tuple({ref for path in component for ref in paths[path].references if ref not in inside})
            if outside:
                # start from the largest closure below (its size known); the component adds its
                # own bytes (nothing below reaches back into it), the other references what the
                # largest lacks: usually a few paths, weighed alone
                base = max(outside, key=result.__getitem__)
                bits, size = reach[base], result[base] + own_size
                extra = 0
                for ref in outside:
                    if ref != base:
                        extra |= reach[ref]
                new = extra & ~bits
                if new:
                    bits |= new
                    size += weigh(new)
                bits |= own_bits
            else:
                bits, size = own_bits, own_size
            for path in component:
                reach[path] = bits
                result[path] = size
            for path in component:  # a closure nobody else needs is dropped: a long chain keeps one
                for ref in set(self.paths[path].references):
                    waiting[ref] -= 1
                    if waiting[ref] == 0:
                        reach.pop(ref, None)
        return result

    def closure_size(self, path: str) -> int:
        return self._closure_sizes[path]


def _node(entry: Any, path: str | None, where: str) -> StorePath:
    """One graph entry, checked: a string path, a whole non-negative ``narSize``, a list of
    string references (and, if given, a whole ``closureSize``)."""
    if not isinstance(entry, Mapping):
        raise InputError(f"{where}: a graph entry is not an object: {_short(entry)}")
    path = path if path is not None else entry.get("path")
    if not isinstance(path, str) or not path:
        raise InputError(f"{where}: a graph entry has no path (or not a string): {_short(entry)}")
    size = _whole(entry.get("narSize"), "narSize", path, where)
    refs = entry.get("references", [])
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise InputError(f"{where}: {path}: references must be a list of store paths, not {_short(refs)}")
    closure = entry.get("closureSize")
    closure_size = None if closure is None else _whole(closure, "closureSize", path, where)
    return StorePath(path, size, tuple(dict.fromkeys(r for r in refs if r != path)), closure_size)


def _whole(value: Any, field: str, path: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: {path}: {field} must be a whole number of bytes, not {_short(value)}")
    if value < 0:
        raise InputError(f"{where}: {path} has a negative {field}")
    return value


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "…"


def _components_references_first(paths: Mapping[str, StorePath]) -> list[list[str]]:
    """The graph's strongly connected components (paths that reach each other: Debian's
    dependency loops; Nix's graphs have none), each after every component it reaches.

    A graph without loops (every one Nix writes) is one plain depth-first walk, each path a
    component of its own; a loop found on the way hands over to Tarjan's algorithm."""
    order = _postorder_if_acyclic(paths)
    if order is not None:
        return [[path] for path in order]
    return _tarjan(paths)


def _postorder_if_acyclic(paths: Mapping[str, StorePath]) -> list[str] | None:
    """Every path after everything it refers to, or None if the references go round a loop."""
    done: set[str] = set()
    on_walk: set[str] = set()
    order: list[str] = []
    for start in paths:
        if start in done:
            continue
        on_walk.add(start)
        walk = [(start, iter(paths[start].references))]
        while walk:
            node, refs = walk[-1]
            for ref in refs:
                if ref in on_walk:
                    return None
                if ref not in done:
                    on_walk.add(ref)
                    walk.append((ref, iter(paths[ref].references)))
                    break
            else:
                walk.pop()
                on_walk.discard(node)
                done.add(node)
                order.append(node)
    return order


def _tarjan(paths: Mapping[str, StorePath]) -> list[list[str]]:
    """Tarjan's strongly connected components, without recursion, each after those it reaches."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for start in paths:
        if start in index:
            continue
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        walk = [(start, iter(paths[start].references))]
        while walk:
            node, refs = walk[-1]
            for ref in refs:
                if ref not in index:
                    index[ref] = low[ref] = len(index)
                    stack.append(ref)
                    on_stack.add(ref)
                    walk.append((ref, iter(paths[ref].references)))
                    break
                if ref in on_stack:
                    low[node] = min(low[node], index[ref])
            else:
                walk.pop()
                if walk:
                    parent = walk[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)
    return components


_FEW_BITS = 24
"""Bitsets with at most this many bits set are weighed bit by bit."""


class _ByteWeights:
    """The sum of ``sizes[i]`` over the set bits ``i`` of a bitset, eight bits at a time: a
    table per byte of the bitset gives the weight of each of its 256 values.

    >>> _ByteWeights([1, 2, 4, 8, 16, 32, 64, 128, 1000])(0b100000101)
    1005
    """

    def __init__(self, sizes: Sequence[int]) -> None:
        import numpy as np

        self._np = np
        padded = np.zeros(-(-len(sizes) // 8) * 8, dtype=np.int64)
        padded[: len(sizes)] = sizes
        bits = (np.arange(256)[:, None] >> np.arange(8)) & 1  # value → its 8 bits, lowest first
        self._tables = padded.reshape(-1, 8) @ bits.T  # byte position × byte value → weight
        self._sizes = list(sizes)

    def __call__(self, bitset: int) -> int:
        if bitset.bit_count() <= _FEW_BITS:  # a handful of paths: bit by bit, no array
            total = 0
            while bitset:
                top = bitset.bit_length() - 1
                total += int(self._sizes[top])
                bitset ^= 1 << top
            return total
        np = self._np
        data = np.frombuffer(bitset.to_bytes((bitset.bit_length() + 7) // 8, "little"), dtype=np.uint8)
        set_bytes = np.flatnonzero(data)  # a sparse bitset costs its set bytes, not its length
        return int(self._tables[set_bytes, data[set_bytes]].sum())


def parse_graph(document: Any, name: str, where: str = "") -> ClosureGraph:
    """A graph from a parsed JSON document in any of the accepted formats; errors name
    ``where`` (default: ``name``)."""
    where = where or name
    if isinstance(document, list):
        return ClosureGraph.build((_node(e, None, where) for e in document), None, name, where)
    if isinstance(document, dict) and isinstance(document.get("graph"), list):
        exported = document.get("exportReferencesGraph")
        tops: list[str] | None = None
        if isinstance(exported, dict):
            tops = [p for paths in exported.values() if isinstance(paths, list) for p in paths if isinstance(p, str)]
        return ClosureGraph.build((_node(e, None, where) for e in document["graph"]), tops or None, name, where)
    if isinstance(document, dict) and all(isinstance(v, dict) for v in document.values()) and document:
        return ClosureGraph.build((_node(v, k, where) for k, v in document.items()), None, name, where)
    raise InputError(f"{where}: not a reference graph (expected exportReferencesGraph or `nix path-info --json` output)")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_graph(path: str | os.PathLike[str]) -> ClosureGraph:
    """Read a closure graph file; one-line :class:`InputError` on anything wrong."""
    source = Path(path)
    try:
        text = source.read_text()
    except FileNotFoundError:
        raise InputNotFoundError(f"{source}: no such file") from None
    except OSError as err:
        raise InputError(f"{source}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{source}: not JSON (not UTF-8 text at byte {err.start})") from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as err:
        raise InputError(f"{source}: not JSON ({err})") from None
    except RecursionError:
        raise InputError(f"{source}: JSON nested too deeply to be a reference graph") from None
    return parse_graph(document, source.stem if source.suffix == ".json" else source.name, str(source))


def graphs_from_dataset(dataset: str | os.PathLike[str], roots: Sequence[str] | None = None) -> list[ClosureGraph]:
    """Image closures rebuilt from NAR snapshots ingested with their narinfo (store path and
    references), sizes from the NARs themselves.

    Each of ``roots`` (a store path or a snapshot label) is one image: its closure. Without
    ``roots``, one image of every path nothing else refers to.
    """
    from storelab.analysis.db import connect

    with connect(dataset) as con:
        rows = con.execute(
            "SELECT label, store_path, \"references\", nar_size FROM snapshots WHERE store_path IS NOT NULL ORDER BY seq"
        ).fetchall()
    if not rows:
        raise InputError(f"{dataset}: no snapshot has a store path (ingest NARs with --narinfo)")
    by_label = {label: path for label, path, _, _ in rows}
    nodes = {path: StorePath(path, int(size or 0), tuple(r for r in (refs or []) if r != path)) for _, path, refs, size in rows}
    for node in nodes.values():
        for ref in node.references:
            if ref not in nodes:
                raise InputError(f"{dataset}: {node.path} refers to {ref}, which no snapshot holds (ingest its NAR too)")
    full = ClosureGraph.build(nodes.values(), None, Path(dataset).name)
    if not roots:
        return [full]
    graphs = []
    for root in roots:
        path = by_label.get(root, root)
        if path not in nodes:
            raise InputError(f"{dataset}: no snapshot with store path or label {root!r}")
        members = full.closure(path)
        graphs.append(ClosureGraph.build([nodes[m] for m in members], [path], path_name(path)))
    return graphs

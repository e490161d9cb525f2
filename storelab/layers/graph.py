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
    def build(cls, nodes: Iterable[StorePath], top_level: Iterable[str] | None = None, name: str = "") -> ClosureGraph:
        table = {node.path: node for node in nodes}
        for node in table.values():
            for ref in node.references:
                if ref not in table:
                    raise InputError(f"{name or 'graph'}: {node.path} refers to {ref}, which is not in the graph")
        if top_level is None:
            referenced = {ref for node in table.values() for ref in node.references}
            top_level = [p for p in table if p not in referenced]
        tops = tuple(sorted(set(top_level)))
        for path in tops:
            if path not in table:
                raise InputError(f"{name or 'graph'}: top-level path {path} is not in the graph")
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
        return {p: sum(self.paths[q].nar_size for q in self.closure(p)) for p in self.paths}

    def closure_size(self, path: str) -> int:
        return self._closure_sizes[path]


def _node(entry: Mapping[str, Any], path: str | None, where: str) -> StorePath:
    try:
        path = path or entry["path"]
        size = int(entry["narSize"])
        refs = tuple(r for r in entry.get("references", ()) if r != path)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{where}: a graph entry lacks path/narSize/references ({err})") from None
    if size < 0:
        raise InputError(f"{where}: {path} has a negative narSize")
    return StorePath(str(path), size, refs)


def parse_graph(document: Any, name: str) -> ClosureGraph:
    """A graph from a parsed JSON document in any of the accepted formats."""
    if isinstance(document, list):
        return ClosureGraph.build((_node(e, None, name) for e in document), None, name)
    if isinstance(document, dict) and isinstance(document.get("graph"), list):
        exported = document.get("exportReferencesGraph")
        tops: list[str] | None = None
        if isinstance(exported, dict):
            tops = [p for paths in exported.values() if isinstance(paths, list) for p in paths]
        return ClosureGraph.build((_node(e, None, name) for e in document["graph"]), tops or None, name)
    if isinstance(document, dict) and all(isinstance(v, dict) for v in document.values()) and document:
        return ClosureGraph.build((_node(v, k, name) for k, v in document.items()), None, name)
    raise InputError(f"{name}: not a reference graph (expected exportReferencesGraph or `nix path-info --json` output)")


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
        document = json.loads(text)
    except ValueError as err:
        raise InputError(f"{source}: not JSON ({err})") from None
    return parse_graph(document, source.stem if source.suffix == ".json" else source.name)


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

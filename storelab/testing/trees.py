"""Trees for tests: build one on disk from a spec, and Hypothesis strategies of specs.

A spec is a dict name → ``bytes`` (a file), ``("x", bytes)`` (an executable file),
``("link", target)`` (a symlink) or a nested dict (a directory).

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp()) / "t"
>>> build_tree(root, {b"a": b"hi", b"d": {b"run": ("x", b"#!/bin/sh")}, b"l": ("link", b"a")})
>>> sorted(flatten({b"a": b"hi", b"d": {b"e": b""}}))
[b'', b'a', b'd', b'd/e']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from storelab.chunking.base import ChunkerSpec

__all__ = ["SMALL_CHUNKS", "TreeSpec", "build_tree", "file_values", "flatten", "names", "trees"]

TreeSpec = dict[bytes, Any]
"""name → bytes | ("x", bytes) | ("link", target) | TreeSpec."""

SMALL_CHUNKS = ChunkerSpec("fastcdc2020", 64, 256, 1024, 1)
"""A chunker that cuts the small files Hypothesis makes into several chunks."""


def build_tree(root: Path, spec: TreeSpec) -> None:
    """Write ``spec`` under ``root`` (made if missing); names are bytes, need not be UTF-8."""
    base = os.fsencode(root)
    os.makedirs(base, exist_ok=True)
    for name, value in spec.items():
        path = base + b"/" + name
        if isinstance(value, dict):
            build_tree(Path(os.fsdecode(path)), value)
        elif isinstance(value, tuple) and value[0] == "link":
            os.symlink(value[1], path)
        else:
            content = value[1] if isinstance(value, tuple) else value
            with open(path, "wb") as f:
                f.write(content)
            os.chmod(path, 0o755 if isinstance(value, tuple) else 0o644)


def flatten(spec: TreeSpec, prefix: bytes = b"") -> dict[bytes, object]:
    """path → spec value, the root as ``b""`` (a dict marks a directory)."""
    out: dict[bytes, object] = {} if prefix else {b"": {}}
    for name, value in spec.items():
        path = prefix + b"/" + name if prefix else name
        out[path] = value
        if isinstance(value, dict):
            out.update(flatten(value, path))
    return out


names = st.binary(min_size=1, max_size=10).filter(lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b".."))
"""Valid entry names: any bytes but ``/`` and NUL, not ``.`` or ``..`` (not necessarily UTF-8)."""

file_values = st.one_of(
    st.binary(max_size=3000),
    st.tuples(st.just("x"), st.binary(max_size=3000)),
    st.tuples(st.just("link"), st.binary(min_size=1, max_size=60).filter(lambda t: b"\0" not in t)),
)
"""A file, an executable file or a symlink, as spec values."""

trees = st.recursive(
    st.dictionaries(names, file_values, max_size=5),
    lambda children: st.dictionaries(names, st.one_of(file_values, children), max_size=5),
    max_leaves=25,
).filter(lambda d: isinstance(d, dict))
"""Random trees: nested directories, empty files and directories, executables, symlinks."""

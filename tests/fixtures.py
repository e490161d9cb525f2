"""Shared test fixtures as named constants (blobs, directories, vector locations)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import blake3

from storelab.castore import EMPTY_BLOB_DIGEST, Directory, FileNode, SymlinkNode
from storelab.testing.trees import build_tree

REPO = Path(__file__).resolve().parents[1]
VECTORS = Path(os.environ.get("STORELAB_VECTORS", REPO / "tests" / "vectors"))
"""Vectors from the real systems, vendored as they are (their README says where each came from)."""

CASTORE_VECTORS = VECTORS / "castore.json"
FASTCDC_VECTORS = VECTORS / "fastcdc" / "fastcdc_v2020.json"
SEKIEN_JPG = VECTORS / "fastcdc" / "SekienAkashita.jpg"
NAR_VECTORS = VECTORS / "nar.json"

HELLOWORLD_BLOB = b"Hello World!"
HELLOWORLD_DIGEST = blake3.blake3(HELLOWORLD_BLOB).digest()

DIRECTORY_A = Directory()
DIRECTORY_WITH_KEEP = Directory.from_nodes([FileNode(b".keep", EMPTY_BLOB_DIGEST, 0)])
DIRECTORY_B = Directory.from_nodes([DIRECTORY_A.node(b"a")])
DIRECTORY_COMPLICATED = Directory.from_nodes(
    [
        DIRECTORY_WITH_KEEP.node(b"keep"),
        FileNode(b".keep", EMPTY_BLOB_DIGEST, 0),
        SymlinkNode(b"aa", b"/nix/store/somewhereelse"),
    ]
)
"""The tvix fixtures, rebuilt from their definitions in ``castore/src/fixtures.rs``."""

DIRECTORIES = {
    "DIRECTORY_A": DIRECTORY_A,
    "DIRECTORY_WITH_KEEP": DIRECTORY_WITH_KEEP,
    "DIRECTORY_B": DIRECTORY_B,
    "DIRECTORY_COMPLICATED": DIRECTORY_COMPLICATED,
}


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


def make_complicated_tree(root: Path) -> Path:
    """The on-disk tree whose castore root is DIRECTORY_COMPLICATED (complicated.nar)."""
    (root / "keep").mkdir(parents=True)
    (root / "keep" / ".keep").write_bytes(b"")
    (root / ".keep").write_bytes(b"")
    (root / "aa").symlink_to("/nix/store/somewhereelse")
    return root


NAR_FILES = sorted(k for k in json.loads(NAR_VECTORS.read_text()) if k.endswith(".nar"))
"""The vendored NARs written by Nix, by name."""


def oracle_trees(tmp_path: Path) -> list[Path]:
    """Trees to compare with `nix-store --dump`: a made one, and real ones where present."""
    build_tree(
        tmp_path / "mixed",
        {b"bin": {b"tool": ("x", b"#!/bin/sh\necho hi\n")}, b"empty": {}, b"link": ("link", b"bin/tool"), b"big": os.urandom(700_000), b"e": b""},
    )
    real = [Path(p) for p in ("/usr/share/doc/bash", "/usr/lib/python3/dist-packages/debian", "/etc/ssl") if Path(p).is_dir()]
    return [tmp_path / "mixed", *real]



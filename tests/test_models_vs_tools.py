"""The nix-casync, restic and borg models against the real tools' own accounting, on real
trees: two snapshots of installed Python packages (the second with some files changed and one
package more), so dedup across snapshots is real.

What each tool counts differs from the model in known ways (docs: Store models, "Checked"):
chunk counts must agree exactly; bytes within the overheads named beside each assertion.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from storelab.chunking import make_spec, spec_from_id
from storelab.ingest import IngestOptions
from storelab.ingest.nar_source import ingest_nars
from storelab.models import MODELS, compare_models
from storelab.nar import dump_path

pytestmark = pytest.mark.slow


def _package(name: str) -> Path:
    module = __import__(name)
    return Path(module.__file__).resolve().parent


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Two trees and their NARs: rich + _pytest, then the same with ten files edited and hypothesis added."""
    base = tmp_path_factory.mktemp("real-trees")
    first, second = base / "v1", base / "v2"
    for name in ("rich", "_pytest"):
        shutil.copytree(_package(name), first / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(first, second)
    for number, path in enumerate(sorted((second / "rich").glob("*.py"))[:10]):
        path.write_bytes(path.read_bytes() + f"\n# edited {number}\n".encode())
    shutil.copytree(_package("hypothesis"), second / "hypothesis", ignore=shutil.ignore_patterns("__pycache__"))
    nars = []
    for tree in (first, second):
        nar = base / f"{tree.name}.nar"
        with open(nar, "wb") as f:
            for piece in dump_path(tree):
                f.write(piece)
        nars.append(nar)
    return base, [first, second, *nars]


def _dataset(base: Path, nars: list[Path], also: tuple = (), streams: tuple = ()) -> Path:
    dataset = base / f"ds-{len(list(base.glob('ds-*')))}"
    ingest_nars([(str(n), n) for n in nars], dataset, IngestOptions(also=also, streams=streams, nar_compression=("zstd",)))
    return dataset


@pytest.mark.skipif(shutil.which("casync") is None, reason="casync (Debian package casync) is not installed")
def test_nix_casync_chunks_as_casync_make_stores_the_nars(snapshots: tuple[Path, list[Path]], tmp_path: Path) -> None:
    """nix-casync cuts each NAR as casync cuts a blob: ``casync make`` of both NARs into one
    store writes exactly the model's distinct chunks; their zstd bytes agree within 2 %
    (casync frames each chunk with its own zstd settings)."""
    base, (_, _, *nars) = snapshots
    model = MODELS["nix-casync"]
    dataset = _dataset(base, nars, streams=(spec_from_id("casync@nar"),))
    store = tmp_path / "store"
    for number, nar in enumerate(nars):
        index = tmp_path / f"{number}.caibx"
        subprocess.run(["casync", "make", "--compression=zstd", f"--store={store}", str(index), str(nar)], check=True, capture_output=True)
    chunk_files = list(store.rglob("*.cacnk"))
    row = compare_models(dataset, [model]).iloc[0]
    assert row["data_objects"] == len(chunk_files)
    casync_bytes = sum(p.stat().st_size for p in chunk_files)
    print(f"casync: {len(chunk_files):,} chunk files, {casync_bytes:,} B; model {row['compressed_bytes']:,} B")
    assert abs(row["compressed_bytes"] - casync_bytes) <= 0.02 * casync_bytes, (row["compressed_bytes"], casync_bytes)
    # the .caibx indexes: the model's size rule, byte for byte
    indexes = sum((tmp_path / f"{n}.caibx").stat().st_size for n in range(len(nars)))
    objects = compare_models(dataset, [model]).iloc[0]
    narinfo = objects["metadata_bytes"] - indexes
    assert 0 < narinfo < 1000 * len(nars)  # what is left is the .narinfo files


def _restic(repo: Path, *args: str) -> str:
    env = {**os.environ, "RESTIC_PASSWORD": "storelab", "RESTIC_CACHE_DIR": str(repo.parent / "restic-cache")}
    return subprocess.run(["restic", "-r", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


@pytest.mark.skipif(shutil.which("restic") is None, reason="restic (Debian package restic) is not installed")
def test_restic_model_against_restic_stats(snapshots: tuple[Path, list[Path]], tmp_path: Path) -> None:
    """Both trees backed up: restic's data blobs are the model's chunks, exactly (``restic list
    blobs``); ``restic stats --mode raw-data``'s size (every blob as stored: compressed and
    encrypted, tree blobs too) is the model's compressed bytes plus 32 bytes of encryption per
    blob, within 10 % (restic compresses with klauspost/compress's zstd, the model with libzstd
    level 3) and the tree blobs (a few KiB of JSON per directory)."""
    base, (first, second, *nars) = snapshots
    repo = tmp_path / "repo"
    _restic(repo, "init")
    for tree in (first, second):
        _restic(repo, "backup", "--host", "h", str(tree))
    polynomial = int(json.loads(_restic(repo, "cat", "config"))["chunker_polynomial"], 16)
    spec = make_spec("restic", {"pol": polynomial})
    dataset = _dataset(base, nars, also=(spec,))
    model = dataclasses.replace(MODELS["restic"], chunker_id=spec.id)
    row = compare_models(dataset, [model]).iloc[0]
    stats = json.loads(_restic(repo, "stats", "--mode", "raw-data", "--json"))
    data_blobs = len([line for line in _restic(repo, "list", "blobs").splitlines() if line.startswith("data ")])
    assert row["data_objects"] == data_blobs
    trees = stats["total_blob_count"] - data_blobs
    assert 0 < trees < 1000
    modelled = row["compressed_bytes"] + 32 * data_blobs
    print(f"restic raw-data {stats['total_size']:,} B in {stats['total_blob_count']:,} blobs ({trees} trees); model {modelled:,} B")
    assert abs(modelled - stats["total_size"]) <= 0.10 * stats["total_size"] + 4096 * trees


@pytest.mark.skipif(shutil.which("borg") is None, reason="borg (Debian package borgbackup) is not installed")
def test_borg_model_against_borg_info(snapshots: tuple[Path, list[Path]], tmp_path: Path) -> None:
    """Both trees as two archives with ``--compression zstd,3``: borg's unique chunks are the
    model's data chunks plus its archive metadata chunks (item streams); its deduplicated size
    is the model's compressed bytes plus theirs, within 2 % (borg's zstd frames carry the
    content size, the model's streaming ones do not)."""
    base, (first, second, *nars) = snapshots
    env = {**os.environ, "BORG_BASE_DIR": str(tmp_path / "base"), "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}
    repo = tmp_path / "repo"
    subprocess.run(["borg", "init", "-e", "none", str(repo)], check=True, capture_output=True, env=env)
    for number, tree in enumerate((first, second)):
        subprocess.run(["borg", "create", "--compression", "zstd,3", f"{repo}::{number}", "."], check=True, capture_output=True, env=env, cwd=tree)
    info = json.loads(subprocess.run(["borg", "info", "--json", str(repo)], check=True, capture_output=True, text=True, env=env).stdout)
    stats = info["cache"]["stats"]
    dataset = _dataset(base, nars, also=(make_spec("borg"),))
    row = compare_models(dataset, ["borg"]).iloc[0]
    metadata_chunks = stats["total_unique_chunks"] - row["data_objects"]
    print(f"borg: {stats['total_unique_chunks']:,} unique chunks, {stats['unique_size']:,} B, {stats['unique_csize']:,} B compressed; "
          f"model {row['data_objects']:,} chunks, {row['unique_bytes']:,} B, {row['compressed_bytes']:,} B")
    assert 0 < metadata_chunks < 50  # the archives' item streams and archive objects
    assert row["unique_bytes"] <= stats["unique_size"] <= row["unique_bytes"] * 1.05
    assert abs(stats["unique_csize"] - row["compressed_bytes"]) <= 0.02 * stats["unique_csize"] + 200_000, (row["compressed_bytes"], stats["unique_csize"])

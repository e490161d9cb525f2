"""The compiled small-file reader (storelab/ingest/_smallfiles.c) is only a faster road: a batch
hashed through it equals the batch hashed file by file in Python, errors included, and every
file it cannot take the ordinary way is left to Python."""

from __future__ import annotations

import os
import random
from pathlib import Path

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import storelab.ingest.blobs as blobs
from storelab.chunking import default_spec, make_chunker
from storelab.ingest.blobs import BlobHasher
from storelab.ingest.hashing import FileJob, hash_batches

SPEC = default_spec("fastcdc2020", 16 * 1024)
LIMIT = make_chunker(SPEC).single_chunk_max


def _hasher(zstd_level: int = 0) -> BlobHasher:
    return BlobHasher(make_chunker(SPEC), zstd_level)


def test_the_compiled_reader_is_built() -> None:
    """`make test` installs storelab with its extensions: a suite that silently ran the
    Python road would test less than it says."""
    assert blobs._smallfiles is not None
    assert _hasher().native_small_files == make_chunker(SPEC).single_chunk_max


def test_a_hasher_that_must_see_the_bytes_takes_the_python_road(tmp_path: Path) -> None:
    from storelab.stores import SnixStore

    assert _hasher(zstd_level=3).native_small_files == -1  # each chunk's zstd size is measured
    assert BlobHasher(make_chunker(SPEC), 0, rewrite=bytes).native_small_files == -1
    store = SnixStore.open(f"file://{tmp_path / 'store'}")
    assert BlobHasher(make_chunker(SPEC), 0, store=store).native_small_files == -1


def _odd_entries(root: Path, limit: int) -> dict[str, bytes]:
    """Entries the compiled reader must leave undone, by name (their path)."""
    (root / "big").write_bytes(b"x" * (limit + 1))
    (root / "target").write_bytes(b"t")
    (root / "link").symlink_to(root / "target")
    (root / "dir").mkdir()
    os.mkfifo(root / "fifo")
    deep = root / "/".join(["d" * 200] * 11)
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"deep")
    return {
        "missing": bytes(root / "missing"),
        "big": bytes(root / "big"),
        "link": bytes(root / "link"),
        "dir": bytes(root / "dir"),
        "fifo": bytes(root / "fifo"),
        "long path": bytes(deep / "f"),  # over 2,048 bytes: opened piece by piece, in Python
        "NUL": bytes(root / "target") + b"\0x",
    }


def test_what_the_compiled_reader_leaves_undone(tmp_path: Path) -> None:
    hasher = _hasher()
    limit = hasher.native_small_files
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "full").write_bytes(b"y" * limit)
    odd = _odd_entries(tmp_path, limit)
    paths = [bytes(tmp_path / "empty"), *odd.values(), bytes(tmp_path / "full")]
    done, digests, sizes = hasher.hash_small_files(paths)
    assert list(done) == [1] + [0] * len(odd) + [1]
    assert digests == blake3.blake3(b"").digest() + blake3.blake3(b"y" * limit).digest()
    assert list(sizes) == [0, limit]


def _batch(jobs: list[FileJob], native: bool, monkeypatch: pytest.MonkeyPatch):
    with monkeypatch.context() as patch:
        if not native:
            patch.setattr(blobs, "_smallfiles", None)
        return hash_batches([_hasher()], jobs)[0]


@settings(max_examples=40, deadline=None)
@given(
    kinds=st.lists(
        st.one_of(st.integers(0, 3 * LIMIT), st.sampled_from([0, LIMIT, LIMIT + 1]), st.sampled_from(["missing", "big", "link", "dir", "fifo", "long path"])),
        min_size=1,
        max_size=12,
    ),
)
def test_a_batch_is_the_same_on_either_road(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, kinds: list) -> None:
    """Files of every size around the single-chunk limit, and every entry the compiled reader
    leaves undone, mixed in any order: the same digests, chunks, order and error messages.
    (A name with NUL never comes out of a listing; given one, either road raises ValueError.)"""
    root = tmp_path_factory.mktemp("either")
    odd = _odd_entries(root, LIMIT)
    rng = random.Random(len(kinds))
    jobs = []
    for index, kind in enumerate(kinds):
        if isinstance(kind, int):
            size = kind  # below, at and above the limit
            path = root / f"f{index}"
            path.write_bytes(rng.randbytes(size))
            jobs.append(FileJob(index, bytes(path), size))
        else:
            jobs.append(FileJob(index, odd[kind], 10))  # listed as small: the reader finds otherwise
    native, python = _batch(jobs, True, monkeypatch), _batch(jobs, False, monkeypatch)
    assert native == python
    assert {index for index, _ in native.errors} == {i for i, kind in enumerate(kinds) if kind in ("missing", "link", "dir", "fifo")}

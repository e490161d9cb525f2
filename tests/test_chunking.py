"""Chunkers against fastcdc-rs's own test vectors, and streaming equals whole-buffer cutting."""

from __future__ import annotations

import hashlib
import random

import pyfastcdc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storelab.chunking import ChunkerSpec, default_spec, make_chunker, make_spec
from storelab.errors import ConfigError
from storelab.ingest.blobs import BlobHasher
from tests.fixtures import FASTCDC_VECTORS, SEKIEN_JPG, load_json

VECTORS = load_json(FASTCDC_VECTORS)
SEKIEN = SEKIEN_JPG.read_bytes()


def test_sekien_image_is_the_one_the_vectors_were_made_on() -> None:
    assert len(SEKIEN) == VECTORS["file_len"]
    assert hashlib.sha256(SEKIEN).hexdigest() == VECTORS["file_sha256"]


@pytest.mark.parametrize("case", VECTORS["v2020"], ids=lambda c: c["name"])
def test_fastcdc2020_reproduces_fastcdc_rs(case: dict) -> None:
    p = case["params"]
    assert p.get("seed", 0) == 0
    spec = ChunkerSpec("fastcdc2020", p["min"], p["avg"], p["max"], p["level"])
    lengths = make_chunker(spec).split(memoryview(SEKIEN), eof=True)
    assert lengths == [e["length"] for e in case["expected"]]
    # the gear hashes at each cut too: the chunker is fastcdc-rs's, not merely similar
    cdc = pyfastcdc.FastCDC(p["avg"], min_size=p["min"], max_size=p["max"], normalized_chunking=p["level"])
    assert [c.gear_hash for c in cdc.cut_buf(SEKIEN)] == [e["hash"] for e in case["expected"]]


SEEDED_666 = [
    (9312357714466240148, 10605),
    (226910853333574584, 55745),
    (12271755243986371352, 11346),
    (14153975939352546047, 5883),
    (5890158701071314778, 11586),
    (8981594897574481255, 14301),
]
"""fastcdc-rs ``src/v2020/mod.rs``, ``test_cut_sekien_16k_chunks_seed_666``: the (gear hash, length)
of each chunk of SekienAkashita.jpg cut by ``FastCDC::with_level_and_seed(4096, 16384, 65535,
Level1, 666)`` (not among the shared vectors; quoted from the crate's own test)."""


def test_a_seeded_fastcdc2020_reproduces_fastcdc_rs() -> None:
    spec = default_spec("fastcdc2020", 16384, 4096, 65535, seed=666)
    assert spec.id == "fastcdc2020/min=4KiB,avg=16KiB,max=65535,nc=1,seed=666"
    assert make_chunker(spec).split(memoryview(SEKIEN), eof=True) == [length for _, length in SEEDED_666]
    cdc = pyfastcdc.FastCDC(16384, min_size=4096, max_size=65535, normalized_chunking=1, seed=666)
    assert [(c.gear_hash, c.length) for c in cdc.cut_buf(SEKIEN)] == SEEDED_666
    assert default_spec("fastcdc2020", 16384, 4096, 65535).id == spec.id.removesuffix(",seed=666")  # seed 0: snix's id


def test_only_fastcdc2020_takes_a_seed() -> None:
    with pytest.raises(ConfigError, match="fastcdc2020 parameter"):
        default_spec("fixed", 4096, seed=1)
    with pytest.raises(ConfigError, match="64-bit"):
        default_spec("fastcdc2020", seed=1 << 64)


def test_fastcdc2016_is_a_different_variant() -> None:
    spec20 = ChunkerSpec("fastcdc2020", 4096, 16384, 65535, 1)
    spec16 = ChunkerSpec("fastcdc2016", 4096, 16384, 65535, 0)
    cut20 = make_chunker(spec20).split(memoryview(SEKIEN), eof=True)
    cut16 = make_chunker(spec16).split(memoryview(SEKIEN), eof=True)
    assert sum(cut16) == len(SEKIEN)
    assert cut16 != cut20


def test_default_spec_is_snix() -> None:
    spec = default_spec()
    assert (spec.name, spec.min_size, spec.avg_size, spec.max_size, spec.normalization) == (
        "fastcdc2020",
        128 * 1024,
        256 * 1024,
        512 * 1024,
        1,
    )


def test_fixed_blocks() -> None:
    chunker = make_chunker(default_spec("fixed", 1000))
    assert chunker.split(memoryview(bytes(2500)), eof=True) == [1000, 1000, 500]
    assert chunker.split(memoryview(bytes(2500)), eof=False) == [1000, 1000]


@pytest.mark.parametrize(
    "spec",
    [ChunkerSpec("fastcdc2020", 32, 256, 1024), ChunkerSpec("fastcdc2020", 4096, 16384, 8192 * 1024 * 4)],
    ids=["min too small", "max too large"],
)
def test_sizes_outside_fastcdc_limits_are_config_errors(spec: ChunkerSpec) -> None:
    with pytest.raises(ConfigError, match="outside"):
        make_chunker(spec)


def test_unknown_chunker() -> None:
    with pytest.raises(ConfigError, match="unknown chunker 'rabin'; choose one of fastcdc2020, .*zstd-chunked"):
        make_spec("rabin")
    with pytest.raises(ConfigError, match="for 'rabin' use make_spec"):
        default_spec("rabin")


def _stream_cut(chunker, data: bytes, piece_sizes: list[int]) -> list[int]:
    """Feed data in pieces as the blob pipeline does: leftovers carried to the next call."""
    lengths: list[int] = []
    carried = b""
    pos = 0
    sizes = iter(piece_sizes)
    while True:
        step = next(sizes, len(data))
        new = data[pos : pos + step]
        pos += len(new)
        eof = pos >= len(data)
        buf = carried + new
        cut = chunker.split(memoryview(buf), eof)
        lengths += cut
        carried = buf[sum(cut) :]
        if eof:
            assert carried == b""
            return lengths


_TWO_LETTERS = bytes(b"ab"[i & 1] for i in range(256))

SMALL_SPECS = [
    ChunkerSpec("fastcdc2020", 256, 1024, 4096, 1),
    ChunkerSpec("fastcdc2020", 64, 256, 1024, 2),
    ChunkerSpec("fastcdc2016", 256, 1024, 4096, 0),
    ChunkerSpec("fixed", 777, 777, 777, 0),
]


@pytest.mark.parametrize("spec", SMALL_SPECS, ids=lambda s: s.id)
@given(seed=st.integers(0, 2**32), size=st.integers(0, 100_000), pieces=st.lists(st.integers(1, 30_000), max_size=12))
def test_streaming_cut_equals_whole_buffer_cut(spec: ChunkerSpec, seed: int, size: int, pieces: list[int]) -> None:
    rng = random.Random(seed)
    # low-entropy data too, so cuts land at max_size as well as on content
    data = rng.randbytes(size)
    if seed % 2:
        data = data.translate(_TWO_LETTERS)
    chunker = make_chunker(spec)
    whole = chunker.split(memoryview(data), eof=True)
    assert sum(whole) == size
    assert _stream_cut(chunker, data, pieces) == whole


@pytest.mark.parametrize("spec", SMALL_SPECS, ids=lambda s: s.id)
def test_blob_hasher_file_and_memory_agree_across_read_buffers(spec: ChunkerSpec, tmp_path, monkeypatch) -> None:
    import storelab.ingest.blobs as blobs

    monkeypatch.setattr(blobs, "READ_BUFFER", 10_000)  # many refills, carries at every boundary
    data = random.Random(7).randbytes(123_457)
    path = tmp_path / "f"
    path.write_bytes(data)
    hasher = BlobHasher(make_chunker(spec), zstd_level=1)
    from_file = hasher.hash_file(str(path))
    from_memory = hasher.hash_bytes(data)
    assert from_file == from_memory
    assert list(from_file.chunk_sizes) == make_chunker(spec).split(memoryview(data), eof=True)


@settings(max_examples=25, deadline=None)
@given(
    size=st.integers(0, 600_000),
    window=st.sampled_from([4096, 65536, 100_000]),
    name=st.sampled_from(["fastcdc2020", "fastcdc2016", "fixed"]),
)
def test_files_read_in_windows_cut_as_the_whole_buffer(tmp_path_factory: pytest.TempPathFactory, size: int, window: int, name: str) -> None:
    """A file read window by window into one buffer (the uncut tail carried over) gives the
    digests, cuts and sizes of the same bytes cut whole in memory; so do several chunkers fed
    the same windows at once (a sweep)."""
    from storelab.ingest import blobs
    from storelab.ingest.blobs import hash_file_once

    data = random.Random(size).randbytes(size)
    path = tmp_path_factory.mktemp("w") / "f"
    path.write_bytes(data)
    spec = default_spec(name, 16384)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(blobs, "READ_BUFFER", window)
        patch.setattr(blobs, "WHOLE_READ", 0)
        from_file = BlobHasher(make_chunker(spec), 3).hash_file(path)
        swept = hash_file_once([BlobHasher(make_chunker(spec), 3), BlobHasher(make_chunker(default_spec("fixed", 4096)), 0)], path)
    in_memory = BlobHasher(make_chunker(spec), 3).hash_bytes(data)
    for got in (from_file, swept[0]):
        assert (got.digest, got.size, got.chunk_digests, list(got.chunk_sizes)) == (
            in_memory.digest, in_memory.size, in_memory.chunk_digests, list(in_memory.chunk_sizes),
        )  # fmt: skip
        assert list(got.chunk_compressed or []) == list(in_memory.chunk_compressed or [])
    assert swept[1].digest == in_memory.digest and sum(swept[1].chunk_sizes) == size

"""Every peer chunker cuts exactly where its real tool does.

The tools come from Debian (``casync``, ``restic``, ``borgbackup``, installed by the test
command where apt can) and PyPI (``hf_xet``); each comparison runs on random bytes, on a copy
with insertions (where content-defined chunking earns its keep) and on real files (this
environment's Python packages), at several parameter sets. ncps and zstd:chunked have no
binary here: their C loops are held to line-by-line transcriptions of the Go
(tests/peer_reference.py) on generated inputs. Every chunker also cuts a stream fed in pieces
exactly as the whole.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storelab.chunking import CATALOG, PRESETS, chunk_lengths, make_chunker, make_spec, scaled_spec, spec_from_id
from storelab.chunking.xet_hash import xet_file_hash
from storelab.errors import ConfigError
from tests.peer_reference import kalbasit_fastcdc, zstd_chunked

SYSTEM_PYTHON = "/usr/bin/python3"


def _random(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _edited(data: bytes, seed: int) -> bytes:
    """``data`` with a few short insertions and one deletion: most chunks should survive."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(5):
        at = rng.randrange(len(out))
        out[at:at] = rng.randbytes(rng.randrange(1, 200))
    at = rng.randrange(len(out) - 5000)
    del out[at : at + 5000]
    return bytes(out)


def _real(size: int) -> bytes:
    """Real files: this environment's installed packages (.py text and .so binaries), in a fixed order, up to ``size`` bytes."""
    root = Path(pytest.__file__).resolve().parents[1]  # site-packages
    out = bytearray()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".so") and path.is_file() and not path.is_symlink():
            out += path.read_bytes()
            if len(out) >= size:
                break
    return bytes(out[:size])


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three inputs on disk, as the tools read them: random, random edited, real files."""
    folder = tmp_path_factory.mktemp("peer-corpora")
    base = _random(24_000_000, 1)
    files = {"random": base, "edited": _edited(base, 2), "real": _real(24_000_000)}
    paths = {}
    for name, data in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


def _ends(lengths: list[int]) -> list[int]:
    return list(itertools.accumulate(lengths))


# ---------------------------------------------------------------------------------------------- casync


def _caibx_chunks(index: Path) -> list[tuple[int, bytes]]:
    """(end offset, chunk id) of every chunk a .caibx lists (casync's caformat.h: a 48-byte
    index header, a 16-byte table header, 40-byte items, then a tail whose first word is 0)."""
    data = index.read_bytes()
    chunks, at = [], 64
    while (end := struct.unpack_from("<Q", data, at)[0]) != 0:
        chunks.append((end, data[at + 8 : at + 40]))
        at += 40
    return chunks


@pytest.mark.skipif(shutil.which("casync") is None, reason="casync (Debian package casync) is not installed")
@pytest.mark.parametrize("sizes", [None, (4096, 16384, 65536), (65536, 65536, 65536), (1000, 70000, 300000)], ids=str)
@pytest.mark.parametrize("corpus", ["random", "edited", "real"])
def test_casync_cuts_and_names_chunks_as_casync_make(corpora: dict[str, Path], tmp_path: Path, corpus: str, sizes: tuple[int, int, int] | None) -> None:
    source = corpora[corpus]
    index = tmp_path / "blob.caibx"
    command = ["casync", "make", f"--store={tmp_path / 'store'}", str(index), str(source)]
    params = {}
    if sizes is not None:
        command.insert(2, "--chunk-size={}:{}:{}".format(*sizes))
        params = dict(zip(("min", "avg", "max"), sizes))
    subprocess.run(command, check=True, capture_output=True)
    expected = _caibx_chunks(index)
    data = source.read_bytes()
    lengths = chunk_lengths(make_spec("casync", params), data)
    assert _ends(lengths) == [end for end, _ in expected]
    # the identity hash the catalog records: SHA-512/256 of each chunk
    starts = [0, *_ends(lengths)[:-1]]
    ids = [hashlib.new("sha512_256", data[s : s + n]).digest() for s, n in zip(starts, lengths)]
    assert ids == [chunk_id for _, chunk_id in expected]
    assert CATALOG["casync"].identity_hash == "SHA-512/256"


# ---------------------------------------------------------------------------------------------- restic


def _restic(repo: Path, *args: str) -> str:
    env = {**os.environ, "RESTIC_PASSWORD": "storelab", "RESTIC_CACHE_DIR": str(repo.parent / "cache")}
    return subprocess.run(["restic", "-r", str(repo), "--no-lock", *args], check=True, capture_output=True, text=True, env=env).stdout


def _restic_file_blobs(repo: Path, files: list[Path]) -> tuple[int, dict[str, list[str]]]:
    """Back ``files`` up; their data blob ids by name, and the repository's polynomial."""
    _restic(repo, "init")
    _restic(repo, "backup", *map(str, files))
    polynomial = int(json.loads(_restic(repo, "cat", "config"))["chunker_polynomial"], 16)
    snapshot = json.loads(_restic(repo, "snapshots", "--json"))[0]
    blobs: dict[str, list[str]] = {}

    def walk(tree: str) -> None:
        for node in json.loads(_restic(repo, "cat", "blob", tree))["nodes"]:
            if node["type"] == "dir":
                walk(node["subtree"])
            elif node["type"] == "file":
                blobs[node["name"]] = node["content"]

    walk(snapshot["tree"])
    return polynomial, blobs


@pytest.mark.skipif(shutil.which("restic") is None, reason="restic (Debian package restic) is not installed")
@pytest.mark.parametrize("repository", [1, 2])
def test_restic_cuts_and_names_blobs_as_restic_backup(corpora: dict[str, Path], tmp_path: Path, repository: int) -> None:
    """Two repositories: two random polynomials, so two parameter sets of the same chunker."""
    polynomial, blobs = _restic_file_blobs(tmp_path / f"repo{repository}", list(corpora.values()))
    spec = make_spec("restic", {"pol": polynomial})
    for name, path in corpora.items():
        data = path.read_bytes()
        lengths = chunk_lengths(spec, data)
        starts = [0, *_ends(lengths)[:-1]]
        assert [hashlib.sha256(data[s : s + n]).hexdigest() for s, n in zip(starts, lengths)] == blobs[name], name
        assert len(lengths) > 5


# ---------------------------------------------------------------------------------------------- borg


def _has_borg_module() -> bool:
    return os.path.exists(SYSTEM_PYTHON) and subprocess.run([SYSTEM_PYTHON, "-c", "import borg.chunker"], capture_output=True).returncode == 0


BORG_REFERENCE = """
import json, sys, borg.chunker
seed, min_exp, max_exp, mask_bits, window = map(int, sys.argv[2:7])
chunker = borg.chunker.Chunker(seed, min_exp, max_exp, mask_bits, window)
with open(sys.argv[1], "rb") as f:
    print(json.dumps([c.meta["size"] for c in chunker.chunkify(f, f.fileno())]))
"""


@pytest.mark.skipif(not _has_borg_module(), reason="borg's borg.chunker is not importable by /usr/bin/python3 (Debian package borgbackup)")
@pytest.mark.parametrize("params", [(0, 19, 23, 21, 4095), (0, 10, 16, 12, 4095), (0x5EED5EED, 12, 18, 14, 4095), (7, 6, 12, 8, 63)], ids=str)
@pytest.mark.parametrize("corpus", ["random", "edited", "real"])
def test_borg_cuts_as_borgs_own_chunker(corpora: dict[str, Path], corpus: str, params: tuple[int, ...]) -> None:
    source = corpora[corpus]
    run = subprocess.run([SYSTEM_PYTHON, "-c", BORG_REFERENCE, str(source), *map(str, params)], check=True, capture_output=True, text=True)
    seed, min_exp, max_exp, mask_bits, window = params
    spec = make_spec("borg", {"seed": seed, "min_exp": min_exp, "max_exp": max_exp, "mask_bits": mask_bits, "window": window})
    assert chunk_lengths(spec, source.read_bytes()) == json.loads(run.stdout)


@pytest.mark.skipif(shutil.which("borg") is None, reason="borg (Debian package borgbackup) is not installed")
def test_borg_create_stores_the_chunks_we_cut(corpora: dict[str, Path], tmp_path: Path) -> None:
    """End to end: ``borg create -e none`` then ``borg debug dump-archive``: each file's chunk
    ids (SHA-256 in an unencrypted repository) and sizes are ours."""
    env = {**os.environ, "BORG_BASE_DIR": str(tmp_path / "base"), "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}
    repo = tmp_path / "repo"
    subprocess.run(["borg", "init", "-e", "none", str(repo)], check=True, capture_output=True, env=env)
    subprocess.run(
        ["borg", "create", "--chunker-params", "buzhash,10,16,12,4095", f"{repo}::a", "random", "real"],
        check=True, capture_output=True, env=env, cwd=corpora["random"].parent,
    )  # fmt: skip
    dump = tmp_path / "dump.json"
    subprocess.run(["borg", "debug", "dump-archive", f"{repo}::a", str(dump)], check=True, capture_output=True, env=env)
    items = {item["path"]: item for item in json.loads(dump.read_text())["_items"] if "chunks" in item}
    spec = make_spec("borg", {"min_exp": 10, "max_exp": 16, "mask_bits": 12})
    for name in ("random", "real"):
        data = corpora[name].read_bytes()
        lengths = chunk_lengths(spec, data)
        starts = [0, *_ends(lengths)[:-1]]
        ours = [[hashlib.sha256(data[s : s + n]).hexdigest(), n] for s, n in zip(starts, lengths)]
        # dump-archive writes bytes that are not UTF-8 as "\x7f" + hex
        assert [[chunk[0].removeprefix("\x7f"), chunk[1]] for chunk in items[name]["chunks"]] == ours


# ---------------------------------------------------------------------------------------------- xet


@pytest.mark.parametrize("corpus", ["random", "edited", "real"])
def test_xet_file_hash_equals_hf_xets(corpora: dict[str, Path], corpus: str) -> None:
    """hf_xet (PyPI) hashes a file offline: its hash covers every chunk's bytes and boundaries."""
    hf_xet = pytest.importorskip("hf_xet", reason="hf_xet (PyPI, a test dependency) is not installed")
    data = corpora[corpus].read_bytes()
    lengths = chunk_lengths(make_spec("xet"), data)
    assert len(lengths) > 100
    assert xet_file_hash(data, lengths) == hf_xet.hash_files([str(corpora[corpus])])[0].hash


def test_xet_file_hash_on_small_and_empty_files(tmp_path: Path) -> None:
    hf_xet = pytest.importorskip("hf_xet", reason="hf_xet (PyPI, a test dependency) is not installed")
    for size in (0, 1, 8191, 8192, 131072, 131073):
        path = tmp_path / f"f{size}"
        data = _random(size, size)
        path.write_bytes(data)
        assert xet_file_hash(data, chunk_lengths(make_spec("xet"), data)) == hf_xet.hash_files([str(path)])[0].hash, size


# ---------------------------------------------------------------------------------------------- ncps, zstd:chunked


def _with_zero_runs(data: bytes, runs: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for at, length in runs:
        at = min(at, len(out))
        out[at:at] = bytes(length)
    return bytes(out)


@settings(max_examples=40, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=20_000).map(lambda b: b * 3),
    seed=st.integers(0, 2**32),
    sizes=st.sampled_from([(64, 256, 1024), (100, 1000, 5000), (1024, 4096, 16384)]),
    nc=st.integers(0, 8),
)
def test_ncps_equals_a_transcription_of_kalbasit_fastcdc(data: bytes, seed: int, sizes: tuple[int, int, int], nc: int) -> None:
    low, avg, high = sizes
    spec = make_spec("ncps", {"min": low, "avg": avg, "max": high, "nc": nc, "seed": seed})
    assert chunk_lengths(spec, data) == kalbasit_fastcdc(data, low, avg, high, nc, seed)


def test_ncps_equals_the_transcription_on_real_files() -> None:
    data = _real(3_000_000)
    assert chunk_lengths(make_spec("ncps"), data) == kalbasit_fastcdc(data, 16384, 65536, 262144)


@settings(max_examples=40, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=6000),
    runs=st.lists(st.tuples(st.integers(0, 6000), st.sampled_from([1, 63, 64, 65, 1023, 1024, 1025, 3000])), max_size=4),
    bits=st.integers(2, 12),
    hole=st.sampled_from([1, 16, 1024]),
)
def test_zstd_chunked_equals_a_transcription_of_containers_storage(data: bytes, runs: list[tuple[int, int]], bits: int, hole: int) -> None:
    data = _with_zero_runs(data, runs)
    assert chunk_lengths(make_spec("zstd-chunked", {"bits": bits, "hole": hole}), data) == zstd_chunked(data, bits, hole)


def test_zstd_chunked_equals_the_transcription_on_real_files() -> None:
    data = _real(2_000_000)
    assert chunk_lengths(make_spec("zstd-chunked"), data) == zstd_chunked(data)


# ---------------------------------------------------------------------------------------------- every chunker

SMALL = {
    "fastcdc2020": {"min": 256, "avg": 1024, "max": 4096},
    "fastcdc2016": {"min": 256, "avg": 1024, "max": 4096},
    "fixed": {"size": 1000},
    "casync": {"min": 256, "avg": 1024, "max": 4096},
    "restic": {"min": 256, "max": 8192, "avg_bits": 10},
    "borg": {"min_exp": 8, "max_exp": 12, "mask_bits": 10, "window": 63},
    "ncps": {"min": 256, "avg": 1024, "max": 4096},
    "xet": {"target": 1024},
    "zstd-chunked": {"bits": 10, "hole": 64},
}
"""Every chunker at sizes that cut a few KiB into many chunks."""


def test_every_chunker_has_small_parameters_here() -> None:
    assert set(SMALL) == set(CATALOG)


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(sorted(SMALL)),
    data=st.binary(max_size=40_000).map(lambda b: b + bytes(len(b) // 3) + b),
    pieces=st.lists(st.integers(1, 9000), min_size=1, max_size=12),
)
def test_every_chunker_cuts_a_stream_fed_in_pieces_as_the_whole(name: str, data: bytes, pieces: list[int]) -> None:
    """The reader's contract: leftovers handed back with the next bytes; cuts as in memory."""
    chunker = make_chunker(make_spec(name, SMALL[name]))
    whole = chunk_lengths(chunker.spec, data)
    assert sum(whole) == len(data)
    chunker.begin()
    lengths: list[int] = []
    carried, at = b"", 0
    for size in itertools.cycle(pieces):
        piece = data[at : at + size]
        at += len(piece)
        buffer = carried + piece
        eof = at >= len(data)
        cut = chunker.split(memoryview(buffer), eof)
        lengths += cut
        carried = buffer[sum(cut) :]
        if eof:
            break
    assert lengths == whole
    assert not carried


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_file_read_in_windows_is_cut_as_in_memory(name: str, tmp_path: Path) -> None:
    """Through the ingest reader (READ_BUFFER windows, pread): a 20 MB file with long zero runs."""
    from storelab.ingest.blobs import BlobHasher

    data = _random(9_000_000, 3) + bytes(2_000_000) + _edited(_random(9_000_000, 3), 4)
    path = tmp_path / "big"
    path.write_bytes(data)
    spec = make_spec(name, SMALL[name])
    info = BlobHasher(make_chunker(spec), 0).hash_file(str(path))
    assert list(info.chunk_sizes) == chunk_lengths(spec, data)


def test_zstd_chunked_resets_between_files() -> None:
    """The rolling sum runs across cuts but not across files: begin() forgets the last file."""
    from storelab.ingest.blobs import BlobHasher

    spec = make_spec("zstd-chunked", {"bits": 6})
    hasher = BlobHasher(make_chunker(spec), 0)
    first, second = _random(5000, 5), _random(5000, 6)
    hasher.hash_bytes(first)
    assert list(hasher.hash_bytes(second).chunk_sizes) == chunk_lengths(spec, second)


def test_every_chunker_and_preset_round_trips_its_id() -> None:
    for name in [*CATALOG, *PRESETS]:
        spec = make_spec(name)
        assert spec_from_id(spec.id) == spec
        assert make_chunker(spec).spec == spec


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("borg", {"min": "64KiB"}, "borg has no parameter 'min'; its parameters: min_exp, max_exp, mask_bits, window, seed"),
        ("borg", {"window": "4096"}, "window must be odd"),
        ("borg", {"min_exp": "22", "max_exp": "20"}, "6 ≤ min_exp ≤ mask_bits ≤ max_exp ≤ 23"),
        ("restic", {"pol": "0x3"}, "degree between 9 and 53"),
        ("restic", {"min": "16"}, "64 B ≤ min ≤ max"),
        ("casync", {"min": "128KiB"}, "1 ≤ min ≤ avg ≤ max ≤ 128 MiB"),
        ("ncps", {"avg": "16KiB"}, "0 < min < avg < max"),
        ("ncps", {"nc": "9"}, "nc is 0–8"),
        ("xet", {"target": "48KiB"}, "power of two"),
        ("zstd-chunked", {"bits": "40"}, "between 1 and 31"),
        ("casync", {"avg": "lots"}, "chunker parameter avg: not a byte size"),
        ("restic", {"avg_bits": "x"}, "avg_bits: not a number"),
    ],
)
def test_bad_parameters_are_one_clear_error(name: str, params: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_chunker(make_spec(name, params))


def test_scaled_specs_keep_each_tools_ratios() -> None:
    assert scaled_spec("casync", 256 * 1024).id == "casync/min=64KiB,avg=256KiB,max=1MiB"
    assert scaled_spec("restic", 1 << 20).id == "restic/min=512KiB,max=8MiB,avg_bits=20,pol=0x3da3358b4dc173"
    assert scaled_spec("borg", 1 << 21).id == make_spec("borg").id
    assert scaled_spec("fastcdc2020", 64 * 1024).id == "fastcdc2020/min=32KiB,avg=64KiB,max=128KiB,nc=1"
    with pytest.raises(ConfigError, match="power of two"):
        scaled_spec("borg", 100_000)


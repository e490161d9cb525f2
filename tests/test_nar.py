"""NAR: Nix's own archives and rules; a tree and its NAR are one thing to storelab."""

from __future__ import annotations

import bz2
import hashlib
import io
import lzma
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from storelab.cli import main
from storelab.ingest import IngestOptions, ingest_dir
from storelab.ingest.nar_source import ingest_nar
from storelab.nar import (
    NarError,
    NarFile,
    dump_path,
    nar_bytes_of_file,
    nar_string,
    nix_base32,
    read_nar,
)
from storelab.tables import Dataset
from storelab.testing.nars import mutate
from storelab.testing.trees import SMALL_CHUNKS, trees
from tests.fixtures import NAR_FILES, NAR_VECTORS, VECTORS, load_json, make_complicated_tree, oracle_trees
from tests.helpers import build_tree, snapshot_rows

NARS = load_json(NAR_VECTORS)
S = nar_string


def nar_bytes(name: str) -> bytes:
    return (VECTORS / "nar" / name).read_bytes()


@pytest.mark.parametrize("name", NAR_FILES)
def test_vector_nars_ingest_to_their_castore_root(name: str, tmp_path: Path) -> None:
    expected = NARS[name]
    data = nar_bytes(name)
    assert len(data) == expected["size"]
    assert hashlib.sha256(data).hexdigest() == expected["sha256"]
    result = ingest_nar(VECTORS / "nar" / name, tmp_path / "ds", options=IngestOptions(zstd_level=0))
    root = expected["root"]
    if root["type"] == "symlink":
        assert result.root.target == root["target"].encode()
    else:
        assert result.root.digest.hex() == root["digest"]
        assert result.root.size == root["size"]
        if root["type"] == "file":
            assert result.root.executable == root["executable"]
    [snap] = snapshot_rows(tmp_path / "ds", "snapshots")
    assert snap["source_kind"] == "nar"
    assert snap["nar_size"] == expected["size"]
    assert snap["nar_sha256"].hex() == expected["sha256"]
    assert snap["nar_hash"] == "sha256:" + nix_base32(bytes.fromhex(expected["sha256"]))


def test_writer_reproduces_the_vector_nars(tmp_path: Path) -> None:
    tree = make_complicated_tree(tmp_path / "complicated")
    assert b"".join(dump_path(tree)) == nar_bytes("complicated.nar")
    assert nar_bytes_of_file(b"Hello World!") == nar_bytes("helloworld.nar")
    assert nar_bytes_of_file(b"\x01") == nar_bytes("onebyteregular.nar")
    (tmp_path / "empty").mkdir()
    assert b"".join(dump_path(tmp_path / "empty")) == nar_bytes("emptydirectory.nar")
    os.symlink("/nix/store/somewhereelse", tmp_path / "link")
    assert b"".join(dump_path(tmp_path / "link")) == nar_bytes("symlink.nar")


def _entry(name: bytes, node: bytes) -> bytes:
    return S(b"entry") + S(b"(") + S(b"name") + S(name) + S(b"node") + node + S(b")")


def _file(contents: bytes = b"x") -> bytes:
    return S(b"(") + S(b"type") + S(b"regular") + S(b"contents") + S(contents) + S(b")")


def _dir(*entries: bytes) -> bytes:
    return S(b"nix-archive-1") + S(b"(") + S(b"type") + S(b"directory") + b"".join(entries) + S(b")")


NEGATIVE = {
    "unsorted entries (b before a)": (_dir(_entry(b"b", _file()), _entry(b"a", _file())), "not sorted"),
    "duplicate entry name": (_dir(_entry(b"a", _file()), _entry(b"a", _file())), "not sorted"),
    "entry name b''": (_dir(_entry(b"", _file())), "invalid name b''"),
    "entry name b'.'": (_dir(_entry(b".", _file())), "invalid name b'.'"),
    "entry name b'..'": (_dir(_entry(b"..", _file())), "invalid name b'..'"),
    "entry name b'a/b'": (_dir(_entry(b"a/b", _file())), "invalid name b'a/b'"),
    "entry name b'a\\x00b'": (_dir(_entry(b"a\x00b", _file())), "invalid name b'a\\x00b'"),
    "non-zero padding": (nar_bytes("helloworld.nar")[:-16 - 4] + b"\x01\x00\x00\x00" + nar_bytes("helloworld.nar")[-16:], "non-zero padding"),
    "executable marker with non-empty value": (
        S(b"nix-archive-1") + S(b"(") + S(b"type") + S(b"regular") + S(b"executable") + S(b"yes") + S(b"contents") + S(b"x") + S(b")"),
        "executable marker has non-empty value",
    ),
    "name longer than 255 (nix-compat only; Nix C++ has no such limit)": (_dir(_entry(b"n" * 256, _file())), "too long"),
}


def test_every_vector_negative_case_is_covered() -> None:
    assert set(NARS["negative_cases"]) == set(NEGATIVE)


@pytest.mark.parametrize("case", sorted(NEGATIVE))
def test_negative_cases_are_refused_with_the_offset(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, needle = NEGATIVE[case]
    path = tmp_path / "bad.nar"
    path.write_bytes(data)
    build_tree(tmp_path / "first", {b"keep": b"committed before"})
    ingest_dir(tmp_path / "first", tmp_path / "ds", "first", IngestOptions(workers=0))
    code = main(["ingest-nar", str(path), "-o", str(tmp_path / "ds")])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(path) in err and "byte " in err and needle in err, err
    assert [r["label"] for r in snapshot_rows(tmp_path / "ds", "snapshots")] == ["first"]
    assert not (tmp_path / "ds" / "_staging").exists()


@pytest.mark.parametrize(
    "data, needle",
    [
        (b"", "truncated"),
        (S(b"nix-archive-2") + _file(), "not a NAR (it does not start with the nix-archive-1 magic)"),
        (b"# storelab\n\nStudy deduplication in content-addressed stores\n", "not a NAR (it does not start with the nix-archive-1 magic)"),
        (S(b"nix-archive-1")[:11], "truncated"),
        (S(b"nix-archive-1") + S(b"(") + S(b"type") + S(b"fifo") + S(b")"), "unknown node type"),
        (S(b"nix-archive-1") + S(b"(") + S(b"type") + S(b"symlink") + S(b"target") + S(b"") + S(b")"), "invalid symlink target"),
    ],
)
def test_other_malformed_nars(data: bytes, needle: str) -> None:
    with pytest.raises(NarError, match=re.escape(needle)):
        for _ in read_nar(io.BytesIO(data)):
            pass


def test_every_truncation_is_refused() -> None:
    data = nar_bytes("complicated.nar")
    for cut in range(len(data)):
        with pytest.raises(NarError):
            for event in read_nar(io.BytesIO(data[:cut])):
                for _ in getattr(event, "pieces", ()):
                    pass


@pytest.mark.slow
@given(spec=trees)
def test_tree_and_its_nar_are_one_thing(tmp_path_factory: pytest.TempPathFactory, spec: dict) -> None:
    base = tmp_path_factory.mktemp("n")
    build_tree(base / "tree", spec)
    nar = b"".join(dump_path(base / "tree"))
    (base / "tree.nar").write_bytes(nar)
    options = IngestOptions(SMALL_CHUNKS, zstd_level=1, workers=0)
    from_dir = ingest_dir(base / "tree", base / "ds", "dir", options)
    from_nar = ingest_nar(base / "tree.nar", base / "ds", "nar", options)
    assert from_nar.root == from_dir.root
    for table in ("nodes", "blobs", "chunks", "directories"):
        rows = {}
        for sid in (from_dir.snapshot_id, from_nar.snapshot_id):
            rows[sid] = sorted(str(sorted((k, v) for k, v in r.items() if k != "snapshot_id")) for r in snapshot_rows(base / "ds", table, sid))
        assert rows[from_dir.snapshot_id] == rows[from_nar.snapshot_id], table


@given(seed=st.integers(0, 2**32), edits=st.integers(1, 4))
def test_mutated_nars_are_valid_or_nar_errors(seed: int, edits: int) -> None:
    rng = random.Random(seed)
    data = mutate(rng, nar_bytes(rng.choice(NAR_FILES)), edits)
    try:
        for event in read_nar(io.BytesIO(data)):
            for _ in getattr(event, "pieces", ()):
                pass
    except NarError:
        pass


@pytest.mark.parametrize("case", sorted(case for case in NEGATIVE if "name" in case or "entr" in case))
@pytest.mark.parametrize("step", [None, 1, 5, 13])
def test_a_bad_entry_name_is_refused_at_its_own_byte(case: str, step: int | None) -> None:
    """Taken in one step or token by token, an entry's name is checked where it stands: the
    error names the byte where the name's string starts."""
    data, needle = NEGATIVE[case]
    at = data.rindex(S(b"name")) + len(S(b"name"))
    stream = io.BytesIO(data) if step is None else io.BufferedReader(_Trickle(data, step), buffer_size=16)
    assert _events(stream)[-1] == f"n: byte {at}: " + _events(io.BytesIO(data))[-1].split(": ", 2)[2]
    assert needle in _events(io.BytesIO(data))[-1]


class _Trickle(io.RawIOBase):
    """A raw stream that hands out at most ``step`` bytes a read."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.at, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        n = min(len(buffer), self.step, len(self.data) - self.at)
        buffer[:n] = self.data[self.at : self.at + n]
        self.at += n
        return n


def _events(stream) -> list:  # type: ignore[no-untyped-def]
    """Every event of the NAR (a file's contents joined), then its error, if any."""
    seen: list = []
    try:
        for event in read_nar(stream, "n"):
            if isinstance(event, NarFile):
                seen.append((event.path, event.size, event.executable, b"".join(event.pieces)))
            else:
                seen.append(event)
    except NarError as err:
        seen.append(str(err))
    return seen


@given(seed=st.integers(0, 2**32), edits=st.integers(0, 3), step=st.integers(1, 40), buffer=st.sampled_from([8, 64, 1000]))
def test_the_events_do_not_depend_on_how_the_bytes_arrive(seed: int, edits: int, step: int, buffer: int) -> None:
    """The reader takes an entry's head in one step when its buffer holds all of it, and token
    by token otherwise: read whole, or trickled a few bytes at a time through a small buffer
    (entries straddling every boundary), a NAR — valid or mutated — gives the same events and
    the same error at the same byte."""
    rng = random.Random(seed)
    data = bytearray(nar_bytes(rng.choice(NAR_FILES)))
    for _ in range(edits):
        pos = rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
    whole = _events(io.BytesIO(bytes(data)))
    assert _events(io.BufferedReader(_Trickle(bytes(data), step), buffer_size=buffer)) == whole


@pytest.mark.parametrize("compress, suffix", [(lzma.compress, ".nar.xz"), (bz2.compress, ".nar.bz2"), (zstandard.compress, ".nar.zst")])
def test_compressed_nars(tmp_path: Path, compress, suffix: str) -> None:
    path = tmp_path / f"complicated{suffix}"
    path.write_bytes(compress(nar_bytes("complicated.nar")))
    result = ingest_nar(path, tmp_path / "ds", options=IngestOptions(zstd_level=0))
    assert result.root.digest.hex() == NARS["complicated.nar"]["root"]["digest"]
    [snap] = snapshot_rows(tmp_path / "ds", "snapshots")
    assert snap["nar_sha256"].hex() == NARS["complicated.nar"]["sha256"]  # of the NAR, not the file


def test_corrupt_compressed_nar(tmp_path: Path) -> None:
    data = bytearray(lzma.compress(nar_bytes("complicated.nar")))
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.nar.xz").write_bytes(bytes(data))
    with pytest.raises(Exception) as info:
        ingest_nar(tmp_path / "bad.nar.xz", tmp_path / "ds", options=IngestOptions(zstd_level=0))
    assert "bad.nar.xz" in str(info.value)
    assert not Dataset.open(tmp_path / "ds").snapshot_ids()


def test_stdin_and_label(tmp_path: Path) -> None:
    done = subprocess.run(
        [os.sys.executable, "-m", "storelab.cli", "ingest-nar", "-", "-o", str(tmp_path / "ds"), "-l", "hello", "--json"],
        input=nar_bytes("helloworld.nar"),
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    [snap] = snapshot_rows(tmp_path / "ds", "snapshots")
    assert (snap["label"], snap["source"], snap["nar_size"]) == ("hello", "stdin", 128)


def test_nix_base32_matches_nix_hash() -> None:
    if shutil.which("nix-hash") is None:
        pytest.skip("nix-hash (Debian's nix-bin) is not installed; the doctest still checks one value")
    digest = hashlib.sha256(b"storelab").digest()
    done = subprocess.run(["nix-hash", "--type", "sha256", "--to-base32", digest.hex()], capture_output=True, text=True, check=True)
    assert nix_base32(digest) == done.stdout.strip()


def test_writer_equals_nix_store_dump(tmp_path: Path) -> None:
    if shutil.which("nix-store") is None:
        pytest.skip("nix-store (Debian's nix-bin) is not installed; `make test` installs it where apt can")
    for tree in oracle_trees(tmp_path):
        nix = subprocess.run(["nix-store", "--dump", str(tree)], capture_output=True, check=True).stdout
        assert b"".join(dump_path(tree)) == nix, tree
        (tmp_path / "oracle.nar").write_bytes(nix)
        via_nar = ingest_nar(tmp_path / "oracle.nar", tmp_path / "ds", options=IngestOptions(zstd_level=0))
        via_dir = ingest_dir(tree, tmp_path / "ds", options=IngestOptions(zstd_level=0, workers=0))
        assert via_nar.root == via_dir.root, tree


def test_an_unexpected_shorter_token_is_named_not_mistaken_for_padding() -> None:
    data = S(b"nix-archive-1") + S(b"(") + S(b"type") + S(b"regular") + S(b"(") + S(b"xxxxxxxx")
    with pytest.raises(NarError, match=r"expected 'contents', found b'\('"):
        for _ in read_nar(io.BytesIO(data)):
            pass


def test_large_files_hashed_on_the_second_thread_give_the_same_rows(tmp_path: Path) -> None:
    rng = random.Random(8)
    spec = {b"a": rng.randbytes(3 << 20), b"b": b"small", b"c": rng.randbytes(1 << 20), b"d": {b"e": rng.randbytes(2 << 20), b"f": b"x"}}
    spec[b"g"] = spec[b"a"]
    build_tree(tmp_path / "tree", spec)
    (tmp_path / "t.nar").write_bytes(b"".join(dump_path(tmp_path / "tree")))
    options = IngestOptions(zstd_level=3, workers=0)
    from_dir = ingest_dir(tmp_path / "tree", tmp_path / "ds", "dir", options)
    from_nar = ingest_nar(tmp_path / "t.nar", tmp_path / "ds", "nar", options)
    assert from_nar.root == from_dir.root
    for table in ("nodes", "blobs", "chunks"):
        rows = [
            sorted(str(sorted((k, v) for k, v in r.items() if k != "snapshot_id")) for r in snapshot_rows(tmp_path / "ds", table, sid))
            for sid in (from_dir.snapshot_id, from_nar.snapshot_id)
        ]
        assert rows[0] == rows[1], table


@pytest.mark.timeout(60)
def test_nar_cut_inside_a_large_file_fails_cleanly(tmp_path: Path) -> None:
    build_tree(tmp_path / "tree", {b"big": random.Random(3).randbytes(5 << 20), b"z": b"after"})
    data = b"".join(dump_path(tmp_path / "tree"))
    (tmp_path / "cut.nar").write_bytes(data[: 3 << 20])
    with pytest.raises(NarError, match="truncated"):
        ingest_nar(tmp_path / "cut.nar", tmp_path / "ds", options=IngestOptions(zstd_level=0))
    assert Dataset.open(tmp_path / "ds").snapshot_ids() == []


@pytest.mark.slow
def test_nar_with_a_large_file_is_ingested_in_bounded_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tracemalloc

    import storelab.ingest.blobs as blobs

    monkeypatch.setattr(blobs, "READ_BUFFER", 1 << 20)
    size = 96 << 20
    build_tree(tmp_path / "tree", {b"huge": random.Random(6).randbytes(size), b"small": b"s"})
    with open(tmp_path / "t.nar", "wb") as out:
        for piece in dump_path(tmp_path / "tree"):
            out.write(piece)
    shutil.rmtree(tmp_path / "tree")
    tracemalloc.start()
    try:
        result = ingest_nar(tmp_path / "t.nar", tmp_path / "ds", options=IngestOptions(zstd_level=0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.file_bytes == size + 1
    # the read buffer, the hashing thread's queue and the chunker's window: far below the file
    assert peak < 32 << 20, f"peak Python allocation {peak} bytes for a NAR holding a 96 MiB file"


VERDICTS = VECTORS / "nar-verdicts"


@pytest.mark.parametrize(
    "name, accepted, needle",
    [
        ("depth63-ok.nar", True, ""),
        ("depth64.nar", False, "NAR directory nesting exceeds maximum depth of 64"),
        ("trailing-zero.nar", True, ""),
    ],
)
def test_nix_2_34_verdicts(name: str, accepted: bool, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """storelab accepts exactly what Nix 2.34.8's `nix-store --restore` accepts (vectors' README)."""
    code = main(["ingest-nar", str(VERDICTS / name), "-o", str(tmp_path / "ds"), "-q"])
    err = capsys.readouterr().err
    assert (code == 0) == accepted, err
    if not accepted:
        assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow
@settings(max_examples=25)
@given(tail=st.binary(max_size=64) | st.builds(lambda n: b"\0" * n, st.integers(1, 3 << 20)), compress=st.booleans())
def test_bytes_after_the_nar_are_counted_not_hashed(tail: bytes, compress: bool, tmp_path_factory: pytest.TempPathFactory) -> None:
    """As Nix does, reading stops at the NAR's end: its size, sha256 and compressed sizes cover
    the NAR alone, however many bytes follow (even more than the reader's 1 MiB buffer)."""
    import hashlib
    import lzma

    import zstandard

    from storelab.ingest.nar_source import ingest_nar
    from storelab.tables import Dataset

    folder = tmp_path_factory.mktemp("tail")
    nar = nar_bytes("complicated.nar")
    data = nar + tail
    path = folder / ("x.nar.xz" if compress else "x.nar")
    path.write_bytes(lzma.compress(data) if compress else data)
    warnings: list[str] = []
    ingest_nar(path, folder / "ds", options=IngestOptions(workers=0, nar_compression=("zstd",), warn=warnings.append))
    row = Dataset.open(folder / "ds").snapshots().to_pylist()[0]
    stream = zstandard.ZstdCompressor(level=3).compressobj()
    assert (row["nar_size"], row["nar_sha256"], row["nar_trailing_bytes"]) == (len(nar), hashlib.sha256(nar).digest(), len(tail))
    assert row["nar_zstd_size"] == len(stream.compress(nar) + stream.flush())
    assert bool(warnings) == bool(tail) and all("after the end of the NAR" in w for w in warnings)


def test_dump_path_refuses_what_nix_would_not_read(tmp_path: Path) -> None:
    """63 directories (the root and 62 below) dump and read back; 64 are refused by the writer
    as Nix 2.34's reader refuses them (the vectors' depth63-ok.nar and depth64.nar)."""
    ok = tmp_path / "ok"
    deep = ok / "/".join(["d"] * 62)
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"x")
    nar = b"".join(dump_path(ok))
    assert [type(e).__name__ for e in read_nar(io.BytesIO(nar))][-2:] == ["NarDirectoryEnd", "NarEnd"]
    (deep / "d").mkdir()
    with pytest.raises(NarError, match="maximum depth of 64"):
        b"".join(dump_path(ok))


@pytest.mark.parametrize("target_kind", ["directory", "file", "dangling"])
def test_a_root_that_is_a_symlink_is_a_symlink_node(target_kind: str, tmp_path: Path) -> None:
    """`ingest-dir link` and `ingest-nar` of the link's dump give the same symlink root, as
    `nix-store --dump link` writes it; `--follow-root` ingests the target instead."""
    build_tree(tmp_path / "dir", {b"f": b"hello", b"sub": {b"g": b"x" * 3000}})
    target = {"directory": "dir", "file": "dir/f", "dangling": "nowhere"}[target_kind]
    os.symlink(target, tmp_path / "link")
    tree = ingest_dir(tmp_path / "link", tmp_path / "ds", "tree", IngestOptions(workers=0))
    dumped = b"".join(dump_path(tmp_path / "link"))
    (tmp_path / "link.nar").write_bytes(dumped)
    nar = ingest_nar(tmp_path / "link.nar", tmp_path / "ds", "nar", IngestOptions(workers=0))
    assert tree.root == nar.root and tree.root.target == target.encode()
    rows = {r["label"]: r for r in snapshot_rows(tmp_path / "ds", "snapshots")}
    assert rows["tree"]["nar_size"] == rows["nar"]["nar_size"] == len(dumped)
    if shutil.which("nix-store"):
        real = subprocess.run(["nix-store", "--dump", str(tmp_path / "link")], capture_output=True, check=True).stdout
        assert real == dumped
    if target_kind != "dangling":
        followed = ingest_dir(tmp_path / "link", tmp_path / "ds", "followed", IngestOptions(workers=2, follow_root=True))
        direct = ingest_dir(tmp_path / target, tmp_path / "ds", "direct", IngestOptions(workers=0))
        assert followed.root == direct.root and followed.files == direct.files

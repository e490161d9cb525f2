"""Store models: each model's stored bytes, objects and GETs on a small corpus worked out here,
from the NARs' bytes and the formats' rules, independently of the dataset's queries."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from storelab.castore import Directory, FileNode
from storelab.chunking import chunk_lengths, spec_from_id
from storelab.cli import main
from storelab.errors import ConfigError
from storelab.ingest import IngestOptions
from storelab.ingest.nar_source import ingest_nars
from storelab.models import MODELS, compare_models, model_chunkings, pareto_front
from storelab.nar import dump_path
from storelab.nar.compressed import CompressedNarSizes
from storelab.nar.narinfo import render_narinfo
from tests.helpers import build_tree

A = random.Random(1).randbytes(100_000)
B = b"ten bytes!"
C = random.Random(2).randbytes(50_000)
TREES = [{b"a": A, b"b": B}, {b"a": A, b"c": C}, {b"b": B}]
"""Three snapshots: the third's NAR is under attic's 64 KiB threshold, stored whole."""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:
    base = tmp_path_factory.mktemp("models")
    nars = []
    for number, tree in enumerate(TREES):
        build_tree(base / f"t{number}", tree)
        nar = b"".join(dump_path(base / f"t{number}"))
        (base / f"t{number}.nar").write_bytes(nar)
        nars.append(nar)
    files, streams, codecs = model_chunkings(list(MODELS))
    options = IngestOptions(chunker=files[0], also=tuple(files[1:]), streams=tuple(streams), nar_compression=codecs, zstd_level=0)
    ingest_nars([(f"t{n}.nar", base / f"t{n}.nar") for n in range(3)], base / "ds", options)
    return base / "ds", nars


def _distinct_chunks(chunker_id: str, nars: list[bytes]) -> tuple[dict[bytes, int], list[int]]:
    spec = spec_from_id(chunker_id)
    distinct: dict[bytes, int] = {}
    counts = []
    for nar in nars:
        offset = 0
        lengths = chunk_lengths(spec, nar)
        counts.append(len(lengths))
        for length in lengths:
            distinct.setdefault(nar[offset : offset + length], length)
            offset += length
    return distinct, counts


def _compressed(nar: bytes, codec: str) -> int:
    sizes = CompressedNarSizes([codec])
    sizes.update(nar)
    return sizes.finish()[f"nar_{codec}_size"]


def _narinfo(label: str, nar: bytes, compression: str, file_size: int) -> int:
    return len(render_narinfo(f"/nix/store/{'0' * 32}-{label}", [], compression, file_size, len(nar)).encode())


def test_every_model_on_a_worked_corpus(corpus: tuple[Path, list[bytes]]) -> None:
    dataset, nars = corpus
    frame = compare_models(dataset).set_index("model")
    assert frame["missing"].isna().all()
    logical = sum(map(len, nars))
    assert (frame["logical_bytes"] == logical).all()
    files = len(A) + len(B) + len(C)

    # snix: each file one chunk (all under fastcdc2020's 128 KiB minimum), no index objects,
    # one directory closure per distinct root (each tree is one directory)
    closures = [len(Directory.from_nodes([FileNode(name, b"\0" * 32, len(data)) for name, data in tree.items()]).encoded) for tree in TREES]
    snix = frame.loc["snix"]
    assert (snix.stored_bytes, snix.objects, snix.restore_gets) == (files + sum(closures), 3 + 3, 3 + 3 + 2)

    # restic: per chunk 32 (encryption) + 41 (pack header entry); a pack per backup that adds bytes (36 bytes each)
    restic = frame.loc["restic"]
    assert (restic.stored_bytes, restic.objects, restic.containers, restic.restore_gets) == (files + 3 * 73 + 2 * 36, 2, 2, 2 + 2 + 1)
    borg = frame.loc["borg"]
    assert (borg.stored_bytes, borg.objects, borg.restore_gets) == (files + 3 * 44 + 2 * 8, 2, 5)

    # attic: NARs of 64 KiB and more cut as streams, the small one whole (zstd)
    assert len(nars[2]) < 64 * 1024 <= min(len(nars[0]), len(nars[1]))
    distinct, _ = _distinct_chunks(MODELS["attic"].chunker_id or "", nars[:2])
    attic = frame.loc["attic"]
    assert (attic.stored_bytes, attic.objects) == (sum(distinct.values()) + _compressed(nars[2], "zstd"), len(distinct) + 1)
    assert attic.unique_bytes == sum(distinct.values()) + len(nars[2])

    # nix-casync: casync chunks of every NAR, a .caibx per NAR (104 + 40 per chunk) and a .narinfo
    distinct, counts = _distinct_chunks(MODELS["nix-casync"].chunker_id or "", nars)
    indexes = sum(104 + 40 * n for n in counts)
    narinfos = sum(_narinfo(f"t{n}.nar", nar, "zstd", len(nar)) for n, nar in enumerate(nars))
    casync = frame.loc["nix-casync"]
    assert (casync.stored_bytes, casync.objects) == (sum(distinct.values()) + indexes + narinfos, len(distinct) + 6)
    assert casync.restore_gets == sum(counts) + 6  # no chunk repeats within one of these NARs

    distinct, counts = _distinct_chunks(MODELS["ncps"].chunker_id or "", nars)
    assert (frame.loc["ncps", "stored_bytes"], frame.loc["ncps", "objects"]) == (sum(distinct.values()), len(distinct))

    # a plain binary cache: every distinct NAR compressed whole, and its narinfo
    for model, codec in (("nix-cache-xz", "xz"), ("nix-cache-zstd", "zstd")):
        sizes = [_compressed(nar, codec) for nar in nars]
        narinfos = sum(_narinfo(f"t{n}.nar", nar, codec, size) for n, (nar, size) in enumerate(zip(nars, sizes)))
        row = frame.loc[model]
        assert (row.stored_bytes, row.objects, row.restore_gets) == (sum(sizes) + narinfos, 6, 6)
        assert row.dedup_ratio == 1.0

    # the figures that follow from the rest
    assert snix.savings == pytest.approx(1 - snix.stored_bytes / logical)
    assert snix.adjusted_savings == pytest.approx(1 - (files + 64 * 5) / logical)
    assert snix.first_bytes == len(A) + len(B) + closures[0]
    assert snix.later_added_median == pytest.approx((len(C) + closures[1] + closures[2]) / 2)
    assert frame["pareto"].sum() >= 1


def test_pareto_front_marks_only_undominated_models(corpus: tuple[Path, list[bytes]]) -> None:
    frame = compare_models(corpus[0])
    for row in frame.itertuples():
        dominated = any(
            o.objects <= row.objects and o.stored_bytes <= row.stored_bytes and (o.objects < row.objects or o.stored_bytes < row.stored_bytes)
            for o in frame.itertuples()
        )
        assert row.pareto == (not dominated), row.model
    assert pareto_front(frame).equals(frame["pareto"])


def test_compare_from_the_command_line(corpus: tuple[Path, list[bytes]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = corpus[0]
    args = ["compare", str(dataset), "--parquet", str(tmp_path / "m.parquet"), "--plot", str(tmp_path / "m.png")]
    assert main(args) == 0
    text = capsys.readouterr().out
    for name in MODELS:
        assert name in text
    assert (tmp_path / "m.png").stat().st_size > 10_000
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "m.parquet").num_rows == len(MODELS)
    assert main(["compare", str(dataset), "--models", "snix,restic", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["snix", "restic"] and not math.isnan(rows[0]["stored_bytes"])
    assert main(["compare", str(dataset), "--models", "zfs"]) == 2
    assert "unknown store model 'zfs'" in capsys.readouterr().err


def test_a_model_without_its_chunkings_says_what_to_ingest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_tree(tmp_path / "t", {b"f": b"data"})
    assert main(["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "-q", "-l", "plain"]) == 0
    frame = compare_models(tmp_path / "ds").set_index("model")
    assert not isinstance(frame.loc["snix", "missing"], str)
    assert "--models attic" in frame.loc["attic", "missing"]
    assert "--nar-compression xz" in frame.loc["nix-cache-xz", "missing"]
    assert main(["compare", str(tmp_path / "ds"), "--models", "attic"]) == 0
    assert "not priced — attic: needs the chunking" in capsys.readouterr().out
    assert main(["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "-q", "-l", "all", "--models", "all"]) == 0
    assert compare_models(tmp_path / "ds")["missing"].notna().sum() > 0  # the first snapshot lacks them
    assert compare_models(tmp_path / "ds", snapshots=["all"])["missing"].isna().all()


def test_unknown_models_are_config_errors(corpus: tuple[Path, list[bytes]]) -> None:
    with pytest.raises(ConfigError, match="unknown store model 'zfs'"):
        compare_models(corpus[0], ["zfs"])


def test_hestia_zeroes_references_before_chunking(tmp_path: Path) -> None:
    """Two store paths whose one file differs only in a store path's hash: snix stores the
    file twice, hestia (references zeroed, then fastcdc2020 64/256/1024 KiB) once; its blob
    rows keep the file's own digest, so the files still count as two logical occurrences."""
    import blake3

    from storelab.analysis.db import connect as connect_db

    body = random.Random(3).randbytes(150_000)
    hashes = ["0c0njx0wxbvdbcfacnha7d9nsc9wwmcw", "1c0njx0wxbvdbcfacnha7d9nsc9wwmcw"]
    contents = [body + f"#!/nix/store/{h}-bash-5.2/bin/sh\n".encode() for h in hashes]
    for number, data in enumerate(contents):
        build_tree(tmp_path / f"t{number}", {b"script": data})
        (tmp_path / f"t{number}.nar").write_bytes(b"".join(dump_path(tmp_path / f"t{number}")))
    files, streams, codecs = model_chunkings(["snix", "hestia"])
    options = IngestOptions(chunker=files[0], also=tuple(files[1:]), zstd_level=0)
    ingest_nars([(f"t{n}.nar", tmp_path / f"t{n}.nar") for n in range(2)], tmp_path / "ds", options)
    frame = compare_models(tmp_path / "ds", ["snix", "hestia"]).set_index("model")
    assert frame.loc["snix", "unique_bytes"] == 2 * len(contents[0])
    assert frame.loc["hestia", "unique_bytes"] == len(contents[0])
    assert frame.loc["hestia", "dedup_ratio"] == pytest.approx(frame.loc["snix", "logical_bytes"] / len(contents[0]))
    with connect_db(tmp_path / "ds") as con:
        digests = {row[0] for row in con.execute("SELECT digest FROM blobs WHERE chunker_id LIKE '%@refs-zeroed'").fetchall()}
    assert digests == {blake3.blake3(data).digest() for data in contents}

"""The NAR reader's C road (storelab/nar/_scan.c, ``read_nar(digest_files_upto=…)``) is only a
faster road: a NAR — valid or not, read whole or a few bytes at a time — gives the same events
and the same error at the same byte with runs as without, and ingest-nar the same rows."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import storelab.nar.reader as reader
from storelab.ingest import IngestOptions
from storelab.ingest.nar_source import ingest_nar
from storelab.nar import NarRun, read_nar
from storelab.nar.writer import nar_string as S
from storelab.testing.nars import digested_events, mutate, random_nar
from tests.fixtures import NAR_FILES, VECTORS
from tests.helpers import snapshot_rows
from tests.test_nar import _Trickle

SEEDS = [p.read_bytes() for p in sorted((VECTORS / "nar").glob("*.nar")) + sorted((VECTORS / "nar-verdicts").glob("*.nar"))]


def test_the_compiled_scanner_is_built() -> None:
    """`make test` installs storelab with its extensions: a suite that silently ran only the
    Python road would test less than it says."""
    assert reader._scan is not None


def test_a_valid_nar_is_read_mostly_in_runs() -> None:
    nar = random_nar(random.Random(5), depth=4)
    events, error, runs = digested_events(io.BytesIO(nar), 1 << 20)
    assert error is None and runs >= 1
    singles = [e for e in read_nar(io.BytesIO(nar), digest_files_upto=1 << 20) if not isinstance(e, NarRun)]
    assert len(singles) < len(events) / 2  # the root's start, the end, the odd straddler


@settings(max_examples=300)
@given(
    seed=st.integers(0, 2**32),
    edits=st.integers(0, 4),
    limit=st.sampled_from([0, 8, 40, 1 << 20]),
    buffer=st.sampled_from([None, 8, 64, 300, 1000]),
    step=st.integers(1, 64),
)
def test_runs_read_the_same_events_and_errors(seed: int, edits: int, limit: int, buffer: int | None, step: int) -> None:
    rng = random.Random(seed)
    source = rng.choice([*SEEDS, random_nar(rng, largest=rng.choice([40, 300])), random_nar(rng, deep_chain=rng.choice([62, 63, 64]))])
    data = mutate(rng, source, edits) if edits else source
    stream = io.BytesIO(data) if buffer is None else io.BufferedReader(_Trickle(data, step), buffer_size=buffer)
    assert digested_events(stream, limit)[:2] == digested_events(io.BytesIO(data))[:2]


@pytest.mark.parametrize("depth, accepted", [(63, True), (64, False)])
def test_the_nesting_limit_holds_in_runs(depth: int, accepted: bool) -> None:
    """Nix refuses a directory at depth 64 (the root at 1); a run stops before opening one, and
    the Python road names it."""
    nar = random_nar(random.Random(0), depth=1, deep_chain=depth - 1)
    events, error, runs = digested_events(io.BytesIO(nar), 1 << 20)
    assert runs >= 1
    assert (error is None) == accepted
    if not accepted:
        assert error is not None and "nesting exceeds maximum depth of 64" in error


def _string(data: bytes, padding: bytes | None = None) -> bytes:
    """A NAR string, with the given padding bytes instead of zeros."""
    pad = (-len(data)) % 8
    return len(data).to_bytes(8, "little") + data + (bytes(pad) if padding is None else padding[:pad])


def _entry(name: bytes, node: bytes, name_padding: bytes | None = None) -> bytes:
    return S(b"entry") + S(b"(") + S(b"name") + _string(name, name_padding) + S(b"node") + node + S(b")")


def _file(contents: bytes, padding: bytes | None = None) -> bytes:
    return S(b"(") + S(b"type") + S(b"regular") + S(b"contents") + _string(contents, padding) + S(b")")


def _link(target: bytes) -> bytes:
    return S(b"(") + S(b"type") + S(b"symlink") + S(b"target") + _string(target) + S(b")")


GOOD = _file(b"hi")
MISTAKES = {  # an entry, each wrong in its own way, and what the reader says
    "duplicate name": (_entry(b"a", GOOD), "not sorted"),
    "name out of order": (_entry(b"0", GOOD), "not sorted"),
    "slash in a name": (_entry(b"b/c", GOOD), "invalid name"),
    "NUL in a name": (_entry(b"b\0", GOOD), "invalid name"),
    "name '.'": (_entry(b".", GOOD), "invalid name"),
    "name '..'": (_entry(b"..", GOOD), "invalid name"),
    "empty name": (_entry(b"", GOOD), "invalid name"),
    "name too long": (_entry(b"b" * 256, GOOD), "string too long"),
    "name padding": (_entry(b"b", GOOD, name_padding=b"\0\0\1\0\0\0\0"), "non-zero padding"),
    "contents padding": (_entry(b"b", _file(b"hi", padding=b"\0\0\0\0\1\0")), "non-zero padding"),
    "empty target": (_entry(b"b", _link(b"")), "invalid symlink target"),
    "NUL in a target": (_entry(b"b", _link(b"x\0y")), "invalid symlink target"),
    "target too long": (_entry(b"b", _link(b"t" * 4096)), "symlink target too long"),
    "unknown type": (_entry(b"b", S(b"(") + S(b"type") + S(b"fifo") + S(b")")), "unknown node type"),
    "executable marker": (
        _entry(b"b", S(b"(") + S(b"type") + S(b"regular") + S(b"executable") + S(b"x") + S(b"contents") + S(b"") + S(b")")),
        "non-empty value",
    ),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_a_mistake_after_a_run_is_named_by_the_python_road(case: str) -> None:
    """The entries before it are read in C; the wrong one stops the run, and the reader names
    the mistake at its byte exactly as it does without runs. The wrong entry comes first in its
    directory (so no order check hides a missing check), after a sibling when its order is
    the mistake."""
    wrong, needle = MISTAKES[case]
    before = _entry(b"a", GOOD) if "name" in case and "order" in case or "duplicate" in case else b""
    inner = S(b"(") + S(b"type") + S(b"directory") + before + wrong + S(b")")  # first entry unless its order is the mistake
    nar = S(b"nix-archive-1") + S(b"(") + S(b"type") + S(b"directory") + _entry(b"a", GOOD) + _entry(b"d", inner) + S(b")")
    plain = digested_events(io.BytesIO(nar))
    assert plain[1] is not None and needle in plain[1], plain[1]
    events, error, runs = digested_events(io.BytesIO(nar), 1 << 20)
    assert (events, error) == plain[:2]
    assert runs == 1


@pytest.mark.parametrize("name", NAR_FILES)
def test_ingest_nar_gives_the_same_rows_with_and_without_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = IngestOptions(zstd_level=0)  # digests only: the road runs are taken on
    fast = ingest_nar(VECTORS / "nar" / name, tmp_path / "ds", "fast", options)
    monkeypatch.setattr(reader, "_scan", None)
    slow = ingest_nar(VECTORS / "nar" / name, tmp_path / "ds", "slow", options)
    assert fast.root == slow.root
    for table in ("nodes", "blobs", "chunks", "directories"):
        rows = [_rows(tmp_path / "ds", table, sid) for sid in (fast.snapshot_id, slow.snapshot_id)]
        assert rows[0] == rows[1], table


def _rows(dataset: Path, table: str, snapshot_id: str) -> list[str]:
    return sorted(str(sorted((k, v) for k, v in r.items() if k != "snapshot_id")) for r in snapshot_rows(dataset, table, snapshot_id))

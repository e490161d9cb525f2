"""The shipped sample corpus: listed, checked against its manifest, unpacked reproducibly."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from storelab.cli import main
from storelab.datasets import list_samples, unpack_sample
from storelab.errors import DatasetError, InputError
from storelab.ingest import IngestOptions, ingest_dir


def test_sample_manifest_matches_the_files() -> None:
    [manifest] = [m for m in list_samples() if m.name == "pypi-sample"]
    assert len(manifest.files) == 8
    for item in manifest.files:
        data = (manifest.folder / item.file).read_bytes()
        assert len(data) == item.size
        assert hashlib.sha256(data).hexdigest() == item.sha256


def test_unpack_then_ingest_gives_stable_digests(tmp_path: Path) -> None:
    trees = unpack_sample("pypi-sample", tmp_path / "samples")
    labels = [label for label, _ in trees]
    assert labels[0] == "rich-13.7.0" and labels[-1] == "certifi-2024.8.30"
    result = ingest_dir(dict(trees)["rich-13.7.0"], tmp_path / "ds", None, IngestOptions(workers=0, zstd_level=0))
    assert result.label == "rich-13.7.0"
    assert result.files == 83
    # the same bytes unpacked again give the same castore root
    again = unpack_sample("pypi-sample", tmp_path / "again")
    second = ingest_dir(dict(again)["rich-13.7.0"], tmp_path / "ds2", None, IngestOptions(workers=0, zstd_level=0))
    assert second.root == result.root


def test_tampered_archive_is_refused(tmp_path: Path) -> None:
    [manifest] = [m for m in list_samples() if m.name == "pypi-sample"]
    copy = tmp_path / "datasets" / "pypi-sample"
    shutil.copytree(manifest.folder, copy)
    victim = copy / manifest.files[0].file
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(InputError, match="does not match the manifest"):
        unpack_sample("pypi-sample", tmp_path / "out", datasets_dir=tmp_path / "datasets")


def test_unknown_corpus() -> None:
    with pytest.raises(DatasetError, match="no sample corpus named 'nope'"):
        unpack_sample("nope", "/nonexistent")


def test_malformed_manifest(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text(json.dumps({"name": "bad"}))
    with pytest.raises(DatasetError, match="malformed manifest"):
        list_samples(tmp_path)


def test_cli_list_and_unpack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "list"]) == 0
    listing = capsys.readouterr().out
    assert "pypi-sample" in listing and "rich-13.7.0" in listing and "pip download --no-deps" in listing
    assert main(["datasets", "unpack", "pypi-sample", "--to", str(tmp_path)]) == 0
    paths = capsys.readouterr().out.split()
    assert len(paths) == 8 and all(Path(p).is_dir() for p in paths)

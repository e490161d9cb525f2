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


def _network_or_skip(error: Exception) -> None:
    text = str(error).lower()
    offline = ("temporary failure", "name resolution", "network is unreachable", "connection", "timed out", "could not resolve", "failed to fetch",
               "unable to fetch")  # fmt: skip
    if any(word in text for word in offline):
        pytest.skip(f"the package registry is not reachable from here: {error}")
    raise error


@pytest.mark.slow
def test_fetch_pypi_series(tmp_path: Path) -> None:
    from storelab.datasets import fetch_corpus
    from storelab.errors import InputError

    try:
        trees = fetch_corpus("pypi-series", tmp_path / "six", ["six", "1.16.0", "1.17.0"])
    except InputError as err:
        _network_or_skip(err)
    assert [t.name for t in trees] == ["six-1.16.0", "six-1.17.0"]
    assert all((t / "six.py").is_file() for t in trees)
    manifest = json.loads((tmp_path / "six" / "manifest.json").read_text())
    assert manifest["name"] == "pypi-series" and len(manifest["files"]) == 2
    for item in manifest["files"]:
        data = (tmp_path / "six" / item["file"]).read_bytes()
        assert len(data) == item["size"] and hashlib.sha256(data).hexdigest() == item["sha256"]
        assert item["fetched_with"].startswith("pip download")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None, reason="needs Debian's apt-get and dpkg-deb")
def test_fetch_debian_packages(tmp_path: Path) -> None:
    from storelab.datasets import fetch_corpus
    from storelab.errors import InputError

    try:
        trees = fetch_corpus("debian-packages", tmp_path / "deb", ["hostname"])
    except InputError as err:
        _network_or_skip(err)
    assert trees and all(t.name.startswith("hostname-") for t in trees)
    assert all((t / "bin" / "hostname").is_file() for t in trees)
    manifest = json.loads((tmp_path / "deb" / "manifest.json").read_text())
    assert manifest["name"] == "debian-packages"
    assert [f["fetched_with"].split()[0:2] for f in manifest["files"]] == [["apt-get", "download"]] * len(trees)


@pytest.mark.slow
def test_an_installed_wheel_finds_its_shipped_sample(tmp_path: Path) -> None:
    """The wheel (not a checkout) carries the corpora as data files, which an install puts
    under the environment's prefix, where storelab looks when it runs from no checkout."""
    import subprocess
    import sys

    from storelab.datasets.sample import default_datasets_dir
    from tests.fixtures import REPO

    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheel"), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if built.returncode != 0 and any(w in built.stderr.lower() for w in ("connection", "resolve", "network", "temporary failure")):
        pytest.skip(f"the wheel's build backend could not be fetched: {built.stderr.strip().splitlines()[-1]}")
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "wheel").glob("storelab-*.whl")
    # what pip does with a wheel's data files, done here by hand: `pip install --prefix` would
    # first uninstall the storelab this suite runs from
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            head, _, rest = member.partition(".data/data/")
            if rest and head.startswith("storelab-"):
                target = tmp_path / "prefix" / rest
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
    where = default_datasets_dir(prefix=tmp_path / "prefix", checkout=tmp_path / "no-checkout")
    assert [m.name for m in list_samples(where)] == [m.name for m in list_samples()]
    trees = [tree for _, tree in unpack_sample("pypi-sample", tmp_path / "samples", where)]
    assert len(trees) == 8 and all(Path(tree).is_dir() for tree in trees)

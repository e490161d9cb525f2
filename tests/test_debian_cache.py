"""The debian-cache slice: pinning from Debian's index, and the small slice fetched for real
(deb.debian.org), checked against its pins, shaped as a Nix binary cache, ingested from it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import lzma
import shutil
from pathlib import Path

import pytest
import zstandard

from storelab.analysis.db import connect
from storelab.cli import main
from storelab.datasets.debian_cache import fetch_debian_cache, load_pins, pin_slice, store_path_of, write_pins
from storelab.datasets.sample import default_datasets_dir
from storelab.errors import InputError
from storelab.nar import nix_base32
from storelab.nar.narinfo import load_narinfo
from storelab.nar.reader import read_nar

MAIN = """Package: liba
Version: 1.0-1
Architecture: amd64
Installed-Size: 100
Depends: libc6 (>= 2.36), libb | libz
Filename: pool/main/a/liba/liba_1.0-1_amd64.deb
Size: 1000
SHA256: aa

Package: libb
Version: 2.0-1
Architecture: all
Installed-Size: 50
Filename: pool/main/b/libb/libb_2.0-1_all.deb
Size: 500
SHA256: bb

Package: same
Version: 1
Architecture: amd64
Installed-Size: 10
Filename: pool/main/s/same/same_1_amd64.deb
Size: 10
SHA256: ss

Package: linux-image-6
Version: 1
Architecture: amd64
Installed-Size: 10
Filename: pool/main/l/linux/linux-image-6_1_amd64.deb
Size: 10
SHA256: ll
"""
SECURITY = (
    MAIN.replace("1.0-1", "1.0-1+deb12u1")
    .replace("Version: 2.0-1", "Version: 2.0-1+deb12u1")
    .replace("Version: 1\nArchitecture: amd64\nInstalled-Size: 10\nFilename: pool/main/l", "Version: 2\nArchitecture: amd64\n"
             "Installed-Size: 10\nFilename: pool/main/l")
)
"""The same index a security update later: liba and libb (and the kernel) updated, ``same`` not."""


def test_pinning_takes_pairs_of_versions_from_the_index() -> None:
    pins = pin_slice(MAIN, SECURITY, target=10**9, small_target=10**9)
    assert [(p.package, p.version, p.suite) for p in pins] == [
        ("liba", "1.0-1", "bookworm"), ("liba", "1.0-1+deb12u1", "bookworm-security"),
        ("libb", "2.0-1", "bookworm"), ("libb", "2.0-1+deb12u1", "bookworm-security"),
    ]  # fmt: skip  (same version in both suites: no pair; kernels left out)
    assert pins[0].installed_size == 100 * 1024 and pins[0].filename.endswith("liba_1.0-1_amd64.deb")
    assert len({store_path_of(p) for p in pins}) == 4


def test_the_shipped_pins_are_a_slice_of_the_promised_size() -> None:
    pins = load_pins(default_datasets_dir() / "debian-cache" / "pins.json")
    small = [p for p in pins if p.small]
    assert len(pins) >= 1000 and sum(p.installed_size for p in pins) >= 2_000_000_000
    assert sum(p.installed_size for p in small) <= 50_000_000 and len(small) >= 50
    packages = {p.package for p in pins}
    assert all({"bookworm", "bookworm-security"} == {q.suite for q in pins if q.package == name} for name in list(packages)[:50])
    assert all(len(p.sha256) == 64 for p in pins)


def _reachable() -> bool:
    """Debian's mirror answers (asked again after a transient failure), or every pinned file of
    the small slice is in the verified cache from an earlier run and no download is needed."""
    from storelab.downloads import RetryPolicy, read_url, verified_cache_dir

    pins = [p for p in load_pins(default_datasets_dir() / "debian-cache" / "pins.json") if p.small]
    if all((verified_cache_dir() / p.sha256).is_file() for p in pins):
        return True
    try:
        read_url("http://deb.debian.org/debian/", policy=RetryPolicy(attempts=4, first_pause=2.0, timeout=20))
        return True
    except InputError as err:
        return "HTTP 40" in str(err)  # the mirror answered


@pytest.fixture(scope="module")
def small_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb (Debian's dpkg) is not on this machine")
    if not _reachable():
        pytest.skip("deb.debian.org cannot be reached from here")
    return fetch_debian_cache(tmp_path_factory.mktemp("slice"), small=True)


@pytest.mark.slow
def test_the_small_slice_is_a_binary_cache(small_slice: Path) -> None:
    pins = [p for p in load_pins(default_datasets_dir() / "debian-cache" / "pins.json") if p.small]
    from storelab.ingest.fetch import read_source_list

    names = small_slice.joinpath("narinfos.txt").read_text().split()
    assert all("/" not in name for name in names)  # relative to the list: the folder can move
    listed = read_source_list(small_slice / "narinfos.txt")
    assert len(listed) == len(pins)
    total = 0
    for path, pin in zip(listed, pins):
        info = load_narinfo(path)
        assert info.store_path == store_path_of(pin)
        text = Path(path).read_text()
        nar = lzma.decompress((small_slice / info.url).read_bytes())  # type: ignore[operator]
        assert f"NarSize: {len(nar)}\n" in text and f"NarHash: sha256:{nix_base32(hashlib.sha256(nar).digest())}\n" in text
        xz = (small_slice / info.url).read_bytes()  # type: ignore[operator]
        assert f"FileSize: {len(xz)}\n" in text and f"FileHash: sha256:{nix_base32(hashlib.sha256(xz).digest())}\n" in text
        list(read_nar(__import__("io").BytesIO(nar), path))  # a NAR current Nix's rules accept
        zst = [f for f in (small_slice / "nar").glob("*.nar.zst") if zstandard.ZstdDecompressor().decompress(f.read_bytes()) == nar]
        assert zst
        total += len(nar)
    assert total <= 50_000_000


@pytest.mark.slow
def test_the_small_slice_ingests_from_its_folder(small_slice: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = tmp_path / "ds"
    assert main(["ingest-nar", "--from-list", str(small_slice / "narinfos.txt"), "-o", str(dataset), "-q", "--models", "snix,attic,nix-cache-xz"]) == 0
    with connect(dataset) as con:
        count, paths, references, xz = con.execute(
            "SELECT count(*), count(store_path), sum(len(\"references\")), count(nar_xz_size) FROM snapshots"
        ).fetchone()  # type: ignore[misc]
    pins = [p for p in load_pins(default_datasets_dir() / "debian-cache" / "pins.json") if p.small]
    assert count == paths == xz == len(pins) and references > 0
    assert main(["compare", str(dataset), "--models", "snix,attic,nix-cache-xz", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(row["missing"] is None for row in rows)


@pytest.mark.slow
def test_a_download_that_is_not_the_pinned_file_is_refused(small_slice: Path, tmp_path: Path) -> None:
    pins = load_pins(default_datasets_dir() / "debian-cache" / "pins.json")
    first = next(p for p in pins if p.small)
    wrong = tmp_path / "pins.json"
    write_pins([dataclasses.replace(first, sha256="0" * 64)], wrong)
    with pytest.raises(InputError, match="is not the pinned file"):
        fetch_debian_cache(tmp_path / "slice", manifest=wrong)
    assert not list((tmp_path / "slice" / "debs").glob("*.deb"))


@pytest.mark.slow
def test_a_study_takes_the_slice_as_its_corpus(small_slice: Path, tmp_path: Path) -> None:
    """What the notebooks do with CORPUS = the slice's folder: its NARs, each with its narinfo."""
    from storelab.datasets.studies import ingest_corpus
    from storelab.ingest import IngestOptions

    count = ingest_corpus(small_slice, tmp_path / "ds", IngestOptions(zstd_level=0, nar_compression=("xz",)), tmp_path)
    with connect(tmp_path / "ds") as con:
        labels = [row[0] for row in con.execute("SELECT label FROM snapshots ORDER BY seq").fetchall()]
        xz = con.execute("SELECT source, nar_xz_size FROM snapshots ORDER BY seq").fetchall()
    # each .nar.xz is its own xz size (read from disk, not compressed again)
    assert all(Path(source).name.endswith(".nar.xz") and size == Path(source).stat().st_size for source, size in xz)
    assert count == len(labels) == len(small_slice.joinpath("narinfos.txt").read_text().split())
    assert labels[0] == store_path_of(next(p for p in load_pins(default_datasets_dir() / "debian-cache" / "pins.json") if p.small)).split("-", 1)[1]


@pytest.mark.slow
def test_a_study_takes_images_and_a_tree_from_the_slice(small_slice: Path, tmp_path: Path) -> None:
    """Notebook 04's images (closures by the narinfos' References) and 03's tree (store paths hard-linked)."""
    from storelab.datasets.studies import corpus_images, corpus_tree, package_name
    from storelab.layers import path_name

    images, popularity = corpus_images(small_slice, 3)
    assert 1 <= len(images) <= 3
    assert len({g.name for g in images}) == len(images)  # one version per package, named by it
    assert all(package_name(path_name(g.top_level[0])) == g.name for g in images)
    for graph in images:
        assert all(ref in graph.paths for node in graph.paths.values() for ref in node.references)  # closed
        assert all(popularity[path_name(p)] >= 1 for p in graph.paths)
    assert images[0].total_size == max(g.total_size for g in images)  # the largest closure first
    tree = corpus_tree(small_slice, tmp_path, 2)
    names = sorted(p.name for p in (small_slice / "trees").iterdir())[:2]
    assert sorted(p.name for p in tree.iterdir()) == names
    some_file = next(p for p in (tree / names[0]).rglob("*") if p.is_file() and not p.is_symlink())
    original = small_slice / "trees" / some_file.relative_to(tree)
    assert some_file.stat().st_ino == original.stat().st_ino  # hard-linked, not copied

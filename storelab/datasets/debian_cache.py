"""``debian-cache``: a Nix-binary-cache-shaped slice anyone can rebuild, from pinned Debian packages.

Real store paths at real scale need real software in successive versions. Debian's bookworm has
two versions of every package its security team updated: the one in the point release
(``bookworm``) and the one in ``bookworm-security``. The slice takes such pairs — each package
version unpacked into a store-path-like folder is one store path — and writes what a Nix binary
cache holds for each: ``nar/<file hash>.nar.xz`` (xz -6, as cache.nixos.org) and ``.nar.zst``
(zstd -3), and ``<store hash>.narinfo`` (StorePath, URL, Compression, FileHash, FileSize,
NarHash, NarSize, References: the package's Depends that are in the slice, in the same suite
where they are).

The packages are pinned in ``datasets/debian-cache/pins.json`` — name, version, suite,
pool file, size and sha256 as Debian's index lists them, made by :func:`pin_slice` from the
index (``scripts/pin-debian-cache.py``) — and every download is checked against it, so the
slice is the same bytes on every machine. Debian keeps only the current version of each suite
in its pool: when a pinned version is superseded, the fetch says which, and the manifest needs
pinning again.

Two slices: the default (≥ 2 GB of NARs, ≥ 1,000 store paths) and ``small`` (≤ 50 MB, for CI).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from storelab.errors import InputError, OutputError

__all__ = ["MIRRORS", "PinnedDeb", "apt_source_uris", "fetch_debian_cache", "load_pins", "pin_slice", "store_path_of"]

MIRRORS = {"bookworm": "http://deb.debian.org/debian/", "bookworm-security": "http://deb.debian.org/debian-security/"}
"""Where each suite's pool is served."""
DEFAULT_BYTES = 2_200_000_000
"""The default slice: pairs of versions, by package name, until their installed sizes pass this."""
SMALL_BYTES = 40_000_000
"""The small slice: pairs of small packages (≤ 2 MB installed each), until this."""
_LARGEST = 20_000_000
"""Packages larger than this (installed) are left out: store paths, not kernels and browsers."""
_SKIP = re.compile(r"^(linux-|firefox|thunderbird|chromium|libreoffice|openjdk|.*-dbg$)")


@dataclass(frozen=True, slots=True)
class PinnedDeb:
    """One package version of the slice, as Debian's index lists it."""

    package: str
    version: str
    suite: str
    filename: str
    """Its path in the suite's pool (the index's ``Filename``)."""
    size: int
    sha256: str
    installed_size: int
    """Bytes (the index gives KiB)."""
    depends: str
    small: bool
    """Also in the small slice."""


def _paragraphs(text: str) -> Iterable[dict[str, str]]:
    """The package paragraphs of a ``Packages`` index."""
    return (fields for fields in _deb822(text) if "Package" in fields)


def pin_slice(main_index: str, security_index: str, target: int = DEFAULT_BYTES, small_target: int = SMALL_BYTES) -> list[PinnedDeb]:
    """The slice from the text of bookworm's and bookworm-security's ``Packages`` indexes:
    every package whose two suites hold different versions (same architecture), neither over
    20 MB installed, by name, until both versions' installed sizes pass ``target``; the small
    slice is those pairs of at most 2 MB each, by name, until ``small_target``."""
    main = {p["Package"]: p for p in _paragraphs(main_index)}
    pins: list[PinnedDeb] = []
    seen: set[str] = set()
    total = small_total = 0
    for fields in sorted(_paragraphs(security_index), key=lambda p: p["Package"]):
        name = fields["Package"]
        other = main.get(name)
        if name in seen or other is None or other["Version"] == fields["Version"] or _SKIP.match(name):
            continue
        if other.get("Architecture") != fields.get("Architecture"):
            continue
        pair = [(other, "bookworm"), (fields, "bookworm-security")]
        sizes = [int(p.get("Installed-Size", "0")) * 1024 for p, _ in pair]
        if max(sizes) > _LARGEST:
            continue
        small = max(sizes) <= 2_000_000 and small_total + sum(sizes) <= small_target
        if total >= target and not small:
            continue
        seen.add(name)
        total += sum(sizes)
        small_total += sum(sizes) if small else 0
        for (p, suite), size in zip(pair, sizes):
            pins.append(PinnedDeb(name, p["Version"], suite, p["Filename"], int(p["Size"]), p["SHA256"], size, p.get("Depends", ""), small))
    return pins


def load_pins(manifest: str | os.PathLike[str]) -> list[PinnedDeb]:
    """The pinned packages of a ``pins.json`` (:func:`pin_slice`'s, as written)."""
    try:
        data = json.loads(Path(manifest).read_text())
        return [PinnedDeb(**entry) for entry in data["packages"]]
    except FileNotFoundError:
        raise InputError(f"{manifest}: no such manifest") from None
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{manifest}: not a debian-cache manifest ({err})") from None


def write_pins(pins: Sequence[PinnedDeb], manifest: str | os.PathLike[str]) -> None:
    from storelab.outputs import atomic_write

    data = {
        "name": "debian-cache",
        "kind": "debian-cache",
        "description": "Pairs of versions (bookworm, bookworm-security) of Debian packages, pinned as Debian's index lists them; "
        "fetched from deb.debian.org, each version unpacked is one store path of a Nix-binary-cache-shaped slice.",
        "pinned_with": "python scripts/pin-debian-cache.py (storelab.datasets.debian_cache.pin_slice)",
        "packages": [asdict(pin) for pin in pins],
    }
    atomic_write(Path(manifest), (json.dumps(data, indent=1) + "\n").encode())


def store_path_of(pin: PinnedDeb) -> str:
    """The store path a package version stands for: a 32-character nix-base32 hash of its name,
    version and suite, then ``-<package>-<version>`` (characters Nix refuses made ``_``).

    >>> store_path_of(PinnedDeb("libc6", "2.36-9+deb12u7", "bookworm-security", "", 0, "", 0, "", False))[:11]
    '/nix/store/'
    """
    from storelab.nar import nix_base32

    digest = hashlib.sha256(f"{pin.package}\0{pin.version}\0{pin.suite}".encode()).digest()[:20]
    name = re.sub(r"[^A-Za-z0-9+\-._?=]", "_", f"{pin.package}-{pin.version}")
    return f"/nix/store/{nix_base32(digest)}-{name}"


def _references(pins: Sequence[PinnedDeb]) -> dict[tuple[str, str], list[str]]:
    """Each pinned version's Depends that are in the slice, as store paths (same suite first)."""
    by_name: dict[str, dict[str, PinnedDeb]] = {}
    for pin in pins:
        by_name.setdefault(pin.package, {})[pin.suite] = pin
    refs: dict[tuple[str, str], list[str]] = {}
    for pin in pins:
        found = []
        for clause in pin.depends.split(","):
            name = clause.split("|")[0].strip().split(" ")[0].split(":")[0]
            versions = by_name.get(name)
            if versions and name != pin.package:
                found.append(store_path_of(versions.get(pin.suite) or next(iter(versions.values()))))
        refs[(pin.package, pin.suite)] = sorted(set(found))
    return refs


def apt_source_uris(suite: str, sources: Sequence[Path] | None = None) -> list[str]:
    """The archive URIs this machine's apt is configured to fetch ``suite`` from (one-line
    ``.list`` and deb822 ``.sources`` files), each ending in ``/``: a mirror or proxy set up for
    apt serves the slice too.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "debian.sources"
    >>> _ = f.write_text("Types: deb\\nURIs: http://mirror.example/debian\\nSuites: bookworm bookworm-updates\\n")
    >>> apt_source_uris("bookworm", [f]), apt_source_uris("bookworm-security", [f])
    (['http://mirror.example/debian/'], [])
    """
    if sources is None:
        folder = Path("/etc/apt/sources.list.d")
        listed = sorted(folder.glob("*.list")) + sorted(folder.glob("*.sources")) if folder.is_dir() else []
        sources = [Path("/etc/apt/sources.list"), *listed]
    uris: list[str] = []
    for path in sources:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        if path.suffix == ".sources":
            uris += [uri for fields in _deb822(text) if _serves(fields, suite) for uri in fields.get("URIs", "").split()]
        else:
            uris += [words[1] for words in map(_one_line_source, text.splitlines()) if len(words) >= 3 and words[0] == "deb" and words[2] == suite]
    return list(dict.fromkeys(u.rstrip("/") + "/" for u in uris if u.startswith(("http://", "https://"))))


def _one_line_source(line: str) -> list[str]:
    """``deb [options] URI suite components`` without its comment and options."""
    return re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()


def _serves(fields: dict[str, str], suite: str) -> bool:
    return "deb" in fields.get("Types", "").split() and suite in fields.get("Suites", "").split() and fields.get("Enabled", "yes") != "no"


def _deb822(text: str) -> Iterable[dict[str, str]]:
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line[0].isspace() and not line.startswith("#") and ":" in line:
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
        yield fields


def _download(pin: PinnedDeb, folder: Path) -> Path:
    """The pinned .deb in ``folder``: kept from an earlier fetch, taken from the verified cache,
    or downloaded (retried, resumed) from apt's configured mirrors for its suite, then Debian's."""
    from storelab.downloads import fetch_verified

    target = folder / pin.filename.rsplit("/", 1)[-1]
    urls = [base + pin.filename for base in dict.fromkeys([*apt_source_uris(pin.suite), MIRRORS[pin.suite]])]
    try:
        return fetch_verified(urls, target, pin.size, pin.sha256)
    except InputError as err:
        gone = " (Debian may have superseded it: pin the slice again with scripts/pin-debian-cache.py)" if "404" in str(err) else ""
        raise InputError(f"debian-cache: {pin.package} {pin.version}: {err}{gone}") from None


def _cache_entry(tree: str, store_path: str, references: list[str], cache: str) -> str:
    """NAR the tree, write its .nar.xz, .nar.zst and .narinfo into ``cache``; returns the .narinfo path."""
    import zstandard

    from storelab.nar import dump_path, nix_base32
    from storelab.nar.narinfo import render_narinfo

    nar = b"".join(dump_path(tree))
    xz = lzma.compress(nar, format=lzma.FORMAT_XZ, preset=6)
    zst = zstandard.ZstdCompressor(level=3).compress(nar)
    folder = Path(cache)
    names = {}
    for data, suffix in ((xz, ".nar.xz"), (zst, ".nar.zst")):
        file_hash = nix_base32(hashlib.sha256(data).digest())
        names[suffix] = (file_hash, len(data))
        (folder / "nar" / f"{file_hash}{suffix}").write_bytes(data)
    file_hash, file_size = names[".nar.xz"]
    text = render_narinfo(store_path, references, "xz", file_size, len(nar), file_hash, nix_base32(hashlib.sha256(nar).digest()), None)
    store_hash = store_path.rsplit("/", 1)[-1].split("-", 1)[0]
    (folder / f"{store_hash}.narinfo").write_text(text)
    return str(folder / f"{store_hash}.narinfo")


def fetch_debian_cache(
    to: str | os.PathLike[str], small: bool = False, manifest: str | os.PathLike[str] | None = None,
    report: Callable[[str, int | None], None] | None = None, jobs: int | None = None,
) -> Path:  # fmt: skip
    """Fetch the pinned slice (``small``: the small one) into ``to``: ``debs/`` (checked against
    the manifest), ``trees/<store path name>/`` (each unpacked with ``dpkg-deb -x``), and the
    binary cache — ``nar/``, ``*.narinfo`` — with ``narinfos.txt`` listing the narinfos in the
    manifest's order, for ``storelab ingest-nar --from-list narinfos.txt``. Returns ``to``."""
    if shutil.which("dpkg-deb") is None:
        raise InputError("debian-cache needs dpkg-deb (Debian's dpkg) to unpack the packages")
    from storelab.datasets.sample import default_datasets_dir

    pins = load_pins(manifest or default_datasets_dir() / "debian-cache" / "pins.json")
    chosen = [pin for pin in pins if pin.small] if small else pins
    folder = Path(to)
    try:
        for sub in ("debs", "trees", "nar"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot write {folder}: {err.strerror or err}") from None
    report = report or (lambda _label, _total: None)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        debs = []
        for pin, deb in zip(chosen, pool.map(lambda p: _download(p, folder / "debs"), chosen)):
            debs.append(deb)
            report(f"{pin.package} {pin.version}", len(chosen))
    trees = []
    for pin, deb in zip(chosen, debs):
        tree = folder / "trees" / store_path_of(pin).rsplit("/", 1)[-1]
        if not tree.exists():
            staging = tree.with_name(tree.name + ".part")
            shutil.rmtree(staging, ignore_errors=True)
            done = subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], capture_output=True, text=True)
            if done.returncode != 0:
                raise InputError(f"debian-cache: dpkg-deb -x {deb.name} failed: {done.stderr.strip()}")
            staging.rename(tree)
        trees.append(tree)
    refs = _references(chosen)
    with concurrent.futures.ProcessPoolExecutor(jobs or os.cpu_count() or 1) as pool:
        narinfos = list(pool.map(_cache_entry, map(str, trees), [store_path_of(p) for p in chosen],
                             [refs[(p.package, p.suite)] for p in chosen], [str(folder)] * len(chosen)))  # fmt: skip
    # names relative to the folder: `ingest-nar --from-list` reads them relative to the list
    (folder / "narinfos.txt").write_text("".join(f"{Path(path).name}\n" for path in narinfos))
    return folder

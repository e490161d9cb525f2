"""``debian-closures``: container-image closures built from Debian's package index.

No package is downloaded or installed: ``apt-cache dumpavail`` gives every package of the
configured archive with its Installed-Size and Depends, and each "image" is the dependency
closure of one package, written as a runtime reference graph in Nix's
``exportReferencesGraph`` format. Each package becomes a pseudo store path
``/nix/store/<hash>-<name>-<version>`` (the hash is derived from name and version, so the
same package is the same path in every image) with ``narSize`` = Installed-Size × 1024.
Popularity counts, for each package, how many packages of the whole archive depend on it
(as Nixery's popcount counts references).

Dependencies: ``Depends`` and ``Pre-Depends`` (not Recommends); of alternatives the first
that exists as a real package, else its first provider by name; version constraints are not
solved: each package is taken at the highest version the index offers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from storelab.errors import InputError, OutputError
from storelab.nar.hashes import nix_base32

__all__ = ["DEFAULT_IMAGES", "DebianPackage", "parse_index", "build_closures", "fetch_debian_closures"]

DEFAULT_IMAGES = ("python3", "perl", "gcc", "git", "postgresql", "nginx", "curl", "vim")
_UNSAFE = re.compile(r"[^A-Za-z0-9+._?=-]")


@dataclass(frozen=True, slots=True)
class DebianPackage:
    name: str
    version: str
    installed_size: int
    """Bytes (Installed-Size is in KiB)."""
    depends: tuple[tuple[str, ...], ...]
    """Each dependency as its alternatives, in order."""
    provides: tuple[str, ...]

    @property
    def store_path(self) -> str:
        """``/nix/store/<32 chars>-<name>-<version>``, the same in every image.

        >>> DebianPackage("zlib1g", "1:1.2.13.dfsg-1", 170, (), ()).store_path
        '/nix/store/6kdf341vr29v8afgia7mmpn6hr00d1y7-zlib1g-1_1.2.13.dfsg-1'
        """
        digest = hashlib.sha256(f"debian:{self.name}={self.version}".encode()).digest()
        return f"/nix/store/{nix_base32(digest[:20])}-{self.name}-{_UNSAFE.sub('_', self.version)}"


_FIELDS = ("Package", "Version", "Installed-Size", "Depends", "Pre-Depends", "Provides")


def _records(text: str) -> Iterable[dict[str, str]]:
    """The fields we read of each paragraph (deb822's full parser is 20× slower here)."""
    for paragraph in text.split("\n\n"):
        record: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t", ""):
                continue  # continuation lines belong to fields we do not read
            key, _, value = line.partition(":")
            if key in _FIELDS:
                record[key] = value.strip()
        if "Package" in record and "Version" in record:
            yield record


def parse_index(text: str) -> dict[str, DebianPackage]:
    r"""Package records (``apt-cache dumpavail`` output) → the highest version of each package.

    >>> index = "Package: a\nVersion: 1.0\nInstalled-Size: 2\nDepends: b (>= 1) | c, d:any\n\n"
    >>> index += "Package: a\nVersion: 1:0.5\nInstalled-Size: 3\n\nPackage: b\nVersion: 2\n"
    >>> parse_index(index)["a"]
    DebianPackage(name='a', version='1:0.5', installed_size=3072, depends=(), provides=())
    """
    from debian.debian_support import Version

    best: dict[str, tuple[Version, dict[str, str]]] = {}
    for record in _records(text):
        name, version = record["Package"], record["Version"]
        if name in best and best[name][1]["Version"] == version:
            continue
        parsed = Version(version)
        if name not in best or parsed > best[name][0]:
            best[name] = (parsed, record)
    return {name: _package(record) for name, (_, record) in best.items()}


def _relations(text: str) -> list[list[str]]:
    from debian.deb822 import PkgRelation

    if not text.strip():
        return []
    return [[alt["name"] for alt in group if alt.get("name")] for group in PkgRelation.parse_relations(text)]


def _package(record: Mapping[str, str]) -> DebianPackage:
    depends = [tuple(names) for field in ("Pre-Depends", "Depends") for names in _relations(record.get(field, "")) if names]
    provides = tuple(name for names in _relations(record.get("Provides", "")) for name in names)
    try:
        size = int(record.get("Installed-Size", "0") or 0) * 1024
    except ValueError:
        size = 0
    return DebianPackage(record["Package"], record["Version"], size, tuple(depends), provides)


def _resolver(packages: Mapping[str, DebianPackage]) -> Callable[[Sequence[str]], str | None]:
    providers: dict[str, list[str]] = {}
    for package in packages.values():
        for virtual in package.provides:
            providers.setdefault(virtual, []).append(package.name)
    for names in providers.values():
        names.sort()

    def resolve(alternatives: Sequence[str]) -> str | None:
        for name in alternatives:
            if name in packages:
                return name
        for name in alternatives:
            if providers.get(name):
                return providers[name][0]
        return None

    return resolve


def build_closures(
    packages: Mapping[str, DebianPackage], images: Iterable[str]
) -> tuple[dict[str, dict], dict[str, int]]:
    """Each image's graph document (exportReferencesGraph format) and the popularity map."""
    resolve = _resolver(packages)
    edges: dict[str, list[str]] = {}
    for name, package in packages.items():
        resolved = {resolve(alts) for alts in package.depends}
        edges[name] = sorted(d for d in resolved if d is not None and d != name)
    popularity: dict[str, int] = {}
    for deps in edges.values():
        for dep in deps:
            key = packages[dep].store_path.split("-", 1)[1]
            popularity[key] = popularity.get(key, 0) + 1
    documents: dict[str, dict] = {}
    for image in images:
        if image not in packages:
            raise InputError(f"debian-closures: no package {image!r} in the apt index")
        members, todo = set(), [image]
        while todo:
            name = todo.pop()
            if name not in members:
                members.add(name)
                todo.extend(edges[name])
        graph = []
        for name in sorted(members):
            package = packages[name]
            graph.append(
                {
                    "path": package.store_path,
                    "narSize": package.installed_size,
                    "references": sorted(packages[d].store_path for d in edges[name]),
                    "debian": {"package": name, "version": package.version},
                }
            )
        documents[image] = {"exportReferencesGraph": {"graph": [packages[image].store_path]}, "graph": graph}
    return documents, popularity


def _apt_index() -> str:
    if shutil.which("apt-cache") is None:
        raise InputError("debian-closures needs apt-cache (Debian or Ubuntu); it is not on this machine")
    result = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True)
    if result.returncode != 0 or "Package:" not in result.stdout:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            result = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True)
        if "Package:" not in result.stdout:
            raise InputError("debian-closures: the apt package index is empty; run `apt-get update` first")
    return result.stdout


def _index_files() -> list[dict[str, object]]:
    """The Release files that pin the index state (what was fetched)."""
    lists = Path("/var/lib/apt/lists")
    found = []
    for path in sorted(lists.glob("*Release")) if lists.is_dir() else []:
        data = path.read_bytes()
        found.append({"file": path.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return found


def fetch_debian_closures(to: str | os.PathLike[str], images: Sequence[str] = DEFAULT_IMAGES) -> Path:
    """Write ``to/NN-<image>.json`` for each image, ``to/popularity.json`` and ``to/manifest.json``."""
    index = _apt_index()
    packages = parse_index(index)
    documents, popularity = build_closures(packages, images)
    folder = Path(to)
    files = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for position, image in enumerate(images):
            name = f"{position:02d}-{image}.json"
            data = json.dumps(documents[image], indent=1, sort_keys=True).encode()
            _write(folder / name, data)
            graph = documents[image]["graph"]
            files.append(
                {
                    "file": name,
                    "label": image,
                    "paths": len(graph),
                    "nar_bytes": sum(e["narSize"] for e in graph),
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "fetched_with": f"storelab datasets fetch debian-closures (closure of {image})",
                }
            )
        pop = json.dumps(popularity, indent=0, sort_keys=True).encode()
        _write(folder / "popularity.json", pop)
        manifest = {
            "name": "debian-closures",
            "kind": "closures",
            "description": "Dependency closures of common Debian packages as image closure graphs (Nix exportReferencesGraph format)",
            "made_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "made_with": "apt-cache dumpavail (Depends + Pre-Depends, highest versions)",
            "packages_in_index": len(packages),
            "index_sha256": hashlib.sha256(index.encode()).hexdigest(),
            "index_release_files": _index_files(),
            "popularity": {"file": "popularity.json", "entries": len(popularity), "sha256": hashlib.sha256(pop).hexdigest()},
            "files": files,
        }
        _write(folder / "manifest.json", json.dumps(manifest, indent=1).encode())
    except OSError as err:
        raise OutputError(f"cannot write {folder}: {err.strerror or err}") from None
    return folder


def _write(path: Path, data: bytes) -> None:
    from storelab.outputs import atomic_write

    atomic_write(path, data)

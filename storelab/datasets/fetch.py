"""``storelab datasets fetch NAME``: corpora prepared from public archives, reproducibly.

Each fetch writes a folder with the files it fetched and a ``manifest.json`` naming every
file, its size, its sha256 and the command that fetched it, then unpacks archives into
``trees/<label>`` (one snapshot each): the same form as the shipped ``datasets/pypi-sample``.

- ``pypi-series``: consecutive releases of one project's wheel, through ``pip download``
  (default: five numpy 1.26 releases for CPython 3.11 on manylinux x86_64);
- ``debian-packages``: every version Debian's index offers of a few packages, through
  ``apt-get download``, unpacked with ``dpkg-deb -x``;
- ``debian-closures``: image closure graphs from the package index (for ``storelab layers``);
- ``debian-cache``: a binary-cache slice of pinned Debian package pairs (:mod:`~storelab.datasets.debian_cache`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from storelab.errors import ConfigError, InputError, OutputError

__all__ = ["FETCHABLE", "fetch_corpus", "fetch_pypi_series", "fetch_debian_packages", "pypi_versions"]

DEFAULT_PYPI_PROJECT = "numpy"
DEFAULT_PYPI_VERSIONS = ("1.26.0", "1.26.1", "1.26.2", "1.26.3", "1.26.4")
DEFAULT_DEBIAN_PACKAGES = ("libssl3", "libpython3.11-stdlib", "libc6", "perl-modules-5.36")
_WHEEL_TARGET = ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--platform", "manylinux2014_x86_64"]


def _run(command: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=1800)
    except FileNotFoundError:
        raise InputError(f"{what}: {command[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise InputError(f"{what}: `{' '.join(command)}` took more than 30 minutes") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise InputError(f"{what}: `{' '.join(command)}` failed: {last}")
    return done.stdout


def pypi_versions(project: str) -> list[str]:
    """Release versions of a project on PyPI, oldest first (from PyPI's JSON API)."""
    from packaging.version import InvalidVersion, Version

    from storelab.downloads import read_url

    try:
        releases = json.loads(read_url(f"https://pypi.org/pypi/{project}/json"))["releases"]
    except InputError as err:
        raise InputError(f"pypi-series: cannot ask PyPI about {project!r}: {err}") from None
    except (ValueError, KeyError) as err:
        raise InputError(f"pypi-series: PyPI's answer about {project!r} is not its JSON API's: {err}") from None
    versions = []
    for text, files in releases.items():
        try:
            version = Version(text)
        except InvalidVersion:
            continue
        if files and not version.is_prerelease:
            versions.append(version)
    return [str(v) for v in sorted(versions)]


def _manifest(folder: Path, name: str, description: str, files: list[dict]) -> None:
    data = json.dumps({"name": name, "kind": "archives", "description": description, "files": files}, indent=1) + "\n"
    from storelab.outputs import atomic_write

    atomic_write(folder / "manifest.json", data.encode())


def _entry(path: Path, label: str, fetched_with: str) -> dict:
    data = path.read_bytes()
    return {"file": path.name, "label": label, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "fetched_with": fetched_with}


def _fetched(folder: Path, pattern: str, download: Callable[[], object], again: str) -> list[Path]:
    """The files matching ``pattern`` that ``download`` added to ``folder`` — or, when it found
    the file already there and added none, those matching ``again``."""
    before = set(folder.glob(pattern))
    download()
    return sorted(set(folder.glob(pattern)) - before) or sorted(folder.glob(again))


def _fetch_series(folder: Path, kind: str, description: str, download: Callable[[], list[dict]]) -> list[Path]:
    """Run ``download`` into ``folder``, write the manifest of what it fetched, unpack it all."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _manifest(folder, kind, description, download())
    except OSError as err:
        raise OutputError(f"cannot write {folder}: {err.strerror or err}") from None
    return _unpack(folder)


def _unpack(folder: Path) -> list[Path]:
    from storelab.datasets.sample import load_manifest, unpack_corpus

    return [tree for _, tree in unpack_corpus(load_manifest(folder), folder / "trees")]


Report = Callable[[str, "int | None"], None]
"""Progress of a fetch: called with each file's label as it arrives, and the number of files
to fetch when it is known (None when it is found on the way)."""


def _silent(label: str, total: int | None) -> None:
    pass


def fetch_pypi_series(
    to: str | os.PathLike[str], project: str = DEFAULT_PYPI_PROJECT, versions: Sequence[str] | None = None, count: int = 5,
    report: Report = _silent,
) -> list[Path]:
    """Download consecutive releases of ``project`` with ``pip download`` and unpack them.

    ``versions`` defaults to numpy's five 1.26 releases for numpy, else the project's last
    ``count`` releases. Wheels are chosen for CPython 3.11 on manylinux x86_64 (pure-Python
    wheels fit any). Returns the unpacked trees, oldest first.
    """
    folder = Path(to)
    if versions is None:
        versions = DEFAULT_PYPI_VERSIONS if project == DEFAULT_PYPI_PROJECT else pypi_versions(project)[-count:]
    if not versions:
        raise InputError(f"pypi-series: {project!r} has no releases on PyPI")

    def download() -> list[dict]:
        files = []
        for version in versions:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", *_WHEEL_TARGET,
                       "--dest", str(folder), f"{project}=={version}"]  # fmt: skip
            wheels = _fetched(folder, "*.whl", functools.partial(_run, command, "pypi-series"), f"{project.replace('-', '_')}-{version}-*.whl")
            if not wheels:
                raise InputError(f"pypi-series: pip fetched no wheel for {project}=={version}")
            how = f"pip download --no-deps --only-binary=:all: {' '.join(_WHEEL_TARGET)} {project}=={version}"
            files.append(_entry(wheels[0], f"{project}-{version}", how))
            report(f"{project}-{version}", len(versions))
        return files

    description = f"{len(versions)} consecutive releases of {project} as the wheels PyPI serves; unpacked, each release is one snapshot."
    return _fetch_series(folder, "pypi-series", description, download)


def _apt_versions(package: str) -> list[str]:
    from debian.debian_support import Version

    out = _run(["apt-cache", "madison", package], "debian-packages")
    versions = {line.split("|")[1].strip() for line in out.splitlines() if line.count("|") >= 2}
    if not versions:
        raise InputError(f"debian-packages: apt knows no version of {package!r} (try `apt-get update`)")
    return sorted(versions, key=Version)


def fetch_debian_packages(
    to: str | os.PathLike[str], packages: Sequence[str] = DEFAULT_DEBIAN_PACKAGES, report: Report = _silent
) -> list[Path]:
    """Download every version apt offers of each package (``apt-get download``), unpack each
    with ``dpkg-deb -x``. Returns the trees, one per package version, oldest first."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise InputError("debian-packages needs apt-get and dpkg-deb (Debian or Ubuntu)")
    folder = Path(to)

    def download() -> list[dict]:
        files = []
        for package in packages:
            for version in _apt_versions(package):
                command = ["apt-get", "download", f"{package}={version}"]
                debs = _fetched(folder, "*.deb", functools.partial(_run, command, "debian-packages", cwd=folder), f"{package}_*.deb")
                fetched = [d for d in debs if _deb_version(d) == version] or debs
                if not fetched:
                    raise InputError(f"debian-packages: apt-get fetched nothing for {package}={version}")
                files.append(_entry(fetched[0], f"{package}-{version.replace(':', '_')}", f"apt-get download {package}={version}"))
                report(f"{package} {version}", None)
        return files

    description = f"every version Debian's index offers of {', '.join(packages)}, as .deb files; unpacked, each is one snapshot."
    return _fetch_series(folder, "debian-packages", description, download)


def _deb_version(path: Path) -> str:
    out = subprocess.run(["dpkg-deb", "--field", str(path), "Version"], capture_output=True, text=True)
    return out.stdout.strip()


def _debian_closures(to: Path, _args: Sequence[str], report: Report) -> list[Path]:
    from storelab.datasets.debian_closures import fetch_debian_closures

    return [fetch_debian_closures(to, *([_args] if _args else []))]


def _debian_cache(to: Path, args: Sequence[str], report: Report) -> list[Path]:
    from storelab.datasets.debian_cache import fetch_debian_cache

    unknown = [a for a in args if a != "--small"]
    if unknown:
        raise ConfigError(f"debian-cache takes no arguments (got {' '.join(unknown)}); --small for the small slice")
    return [fetch_debian_cache(to, small="--small" in args, report=report)]


def _pypi(to: Path, args: Sequence[str], report: Report) -> list[Path]:
    if not args:
        return fetch_pypi_series(to, report=report)
    project, *versions = args
    return fetch_pypi_series(to, project, versions or None, report=report)


def _debian(to: Path, args: Sequence[str], report: Report) -> list[Path]:
    return fetch_debian_packages(to, args or DEFAULT_DEBIAN_PACKAGES, report)


FETCHABLE: dict[str, tuple[str, Callable[[Path, Sequence[str], Report], list[Path]]]] = {
    "pypi-series": ("consecutive releases of a PyPI project's wheel, unpacked (default: numpy 1.26.0–1.26.4)", _pypi),
    "debian-packages": (
        "every version Debian's index offers of some packages, unpacked (default: libssl3, libpython3.11-stdlib, libc6, perl-modules-5.36)",
        _debian,
    ),
    "debian-closures": ("image closure graphs from Debian's package index (apt-cache), for `storelab layers`", _debian_closures),
    "debian-cache": (
        "a Nix binary cache slice (.nar.xz, .nar.zst, .narinfo) of pinned Debian package pairs, bookworm and bookworm-security: "
        "1,310 store paths, 2.2 GB (--small: 88, 40 MB)",
        _debian_cache,
    ),
}


def fetch_corpus(name: str, to: str | os.PathLike[str], args: Sequence[str] = (), report: Report = _silent) -> list[Path]:
    """Prepare corpus ``name`` in ``to``; returns the trees (or, for closures, the folder).

    ``args``: for ``pypi-series`` the project then optional versions; for
    ``debian-packages`` the packages; for ``debian-closures`` the packages to close over.
    ``report`` hears of each file as it arrives (:data:`Report`).
    """
    if name not in FETCHABLE:
        raise ConfigError(f"unknown corpus {name!r} (fetchable: {', '.join(FETCHABLE)})")
    return FETCHABLE[name][1](Path(to), list(args), report)

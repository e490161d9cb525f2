"""Shipped sample corpora: release archives (wheels) listed in a manifest, unpacked to trees."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from storelab.errors import DatasetError, InputError, OutputError

__all__ = ["SampleFile", "SampleManifest", "default_datasets_dir", "list_samples", "load_manifest", "unpack_corpus", "unpack_sample"]


@dataclass(frozen=True, slots=True)
class SampleFile:
    """One archive of a sample corpus; unpacked, it becomes one snapshot's tree."""

    file: str
    """Archive file name inside the corpus folder."""
    label: str
    """Snapshot label (and folder name) for its unpacked tree, e.g. ``rich-13.7.0``."""
    size: int
    sha256: str
    fetched_with: str
    """The command that fetched it, so anyone can fetch it again."""


@dataclass(frozen=True, slots=True)
class SampleManifest:
    name: str
    description: str
    folder: Path
    files: tuple[SampleFile, ...]
    kind: str = "archives"
    """``archives`` (unpacked to trees for ingest) or ``closures`` (graphs for ``storelab layers``)."""


INSTALLED_DATASETS = Path("share") / "storelab" / "datasets"
"""Where a wheel puts the shipped corpora, below the environment's prefix (``pip install``)."""


def default_datasets_dir(prefix: str | os.PathLike[str] | None = None, checkout: Path | None = None) -> Path:
    """Where the shipped corpora are: ``STORELAB_DATASETS`` if set; else ``datasets/`` of the
    source checkout this package runs from (``checkout``); else the copy an installed wheel put
    under the environment's prefix (``<prefix>/share/storelab/datasets``), so ``pip install``
    users have the sample too.

    >>> default_datasets_dir(prefix="/venv", checkout=Path("/nowhere")).as_posix()
    '/venv/share/storelab/datasets'
    """
    override = os.environ.get("STORELAB_DATASETS")
    if override:
        return Path(override)
    checkout = checkout if checkout is not None else Path(__file__).resolve().parents[2] / "datasets"
    if (checkout / "pypi-sample" / "manifest.json").is_file():
        return checkout
    return Path(prefix if prefix is not None else sys.prefix) / INSTALLED_DATASETS


def list_samples(datasets_dir: Path | None = None) -> list[SampleManifest]:
    """Every corpus folder with a manifest under ``datasets_dir``."""
    root = datasets_dir or default_datasets_dir()
    return [load_manifest(p.parent) for p in sorted(root.glob("*/manifest.json"))]


def load_manifest(folder: Path) -> SampleManifest:
    path = folder / "manifest.json"
    try:
        raw = json.loads(path.read_text())
        files = tuple(
            SampleFile(f["file"], f["label"], int(f["size"]), f["sha256"], f["fetched_with"]) for f in raw["files"]
        )
        return SampleManifest(raw["name"], raw["description"], folder, files, raw.get("kind", "archives"))
    except FileNotFoundError:
        raise DatasetError(f"{folder}: no manifest.json (not a sample corpus)") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"{path}: malformed manifest ({err})") from None


def _find(name: str, datasets_dir: Path | None) -> SampleManifest:
    samples = {m.name: m for m in list_samples(datasets_dir)}
    if name not in samples:
        known = ", ".join(sorted(samples)) or "none"
        raise DatasetError(f"no sample corpus named {name!r} (shipped: {known})")
    return samples[name]


def _verify(path: Path, expected: SampleFile) -> None:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"{path}: {err.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != expected.size or digest != expected.sha256:
        raise InputError(f"{path}: sha256 {digest} does not match the manifest's {expected.sha256}")


def _extract(archive: Path, dest: Path) -> None:
    """Unpack a wheel (zip) without letting any member escape ``dest``; a ``.deb`` with
    ``dpkg-deb -x`` (which refuses members outside the target itself)."""
    if archive.suffix == ".deb":
        done = subprocess.run(["dpkg-deb", "-x", str(archive), str(dest)], capture_output=True, text=True)
        if done.returncode != 0:
            raise InputError(f"{archive}: dpkg-deb cannot unpack it: {done.stderr.strip()[:200]}")
        return
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            target = (dest / member.filename).resolve()
            if not str(target).startswith(str(dest.resolve()) + os.sep):
                raise InputError(f"{archive}: member {member.filename!r} would land outside the tree")
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            # keep the executable bit the archive recorded (Unix mode in the high bits)
            mode = (member.external_attr >> 16) & 0o777
            os.chmod(target, 0o755 if mode & 0o100 else 0o644)


def unpack_sample(name: str, dest: str | os.PathLike[str], datasets_dir: Path | None = None) -> list[tuple[str, Path]]:
    """Check and unpack every archive of a corpus; returns ``(label, tree)`` in manifest order.

    A tree already unpacked (and complete) is kept as it is.

    >>> import tempfile
    >>> trees = unpack_sample("pypi-sample", tempfile.mkdtemp())
    >>> [label for label, _ in trees][:2]
    ['rich-13.7.0', 'rich-13.7.1']
    """
    return unpack_corpus(_find(name, datasets_dir), dest)


def unpack_corpus(manifest: SampleManifest, dest: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """Check and unpack every archive a manifest lists (see :func:`unpack_sample`)."""
    if manifest.kind != "archives":
        raise InputError(f"{manifest.name} holds {manifest.kind}, not archives to unpack; use it where it is: {manifest.folder}")
    out = Path(dest)
    trees: list[tuple[str, Path]] = []
    for item in manifest.files:
        archive = manifest.folder / item.file
        tree = out / item.label
        done_marker = out / f".{item.label}.complete"
        if not done_marker.exists():
            _verify(archive, item)
            partial = out / f".{item.label}.partial"
            try:
                shutil.rmtree(partial, ignore_errors=True)
                partial.mkdir(parents=True)
                _extract(archive, partial)
                shutil.rmtree(tree, ignore_errors=True)
                os.replace(partial, tree)
                done_marker.write_text(item.sha256 + "\n")
            except OSError as err:
                raise OutputError(f"cannot unpack {archive} into {out}: {err.strerror or err}") from None
        trees.append((item.label, tree))
    return trees

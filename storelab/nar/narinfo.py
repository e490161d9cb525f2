"""``.narinfo`` files, as Nix binary caches serve them beside each NAR.

Only what a study needs: the store path, its references (so closures can be rebuilt from a
dataset), and the NAR's size and hash (checked against the NAR actually read).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from storelab.errors import InputError, InputNotFoundError

__all__ = ["NarInfo", "parse_narinfo", "load_narinfo", "narinfos_by_nar", "render_narinfo"]


@dataclass(frozen=True, slots=True)
class NarInfo:
    store_path: str
    references: tuple[str, ...]
    """Full store paths (a narinfo lists base names; the store directory is the store path's)."""
    nar_size: int | None = None
    nar_hash: str | None = None
    url: str | None = None
    """Where the cache serves the NAR, relative to the cache (``nar/<hash>.nar.xz``)."""


def parse_narinfo(text: str, name: str = "narinfo") -> NarInfo:
    """Parse narinfo text.

    >>> info = parse_narinfo("StorePath: /nix/store/aaa-hello-2.12\\nNarSize: 200\\nReferences: aaa-hello-2.12 bbb-glibc-2.40\\n")
    >>> info.store_path, info.references, info.nar_size
    ('/nix/store/aaa-hello-2.12', ('/nix/store/aaa-hello-2.12', '/nix/store/bbb-glibc-2.40'), 200)
    """
    fields: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise InputError(f"{name}: line {number} is not 'Key: value'")
        fields[key.strip()] = value.strip()
    store_path = fields.get("StorePath", "")
    if not store_path.startswith("/") or "/" not in store_path[1:]:
        raise InputError(f"{name}: no StorePath (or not an absolute store path)")
    store_dir = store_path.rsplit("/", 1)[0]
    references = tuple(f"{store_dir}/{ref}" for ref in fields.get("References", "").split())
    try:
        nar_size = int(fields["NarSize"]) if "NarSize" in fields else None
    except ValueError:
        raise InputError(f"{name}: NarSize is not a number") from None
    return NarInfo(store_path, references, nar_size, fields.get("NarHash"), fields.get("URL"))


def load_narinfo(path: str | os.PathLike[str]) -> NarInfo:
    source = Path(path)
    try:
        return parse_narinfo(source.read_text(), str(source))
    except FileNotFoundError:
        raise InputNotFoundError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{source}: cannot read: {err}") from None


def narinfos_by_nar(folder: str | os.PathLike[str]) -> dict[str, NarInfo]:
    """Every ``*.narinfo`` of a binary cache's folder, by the file name of the NAR its URL names
    (a NAR two narinfos name — two store paths with the same contents — is left out: which one
    is meant cannot be told from the NAR). A narinfo without a URL is an :class:`InputError`."""
    found: dict[str, NarInfo] = {}
    twice: set[str] = set()
    for path in sorted(Path(folder).glob("*.narinfo")):
        info = load_narinfo(path)
        if not info.url:
            raise InputError(f"{path}: no URL line (which NAR does it describe?)")
        name = info.url.rsplit("/", 1)[-1]
        if name in found:
            twice.add(name)
        found[name] = info
    if not found:
        raise InputError(f"{folder}: no .narinfo files")
    return {name: info for name, info in found.items() if name not in twice}


def render_narinfo(
    store_path: str, references: tuple[str, ...] | list[str], compression: str, file_size: int, nar_size: int,
    file_hash: str = "0" * 52, nar_hash: str = "0" * 52, signature: str | None = "cache.nixos.org-1:" + "A" * 86 + "==",
) -> str:  # fmt: skip
    """A ``.narinfo`` as a Nix binary cache serves it (the fields ``nix copy --to file://``
    writes, plus one signature; no ``Deriver``: a NAR does not tell it). Hashes are nix-base32
    sha256 (52 characters); where a snapshot does not know one, a placeholder of that length
    keeps the size exact.

    >>> text = render_narinfo("/nix/store/" + "a" * 32 + "-hello-2.12", ["/nix/store/" + "b" * 32 + "-glibc"], "xz", 100, 200)
    >>> text.splitlines()[2:5], len(text)
    (['Compression: xz', 'FileHash: sha256:0000000000000000000000000000000000000000000000000000', 'FileSize: 100'], 480)
    """
    suffix = {"xz": ".nar.xz", "zstd": ".nar.zst", "none": ".nar", "bzip2": ".nar.bz2"}[compression]
    lines = [
        f"StorePath: {store_path}",
        f"URL: nar/{file_hash}{suffix}",
        f"Compression: {compression}",
        f"FileHash: sha256:{file_hash}",
        f"FileSize: {file_size}",
        f"NarHash: sha256:{nar_hash}",
        f"NarSize: {nar_size}",
        "References: " + " ".join(ref.rsplit("/", 1)[-1] for ref in references),
    ]
    if signature:
        lines.append(f"Sig: {signature}")
    return "\n".join(lines) + "\n"

"""NARs for tests and fuzzing: random well-formed ones, and mutations of any.

>>> import io, random
>>> from storelab.nar import NarEnd, read_nar
>>> nar = random_nar(random.Random(1))
>>> isinstance(list(read_nar(io.BytesIO(nar)))[-1], NarEnd)
True
>>> mutate(random.Random(2), nar, edits=0) == nar
True
"""

from __future__ import annotations

import random
from typing import BinaryIO

import blake3

from storelab.nar import NarError, NarFile, NarRun, read_nar
from storelab.nar.writer import nar_string as S

__all__ = ["digested_events", "mutate", "random_nar"]


def random_nar(rng: random.Random, depth: int = 3, largest: int = 40, deep_chain: int = 0) -> bytes:
    """A well-formed NAR of a random tree: directories nested at most ``depth`` deep, files of
    up to ``largest`` bytes (a third of them executable), symlinks, names of one to three
    letters; with ``deep_chain``, the root's last entry opens that many nested directories."""

    def node(d: int) -> bytes:
        kind = rng.choice(["file", "link", "dir"] if d < depth else ["file", "link"])
        if kind == "file":
            exe = [S(b"executable"), S(b"")] if rng.random() < 0.3 else []
            contents = rng.randbytes(rng.randrange(largest + 1))
            return S(b"(") + S(b"type") + S(b"regular") + b"".join(exe) + S(b"contents") + S(contents) + S(b")")
        if kind == "link":
            return S(b"(") + S(b"type") + S(b"symlink") + S(b"target") + S(b"t" * rng.randrange(1, 20)) + S(b")")
        names = sorted({bytes(rng.choice(b"abcxyz.") for _ in range(rng.randrange(1, 4))) for _ in range(rng.randrange(5))} - {b".", b".."})
        return directory([(n, node(d + 1)) for n in names])

    def directory(entries: list[tuple[bytes, bytes]]) -> bytes:
        body = b"".join(S(b"entry") + S(b"(") + S(b"name") + S(n) + S(b"node") + child + S(b")") for n, child in entries)
        return S(b"(") + S(b"type") + S(b"directory") + body + S(b")")

    root = node(0)
    if deep_chain:
        chain = directory([])
        for _ in range(deep_chain - 1):
            chain = directory([(b"d", chain)])
        root = directory([(b"a", root), (b"z", chain)])
    return S(b"nix-archive-1") + root


def mutate(rng: random.Random, data: bytes, edits: int | None = None) -> bytes:
    """``data`` with one to four (or ``edits``) random edits: a bit flipped, a byte inserted,
    a few bytes deleted, a few duplicated, or the rest cut off."""
    out = bytearray(data)
    for _ in range(rng.randrange(1, 5) if edits is None else edits):
        op = rng.randrange(5)
        pos = rng.randrange(len(out) + 1)
        if op == 0 and pos < len(out):
            out[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            out[pos:pos] = bytes([rng.randrange(256)])
        elif op == 2 and pos < len(out):
            del out[pos : pos + rng.randrange(1, 9)]
        elif op == 3:
            start = rng.randrange(len(out) + 1)
            out[pos:pos] = out[start : start + rng.randrange(1, 17)]
        else:
            del out[pos:]
    return bytes(out)


def digested_events(stream: BinaryIO, digest_files_upto: int | None = None) -> tuple[list[object], str | None, int]:
    """Every event :func:`~storelab.nar.read_nar` gives (runs taken apart, each file as its path,
    size, executable bit and the BLAKE3 digest of its contents), the error that ended the reading
    (None if the NAR is valid), and how many runs came: the same NAR read with and without
    ``digest_files_upto`` must give the same first two.

    >>> import io
    >>> nar = random_nar(random.Random(3))
    >>> digested_events(io.BytesIO(nar))[:2] == digested_events(io.BytesIO(nar), 64)[:2]
    True
    """
    seen: list[object] = []
    runs = 0

    def file(event: NarFile, digest: bytes | None = None) -> tuple[bytes, int, bool, bytes]:
        return event.path, event.size, event.executable, digest or blake3.blake3(b"".join(event.pieces)).digest()

    try:
        for event in read_nar(stream, "n", digest_files_upto=digest_files_upto):
            if isinstance(event, NarRun):
                runs += 1
                digests = iter(event.digests[k : k + 32] for k in range(0, len(event.digests), 32))
                seen += [file(e, next(digests)) if isinstance(e, NarFile) else e for e in event.events()]
            elif isinstance(event, NarFile):
                seen.append(file(event))
            else:
                seen.append(event)
    except NarError as err:
        return seen, str(err), runs
    return seen, None, runs

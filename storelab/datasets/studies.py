"""A study's corpus as a parameter: a shipped sample (unpacked trees) or a binary-cache slice
(its NARs, with their narinfos), ingested the same way whichever it is.

Notebooks take ``CORPUS`` as a parameter: ``"pypi-sample"`` (shipped, what the tests run) or
the folder of a ``debian-cache`` slice (``storelab datasets fetch debian-cache``).
"""

from __future__ import annotations

import os
from pathlib import Path

from storelab.errors import InputError

__all__ = ["ingest_corpus"]


def ingest_corpus(corpus: str | os.PathLike[str], dataset: str | os.PathLike[str], options: object, work: str | os.PathLike[str]) -> int:
    """Ingest every snapshot of ``corpus`` into ``dataset`` with ``options`` (an
    :class:`~storelab.ingest.IngestOptions`); returns how many. A folder holding
    ``narinfos.txt`` is a binary-cache slice: its NARs, each with its narinfo; a name is a
    shipped sample, unpacked under ``work`` (its trees)."""
    from storelab.ingest import IngestOptions, ingest_dir
    from storelab.ingest.nar_source import ingest_nars
    from storelab.nar.narinfo import load_narinfo

    assert isinstance(options, IngestOptions)
    listing = Path(corpus) / "narinfos.txt"
    if listing.is_file():
        sources = []
        for line in listing.read_text().split():
            info = load_narinfo(line)
            if not info.url:
                raise InputError(f"{line}: no URL line (which NAR does it describe?)")
            sources.append((line, Path(line).parent / info.url, info, info.store_path.rsplit("/", 1)[-1].split("-", 1)[-1]))
        return len(ingest_nars(sources, dataset, options))
    from storelab.datasets.sample import unpack_sample

    trees = unpack_sample(str(corpus), Path(work) / "samples")
    for label, tree in trees:
        ingest_dir(tree, dataset, label, options)
    return len(trees)

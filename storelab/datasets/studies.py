"""A study's corpus as a parameter: a shipped sample (unpacked trees) or a binary-cache slice
(its NARs, with their narinfos), ingested the same way whichever it is.

Notebooks take ``CORPUS`` as a parameter: ``"pypi-sample"`` (shipped, what the tests run) or
the folder of a ``debian-cache`` slice (``storelab datasets fetch debian-cache``).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from storelab.errors import InputError

if TYPE_CHECKING:
    from storelab.layers import ClosureGraph

__all__ = ["corpus_images", "corpus_tree", "describe_corpus", "ingest_corpus", "is_cache_slice", "package_name"]

_VERSION_START = re.compile(r"^(.+?)-(\d.*)$")


def package_name(label: str) -> str:
    """A snapshot label without its version: everything before the first ``-`` that a digit
    follows (Nix's rule for splitting a store path's name), the whole label when none does.

    >>> package_name("rich-13.7.0"), package_name("libglib2.0-tests-2.74.6-2+deb12u2"), package_name("7zip-22.01")
    ('rich', 'libglib2.0-tests', '7zip')
    >>> package_name("hello")
    'hello'
    """
    match = _VERSION_START.match(label)
    return match.group(1) if match else label


def is_cache_slice(corpus: str | os.PathLike[str]) -> bool:
    """Whether ``corpus`` is a binary-cache slice's folder (it holds ``narinfos.txt``)."""
    return (Path(corpus) / "narinfos.txt").is_file()


def describe_corpus(corpus: str | os.PathLike[str]) -> str:
    """How an answer names its corpus: the slice's folder name, or the shipped sample's name."""
    return f"the binary-cache slice in {Path(corpus).name}/" if is_cache_slice(corpus) else f"the shipped sample {corpus}"


def ingest_corpus(corpus: str | os.PathLike[str], dataset: str | os.PathLike[str], options: object, work: str | os.PathLike[str]) -> int:
    """Ingest every snapshot of ``corpus`` into ``dataset`` with ``options`` (an
    :class:`~storelab.ingest.IngestOptions`); returns how many. A folder holding
    ``narinfos.txt`` is a binary-cache slice: its NARs, each with its narinfo; a name is a
    shipped sample, unpacked under ``work`` (its trees)."""
    from storelab.ingest import IngestOptions, ingest_dir
    from storelab.ingest.fetch import read_source_list
    from storelab.ingest.nar_source import ingest_nars
    from storelab.nar.narinfo import load_narinfo

    assert isinstance(options, IngestOptions)
    listing = Path(corpus) / "narinfos.txt"
    if listing.is_file():
        sources = []
        for line in read_source_list(listing):
            info = load_narinfo(line)
            if not info.url:
                raise InputError(f"{line}: no URL line (which NAR does it describe?)")
            nar = Path(line).parent / info.url
            # named by the NAR file itself (as `ingest-nar` names a narinfo's NAR): a .nar.xz read
            # from disk then gives its own size as the xz size instead of being compressed again
            sources.append((str(nar), nar, info, info.store_path.rsplit("/", 1)[-1].split("-", 1)[-1]))
        return len(ingest_nars(sources, dataset, options))
    from storelab.datasets.sample import unpack_sample

    trees = unpack_sample(str(corpus), Path(work) / "samples")
    for label, tree in trees:
        ingest_dir(tree, dataset, label, options)
    return len(trees)


def corpus_tree(corpus: str | os.PathLike[str], work: str | os.PathLike[str], store_paths: int | None = None) -> Path:
    """One directory tree of ``corpus`` for a study that ingests a tree: the shipped sample
    unpacked (every snapshot side by side), or the first ``store_paths`` of a slice's unpacked
    trees by name (all of them when None), hard-linked into ``work`` (no bytes copied)."""
    from storelab.datasets.sample import unpack_sample

    if not is_cache_slice(corpus):
        unpack_sample(str(corpus), Path(work) / "samples")
        return Path(work) / "samples"
    trees = Path(corpus) / "trees"
    if not trees.is_dir():
        raise InputError(f"{corpus}: no trees/ folder (fetch the slice again: storelab datasets fetch debian-cache)")
    chosen = sorted(p.name for p in trees.iterdir())[:store_paths]
    target = Path(work) / f"slice-{len(chosen)}-paths"
    done = target.with_name(target.name + ".complete")  # beside the tree: a marker inside would be ingested
    if not done.exists():
        shutil.rmtree(target, ignore_errors=True)
        for name in chosen:
            shutil.copytree(trees / name, target / name, symlinks=True, copy_function=os.link)
        done.touch()
    return target


def corpus_images(corpus: str | os.PathLike[str], images: int = 8) -> tuple[list[ClosureGraph], dict[str, int]]:
    """Container images of ``corpus`` and each store path's popularity, for the layer study.

    A slice's images are closures (by the narinfos' References) of store paths nothing refers
    to, chosen greedily so the images differ: first the largest closure, then each time the one
    adding the most bytes no chosen image holds yet, one version per package; popularity
    counts, for each path, the closures of all top-level paths holding it. Any other corpus is a
    folder (or a shipped name) of closure graphs with ``popularity.json``, as
    ``storelab datasets fetch debian-closures`` writes.
    """
    from storelab.layers import ClosureGraph, StorePath, load_images, load_popularity, path_name
    from storelab.nar.narinfo import load_narinfo

    if not is_cache_slice(corpus):
        folder = Path(corpus)
        if not folder.is_dir():
            from storelab.datasets import default_datasets_dir

            folder = default_datasets_dir() / str(corpus)
        return load_images(folder), load_popularity(folder / "popularity.json")
    from storelab.ingest.fetch import read_source_list

    infos = [load_narinfo(line) for line in read_source_list(Path(corpus) / "narinfos.txt")]
    nodes = [StorePath(i.store_path, int(i.nar_size or 0), tuple(r for r in i.references if r != i.store_path)) for i in infos]
    full = ClosureGraph.build(nodes, None, Path(corpus).name)
    referred = {ref for node in nodes for ref in node.references}
    tops = [node.path for node in nodes if node.path not in referred]
    closures = {top: full.closure(top) for top in tops}
    popularity: dict[str, int] = {}
    for members in closures.values():
        for member in members:
            popularity[path_name(member)] = popularity.get(path_name(member), 0) + 1
    by_path = {node.path: node for node in nodes}
    chosen: list[str] = []
    covered: set[str] = set()
    candidates = sorted(tops)
    while len(chosen) < images and candidates:
        best = max(candidates, key=lambda top: sum(by_path[m].nar_size for m in closures[top] - covered))
        chosen.append(best)
        covered |= closures[best]
        candidates = [top for top in candidates if package_name(path_name(top)) != package_name(path_name(best))]
    # named by package (one version each): the store path stays the graph's top-level path
    graphs = [ClosureGraph.build([by_path[m] for m in closures[top]], [top], package_name(path_name(top))) for top in chosen]
    return graphs, popularity

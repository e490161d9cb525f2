"""Real corpora for studies: the small sample shipped in ``datasets/``, unpacked reproducibly.

Each corpus has a ``manifest.json`` naming every file, where it came from, its size and
sha256; unpacking checks every sha256 first, so a study always runs on the same bytes.
"""

from storelab.datasets.fetch import FETCHABLE, fetch_corpus
from storelab.datasets.sample import (
    SampleFile,
    SampleManifest,
    default_datasets_dir,
    list_samples,
    load_manifest,
    unpack_sample,
)

__all__ = [
    "FETCHABLE",
    "SampleFile",
    "SampleManifest",
    "default_datasets_dir",
    "fetch_corpus",
    "list_samples",
    "load_manifest",
    "unpack_sample",
]

"""Blob stores with snix's object layout, over obstore (``file://``, ``memory://``, ``s3://``).

- ``blobs/b3/<first 4 hex>/<hex>``: the blob index, a protobuf ``StatBlobResponse{repeated
  ChunkMeta chunks = 2}`` with ``ChunkMeta{bytes digest = 1; uint64 size = 2}``; empty (0 bytes)
  for a blob of fewer than two chunks;
- ``chunks/b3/<first 4 hex>/<hex>``: a chunk, zstd level 3; a blob of one chunk is stored as
  that chunk under the blob's own digest; the empty blob has no chunk object;
- ``dirs/b3/<first 4 hex>/<hex>``: a root directory's closure, zstd, length-delimited
  ``Directory`` messages from the root to the leaves.

Layers around the object storage: retries (:class:`RetryingBackend`), request counting
(:class:`CountingBackend`, the cost model's input), a simulated slow link
(:class:`LatencyBackend`), and the background uploader (:class:`Uploader`).
"""

from storelab.stores.backends import (
    CountingBackend,
    ObjectBackend,
    ObstoreBackend,
    RetryingBackend,
    StoreError,
    StoreOps,
    TransientStoreError,
    open_backend,
)
from storelab.stores.base import BlobStore, ChunkMeta, decode_index, encode_index
from storelab.stores.latency import LatencyBackend, LinkProfile
from storelab.stores.snix import SnixStore, object_key, open_store
from storelab.stores.uploader import Uploader, UploadOptions

__all__ = [
    "BlobStore",
    "ChunkMeta",
    "CountingBackend",
    "LatencyBackend",
    "LinkProfile",
    "ObjectBackend",
    "ObstoreBackend",
    "RetryingBackend",
    "SnixStore",
    "StoreError",
    "StoreOps",
    "TransientStoreError",
    "UploadOptions",
    "Uploader",
    "decode_index",
    "encode_index",
    "object_key",
    "open_backend",
    "open_store",
]

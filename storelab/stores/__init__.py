"""Blob stores with snix's object layout.

- ``blobs/b3/<first 4 hex>/<hex>``: the blob index, a protobuf ``StatBlobResponse{repeated
  ChunkMeta chunks = 2}`` with ``ChunkMeta{bytes digest = 1; uint64 size = 2}``; empty (0 bytes)
  for a blob of fewer than two chunks;
- ``chunks/b3/<first 4 hex>/<hex>``: a chunk, zstd level 3; a blob of one chunk is stored as
  that chunk under the blob's own digest; the empty blob has no chunk object.
"""

from storelab.stores.base import BlobStore, ChunkMeta, StoreError, decode_index, encode_index, open_store
from storelab.stores.local import LocalBlobStore

__all__ = ["BlobStore", "ChunkMeta", "LocalBlobStore", "StoreError", "decode_index", "encode_index", "open_store"]

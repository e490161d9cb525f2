"""Every error storelab raises on purpose, in one tree.

Each carries a one-line message that names the input, output or store it is about, so the
command line prints it as it is, without a traceback (exit 1; :class:`ConfigError` exits 2,
:class:`Interrupted` 130). Anything else that escapes is a bug: exit 70, "internal error".

::

    StorelabError
     ├── InputError                 a source tree, file or NAR cannot be read as asked
     │    ├── InputNotFoundError    … because it does not exist (also a FileNotFoundError)
     │    └── NarError              … because the NAR breaks Nix's rules (names the byte offset)
     ├── DatasetError               a dataset is not one, is damaged, or is of another version
     │    └── VanishedError         … a part's file was removed by another writer while being read
     ├── OutputError                writing a dataset or an output file failed (disk full, permissions)
     ├── StoreError                 a store object is missing or corrupt, or a request failed for good
     │    └── TransientStoreError   … a request that may succeed when tried again (network, 5xx)
     ├── FormatError                bytes that do not decode as what they claim to be
     │    ├── DecodeError           malformed protobuf (castore messages, blob indexes)
     │    └── InvalidNodeError      a castore node that breaks castore's rules (names, digests)
     ├── ConfigError                options that do not fit together (also a ValueError)
     └── Interrupted                the user pressed Ctrl-C; nothing of the work under way was committed

Python's own errors are translated where they arise: an ``OSError`` reading a source becomes an
:class:`InputError`, writing a dataset an :class:`OutputError`; obstore's errors become
:class:`StoreError` in one place (:func:`storelab.stores.backends.obstore_errors`), which
retries only :class:`TransientStoreError`.
"""

from __future__ import annotations

__all__ = [
    "StorelabError",
    "InputError",
    "InputNotFoundError",
    "NarError",
    "DatasetError",
    "VanishedError",
    "OutputError",
    "StoreError",
    "TransientStoreError",
    "FormatError",
    "DecodeError",
    "InvalidNodeError",
    "ConfigError",
    "Interrupted",
]


class StorelabError(Exception):
    """Base of every error storelab raises on purpose; its message is one line."""


class InputError(StorelabError):
    """An input (tree, file, NAR) cannot be read as asked."""


class InputNotFoundError(InputError, FileNotFoundError):
    """An input path does not exist."""


class NarError(InputError):
    """A NAR that breaks the rules Nix enforces when it reads one; the message names the NAR
    and the byte offset of the mistake."""


class DatasetError(StorelabError):
    """A dataset is missing, malformed, damaged, or of an unsupported schema version."""


class VanishedError(DatasetError):
    """A file storelab keeps beside the lake (a staged part of a snapshot being written) was
    removed while being read: its writer committed or abandoned it meanwhile."""


class OutputError(StorelabError):
    """Writing the dataset (or an output file) failed; nothing of what was being written was committed."""


class StoreError(StorelabError):
    """A store object is missing or corrupt, or a request to the store failed for good."""


class TransientStoreError(StoreError):
    """A request failed in a way that may succeed when tried again (network, timeout, 5xx)."""


class FormatError(StorelabError, ValueError):
    """Bytes that do not decode as what they claim to be."""


class DecodeError(FormatError):
    """Malformed protobuf bytes."""


class InvalidNodeError(FormatError):
    """A castore node that breaks castore's rules (an invalid name, a digest of the wrong length)."""


class ConfigError(StorelabError, ValueError):
    """Options that are invalid or do not fit together."""


class Interrupted(StorelabError):
    """The run was interrupted (Ctrl-C); nothing of the snapshot being written was committed."""

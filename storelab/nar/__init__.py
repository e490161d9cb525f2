"""NAR archives: a strict streaming reader and a writer byte-identical with Nix's."""

from storelab.nar.hashes import nix_base32
from storelab.nar.reader import (
    MAGIC,
    NarDirectoryEnd,
    NarDirectoryStart,
    NarEnd,
    NarError,
    NarEvent,
    NarFile,
    NarSymlink,
    read_nar,
)
from storelab.nar.writer import dump_path, nar_bytes_of_file, nar_string

__all__ = [
    "MAGIC",
    "NarDirectoryEnd",
    "NarDirectoryStart",
    "NarEnd",
    "NarError",
    "NarEvent",
    "NarFile",
    "NarSymlink",
    "dump_path",
    "nar_bytes_of_file",
    "nar_string",
    "nix_base32",
    "read_nar",
]

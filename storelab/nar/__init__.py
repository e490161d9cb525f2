"""NAR archives: a strict streaming reader and a writer byte-identical with Nix's."""

from storelab.nar.hashes import nix_base32
from storelab.nar.reader import (
    MAGIC,
    RUN_DIRECTORY,
    RUN_END,
    RUN_EXECUTABLE,
    RUN_FILE,
    RUN_SYMLINK,
    NarDirectoryEnd,
    NarDirectoryStart,
    NarEnd,
    NarError,
    NarEvent,
    NarFile,
    NarRun,
    NarSymlink,
    read_nar,
)
from storelab.nar.writer import dump_path, nar_bytes_of_file, nar_string

__all__ = [
    "MAGIC",
    "RUN_DIRECTORY",
    "RUN_END",
    "RUN_EXECUTABLE",
    "RUN_FILE",
    "RUN_SYMLINK",
    "NarDirectoryEnd",
    "NarDirectoryStart",
    "NarEnd",
    "NarError",
    "NarEvent",
    "NarFile",
    "NarRun",
    "NarSymlink",
    "dump_path",
    "nar_bytes_of_file",
    "nar_string",
    "nix_base32",
    "read_nar",
]

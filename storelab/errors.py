"""Errors storelab raises on purpose.

Every error carries a one-line message that names the input it is about, so the CLI can
print it as it is, without a traceback::

    StorelabError
     ├── InputError                 a source tree, file or NAR cannot be read as asked
     │    └── InputNotFoundError    … because it does not exist (also a FileNotFoundError)
     ├── DatasetError               a dataset folder is not one, or is of another version
     ├── OutputError                writing the dataset failed (disk full, permissions)
     ├── ConfigError                options that do not fit together (chunk sizes, levels)
     └── Interrupted                the user pressed Ctrl-C; nothing was committed
"""

from __future__ import annotations

__all__ = [
    "StorelabError",
    "InputError",
    "InputNotFoundError",
    "DatasetError",
    "OutputError",
    "ConfigError",
    "Interrupted",
]


class StorelabError(Exception):
    """Base of every error storelab raises on purpose; its message is one line."""


class InputError(StorelabError):
    """An input (tree, file, NAR) cannot be read as asked."""


class InputNotFoundError(InputError, FileNotFoundError):
    """An input path does not exist."""


class DatasetError(StorelabError):
    """A dataset folder is missing, malformed, or of an unsupported schema version."""


class OutputError(StorelabError):
    """Writing the dataset failed; nothing of the snapshot being written was committed."""


class ConfigError(StorelabError, ValueError):
    """Options that are invalid or do not fit together."""


class Interrupted(StorelabError):
    """The run was interrupted (Ctrl-C); nothing of the snapshot being written was committed."""

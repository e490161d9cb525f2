"""The compiled cut loops (``_cdc.c``) the peer chunkers call, and what they share.

The extension is built when storelab is installed (``pip install`` / ``make``); a checkout whose
build failed gets one clear error naming the chunker, not an ImportError deep in a worker.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from types import ModuleType

from storelab.errors import ConfigError

__all__ = ["native", "table_bytes"]


def native(chunker: str) -> ModuleType:
    """The ``_cdc`` extension module; :class:`ConfigError` naming ``chunker`` when it is not built."""
    try:
        from storelab.chunking import _cdc  # type: ignore[attr-defined]
    except ImportError as err:
        raise ConfigError(
            f"the {chunker} chunker needs storelab's compiled chunkers (storelab/chunking/_cdc.c), which are not built "
            f"here ({err}); reinstall storelab (make venv, or pip install .) with a C compiler present"
        ) from None
    module: ModuleType = _cdc
    return module


def table_bytes(values: Iterable[int], width: int) -> bytes:
    """256 integers as the native-endian array of ``width``-byte entries the C loops index.

    >>> len(table_bytes(range(256), 4)), len(table_bytes(range(256), 8))
    (1024, 2048)
    """
    typecode = {4: "I", 8: "Q"}[width]
    table = array(typecode, values)
    assert table.itemsize == width and len(table) == 256
    return table.tobytes()

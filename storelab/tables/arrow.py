"""Arrow arrays from plain Python lists, built from buffers.

``pa.array(list)`` first asks whether the list is a pandas object, and importing pandas for
that costs a third of a second per process — longer than the ingest of many trees. These
builders cover the column types the schemas use and never touch pandas.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any, cast

import pyarrow as pa

__all__ = ["column"]

_INT_CODES = {8: "b", 16: "h", 32: "i", 64: "q"}
_UINT_CODES = {8: "B", 16: "H", 32: "I", 64: "Q"}


def _validity(values: Sequence[Any]) -> tuple[pa.Buffer | None, int]:
    if None not in values:  # most columns: no list of flags to build
        return None, 0
    missing = [v is None for v in values]
    nulls = sum(missing)
    bits = bytearray((len(values) + 7) // 8)
    for i, is_missing in enumerate(missing):
        if not is_missing:
            bits[i >> 3] |= 1 << (i & 7)
    return pa.py_buffer(bytes(bits)), nulls


def _variable(values: Sequence[bytes | None], type_: pa.DataType) -> pa.Array:
    validity, nulls = _validity(values)
    parts = cast("Sequence[bytes]", [b"" if v is None else v for v in values] if nulls else values)
    offsets = array("i", [0])
    offsets.extend(accumulate(map(len, parts)))
    return pa.Array.from_buffers(
        type_, len(values), [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(parts))], null_count=nulls
    )


def column(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    """One column of ``type_`` from Python values (None = null).

    >>> column([b"a", None, b"bc"], pa.binary()).to_pylist()
    [b'a', None, b'bc']
    >>> column(["file", "directory", "file"], pa.dictionary(pa.int8(), pa.string())).to_pylist()
    ['file', 'directory', 'file']
    """
    n = len(values)
    if pa.types.is_dictionary(type_):
        words: dict[Any, int] = {}
        indices = [None if v is None else words.setdefault(v, len(words)) for v in values]
        return pa.DictionaryArray.from_arrays(column(indices, type_.index_type), column(list(words), type_.value_type))
    if pa.types.is_binary(type_):
        return _variable(values, type_)
    if pa.types.is_string(type_):
        return _variable([None if v is None else v.encode() for v in values], type_)
    if pa.types.is_fixed_size_binary(type_):
        validity, nulls = _validity(values)
        width = type_.byte_width
        data = b"".join(bytes(width) if v is None else v for v in values)
        if len(data) != n * width:
            raise ValueError(f"values of a {type_} column must be {width} bytes long")
        return pa.Array.from_buffers(type_, n, [validity, pa.py_buffer(data)], null_count=nulls)
    if pa.types.is_boolean(type_):
        validity, nulls = _validity(values)
        bits = bytearray((n + 7) // 8)
        for i, v in enumerate(values):
            if v:
                bits[i >> 3] |= 1 << (i & 7)
        return pa.Array.from_buffers(type_, n, [validity, pa.py_buffer(bytes(bits))], null_count=nulls)
    if pa.types.is_integer(type_):
        codes = _INT_CODES if pa.types.is_signed_integer(type_) else _UINT_CODES
        validity, nulls = _validity(values)
        ints = array(codes[type_.bit_width], [0 if v is None else v for v in values])
        return pa.Array.from_buffers(type_, n, [validity, pa.py_buffer(ints)], null_count=nulls)
    if pa.types.is_floating(type_) and type_.bit_width == 64:
        validity, nulls = _validity(values)
        floats = array("d", [0.0 if v is None else v for v in values])
        return pa.Array.from_buffers(type_, n, [validity, pa.py_buffer(floats)], null_count=nulls)
    if pa.types.is_timestamp(type_) and type_.unit == "us":
        micros = [None if v is None else _micros(v) for v in values]
        return column(micros, pa.int64()).view(type_)
    if pa.types.is_list(type_):
        validity, nulls = _validity(values)
        offsets = array("i", [0])
        offsets.extend(accumulate(0 if v is None else len(v) for v in values))
        flat = [item for v in values if v is not None for item in v]
        return pa.ListArray.from_buffers(
            type_, n, [validity, pa.py_buffer(offsets)], children=[column(flat, type_.value_type)], null_count=nulls
        )
    if pa.types.is_struct(type_):
        validity, nulls = _validity(values)
        children = [column([None if v is None else v.get(f.name) for v in values], f.type) for f in type_]
        return pa.StructArray.from_buffers(type_, n, [validity], children=children, null_count=nulls)
    raise TypeError(f"no builder for {type_}")


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

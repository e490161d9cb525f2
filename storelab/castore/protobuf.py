"""The few protobuf wire-format pieces castore messages need, written out by hand.

castore digests are BLAKE3 over the *canonical* encoding (fields in number order, default
values omitted); generated protobuf code does not promise that byte layout, so we write it
ourselves. Only varints (wire type 0) and length-delimited fields (wire type 2) occur.
"""

from __future__ import annotations

from collections.abc import Iterator

from storelab.errors import DecodeError

__all__ = ["encode_varint", "varint_field", "bytes_field", "iter_fields", "DecodeError"]

VARINT = 0
LENGTH_DELIMITED = 2


_ONE_BYTE = [bytes((i,)) for i in range(0x80)]


def encode_varint(value: int) -> bytes:
    """Base-128 varint, least significant group first.

    >>> encode_varint(1), encode_varint(300)
    (b'\\x01', b'\\xac\\x02')
    """
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if value < 0:
        raise ValueError("varints here are unsigned")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_field(number: int, value: int) -> bytes:
    """A varint field, omitted (empty) when the value is the default 0."""
    if value == 0:
        return b""
    return encode_varint(number << 3 | VARINT) + encode_varint(value)


def bytes_field(number: int, value: bytes) -> bytes:
    """A length-delimited field, omitted (empty) when the value is empty."""
    if not value:
        return b""
    return encode_varint(number << 3 | LENGTH_DELIMITED) + encode_varint(len(value)) + value


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise DecodeError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise DecodeError("varint longer than 64 bits")


def iter_fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield ``(field number, value)``; value is an int for varints, bytes otherwise."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            value, pos = _read_varint(data, pos)
            yield number, value
        elif wire_type == LENGTH_DELIMITED:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise DecodeError("truncated length-delimited field")
            yield number, data[pos : pos + length]
            pos += length
        else:
            raise DecodeError(f"unexpected wire type {wire_type} for field {number}")

"""The protobuf wire format, read without the protobuf package: the fields of one
message as (number, wire type, value) with spans into the buffer, so large float arrays
are read by ``numpy.frombuffer`` in place (Caffe models, TensorFlow checkpoints)."""
from __future__ import annotations

import struct


class ProtoError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def varint(buf, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ProtoError(f"varint runs past byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def fields(buf, start: int, end: int):
    """Yield (field number, wire type, value) of one protobuf message; value is an int
    for varints and a (start, end) span otherwise."""
    pos = start
    while pos < end:
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = varint(buf, pos)
            if pos + length > end:
                raise ProtoError(f"field {number} runs past its message's end (byte {end})")
            yield number, wire, (pos, pos + length)
            pos += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield number, wire, (pos, pos + size)
            pos += size
        else:
            raise ProtoError(f"unsupported protobuf wire type {wire} at byte {pos}")
    if pos != end:
        raise ProtoError(f"truncated protobuf message at byte {end}")


def packed_varints(buf, span) -> list[int]:
    values, pos = [], span[0]
    while pos < span[1]:
        value, pos = varint(buf, pos)
        values.append(value)
    return values


def signed64(value: int) -> int:
    """An int64 field's value (varints carry negative numbers as 2^64 − |n|)."""
    return struct.unpack("<q", struct.pack("<Q", value & (2 ** 64 - 1)))[0]


def text(buf, span) -> str:
    return bytes(buf[span[0]:span[1]]).decode("utf-8")

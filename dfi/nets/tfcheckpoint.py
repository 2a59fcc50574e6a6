"""TensorFlow V1 checkpoints read without TensorFlow (Magenta's pretrained stylizers).

A V1 checkpoint (``tf.train.Saver`` with ``write_version=V1``, TensorFlow ≤ 0.11's only
kind) is one file: an SSTable (LevelDB's table format, as TensorFlow's ``table`` keeps it)
whose values are ``SavedTensorSlices`` protos. The table ends in a 48-byte footer — the
metaindex and index block handles (varints), zero padding, the magic 0xdb4775248b80fb57 —
the index block maps to data blocks, each followed by a 5-byte trailer (compression type:
0 none, 1 Snappy; the masked CRC-32C of the block and that byte, checked here: a damaged
file is refused rather than read into wrong weights). The entry under the empty key holds the meta (each tensor's name, shape, dtype and
slices); every other entry one slice of one tensor (``SavedSlice``: name, extents, a
``TensorProto`` of its values in row-major order), put together here by their extents.

V2 checkpoints (``.index`` + ``.data-NNNNN-of-NNNNN``) are another layout: refused with a
one-line error naming what was found.
"""
from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import numpy as np

from ..core.errors import FileFormatError
from .protowire import ProtoError, fields, packed_varints, signed64, text, varint

MAGIC = 0xDB4775248B80FB57
FOOTER = 48
#: TensorFlow DataType numbers → NumPy dtypes (those a checkpoint of a network holds)
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_}
#: TensorProto fields with the values of each dtype (repeated, packed or not)
_VALUE_FIELDS = {1: (5, "<f4"), 2: (6, "<f8"), 3: (7, "varint"), 9: (10, "varint"), 10: (11, "varint")}


class CheckpointError(FileFormatError):
    """A file that is not a readable TensorFlow V1 checkpoint (named in the message)."""


V2_PART = r"\.(index|data-\d{5}-of-\d{5})$"


def v2_parts(path: Path) -> tuple[str, ...]:
    """The names of the V2 checkpoint files ``path`` is one of, or the prefix of: ()
    when there are none."""
    prefix = re.sub(V2_PART, "", path.name)
    return tuple(sorted(p.name for p in path.parent.glob(f"{glob_escape(prefix)}.*")
                        if re.fullmatch(re.escape(prefix) + V2_PART, p.name)))


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def masked_crc32c(data) -> int:
    """LevelDB's masked CRC-32C (Castagnoli polynomial) of ``data`` (about a second for
    a 7 MB checkpoint: conversions are rare)."""
    crc, table = 0xFFFFFFFF, _CRC_TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _block(data, offset: int, size: int, path) -> bytes:
    if offset + size + 5 > len(data):
        raise CheckpointError(f"{path}: truncated (a block ends at byte {offset + size + 5} of {len(data)})")
    kind = data[offset + size]
    raw = data[offset:offset + size]
    if masked_crc32c(data[offset:offset + size + 1]) != struct.unpack_from("<I", data, offset + size + 1)[0]:
        raise CheckpointError(f"{path}: damaged (the block at byte {offset} fails its CRC-32C)")
    if kind == 0:
        return bytes(raw)
    if kind == 1:
        import cramjam

        try:
            return bytes(cramjam.snappy.decompress_raw(bytes(raw)))
        except Exception as exc:  # cramjam raises its own DecompressionError
            raise CheckpointError(f"{path}: a Snappy block does not decompress ({exc})") from None
    raise CheckpointError(f"{path}: block compression type {kind} (TensorFlow writes 0 or 1)")


def _entries(block: bytes):
    """(key, value) of every entry of one table block (keys prefix-compressed)."""
    if len(block) < 4:
        raise ProtoError("block shorter than its restart count")
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 * (restarts + 1)
    if end < 0:
        raise ProtoError("block's restart array is larger than the block")
    pos, key = 0, b""
    while pos < end:
        shared, pos = varint(block, pos)
        unshared, pos = varint(block, pos)
        length, pos = varint(block, pos)
        if shared > len(key) or pos + unshared + length > end:
            raise ProtoError("block entry runs past the block")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + length]
        pos += length


def _handle(buf, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = varint(buf, pos)
    size, pos = varint(buf, pos)
    return offset, size, pos


def table_entries(path: str | os.PathLike):
    """Every (key, value) of an SSTable file, in key order."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < FOOTER or struct.unpack_from("<Q", data, len(data) - 8)[0] != MAGIC:
        raise CheckpointError(f"{path}: not a TensorFlow V1 checkpoint (no table footer; truncated, or "
                              "another format)")
    try:
        footer = data[len(data) - FOOTER:]
        _, _, pos = _handle(footer)  # the metaindex (unused)
        index_offset, index_size, _ = _handle(footer, pos)
        for _, handle in _entries(_block(data, index_offset, index_size, path)):
            offset, size, _ = _handle(handle)
            yield from _entries(_block(data, offset, size, path))
    except ProtoError as exc:
        raise CheckpointError(f"{path}: damaged checkpoint table ({exc})") from None


def _shape(buf, span) -> tuple[int, ...]:
    dims = []
    for number, _, value in fields(buf, *span):
        if number == 2:  # TensorShapeProto.dim {size = 1}
            dims.append(next((signed64(v) for n, _, v in fields(buf, *value) if n == 1), 0))
    return tuple(dims)


def _extents(buf, span) -> list[tuple[int, int | None]]:
    """A TensorSliceProto's (start, length or None for the whole dimension) per axis."""
    out = []
    for number, _, value in fields(buf, *span):
        if number == 1:
            start, length = 0, None
            for n, _, v in fields(buf, *value):
                if n == 1:
                    start = signed64(v)
                elif n == 2:
                    length = signed64(v)
            out.append((start, length))
    return out


def _values(buf, span, dtype_number: int) -> np.ndarray:
    """The values of a TensorProto of ``dtype_number`` (tensor_content or the repeated field)."""
    dtype = DTYPES[dtype_number]
    number_wanted, encoding = _VALUE_FIELDS[dtype_number]
    parts = []
    for number, wire, value in fields(buf, *span):
        if number == 4:  # tensor_content: the raw little-endian bytes
            return np.frombuffer(bytes(buf[value[0]:value[1]]), dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
        if number != number_wanted:
            continue
        if encoding == "varint":
            ints = packed_varints(buf, value) if wire == 2 else [value]
            parts.append(np.array([signed64(i) for i in ints], dtype=np.int64))
        else:  # packed (wire 2) or one fixed-width value: both spans of raw little-endian bytes
            parts.append(np.frombuffer(bytes(buf[value[0]:value[1]]), dtype=encoding))
    return (np.concatenate(parts) if parts else np.zeros(0)).astype(dtype)


def read_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{variable name: array} of a TensorFlow V1 checkpoint; tensors of dtypes a network's
    weights do not use (strings, …) are left out."""
    path = Path(path)
    if re.search(V2_PART, path.name) or (not path.is_file() and v2_parts(path)):
        raise CheckpointError(f"{path}: a TensorFlow V2 checkpoint ({', '.join(v2_parts(path)) or path.name}); "
                              "dfi reads the V1 single-file format (Magenta's published .ckpt files)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    meta, slices = {}, []
    try:
        for key, value in table_entries(path):
            for number, _, span in fields(value, 0, len(value)):
                if number == 1 and key == b"":  # SavedTensorSliceMeta.tensor (SavedSliceMeta)
                    for n, _, tensor in fields(value, *span):
                        if n == 1:
                            entry = {n2: v2 for n2, _, v2 in fields(value, *tensor)}
                            meta[text(value, entry[1])] = (_shape(value, entry[2]) if 2 in entry else (),
                                                           entry.get(3, 1))
                elif number == 2:  # SavedSlice
                    entry = {n2: v2 for n2, _, v2 in fields(value, *span)}
                    slices.append((text(value, entry[1]), _extents(value, entry[2]) if 2 in entry else [],
                                   value, entry.get(3)))
    except (ProtoError, KeyError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not a TensorFlow V1 checkpoint (malformed tensor slices: {exc})") from None
    if not meta:
        raise CheckpointError(f"{path}: a table without TensorFlow V1 checkpoint metadata (a V2 .index file, or "
                              "another table)")
    tensors = {name: np.zeros(shape, DTYPES[dtype]) for name, (shape, dtype) in meta.items() if dtype in DTYPES}
    filled = {name: 0 for name in tensors}
    for name, extents, buf, span in slices:
        if name not in tensors or span is None:
            continue
        target = tensors[name]
        index = tuple(slice(None) if length is None else slice(start, start + length)
                      for start, length in extents) or (slice(None),) * target.ndim
        region = target[index] if target.ndim else target
        values = _values(buf, span, meta[name][1])
        if values.size != region.size:
            raise CheckpointError(f"{path}: {name}'s slice holds {values.size} values, its extents {region.size}")
        if target.ndim:
            target[index] = values.reshape(region.shape)
        else:
            tensors[name] = values.reshape(())
        filled[name] += values.size
    missing = [name for name, count in filled.items() if count != tensors[name].size]
    if missing:
        raise CheckpointError(f"{path}: truncated or incomplete: no values for {', '.join(missing[:3])}"
                              + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""))
    return tensors

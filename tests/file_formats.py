"""Writers of real file formats for the tests, made from the formats' specifications and
independent of dfi's readers: the protobuf wire format, torch state dicts (zip and legacy,
without torch) and TensorFlow V1 checkpoints (an SSTable of SavedTensorSlices, without
TensorFlow)."""
from __future__ import annotations

import collections
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np


# ---------------------------------------------------------------- protobuf
def varint(value: int) -> bytes:
    value &= 2 ** 64 - 1  # int64 fields: negative numbers as 2^64 − |n|
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def vfield(number: int, value: int) -> bytes:
    """A varint field (wire type 0)."""
    return varint(number << 3) + varint(value)


# ---------------------------------------------------------------- torch
@contextlib.contextmanager
def fake_torch_modules():
    """Modules named like torch's, so that pickle writes the same global references."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only used for writing")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = FloatStorage, utils, _rebuild_tensor_v2
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield torch
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class _Tensor:
    def __init__(self, key, array, rebuild, storage_type):
        self.key, self.array, self.rebuild, self.storage_type = key, array, rebuild, storage_type

    def __reduce__(self):
        stride = tuple(s // 4 for s in self.array.strides)
        return self.rebuild, (_StorageRef(self), 0, self.array.shape, stride, False, collections.OrderedDict())


class _StorageRef:
    def __init__(self, tensor):
        self.tensor = tensor


def write_torch(path, state, *, legacy: bool) -> None:
    """A torch state dict {key: float32 array} as ``torch.save`` writes it: the zip format
    (≥ 1.6) or the legacy pickle stream (the 2017 files)."""
    with fake_torch_modules() as torch:
        tensors = collections.OrderedDict(
            (k, _Tensor(str(i), np.ascontiguousarray(v, np.float32), torch._utils._rebuild_tensor_v2,
                        torch.FloatStorage)) for i, (k, v) in enumerate(state.items()))

        class Pickler(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, _StorageRef):
                    t = obj.tensor
                    return ("storage", t.storage_type, t.key, "cpu", t.array.size)
                return None

        buf = io.BytesIO()
        Pickler(buf, protocol=2).dump(tensors)
    if legacy:
        with open(path, "wb") as handle:
            for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
                pickle.dump(obj, handle, protocol=2)
            handle.write(buf.getvalue())
            pickle.dump([t.key for t in tensors.values()], handle, protocol=2)
            for t in tensors.values():
                handle.write(struct.pack("<q", t.array.size) + t.array.tobytes())
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", buf.getvalue())
            for t in tensors.values():
                archive.writestr(f"archive/data/{t.key}", t.array.tobytes())
            archive.writestr("archive/version", "3\n")


# ---------------------------------------------------------------- TensorFlow V1 checkpoints
TF_MAGIC = 0xDB4775248B80FB57
_DTYPES = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3, np.dtype(np.int64): 9}


def _shape_proto(shape) -> bytes:
    return b"".join(field(2, vfield(1, d)) for d in shape)


def _slice_proto(extents) -> bytes:
    """TensorSliceProto: an empty Extent for a whole dimension, else start + length."""
    return b"".join(field(1, b"" if e is None else vfield(1, e[0]) + vfield(2, e[1])) for e in extents)


def _tensor_proto(array: np.ndarray, *, content: bool) -> bytes:
    dtype = _DTYPES[array.dtype]
    if content:  # tensor_content: raw bytes
        return vfield(1, dtype) + field(4, array.astype(array.dtype.newbyteorder("<")).tobytes())
    if dtype in (1, 2):  # float_val / double_val, packed (as TensorSliceWriter's Fill adds them)
        return field(5 if dtype == 1 else 6, array.astype("<f4" if dtype == 1 else "<f8").tobytes())
    return field(7 if dtype == 3 else 10, b"".join(varint(int(v)) for v in array.reshape(-1)))


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """LevelDB's masked CRC-32C (Castagnoli) of a block and its type byte."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _trailed(raw: bytes, kind: int) -> bytes:
    return raw + bytes([kind]) + struct.pack("<I", masked_crc32c(raw + bytes([kind])))


def _block(entries, restart_every: int) -> bytes:
    """One table block: prefix-compressed entries, the restart offsets and their count."""
    out, restarts, previous = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_every:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        else:
            restarts.append(len(out))
        out += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        previous = key
    for r in restarts or [0]:
        out += struct.pack("<I", r)
    return bytes(out + struct.pack("<I", len(restarts or [0])))


def write_tf_checkpoint(path, tensors: dict, *, snappy: bool = False, block_entries: int = 3,
                        split: tuple = (), content: bool = False) -> None:
    """A TensorFlow V1 checkpoint of ``tensors`` {name: array}: the meta under the empty
    key, each tensor as one slice (or, for names in ``split``, two slices along axis 0),
    several data blocks (``block_entries`` each), Snappy-compressed blocks if asked. Keys
    are kept in order but not OrderedCode-encoded (a reader must not depend on them)."""
    meta = b""
    entries = []
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        halves = [(0, array.shape[0] // 2), (array.shape[0] // 2, array.shape[0] - array.shape[0] // 2)] \
            if name in split else [None]
        slices = []
        for part in halves:
            extents = [None] * array.ndim if part is None else [part] + [None] * (array.ndim - 1)
            values = array if part is None else array[part[0]:part[0] + part[1]]
            slices.append(extents)
            saved = field(1, name.encode()) + field(2, _slice_proto(extents)) + \
                field(3, _tensor_proto(np.ascontiguousarray(values), content=content))
            key = b"\x01" + name.encode() + b"\x00" + (b"" if part is None else struct.pack(">q", part[0]))
            entries.append((key, field(2, saved)))
        meta += field(1, field(1, name.encode()) + field(2, _shape_proto(array.shape)) +
                      vfield(3, _DTYPES[array.dtype]) + b"".join(field(4, _slice_proto(e)) for e in slices))
    entries = [(b"", field(1, meta + field(2, vfield(1, 1))))] + sorted(entries)
    data, index = bytearray(), []
    for start in range(0, len(entries), block_entries):
        chunk = entries[start:start + block_entries]
        raw = _block(chunk, restart_every=2)
        kind = 0
        if snappy:
            import cramjam
            raw, kind = bytes(cramjam.snappy.compress_raw(raw)), 1
        index.append((chunk[-1][0] + b"\xff", varint(len(data)) + varint(len(raw))))
        data += _trailed(raw, kind)
    meta_offset = len(data)
    metaindex = _block([], restart_every=16)
    data += _trailed(metaindex, 0)
    index_offset = len(data)
    index_block = _block(index, restart_every=1)
    data += _trailed(index_block, 0)
    footer = varint(meta_offset) + varint(len(metaindex)) + varint(index_offset) + varint(len(index_block))
    data += footer + b"\x00" * (40 - len(footer)) + struct.pack("<Q", TF_MAGIC)
    with open(path, "wb") as handle:
        handle.write(bytes(data))


# ---------------------------------------------------------------- published stylizers' weights
#: the stylizer family at width 0.25: (kernel, in, out) per layer, dfi's layer names
STYLIZER_LAYERS = {}
_channels = 3
for _name, _out in (("c1", 8), ("d1", 16), ("d2", 32), *[(f"r{b}{i}", 32) for b in range(1, 6) for i in (1, 2)],
                    ("u1", 16), ("u2", 8), ("c2", 3)):
    STYLIZER_LAYERS[_name] = (9 if _name in ("c1", "c2") else 3, _channels, _out)
    _channels = _out
#: Magenta's variable scopes (model.py: contract / residual / expand; upsampling adds "conv")
MAGENTA_SCOPES = {"c1": "contract/conv1", "d1": "contract/conv2", "d2": "contract/conv3",
                  **{f"r{b}{i}": f"residual/residual{b}/conv{i}" for b in range(1, 6) for i in (1, 2)},
                  "u1": "expand/conv1/conv", "u2": "expand/conv2/conv", "c2": "expand/conv3/conv"}
#: pytorch/examples' TransformerNet modules (convolution, instance norm)
TORCH_MODULES = {"c1": ("conv1", "in1"), "d1": ("conv2", "in2"), "d2": ("conv3", "in3"),
                 **{f"r{b}{i}": (f"res{b}.conv{i}", f"res{b}.in{i}") for b in range(1, 6) for i in (1, 2)},
                 "u1": ("deconv1", "in4"), "u2": ("deconv2", "in5"), "c2": ("deconv3", None)}


def magenta_tensors(n_styles=4, seed=0, nan=False):
    """A pastiche generator's variables (HWIO weights, [styles, C] γ and β, no biases),
    plus global_step; ``nan``: the varied file's NaNs in contract/conv1's last channel."""
    rng = np.random.default_rng(seed)
    tensors = {"global_step": np.array(1234, np.int64)}
    for name, (k, c_in, c_out) in STYLIZER_LAYERS.items():
        scope = f"transformer/{MAGENTA_SCOPES[name]}"
        tensors[f"{scope}/weights"] = (rng.standard_normal((k, k, c_in, c_out)) * np.sqrt(2 / (k * k * c_in))).astype(np.float32)
        tensors[f"{scope}/InstanceNorm/gamma"] = rng.uniform(0.5, 1.5, (n_styles, c_out)).astype(np.float32)
        tensors[f"{scope}/InstanceNorm/beta"] = rng.uniform(-0.5, 0.5, (n_styles, c_out)).astype(np.float32)
    if nan:
        tensors["transformer/contract/conv1/weights"][..., -1] = np.nan
    return tensors


def fast_neural_style_state(seed=0):
    """A TransformerNet state dict (OIHW, biased convolutions, affine instance norms with
    the 2017 files' running statistics)."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, (k, c_in, c_out) in STYLIZER_LAYERS.items():
        conv, norm = TORCH_MODULES[name]
        state[f"{conv}.conv2d.weight"] = rng.standard_normal((c_out, c_in, k, k)).astype(np.float32) * \
            np.float32(np.sqrt(2 / (k * k * c_in)))
        state[f"{conv}.conv2d.bias"] = rng.uniform(-1, 1, c_out).astype(np.float32)
        if norm:
            state[f"{norm}.weight"] = rng.uniform(0.5, 1.5, c_out).astype(np.float32)
            state[f"{norm}.bias"] = rng.uniform(-0.5, 0.5, c_out).astype(np.float32)
            state[f"{norm}.running_mean"] = np.full(c_out, 7.0, np.float32)  # to be ignored
            state[f"{norm}.running_var"] = np.full(c_out, 9.0, np.float32)
    state["deconv3.conv2d.bias"] = state["deconv3.conv2d.bias"] * 100 + 120  # outputs on the 0–255 scale
    return state


#: pytorch-AdaIN's vgg_normalised.pth: nn.Sequential indices of its convolutions (0: the 1×1)
ADAIN_VGG_INDEX = (0, 2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51)
ADAIN_VGG_CHANNELS = (3, 64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)
#: decoder.pth: (index, in, out) of its nine convolutions
ADAIN_DECODER = ((1, 512, 256), (5, 256, 256), (8, 256, 256), (11, 256, 256), (14, 256, 128), (18, 128, 128),
                 (21, 128, 64), (25, 64, 64), (28, 64, 3))


def adain_encoder_state(width=0.125, seed=0, upto=29):
    """vgg_normalised.pth's state dict (up to module ``upto``) at ``width``: the 1×1 input
    convolution RGB [0, 1] → BGR × 255 − mean, then He-initialised 3×3 convolutions."""
    rng = np.random.default_rng(seed)
    state = {"0.weight": (np.eye(3)[::-1] * 255.0).reshape(3, 3, 1, 1).astype(np.float32),
             "0.bias": -np.array([103.939, 116.779, 123.68], np.float32)}
    c_in = 3
    for index, channels in zip(ADAIN_VGG_INDEX[1:], ADAIN_VGG_CHANNELS[1:]):
        if index > upto:
            break
        out = max(1, int(round(channels * width)))
        state[f"{index}.weight"] = (rng.standard_normal((out, c_in, 3, 3)) * np.sqrt(2 / (9 * c_in))).astype(np.float32)
        state[f"{index}.bias"] = rng.uniform(-0.1, 0.1, out).astype(np.float32)
        c_in = out
    return state


def adain_decoder_state(width=0.125, seed=1):
    """decoder.pth's state dict at ``width`` (its output meant to land inside [0, 1])."""
    rng = np.random.default_rng(seed)
    state = {}
    for index, c_in, c_out in ADAIN_DECODER:
        c_in, c_out = max(1, int(round(c_in * width))), (3 if c_out == 3 else max(1, int(round(c_out * width))))
        state[f"{index}.weight"] = (rng.standard_normal((c_out, c_in, 3, 3)) * np.sqrt(1 / (9 * c_in))).astype(np.float32)
        state[f"{index}.bias"] = rng.uniform(-0.05, 0.05, c_out).astype(np.float32)
    state["28.weight"] *= np.float32(0.02)
    state["28.bias"] = np.full(3, 0.5, np.float32)
    return state

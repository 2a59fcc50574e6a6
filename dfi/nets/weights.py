"""VGG-19 weights: fetch, convert (Caffe, torchvision, Chainer npz) and load.

Every format is converted to one npz with Chainer's key names (``conv1_1/W`` OIHW
float32, ``conv1_1/b``) and an ``__convention__`` record (JSON) that tells how inputs
must be preprocessed, so loading picks the right preprocessing by itself.

* Caffe ``.caffemodel``: parsed straight from the protobuf wire format (old V1
  ``layers`` and new ``layer`` messages), blob data read with ``numpy.frombuffer`` from a
  memory map — seconds for the 575 MB VGG file, no protobuf package needed.
* torchvision ``.pth``: the zip format (``*/data.pkl`` + raw storages) and the legacy
  pickle stream, read with a restricted unpickler; torch is not needed.
* Chainer's own ``VGG19Layers`` npz: taken as is (Caffe convention).
"""
from __future__ import annotations

import collections
import io
import json
import logging
import mmap
import os
import pickle
import struct
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from data_tools.download import Mirror, default_data_dir, download_file
from data_tools.fsutil import atomic_path

from ..core.errors import FileFormatError
from ..core.image import CAFFE, TORCHVISION, InputConvention
from .protowire import ProtoError, fields as _fields, packed_varints as _packed_varints
from .vgg import VGG19, untrained_vgg19, vgg19_shapes

logger = logging.getLogger(__name__)

Params = dict[str, tuple[np.ndarray, np.ndarray]]


class WeightsFormatError(FileFormatError):
    """A weights file is not in a format we read, or lacks VGG-19's layers."""


@dataclass(frozen=True)
class WeightSource:
    """A weights file: its name on disk and its mirrors, live ones first."""

    name: str
    filename: str
    mirrors: tuple[Mirror, ...]
    description: str


WEIGHT_SOURCES: dict[str, WeightSource] = {
    s.name: s for s in (
        WeightSource("caffe", "VGG_ILSVRC_19_layers.caffemodel", (Mirror(
            "https://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/VGG_ILSVRC_19_layers.caffemodel",
            ("md5:b5c644beabd7cf06bdd9065cfd674c97",)),), "original Caffe VGG-19 (575 MB)"),
        # bethgelab.org has been down since 2020; the official DFI repository commits the
        # file in plain git, pinned here by its blob id
        WeightSource("normalised", "vgg_normalised.caffemodel", (
            Mirror("https://github.com/paulu/deepfeatinterp/raw/master/models/VGG_CNN_19/"
                   "vgg_normalised.caffemodel", ("gitsha1:ca7ac268742c67ac31284cc23b781108891a9083",)),
            Mirror("http://bethgelab.org/media/uploads/deeptextures/vgg_normalised.caffemodel")),
            "Gatys et al.'s normalised VGG-19, used by the official DFI code (80 MB)"),
        WeightSource("torchvision", "vgg19-dcbb9e9d.pth", (Mirror(
            "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
            ("sha256:dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44",)),),
            "torchvision VGG-19 (575 MB)"),
    )
}

# torchvision ``features.N`` indices of the 16 convolutions
_TORCH_INDEX = dict(zip(
    [n for n in vgg19_shapes()],
    (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)))


# ------------------------------------------------------------------ Caffe protobuf
def _blob(buf, span) -> np.ndarray:
    legacy = {1: 1, 2: 1, 3: 1, 4: 1}  # num, channels, height, width
    shape, data = None, None
    for number, wire, value in _fields(buf, *span):
        if number in legacy and wire == 0:
            legacy[number] = value
        elif number == 7 and wire == 2:  # BlobShape
            dims = []
            for n, w, v in _fields(buf, *value):
                if n == 1:
                    dims += _packed_varints(buf, v) if w == 2 else [v]
            shape = tuple(dims)
        elif number in (5, 8) and wire == 2:  # packed float data / double_data
            dtype = "<f4" if number == 5 else "<f8"
            count = (value[1] - value[0]) // np.dtype(dtype).itemsize
            data = np.frombuffer(buf, dtype=dtype, count=count, offset=value[0]).astype(np.float32)
        elif number in (5, 8):
            raise WeightsFormatError("caffemodel blob data is not packed; re-save it with a newer Caffe")
    if data is None:
        data = np.zeros(0, np.float32)
    shape = shape or tuple(legacy[i] for i in (1, 2, 3, 4))
    if int(np.prod(shape)) != data.size:
        raise WeightsFormatError(f"caffemodel blob of shape {shape} holds {data.size} values")
    return data.reshape(shape)


def read_caffemodel(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Layer name → list of blobs of a ``.caffemodel`` (NetParameter, V1 or V2 layers)."""
    path = Path(path)
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise WeightsFormatError(f"weights file {path} is empty")
        buf = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    layers: dict[str, list[np.ndarray]] = collections.OrderedDict()
    try:
        for number, wire, value in _fields(buf, 0, len(buf)):
            if wire != 2 or number not in (2, 100):
                continue
            name_field, blob_field = (4, 6) if number == 2 else (1, 7)
            name, blobs = None, []
            for n, w, v in _fields(buf, *value):
                if n == name_field and w == 2:
                    name = bytes(buf[v[0]:v[1]]).decode("utf-8", "replace")
                elif n == blob_field and w == 2:
                    blobs.append(_blob(buf, v))
            if name is not None and blobs:
                layers[name] = blobs
    except (IndexError, ProtoError, WeightsFormatError) as exc:
        raise WeightsFormatError(f"weights file {path} is not a readable caffemodel ({exc})") from None
    finally:
        buf.close()
    return layers


def params_from_caffe(layers: dict[str, list[np.ndarray]], source: str) -> Params:
    params = {}
    for name, shape in vgg19_shapes().items():
        if name not in layers or len(layers[name]) < 2:
            raise WeightsFormatError(f"{source} has no VGG-19 layer {name!r} with weights and bias")
        weight, bias = layers[name][0], layers[name][1]
        params[name] = (_checked(weight.reshape(-1), shape, name, source),
                        _checked(bias.reshape(-1), (shape[0],), f"{name} bias", source))
    return params


def _checked(array: np.ndarray, shape: tuple[int, ...], name: str, source: str) -> np.ndarray:
    if array.size != int(np.prod(shape)):
        raise WeightsFormatError(f"{source}: {name} has {array.size} values, VGG-19 needs {shape}")
    return np.ascontiguousarray(array.reshape(shape), dtype=np.float32)


# ------------------------------------------------------------------ torch .pth without torch
_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64,
                   "HalfStorage": np.float16, "LongStorage": np.int64, "IntStorage": np.int32,
                   "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
                   "BoolStorage": np.bool_}


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


@dataclass
class _LazyTensor:
    """A tensor whose storage bytes are read after the pickle (legacy files store them last)."""

    storage: "_Storage"
    offset: int
    size: tuple
    stride: tuple

    def materialise(self) -> np.ndarray:
        array = self.storage.array
        if not self.size:
            return array[self.offset:self.offset + 1].reshape(()).copy()
        itemsize = array.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            array[self.offset:], shape=tuple(self.size),
            strides=tuple(s * itemsize for s in self.stride))
        return np.array(view)


def _rebuild_tensor(storage, offset, size, stride, *rest):
    return _LazyTensor(storage, int(offset), tuple(size), tuple(stride))


class _Storage:
    def __init__(self, dtype, numel: int):
        self.dtype, self.numel, self.array = dtype, numel, None


class _TorchUnpickler(pickle.Unpickler):
    """Reads a state dict; anything but tensors and containers is refused."""

    def __init__(self, handle, storages: dict):
        super().__init__(handle)
        self.storages = storages

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a plain state dict")

    def persistent_load(self, saved_id):
        if saved_id[0] != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {saved_id[0]!r}")
        storage_type, key, _location, numel = saved_id[1:5]
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, int(numel))
        return self.storages[key]


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (zip or legacy format) into NumPy arrays, without torch."""
    path = Path(path)
    storages: dict[str, _Storage] = {}
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                pkl = [n for n in archive.namelist() if n.endswith("data.pkl")]
                if not pkl:
                    raise WeightsFormatError(f"weights file {path} is a zip without data.pkl")
                prefix = pkl[0][:-len("data.pkl")]
                state = _TorchUnpickler(io.BytesIO(archive.read(pkl[0])), storages).load()
                for key, storage in storages.items():
                    raw = archive.read(f"{prefix}data/{key}")
                    storage.array = np.frombuffer(raw, dtype=storage.dtype, count=storage.numel)
        else:
            with open(path, "rb") as handle:
                if pickle.load(handle) != _LEGACY_MAGIC:
                    raise WeightsFormatError(f"weights file {path}: not a torch file")
                pickle.load(handle)  # protocol version
                pickle.load(handle)  # sys info
                state = _TorchUnpickler(handle, storages).load()
                for key in pickle.load(handle):
                    storage = storages[str(key)]
                    (count,) = struct.unpack("<q", handle.read(8))
                    raw = handle.read(count * storage.dtype.itemsize)
                    storage.array = np.frombuffer(raw, dtype=storage.dtype, count=count)
        if isinstance(state, dict):
            state = {k: v.materialise() if isinstance(v, _LazyTensor) else v for k, v in state.items()}
    except (pickle.UnpicklingError, EOFError, KeyError, struct.error, ValueError) as exc:
        if isinstance(exc, WeightsFormatError):
            raise
        raise WeightsFormatError(f"weights file {path} is not a readable torch state dict ({exc})") from None
    if not isinstance(state, dict):
        raise WeightsFormatError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    return dict(state)


def params_from_torchvision(state: dict[str, np.ndarray], source: str) -> Params:
    params = {}
    for name, shape in vgg19_shapes().items():
        index = _TORCH_INDEX[name]
        key = f"features.{index}"
        if f"{key}.weight" not in state:
            raise WeightsFormatError(f"{source} has no torchvision key {key}.weight ({name})")
        params[name] = (_checked(state[f"{key}.weight"], shape, name, source),
                        _checked(state[f"{key}.bias"], (shape[0],), f"{name} bias", source))
    return params


# ------------------------------------------------------------------ npz
def params_from_npz(data, source: str) -> Params:
    params = {}
    for name, shape in vgg19_shapes().items():
        if f"{name}/W" not in data.files:
            raise WeightsFormatError(f"{source} has no key {name}/W (Chainer VGG-19 npz names)")
        params[name] = (_checked(data[f"{name}/W"], shape, name, source),
                        _checked(data[f"{name}/b"], (shape[0],), f"{name} bias", source))
    return params


def sniff_format(path: str | os.PathLike) -> str:
    """``"npz"``, ``"torch"`` or ``"caffemodel"`` from the file's first bytes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path}: no such file")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(b"\x89HDF"):
        raise WeightsFormatError(f"weights file {path} is HDF5 (Keras); convert it to npz first")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        if any(n.endswith(".npy") for n in names):
            return "npz"
        raise WeightsFormatError(f"weights file {path} is a zip with neither .npy nor data.pkl")
    if head[:2] == b"\x80\x02":
        return "torch"
    if head[:1] in (b"\x0a", b"\x12") or head[:2] == b"\xa2\x06":  # NetParameter fields 1, 2, 100
        return "caffemodel"
    raise WeightsFormatError(
        f"weights file {path} is not a caffemodel, torch .pth or npz (first bytes {head[:4]!r})")


def convert(path: str | os.PathLike) -> tuple[Params, InputConvention, str]:
    """Read any supported weights file → (params, input convention, format name)."""
    path = Path(path)
    kind = sniff_format(path)
    if kind == "caffemodel":
        return params_from_caffe(read_caffemodel(path), str(path)), CAFFE, kind
    if kind == "torch":
        return params_from_torchvision(read_torch_state_dict(path), str(path)), TORCHVISION, kind
    with np.load(path, allow_pickle=False) as data:
        convention = (InputConvention.from_dict(json.loads(str(data["__convention__"])))
                      if "__convention__" in data.files else CAFFE)
        return params_from_npz(data, str(path)), convention, kind


def save_npz(path: str | os.PathLike, params: Params, convention: InputConvention,
             *, source: str = "") -> None:
    """Write params + convention record atomically (Chainer key names, OIHW float32)."""
    arrays = {}
    for name, (weight, bias) in params.items():
        arrays[f"{name}/W"] = np.asarray(weight, dtype=np.float32)
        arrays[f"{name}/b"] = np.asarray(bias, dtype=np.float32)
    record = dict(convention.to_dict(), source=source)
    arrays["__convention__"] = np.array(json.dumps(record))
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def converted_path(name: str, data_dir: Optional[Path] = None) -> Path:
    return (Path(data_dir) if data_dir else default_data_dir()) / "weights" / f"vgg19-{name}.npz"


def fetch_weights(name: str, *, data_dir: Optional[Path] = None, verify: bool = True,
                  progress=None) -> Path:
    """Download weights ``name`` (see :data:`WEIGHT_SOURCES`) and convert them to npz."""
    if name not in WEIGHT_SOURCES:
        raise ValueError(f"unknown weights {name!r}; known: {', '.join(WEIGHT_SOURCES)}")
    source = WEIGHT_SOURCES[name]
    out = converted_path(name, data_dir)
    raw, mirror = download_file(name, source.mirrors, out.parent, source.filename, verify=verify,
                                progress=progress, check=convert,  # unpinned mirrors: readable?
                                hint=f"have the file? dfi weights convert FILE -o {out}")
    params, convention, _ = convert(raw)
    save_npz(out, params, convention, source=mirror.url)
    return out


def load_vgg19(spec: str = "untrained", *, data_dir: Optional[Path] = None,
               pooling: str = "max", seed: int = 0) -> VGG19:
    """VGG-19 from ``untrained``, a fetched name (``caffe``…) or a weights file path."""
    if spec == "untrained":
        warnings.warn("using an untrained (random, seeded) VGG-19: results show the method, "
                      "not the quality of real weights", stacklevel=2)
        return untrained_vgg19(seed=seed, pooling=pooling)
    if spec in WEIGHT_SOURCES:
        path = converted_path(spec, data_dir)
        if not path.is_file():
            raise FileNotFoundError(f"--weights {spec}: not fetched yet; run 'dfi weights fetch {spec}'")
    else:
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(
                f"--weights {spec}: no such file (or use untrained, {', '.join(WEIGHT_SOURCES)})")
    params, convention, _ = convert(path)
    return VGG19(params, convention=convention, pooling=pooling, name=str(spec))

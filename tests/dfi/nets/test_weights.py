"""Weight conversion from small files written in each real format."""
import collections
import json
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from file_formats import fake_torch_modules, field, varint as _varint, vfield, write_torch

from dfi.core.image import CAFFE, TORCHVISION
from dfi.nets.vgg import he_init, vgg19_shapes
from dfi.nets.weights import (WeightsFormatError, convert, load_vgg19, params_from_caffe,
                         read_caffemodel, read_torch_state_dict, save_npz, sniff_format)


# ---------------------------------------------------------------- a minimal protobuf writer
_field, _vfield = field, vfield


def _blob_v1(array: np.ndarray) -> bytes:
    dims = (1,) * (4 - array.ndim) + array.shape  # V1 blobs: num, channels, height, width
    head = b"".join(_vfield(i + 1, d) for i, d in enumerate(dims))
    return head + _field(5, array.astype("<f4").tobytes())


def _blob_v2(array: np.ndarray) -> bytes:
    shape = _field(1, b"".join(_varint(d) for d in array.shape))  # packed dims
    return _field(7, shape) + _field(5, array.astype("<f4").tobytes())


def caffemodel_bytes(params, *, v2=False, extra_layers=("relu1_1", "pool1")) -> bytes:
    """NetParameter with VGG-style layers (V1 ``layers`` = 2 or V2 ``layer`` = 100)."""
    out = _field(1, b"VGG_ILSVRC_19_layers")
    for name in extra_layers:  # layers without blobs, as in the real file
        out += _field(100, _field(1, name.encode()) + _field(2, b"ReLU")) if v2 else \
            _field(2, _field(4, name.encode()) + _vfield(5, 18))
    for name, (weight, bias) in params.items():
        if v2:
            body = _field(1, name.encode()) + _field(2, b"Convolution") + \
                _field(7, _blob_v2(weight)) + _field(7, _blob_v2(bias))
            out += _field(100, body)
        else:
            body = _field(4, name.encode()) + _vfield(5, 4) + \
                _field(6, _blob_v1(weight)) + _field(6, _blob_v1(bias.reshape(1, 1, 1, -1)))
            out += _field(2, body)
    return out


@pytest.fixture(scope="module")
def vgg_params():
    return he_init(vgg19_shapes(), seed=3)


def _assert_same(params, expected):
    assert set(params) == set(expected)
    for name in expected:
        np.testing.assert_array_equal(params[name][0], expected[name][0])
        np.testing.assert_array_equal(params[name][1], expected[name][1])
        assert params[name][0].dtype == np.float32


@pytest.mark.parametrize("v2", [False, True])
def test_caffemodel_full_vgg(tmp_path, vgg_params, v2):
    path = tmp_path / "vgg.caffemodel"
    path.write_bytes(caffemodel_bytes(vgg_params, v2=v2))
    assert sniff_format(path) == "caffemodel"
    params, convention, kind = convert(path)
    assert (kind, convention) == ("caffemodel", CAFFE)
    _assert_same(params, vgg_params)


def test_caffemodel_written_by_official_schema(tmp_path):
    """Cross-check the parser with Caffe's own protobuf schema (shipped with Chainer)."""
    script = r"""
import sys, numpy
import dfi._compat
from chainer.links.caffe.protobuf3 import caffe_pb2
net = caffe_pb2.NetParameter(name="t")
layer = net.layers.add(name="conv1_1", type=caffe_pb2.V1LayerParameter.CONVOLUTION)
w = numpy.arange(2 * 3 * 3 * 3, dtype="f").reshape(2, 3, 3, 3)
blob = layer.blobs.add(num=2, channels=3, height=3, width=3); blob.data.extend(w.ravel().tolist())
blob = layer.blobs.add(num=1, channels=1, height=1, width=2); blob.data.extend([0.5, -1.5])
layer2 = net.layer.add(name="fc9", type="InnerProduct")
b = layer2.blobs.add(); b.shape.dim.extend([2, 4]); b.data.extend(list(range(8)))
open(sys.argv[1], "wb").write(net.SerializeToString())
"""
    path = tmp_path / "official.caffemodel"
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python")
    done = subprocess.run([sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"Caffe's protobuf schema is not importable here: {done.stderr.strip()[-200:]}")
    layers = read_caffemodel(path)
    np.testing.assert_array_equal(layers["conv1_1"][0], np.arange(54, dtype="f").reshape(2, 3, 3, 3))
    np.testing.assert_array_equal(layers["conv1_1"][1].ravel(), [0.5, -1.5])
    np.testing.assert_array_equal(layers["fc9"][0], np.arange(8, dtype="f").reshape(2, 4))


def test_caffemodel_missing_layer_and_garbage(tmp_path, vgg_params):
    partial = {k: v for k, v in vgg_params.items() if k != "conv4_2"}
    path = tmp_path / "partial.caffemodel"
    path.write_bytes(caffemodel_bytes(partial))
    with pytest.raises(WeightsFormatError, match="no VGG-19 layer 'conv4_2'"):
        convert(path)
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(b"\x0a\xff\xff\xff\x0f garbage")
    with pytest.raises(WeightsFormatError, match="not a readable caffemodel"):
        read_caffemodel(bad)
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(b"GIF89a....")
    with pytest.raises(WeightsFormatError, match="not a caffemodel, torch .pth or npz"):
        convert(wrong)


# ---------------------------------------------------------------- torch files, written without torch
@pytest.fixture
def fake_torch():
    with fake_torch_modules() as torch:
        yield torch


def _state_dict(params, prefix_map):
    state = collections.OrderedDict()
    for name, (weight, bias) in params.items():
        state[f"features.{prefix_map[name]}.weight"] = weight
        state[f"features.{prefix_map[name]}.bias"] = bias
    state["classifier.0.weight"] = np.ones((3, 2), np.float32)
    return state


_INDEX = dict(zip(vgg19_shapes(), (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)))


def _write_torch(path, state, torch, *, legacy):
    write_torch(path, state, legacy=legacy)


@pytest.mark.parametrize("legacy", [True, False])
def test_torchvision_pth_without_torch(tmp_path, vgg_params, fake_torch, legacy):
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    _write_torch(path, _state_dict(vgg_params, _INDEX), fake_torch, legacy=legacy)
    sys.modules.pop("torch"), sys.modules.pop("torch._utils")  # reading must not need them
    assert sniff_format(path) == "torch"
    state = read_torch_state_dict(path)
    np.testing.assert_array_equal(state["classifier.0.weight"], np.ones((3, 2)))
    params, convention, kind = convert(path)
    assert (kind, convention) == ("torch", TORCHVISION)
    _assert_same(params, vgg_params)


def test_torch_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x/data.pkl", pickle.dumps(os.system, protocol=2))
    with pytest.raises(WeightsFormatError, match="not part of a plain state dict"):
        read_torch_state_dict(path)


def test_chainer_npz_and_roundtrip(tmp_path, vgg_params):
    chainer_npz = tmp_path / "VGG19.npz"
    arrays = {f"{n}/{p}": v for n, (w, b) in vgg_params.items() for p, v in (("W", w), ("b", b))}
    arrays["fc6/W"] = np.zeros((2, 2), np.float32)
    np.savez(chainer_npz, **arrays)
    params, convention, kind = convert(chainer_npz)
    assert (kind, convention) == ("npz", CAFFE)  # Chainer's VGG npz comes from the Caffe file
    _assert_same(params, vgg_params)
    out = tmp_path / "converted.npz"
    save_npz(out, params, TORCHVISION, source="test")
    params2, convention2, _ = convert(out)
    assert convention2 == TORCHVISION
    _assert_same(params2, vgg_params)
    net = load_vgg19(str(out))
    assert net.convention == TORCHVISION


def test_weights_cli(tmp_path, vgg_params, cli):
    path = tmp_path / "vgg.caffemodel"
    path.write_bytes(caffemodel_bytes(vgg_params))
    code, out, err = cli("weights", "convert", path, "-o", tmp_path / "vgg.npz")
    assert code == 0, err
    with np.load(tmp_path / "vgg.npz") as data:
        assert json.loads(str(data["__convention__"]))["order"] == "BGR"
        np.testing.assert_array_equal(data["conv5_4/W"], vgg_params["conv5_4"][0])
    code, _, err = cli("weights", "convert", tmp_path / "missing.caffemodel", "-o", tmp_path / "x.npz")
    assert code == 1 and "no such file" in err
    code, _, err = cli("weights", "convert", path, "-o", tmp_path / "x.bin")
    assert code == 2 and "must end in .npz" in err
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "x.bin").exists()


def test_params_shape_check(vgg_params):
    layers = {n: [w, b] for n, (w, b) in vgg_params.items()}
    layers["conv1_1"] = [np.zeros((64, 3, 5, 5), np.float32), layers["conv1_1"][1]]
    with pytest.raises(WeightsFormatError, match="conv1_1 has 4800 values, VGG-19 needs"):
        params_from_caffe(layers, "test")

"""Published stylizers read exactly: TensorFlow V1 checkpoints (Magenta) and torch state
dicts (pytorch/examples), each checked against a reference network written here from the
published equations (NHWC and HWIO for Magenta, as TensorFlow computes it)."""
import numpy as np
import pytest

from file_formats import (MAGENTA_SCOPES, fast_neural_style_state, magenta_tensors,
                          write_tf_checkpoint, write_torch)

from dfi.core.errors import FileFormatError
from dfi.nets.pretrained import from_fast_neural_style, from_magenta, sniff
from dfi.nets.tfcheckpoint import CheckpointError, read_checkpoint
from dfi.style.feedforward import Stylizer

# ---------------------------------------------------------------- references from the equations
def _reflect(x, p):  # NHWC
    return np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")


def _conv(x, hwio, stride=1):
    """VALID correlation, NHWC × HWIO (TensorFlow's conv2d)."""
    k = hwio.shape[0]
    rows, cols = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], rows, cols, hwio.shape[3]))
    for i in range(k):
        for j in range(k):
            out += x[:, i:i + stride * rows:stride, j:j + stride * cols:stride] @ hwio[i, j]
    return out


def _norm(x, gamma, beta):
    mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * gamma + beta


def _up(x):
    return x.repeat(2, axis=1).repeat(2, axis=2)


def magenta_reference(image, tensors, mix):
    """Magenta's transform() (model.py / ops.py): RGB / 255 in, [0, 1] out (×255 here)."""
    def layer(h, name, stride=1, act=lambda v: np.maximum(v, 0)):
        scope = f"transformer/{MAGENTA_SCOPES[name]}"
        w = np.nan_to_num(tensors[f"{scope}/weights"].astype(np.float64))
        gamma = sum(weight * tensors[f"{scope}/InstanceNorm/gamma"][k] for k, weight in mix.items())
        beta = sum(weight * tensors[f"{scope}/InstanceNorm/beta"][k] for k, weight in mix.items())
        return act(_norm(_conv(_reflect(h, w.shape[0] // 2), w, stride), gamma, beta))
    h = image.transpose(0, 2, 3, 1).astype(np.float64) / 255.0
    h = layer(layer(layer(h, "c1"), "d1", 2), "d2", 2)
    for b in range(1, 6):
        h = h + layer(layer(h, f"r{b}1"), f"r{b}2", act=lambda v: v)
    h = layer(_up(layer(_up(h), "u1")), "u2")  # expand conv1, conv2: nearest ×2, then the convolution
    h = layer(h, "c2", act=lambda v: 1 / (1 + np.exp(-v)))
    return 255.0 * h.transpose(0, 3, 1, 2)


def fast_neural_style_reference(image, state):
    """pytorch/examples' TransformerNet: RGB 0–255 in, no output activation (clamped)."""
    def conv(h, module, stride=1, up=False):
        w, b = state[f"{module}.conv2d.weight"].astype(np.float64), state[f"{module}.conv2d.bias"]
        h = _up(h) if up else h
        return _conv(_reflect(h, w.shape[2] // 2), w.transpose(2, 3, 1, 0), stride) + b

    def norm(h, module):
        return _norm(h, state[f"{module}.weight"], state[f"{module}.bias"])
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    h = image.transpose(0, 2, 3, 1).astype(np.float64)
    h = relu(norm(conv(h, "conv1"), "in1"))
    h = relu(norm(conv(h, "conv2", 2), "in2"))
    h = relu(norm(conv(h, "conv3", 2), "in3"))
    for b in range(1, 6):
        h = h + norm(conv(relu(norm(conv(h, f"res{b}.conv1"), f"res{b}.in1")), f"res{b}.conv2"), f"res{b}.in2")
    h = relu(norm(conv(h, "deconv1", up=True), "in4"))
    h = relu(norm(conv(h, "deconv2", up=True), "in5"))
    return np.clip(conv(h, "deconv3"), 0, 255).transpose(0, 3, 1, 2)


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(1)
    small = rng.uniform(0, 255, (1, 3, 5, 6))
    return np.kron(small, np.ones((1, 1, 7, 6)))[:, :, :32, :28].astype(np.float32)  # sides ×4, as the reference needs


# ---------------------------------------------------------------- the checkpoint reader
@pytest.mark.parametrize("snappy, content", [(False, False), (True, False), (False, True)])
def test_v1_checkpoints_are_read_whole(tmp_path, snappy, content):
    tensors = magenta_tensors(n_styles=3)
    tensors["counts"] = np.arange(-3, 9, dtype=np.int32).reshape(3, 4)
    path = tmp_path / "model.ckpt"
    write_tf_checkpoint(path, tensors, snappy=snappy, content=content, block_entries=4,
                        split=("transformer/contract/conv2/weights", "counts"))
    got = read_checkpoint(path)
    assert sorted(got) == sorted(tensors)
    for name, array in tensors.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape, name
        np.testing.assert_array_equal(got[name], array, err_msg=name)


def test_damaged_and_v2_checkpoints_are_refused_naming_what_was_found(tmp_path):
    path = tmp_path / "model.ckpt"
    write_tf_checkpoint(path, magenta_tensors(n_styles=2))
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(truncated)
    broken = tmp_path / "broken.ckpt"
    data = bytearray(path.read_bytes())
    data[len(data) // 3:len(data) // 3 + 64] = b"\xff" * 64
    broken.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        read_checkpoint(broken)
    (tmp_path / "v2.ckpt.index").write_bytes(b"x")
    (tmp_path / "v2.ckpt.data-00000-of-00001").write_bytes(b"x")
    for given in ("v2.ckpt", "v2.ckpt.index", "v2.ckpt.data-00000-of-00001"):
        with pytest.raises(CheckpointError, match=r"V2 checkpoint \(v2.ckpt.data-00000-of-00001, v2.ckpt.index\)"):
            read_checkpoint(tmp_path / given)
    assert issubclass(CheckpointError, FileFormatError)  # a usage error: exit 2


# ---------------------------------------------------------------- exactness
@pytest.mark.parametrize("mix", [{2: 1.0}, {0: 0.5, 3: 0.7}])
def test_magenta_equals_its_reference(tmp_path, photo, mix):
    tensors = magenta_tensors()
    path = tmp_path / "m.ckpt"
    write_tf_checkpoint(path, tensors)
    kind, read = sniff(path)
    net, repaired = from_magenta(read, str(path))
    assert kind == "magenta" and net.n_styles == 4 and net.width == 0.25 and repaired == []
    want = magenta_reference(photo, tensors, mix)
    fast = Stylizer(net).stylize(photo, mix=mix)
    graph = net(photo, mix).array
    for got in (fast, graph):
        diff = np.abs(got - want)
        assert diff.mean() < 1 and diff.max() < 8, (diff.mean(), diff.max())
        assert diff.max() < 0.05  # in fact float32 rounding only


def test_magenta_nan_weights_are_repaired_and_said(tmp_path, photo):
    tensors = magenta_tensors(nan=True)
    net, repaired = from_magenta(tensors, "varied.ckpt")
    assert repaired == ["transformer/contract/conv1/weights: 243 non-finite values set to 0"]
    out = Stylizer(net).stylize(photo, style=1)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, magenta_reference(photo, tensors, {1: 1.0}), atol=0.05)


@pytest.mark.parametrize("legacy", [True, False])
def test_fast_neural_style_equals_its_reference(tmp_path, photo, legacy):
    state = fast_neural_style_state()
    path = tmp_path / "candy.pth"
    write_torch(path, state, legacy=legacy)
    kind, read = sniff(path)
    net = from_fast_neural_style(read, str(path))
    want = fast_neural_style_reference(photo, state)
    assert kind == "fast-neural-style" and 0 < want.mean() < 255  # neither all black nor all white
    for got in (Stylizer(net).stylize(photo, style=0), net(photo, {0: 1.0}).array):
        diff = np.abs(got - want)
        assert diff.mean() < 1 and diff.max() < 8, (diff.mean(), diff.max())


def test_other_networks_are_not_taken_for_stylizers(tmp_path):
    path = tmp_path / "vgg.pth"
    write_torch(path, {"features.0.weight": np.zeros((4, 3, 3, 3), np.float32)}, legacy=False)
    assert sniff(path) is None
    state = fast_neural_style_state()
    state["conv2.conv2d.weight"] = state["conv2.conv2d.weight"][:, :4]
    with pytest.raises(FileFormatError, match="conv2.conv2d.weight has shape"):
        from_fast_neural_style(state, "odd.pth")

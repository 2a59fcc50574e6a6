import copy

import numpy as np
import pytest

from dfi.edit.attributes import load_vector, save_vector, scale_vector, target_features
from dfi.core.backend import to_cpu
from dfi.nets.features import extract
from dfi.core.losses import feature_loss
from dfi.core.reconstruct import ReconstructConfig, final, reconstruct


def _reconstruction_error(net, device, optimizer="lbfgs", iterations=300):
    net = copy.copy(net).to_device(device)  # the session's tiny network stays on the CPU
    rng = np.random.default_rng(0)
    target = (rng.random((2, 3, 32, 32)) * 255).astype("f")
    layers = ["conv1_1", "conv2_1", "conv3_1"]
    feats = extract(net, device.send(target), layers)
    start = device.send(np.full((2, 3, 32, 32), 128, "f"))
    config = ReconstructConfig(iterations=iterations, tv_weight=0.0, ftol=1e-9, optimizer=optimizer, lr=2.0)
    last = final(reconstruct(net, start, lambda f, rows: feature_loss(f, {k: v[rows] for k, v in feats.items()}),
                             layers, config))
    images = to_cpu(last.images)
    assert images.min() >= 0 and images.max() <= 255
    start_error = np.abs(128 - target).mean()  # about 64 for uniform noise
    return np.abs(images - target).mean() / start_error, last


def test_reconstruction_recovers_known_image(tiny_net, device):
    error, last = _reconstruction_error(tiny_net, device)
    assert error < 0.03, error  # mean pixel error, as a fraction of the flat grey start's
    assert last.evaluations >= last.iteration


def test_adam_also_reconstructs(tiny_net):
    error, _ = _reconstruction_error(tiny_net, tiny_net.device, optimizer="adam", iterations=300)
    assert error < 0.5, error


def test_config_validation():
    with pytest.raises(ValueError, match="--iterations 0 must be at least 1"):
        ReconstructConfig(iterations=0)
    with pytest.raises(ValueError, match="--tv-weight nan"):
        ReconstructConfig(tv_weight=float("nan"))
    with pytest.raises(ValueError, match="--optimizer 'sgd' is not one of lbfgs, adam"):
        ReconstructConfig(optimizer="sgd")


def test_attribute_vector_is_the_difference_of_batched_means(synth_lfw, tiny_net):
    from data_tools.index import load_index
    from dfi.edit.pipeline import EditConfig, load_working, compute_vector

    index = load_index(synth_lfw[1])
    config = EditConfig(layers=("conv2_1",), size=32, batch_size=2)
    paths = list(index.table["path"][:7])
    done = []
    w = compute_vector(tiny_net, index, paths[:3], paths[3:], config, progress=done.append)
    feats = extract(tiny_net, load_working(index.images_root, paths, config), ["conv2_1"], batch_size=7)["conv2_1"]
    expected = feats[3:].mean(axis=0, keepdims=True) - feats[:3].mean(axis=0, keepdims=True)
    np.testing.assert_allclose(w["conv2_1"], expected, rtol=1e-4, atol=1e-4)
    assert done == [2, 1, 2, 2]  # batches of 2: progress after each, 7 faces in all
    with pytest.raises(ValueError, match="empty"):
        compute_vector(tiny_net, index, [], paths, config)


def test_vector_scalings_and_io(tmp_path):
    rng = np.random.default_rng(2)
    w = {"a": rng.normal(size=(1, 2, 3, 3)).astype("f"), "b": rng.normal(size=(1, 4, 2, 2)).astype("f")}
    x = {k: rng.normal(size=v.shape).astype("f") * 3 for k, v in w.items()}
    assert scale_vector(w, x, "none")["a"] is w["a"]
    beta = scale_vector(w, x, "beta")
    mean_sq = np.mean(np.concatenate([v.ravel() for v in w.values()]) ** 2)
    np.testing.assert_allclose(beta["b"], w["b"] / mean_sq, rtol=1e-5)
    norm = scale_vector(w, x, "norm")
    for k in w:
        np.testing.assert_allclose(np.linalg.norm(norm[k]), np.linalg.norm(x[k]), rtol=1e-5)
    with pytest.raises(ValueError, match="--scaling 'max' is not one of none, beta, norm"):
        scale_vector(w, x, "max")
    targets = target_features(x, w, [0.0, 0.5])
    np.testing.assert_allclose(targets["a"][1], x["a"][0] + 0.5 * w["a"][0], rtol=1e-6)
    np.testing.assert_allclose(targets["a"][0], x["a"][0])
    save_vector(tmp_path / "w.npz", w, {"attributes": ["Smiling"]})
    loaded, meta = load_vector(tmp_path / "w.npz")
    assert meta == {"attributes": ["Smiling"]}
    np.testing.assert_array_equal(loaded["b"], w["b"])


def test_feature_cache_matches_direct_computation(synth_lfw, tiny_net, tmp_path):
    from data_tools.index import load_index
    from dfi.edit.pipeline import EditConfig, compute_vector
    from dfi.edit.cache import FeatureCache

    index = load_index(synth_lfw[1])
    config = EditConfig(layers=("conv2_1", "conv3_1"), size=32, batch_size=3)
    paths = list(index.table["path"][:6])
    direct = compute_vector(tiny_net, index, paths[:3], paths[3:], config)
    cache = FeatureCache(tmp_path / "cache", net_name="tiny", layers=config.layers, size=32, crop=config.crop)
    first = compute_vector(tiny_net, index, paths[:3], paths[3:], config, cache=cache)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 6
    second = compute_vector(tiny_net, index, paths[:3], paths[3:], config, cache=cache)
    for name in config.layers:
        np.testing.assert_allclose(first[name], direct[name], rtol=1e-5, atol=1e-4)
        scale = np.abs(direct[name]).max()
        np.testing.assert_allclose(second[name], direct[name], atol=2e-3 * scale)  # float16 on disk
    other = FeatureCache(tmp_path / "cache", net_name="tiny", layers=config.layers, size=48, crop=config.crop)
    assert other.get(index.images_root / paths[0]) is None  # another size misses

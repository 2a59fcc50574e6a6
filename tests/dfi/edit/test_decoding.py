"""Training a DFI decoder on DFI's objective, exact resume, and its use as a start."""
import numpy as np
import pytest

import dfi._compat  # noqa: F401
import chainer

from data_tools.attributes import attribute_columns
from data_tools.index import load_index


@pytest.fixture(scope="module")
def setup(synth_lfw, tiny_net):
    from dfi.edit.decoding import DecoderTrainConfig, attribute_directions
    from dfi.core.image import crop_and_resize, read_image

    _, index_file = synth_lfw
    index = load_index(index_file)
    files = [index.images_root / p for p in index.table["path"]]
    config = DecoderTrainConfig(size=32, batch_size=4, iterations=40, lr=2e-3, width=0.25, seed=0)
    sample = np.stack([crop_and_resize(read_image(f), config.crop, (32, 32)) for f in files[:48]])
    scores = index.table[attribute_columns(index.table)].to_numpy()[:48]
    directions = attribute_directions(tiny_net, sample, scores, config.layers)
    return files, directions, config


def _trainer(tiny_net, setup, seed=0):
    from dfi.edit.decoding import DecoderTrainer
    from dfi.nets.decoder import Decoder, dfi_spec

    files, directions, config = setup
    channels = {name: w.shape[0] for name, (w, _) in tiny_net.params.items()}
    decoder = Decoder(dfi_spec(channels, layers=config.layers, width=config.width), seed=seed)
    return DecoderTrainer(tiny_net, decoder, files[:-8], directions, config, crop=config.crop)


def _held_out_loss(trainer, files):
    from dfi.core.image import crop_and_resize, read_image

    images = np.stack([crop_and_resize(read_image(f), trainer.config.crop, (32, 32)) for f in files[-8:]])
    strengths = np.array([0, 0.3, -0.3, 0.2] * 2, np.float32)
    with chainer.no_backprop_mode():
        terms = trainer.loss_terms(images, strengths, np.zeros(8, int))
    return float(sum(t.array.mean() for t in terms.values()))


def test_training_lowers_the_held_out_loss(tiny_net, setup):
    trainer = _trainer(tiny_net, setup)
    before = _held_out_loss(trainer, setup[0])
    steps = list(trainer.run(40))
    assert [s.step for s in steps] == list(range(1, 41)) and set(steps[0].terms) == {"feature", "pixel", "tv"}
    assert _held_out_loss(trainer, setup[0]) < 0.7 * before


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tiny_net, setup, tmp_path):
    whole = _trainer(tiny_net, setup)
    list(whole.run(4))
    first = _trainer(tiny_net, setup)
    list(first.run(2))
    first.save_checkpoint(tmp_path / "c.ckpt")
    second = _trainer(tiny_net, setup)
    second.load_checkpoint(tmp_path / "c.ckpt")
    assert second.step == 2
    list(second.run(4))
    for (name, a), (_, b) in zip(sorted(whole.decoder.namedparams()), sorted(second.decoder.namedparams())):
        np.testing.assert_array_equal(a.array, b.array, err_msg=name)


def test_the_residual_objective_scores_the_start_edits_use(tiny_net, setup):
    """An edited target's feature loss is that of x + D(t) − D(φ(x)) (residual, what
    decoded_starts and --fast give) or of D(t) (direct); plain targets score D(φ(x))."""
    from dataclasses import replace

    from dfi.core.image import crop_and_resize, preprocess, read_image
    from dfi.core.losses import feature_loss, network_input

    files, _, config = setup
    images = np.stack([crop_and_resize(read_image(f), config.crop, (32, 32)) for f in files[-3:]])
    strengths, which = np.array([0.3, 0.0, -0.2], np.float32), np.array([0, 1, 0])
    layers = config.layers
    with chainer.no_backprop_mode(), chainer.using_config("train", False):
        feats = {n: v.array for n, v in tiny_net.pick(preprocess(images, tiny_net.convention), layers).items()}
        for objective in ("residual", "direct"):
            trainer = _trainer(tiny_net, (files, setup[1], replace(config, objective=objective)))
            targets = trainer.targets(feats, strengths, which)
            decoded = trainer.decoder(targets, (32, 32)).array
            own = trainer.decoder(feats, (32, 32)).array
            shown = decoded + (images - own) * (strengths != 0).reshape(-1, 1, 1, 1) if objective == "residual" \
                else decoded
            want = feature_loss(tiny_net.pick(network_input(shown, tiny_net.convention), layers), targets).array
            got = trainer.loss_terms(images, strengths, which)["feature"].array
            np.testing.assert_allclose(got, want, rtol=1e-4, err_msg=objective)
    assert not np.allclose(want[[0, 2]], feature_loss(tiny_net.pick(network_input(
        decoded + images - own, tiny_net.convention), layers), targets).array[[0, 2]], rtol=1e-3)


def test_a_warm_start_keeps_the_share_of_the_decoded_change_that_helps(tiny_net):
    # row 0's start is its target image itself (the whole change is kept), row 1's is noise
    # when its target is the input (none of it is): the chosen starts, by one forward pass per
    # scale, and the passes they cost
    from dfi.core.losses import feature_loss
    from dfi.core.settings import ReconstructConfig
    from dfi.edit.decoding import START_SCALES, scaled_starts
    from dfi.nets.features import extract

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (1, 3, 32, 32)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 40, x.shape), 0, 255).astype(np.float32)
    noise = rng.uniform(0, 255, x.shape).astype(np.float32)
    layers = ["conv3_1", "conv4_1"]
    targets = extract(tiny_net, np.concatenate([y, x]), layers)

    def loss_fn(feats, rows):
        return feature_loss(feats, {name: value[rows] for name, value in targets.items()})
    starts, scales, spent = scaled_starts(tiny_net, x, np.concatenate([y, noise]), loss_fn, layers,
                                          ReconstructConfig(tv_weight=0.0))
    assert scales == [1.0, 0.0] and spent == 2 * len(START_SCALES)
    np.testing.assert_allclose(starts[0], y[0], atol=1e-4)
    np.testing.assert_allclose(starts[1], x[0], atol=1e-4)


def test_the_sweep_takes_a_loaded_decoder_and_refuses_another_vggs(tiny_net, synth_lfw, tmp_path):
    from dfi.core.errors import SettingError
    from dfi.edit.pipeline import load_face, sweep
    from dfi.edit.settings import EditConfig
    from dfi.nets.decoder import Decoder, FastDecoder, dfi_spec, save_decoder
    from dfi.nets.features import extract

    channels = {name: w.shape[0] for name, (w, _) in tiny_net.params.items()}
    net = Decoder(dfi_spec(channels, width=0.25), seed=3)
    ours, other = tmp_path / "ours.npz", tmp_path / "other.npz"
    save_decoder(ours, net, vgg_identity=tiny_net.identity, convention="caffe", settings={})
    save_decoder(other, net, vgg_identity="vgg19:max:0123456789ab", convention="caffe", settings={})
    config = EditConfig(size=32, k=2)
    face = load_face(load_index(synth_lfw[1]).image_path(0), config, row=0)
    rng = np.random.default_rng(0)
    vector = {name: rng.normal(size=value.shape[1:]).astype(np.float32)
              for name, value in extract(tiny_net, face.working[None], config.layers).items()}

    def fast(decoder):
        return list(sweep(tiny_net, face, [vector], [0.2, 0.4], config, decoder=decoder, fast=True))[-1].images
    np.testing.assert_allclose(fast(Decoder.load(ours)), fast(FastDecoder(net)), atol=1e-4)
    with pytest.raises(SettingError, match="decodes the features of VGG 'vgg19:max:0123456789ab'"):
        fast(Decoder.load(other))
    with pytest.raises(SettingError, match="not dict"):
        fast({"conv5_1": 1})


def test_training_on_a_gpu_refuses_column_buffers_past_chainers_32_bit_offsets(tiny_net, setup):
    """Chainer trains the decoder by im2col / col2im (no cuDNN on CuPy 14), whose GPU kernel
    indexes with 32-bit ints: the default decoder's first full-size convolution (32 channels
    in at width 0.5) holds 9·32 = 288 elements per pixel per image, 2^31 at 1024² past batch 7
    (past batch 3 with the residual objective, which decodes edited faces twice)."""
    import dataclasses
    import types

    from dfi.core.errors import SettingError
    from dfi.edit.decoding import DecoderTrainer
    from dfi.nets.decoder import Decoder, column_elements, dfi_spec

    files, directions, config = setup
    spec = dfi_spec({name: w.shape[0] for name, (w, _) in tiny_net.params.items()}, width=0.5)
    columns = column_elements(spec, 1024, 8)
    assert max(columns.values()) == 288 * 1024 * 1024 * 8 == columns["conv8"]
    assert column_elements(spec, 1010, 1) == column_elements(spec, 1024, 1)  # (conv5_1 at 1010²: 64², as at 1024²)
    gpu_vgg = types.SimpleNamespace(device=types.SimpleNamespace(xp=object()))  # not NumPy: a GPU
    decoder = Decoder(spec)
    big = dataclasses.replace(config, size=1024, batch_size=8, width=0.5)
    with pytest.raises(SettingError, match=r"--size 1024 with --batch-size 8: layer conv8's column buffer would hold "
                                           r"2,415,919,104 .* --batch-size 7 at --size 1024 or --size 960 at"):
        DecoderTrainer(gpu_vgg, decoder, files, directions, big)
    with pytest.raises(SettingError, match="--batch-size 3 at --size 1024"):
        DecoderTrainer(gpu_vgg, decoder, files, directions,
                       dataclasses.replace(big, batch_size=4, objective="residual"))
    DecoderTrainer(tiny_net, decoder, files, directions, big)  # on the CPU there is no such limit

"""AdaIN's decoder training: its target, its losses going down, exact resume, the command line."""
import numpy as np
import pytest
from PIL import Image

from file_formats import adain_encoder_state

from dfi.nets.decoder import Decoder, adain_spec
from dfi.nets.pretrained import adain_encoder
from dfi.style.adain_training import AdainTrainConfig, AdainTrainer, adain_target
from dfi.style.transforms import adain


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("adain-train")
    rng = np.random.default_rng(0)
    for kind in ("content", "styles"):
        (root / kind).mkdir()
        for i in range(4):
            small = rng.uniform(0, 255, (4, 5, 3)).astype(np.uint8)
            Image.fromarray(small).resize((40 + 4 * i, 36), Image.BILINEAR).save(root / kind / f"{i}.png")
    return root


def _trainer(folders, **changes):
    encoder = adain_encoder(adain_encoder_state(), "enc")
    config = AdainTrainConfig(**{"size": 32, "batch_size": 2, "iterations": 30, "lr": 1e-3, "width": 0.125, **changes})
    files = {k: sorted((folders / k).glob("*.png")) for k in ("content", "styles")}
    return AdainTrainer(encoder, Decoder(adain_spec(0.125)), files["content"], files["styles"], config)


def test_the_target_is_adain_per_image():
    rng = np.random.default_rng(1)
    c, s = rng.standard_normal((2, 4, 5, 6)).astype(np.float32), rng.gamma(2, 1, (2, 4, 3, 3)).astype(np.float32)
    got = adain_target(c, s).array
    for i in range(2):
        np.testing.assert_allclose(got[i], adain(c[i], s[i]), rtol=1e-4, atol=1e-4)


def test_saturated_pixels_still_learn(folders):
    """The decoder's output is scored unclamped, as the reference trains it: with every
    pixel pushed past 1 (all of them clamped in an image), its RGB layer still gets a gradient."""
    trainer = _trainer(folders)
    last = trainer.decoder.conv8
    last.b.array[...] = 3.0
    trainer.decoder.cleargrads()
    terms = trainer.loss_terms(*trainer.batch_for(0))
    import chainer.functions as F
    sum(F.sum(t) for t in terms.values()).backward()
    assert np.abs(last.b.grad).min() > 0


def test_training_lowers_the_loss_and_resumes_exactly(folders, tmp_path):
    trainer = _trainer(folders)
    images = trainer.batch_for(10_000)  # a batch it never trains on

    def loss():
        import chainer
        with chainer.no_backprop_mode():
            return float(sum(t.array.mean() for t in trainer.loss_terms(*images).values()))
    before = loss()
    steps = list(trainer.run(30))
    assert [s.step for s in steps] == list(range(1, 31)) and set(steps[0].terms) == {"content", "style"}
    assert loss() < 0.8 * before
    whole, first = _trainer(folders), _trainer(folders)
    list(whole.run(3))
    list(first.run(2))
    first.save_checkpoint(tmp_path / "c.ckpt")
    second = _trainer(folders)
    second.load_checkpoint(tmp_path / "c.ckpt")
    list(second.run(3))
    for (name, a), (_, b) in zip(sorted(whole.decoder.namedparams()), sorted(second.decoder.namedparams())):
        np.testing.assert_array_equal(a.array, b.array, err_msg=name)


def test_train_an_adain_decoder_and_use_it(folders, tmp_path, cli):
    from file_formats import write_torch

    write_torch(tmp_path / "vgg_normalised.pth", adain_encoder_state(), legacy=False)
    enc, dec = tmp_path / "enc.npz", tmp_path / "dec.npz"
    assert cli("weights", "convert", tmp_path / "vgg_normalised.pth", "-o", enc)[0] == 0
    code, _, err = cli("-q", "train-decoder", "--method", "adain", "--content", folders / "content", "--styles",
                       folders / "styles", "--weights", enc, "-o", dec, "--size", "32", "--batch-size", "2",
                       "--iterations", "2", "--width", "0.25", "--device", "cpu")
    assert code == 0, err  # (a decoder of another width than the encoder's: its input is the encoder's conv4_1)
    from dfi.nets.decoder import load_decoder
    net, record = load_decoder(dec)
    assert dict(record["architecture"]["inputs"])["conv4_1"] == 64 and net.conv0.W.shape[:2] == (64, 64)
    code, _, err = cli("-q", "style", folders / "content" / "0.png", folders / "styles" / "1.png", "--method",
                       "adain", "--weights", enc, "--decoder", dec, "--size", "32", "--device", "cpu",
                       "-o", tmp_path / "o.png")
    assert code == 0, err
    code, _, err = cli("train-decoder", "--method", "adain", "--content", folders / "content", "--weights", enc,
                       "-o", tmp_path / "x.npz")
    assert code == 2 and "give --styles" in err


@pytest.mark.parametrize("changes, words", [({"width": 0.0}, "--width 0.0"), ({"style_weight": -1.0}, "--style-weight -1.0"),
                                            ({"size": 30}, "--size 30"), ({"lr": 0.0}, "--lr 0.0")])
def test_bad_adain_training_settings_are_refused(changes, words):
    from dfi.core.errors import SettingError

    with pytest.raises(SettingError, match=words.replace(".", r"\.")):
        AdainTrainConfig(**changes)


def test_training_on_a_gpu_refuses_column_buffers_past_chainers_32_bit_offsets(folders):
    """The decoder and the encoder both go through Chainer's im2col / col2im (32-bit offsets
    on a GPU): the published decoder's last 64-channel convolution holds 576 elements per
    pixel per image, past 2^31 at 512² from batch 15; a narrow decoder still trains through
    the encoder, whose conv1_2 is as large."""
    import types

    from dfi.core.errors import SettingError

    files = {k: sorted((folders / k).glob("*.png")) for k in ("content", "styles")}
    encoder = adain_encoder(adain_encoder_state(width=1.0), "enc")
    encoder.device = types.SimpleNamespace(xp=object())  # not NumPy: a GPU
    config = AdainTrainConfig(size=512, batch_size=15)
    with pytest.raises(SettingError, match=r"--size 512 with --batch-size 15: layer (conv7|conv1_2)'s column buffer "
                                           r"would hold 2,264,924,160 .* --batch-size 14 at --size 512"):
        AdainTrainer(encoder, Decoder(adain_spec(1.0)), files["content"], files["styles"], config)
    with pytest.raises(SettingError, match="layer conv1_2's column buffer"):
        AdainTrainer(encoder, Decoder(adain_spec(0.25)), files["content"], files["styles"], config)
    AdainTrainer(encoder, Decoder(adain_spec(1.0)), files["content"], files["styles"],
                 AdainTrainConfig(size=512, batch_size=14))

"""WCT coarse to fine with one decoder per level: the order and re-encoding of Li et al.,
and the command line."""
import numpy as np
import pytest
from PIL import Image

from dfi.nets.decoder import Decoder, FastDecoder, dfi_spec
from dfi.nets.features import extract
from dfi.style.transforms import wct
from dfi.style.wct import wct_transfer


def test_levels_run_deepest_first_each_re_encoding_the_last_output(tiny_net):
    channels = {n: w.shape[0] for n, (w, _) in tiny_net.params.items()}
    decoders = {layer: FastDecoder(Decoder(dfi_spec(channels, layers=(layer,), width=0.25), seed=k))
                for k, layer in enumerate(("conv1_1", "conv2_1"))}
    rng = np.random.default_rng(0)
    content = rng.uniform(0, 255, (3, 18, 21)).astype(np.float32)  # odd sides: padded to 2, cropped back
    style = rng.uniform(0, 255, (3, 16, 16)).astype(np.float32)
    got = wct_transfer(tiny_net, decoders, content, [style], alpha=0.7)
    image = np.pad(content, ((0, 0), (0, 0), (0, 1)), mode="reflect")[None]
    for layer in ("conv2_1", "conv1_1"):  # the reference: Li et al.'s loop written out
        c = extract(tiny_net, image, [layer])[layer][0]
        s = extract(tiny_net, style[None], [layer])[layer][0]
        target = 0.7 * wct(c, s) + 0.3 * c
        image = np.clip(decoders[layer]({layer: target[None]}, image.shape[2:]), 0, 255)
    assert got.shape == content.shape
    np.testing.assert_allclose(got, image[0, :, :18, :21], atol=1e-3)


@pytest.fixture(scope="module")
def level_decoders(tmp_path_factory, synth_lfw):
    from dfi.cli import main

    root = tmp_path_factory.mktemp("wct")
    result, _ = synth_lfw
    out = {}
    for layer in ("conv1_1", "conv2_1"):
        out[layer] = root / f"{layer}.npz"
        assert main([str(a) for a in ["-q", "train-decoder", "--images", result.images_dir, "--layers", layer,
                                      "-o", out[layer], "--iterations", "1", "--weights", "untrained",
                                      "--device", "cpu", "--size", "32", "--batch-size", "2",
                                      "--width", "0.25"]]) == 0
    rng = np.random.default_rng(1)
    for name in ("c", "s", "t"):
        Image.fromarray(rng.uniform(0, 255, (30, 26, 3)).astype(np.uint8)).save(root / f"{name}.png")
    return root, out


def test_wct_from_the_command_line(level_decoders, cli):
    root, decoders = level_decoders
    common = ["style", root / "c.png", root / "s.png", "--method", "wct", "--weights", "untrained",
              "--device", "cpu", "--size", "32"]
    code, _, err = cli(*common, "--decoder", decoders["conv2_1"], "--decoder", decoders["conv1_1"],
                       "-o", root / "out.png")
    assert code == 0, err
    assert Image.open(root / "out.png").size == (28, 32)
    code, _, err = cli(*common[:3], root / "t.png", *common[3:], "--decoder", decoders["conv1_1"],
                       "--mask", root / "t.png", "--alpha", "0.3", "-o", root / "masked.png")
    assert code == 0, err


@pytest.mark.parametrize("extra, words", [
    ([], "--method wct needs a --decoder per level"),
    (["--decoder", "{d1}", "--decoder", "{d1}"], "two decoders for conv1_1"),
    (["--decoder", "{d1}", "--alpha", "-0.1"], "--alpha -0.1 must be within 0…1"),
])
def test_bad_wct_requests_are_one_line_and_exit_2(level_decoders, cli, extra, words):
    root, decoders = level_decoders
    extra = [decoders["conv1_1"] if e == "{d1}" else e for e in extra]
    code, _, err = cli("style", root / "c.png", root / "s.png", "--method", "wct", "--weights", "untrained",
                       "--device", "cpu", "--size", "32", *extra, "-o", root / "bad.png")
    assert code == 2 and words in err and err.count("\n") == 1, err
    assert not (root / "bad.png").exists()

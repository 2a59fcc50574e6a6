"""AdaIN with pytorch-AdaIN's two files (format-exact, small widths) against a reference
written from the paper's equations and the published architecture (NCHW, as PyTorch runs it)."""
import numpy as np
import pytest

from file_formats import adain_decoder_state, adain_encoder_state, write_torch

from dfi.nets.decoder import FastDecoder
from dfi.nets.pretrained import adain_decoder, adain_encoder, sniff
from dfi.style.adain import adain_transfer


def _conv(x, w, b):  # NCHW, reflection padding 1, OIHW
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    rows, cols = x.shape[2] - 2, x.shape[3] - 2
    out = np.zeros((x.shape[0], w.shape[0], rows, cols))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", x[:, :, i:i + rows, j:j + cols], w[:, :, i, j])
    return out + b.reshape(1, -1, 1, 1)


def _pool(x):  # max 2×2, ceil mode
    n, c, h, w = x.shape
    padded = np.full((n, c, h + h % 2, w + w % 2), -np.inf)
    padded[:, :, :h, :w] = x
    return padded.reshape(n, c, padded.shape[2] // 2, 2, padded.shape[3] // 2, 2).max(axis=(3, 5))


def reference_encode(image, state):
    """vgg_normalised up to relu4_1: x/255 → 1×1 conv → [pad, conv, ReLU] …, pools after
    relu1_2, relu2_2, relu3_4."""
    h = image.astype(np.float64)[None] / 255.0
    h = np.einsum("nchw,oc->nohw", h, state["0.weight"][:, :, 0, 0]) + state["0.bias"].reshape(1, -1, 1, 1)
    for index in (2, 5, "pool", 9, 12, "pool", 16, 19, 22, 25, "pool", 29):
        h = _pool(h) if index == "pool" else np.maximum(_conv(h, state[f"{index}.weight"], state[f"{index}.bias"]), 0)
    return h[0]


def reference_decode(feat, state):
    h = feat[None]
    for index in (1, "up", 5, 8, 11, 14, "up", 18, 21, "up", 25, 28):
        if index == "up":
            h = h.repeat(2, axis=2).repeat(2, axis=3)
        else:
            h = _conv(h, state[f"{index}.weight"], state[f"{index}.bias"])
            h = h if index == 28 else np.maximum(h, 0)
    return np.clip(h[0], 0, 1) * 255.0


def reference_adain(c, s):  # function.py: unbiased variance + 1e-5
    def stats(f):
        flat = f.reshape(f.shape[0], -1)
        return flat.mean(1).reshape(-1, 1, 1), np.sqrt(flat.var(1, ddof=1) + 1e-5).reshape(-1, 1, 1)
    (cm, cs), (sm, ss) = stats(c), stats(s)
    return (c - cm) / cs * ss + sm


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("adain")
    enc, dec = adain_encoder_state(), adain_decoder_state()
    write_torch(root / "vgg_normalised.pth", {**enc, **adain_encoder_state(upto=51)}, legacy=False)
    write_torch(root / "decoder.pth", dec, legacy=False)
    rng = np.random.default_rng(3)
    content = np.kron(rng.uniform(0, 255, (3, 5, 6)), np.ones((1, 8, 6))).astype(np.float32)[:, :40, :32]
    styles = [np.kron(rng.uniform(0, 255, (3, 4, 4)), np.ones((1, 9, 10))).astype(np.float32) for _ in range(2)]
    return root, enc, dec, content, styles


def _dfi(root):
    kind_e, enc = sniff(root / "vgg_normalised.pth")
    kind_d, dec = sniff(root / "decoder.pth")
    assert (kind_e, kind_d) == ("adain-encoder", "adain-decoder")
    return adain_encoder(enc, "vgg_normalised.pth"), FastDecoder(adain_decoder(dec, "decoder.pth"))


def _close(got, want):
    diff = np.abs(got - want)
    assert 5 < want.mean() < 250 and want.std() > 1  # neither flat nor clamped away
    assert diff.mean() <= 1 and diff.max() <= 8, (diff.mean(), diff.max())
    assert diff.max() < 0.1  # in fact float32 rounding only


def test_one_style_and_alpha_equal_the_reference(pair):
    root, enc, dec, content, styles = pair
    encoder, decoder = _dfi(root)
    assert encoder.layer_names[-1] == "conv5_4"  # the whole file is kept (WCT, DFI)
    c, s = reference_encode(content, enc), reference_encode(styles[0], enc)
    np.testing.assert_allclose(encoder.features(content[None], ["conv4_1"])["conv4_1"][0], c, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(encoder.pick(content[None], ["conv4_1"])["conv4_1"].array[0], c, rtol=1e-3, atol=1e-3)
    _close(adain_transfer(encoder, decoder, content, styles[:1]), reference_decode(reference_adain(c, s), dec))
    mixed = 0.6 * reference_adain(c, s) + 0.4 * c
    _close(adain_transfer(encoder, decoder, content, styles[:1], alpha=0.6), reference_decode(mixed, dec))


def test_blends_and_masks_equal_the_reference(pair):
    root, enc, dec, content, styles = pair
    encoder, decoder = _dfi(root)
    c = reference_encode(content, enc)
    s0, s1 = (reference_encode(s, enc) for s in styles)
    blended = 0.75 * reference_adain(c, s0) + 0.25 * reference_adain(c, s1)  # weights 3:1, normalised
    _close(adain_transfer(encoder, decoder, content, styles, weights=[3, 1]), reference_decode(blended, dec))
    mask = np.zeros(content.shape[1:])
    mask[:, :16] = 1.0
    small = np.zeros(c.shape[1:], bool)
    small[:, :2] = True  # the mask at relu4_1 (1/8 of the size)

    def region(s, where):
        flat = c[:, where]
        mean, std = flat.mean(1)[:, None], np.sqrt(flat.var(1, ddof=1) + 1e-5)[:, None]
        sf = s.reshape(s.shape[0], -1)
        return (flat - mean) / std * np.sqrt(sf.var(1, ddof=1) + 1e-5)[:, None] + sf.mean(1)[:, None]
    target = np.empty_like(c)
    target[:, small], target[:, ~small] = region(s0, small), region(s1, ~small)
    _close(adain_transfer(encoder, decoder, content, styles, mask=mask), reference_decode(target, dec))


def test_the_command_line_converts_the_pair_and_stylises(pair, tmp_path, cli):
    from PIL import Image

    root, _, _, content, styles = pair
    for i, image in enumerate([content, *styles]):
        Image.fromarray(image.transpose(1, 2, 0).astype(np.uint8)).save(tmp_path / f"{i}.png")
    enc, dec = tmp_path / "enc.npz", tmp_path / "dec.npz"
    code, out, err = cli("weights", "convert", root / "vgg_normalised.pth", "-o", enc)
    assert code == 0 and "--weights" in out, err
    code, out, err = cli("weights", "convert", root / "decoder.pth", "-o", dec)
    assert code == 0 and "--decoder" in out, err
    result = tmp_path / "out.png"
    base = ["style", tmp_path / "0.png", tmp_path / "1.png", "--method", "adain", "--weights", enc, "--decoder", dec,
            "--size", "40", "--device", "cpu"]
    code, _, err = cli(*base, "-o", result)
    assert code == 0, err
    assert Image.open(result).size == (32, 40)
    code, _, err = cli(*base[:3], tmp_path / "2.png", *base[3:], "--mask", tmp_path / "1.png", "--alpha", "0.5",
                       "--style-blend", "1,1", "--preserve-color", "histogram", "-o", tmp_path / "m.png")
    assert code == 0, err


@pytest.mark.parametrize("extra, words", [
    (["--alpha", "1.5"], "--alpha 1.5 must be within 0…1"),
    (["--mask", "{mask}"], "--mask needs exactly two styles"),
    (["--decoder", "{other}"], "decodes the features of VGG"),
    (["--weights", "{decoder}"], "not an AdaIN encoder"),
])
def test_bad_adain_requests_are_one_line_and_exit_2(pair, tmp_path, cli, extra, words):
    from PIL import Image

    from dfi.nets.decoder import Decoder, adain_spec, save_decoder

    root, _, _, content, styles = pair
    for i, image in enumerate([content, styles[0]]):
        Image.fromarray(image.transpose(1, 2, 0).astype(np.uint8)).save(tmp_path / f"{i}.png")
    enc, dec, other = tmp_path / "enc.npz", tmp_path / "dec.npz", tmp_path / "other.npz"
    assert cli("weights", "convert", root / "vgg_normalised.pth", "-o", enc)[0] == 0
    assert cli("weights", "convert", root / "decoder.pth", "-o", dec)[0] == 0
    save_decoder(other, Decoder(adain_spec(width=0.125)), vgg_identity="untrained:max:abc", convention="", settings={})
    names = {"{mask}": tmp_path / "1.png", "{other}": other, "{decoder}": dec}
    extra = [names.get(e, e) for e in extra]
    options = {"--weights": enc, "--decoder": dec}
    for i in range(0, len(extra), 2):
        options[extra[i]] = extra[i + 1]
    out = tmp_path / "out.png"
    code, _, err = cli("style", tmp_path / "0.png", tmp_path / "1.png", "--method", "adain", "--size", "40",
                       "--device", "cpu", *[str(v) for kv in options.items() for v in kv], "-o", out)
    assert code == 2 and words in err and err.count("\n") == 1, err
    assert not out.exists()


def test_convert_names_what_a_wrong_file_looks_like(pair, tmp_path, cli):
    from file_formats import fast_neural_style_state

    write_torch(tmp_path / "candy.pth", fast_neural_style_state(), legacy=True)
    from dfi.style.pretrained import convert_adain
    from dfi.nets.pretrained import StylizerFormatError
    with pytest.raises(StylizerFormatError, match="a fast-neural-style stylizer"):
        convert_adain(tmp_path / "candy.pth", tmp_path / "x.npz")
    broken = tmp_path / "decoder.pth"
    broken.write_bytes((pair[0] / "decoder.pth").read_bytes()[:300])
    code, _, err = cli("weights", "convert", broken, "-o", tmp_path / "y.npz")
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "y.npz").exists(), err


def test_fetch_adain_checks_structure_and_says_an_unexpected_hash(pair, tmp_path, cli, http_server, monkeypatch):
    import dfi.style.pretrained as pretrained

    base, served, *_ = http_server
    root = pair[0]
    served["/rel/vgg_normalised.pth"] = (root / "vgg_normalised.pth").read_bytes()
    served["/rel/decoder.pth"] = (root / "decoder.pth").read_bytes()
    monkeypatch.setattr(pretrained, "ADAIN_RELEASE", base + "/rel/")
    monkeypatch.setenv("DFI_HOME", str(tmp_path / "home"))
    code, out, err = cli("-q", "weights", "fetch", "adain")
    assert code == 0, err
    assert [p.rsplit("/", 1)[1] for p in out.split()] == ["adain-encoder.npz", "adain-decoder.npz"]
    assert err.count("differs from the one reported (unverified)") == 2  # these are not the real files
    content = tmp_path / "c.png"
    from PIL import Image
    Image.fromarray(pair[3].transpose(1, 2, 0).astype(np.uint8)).save(content)
    code, _, err = cli("-q", "style", content, content, "--method", "adain", "--size", "32", "--device", "cpu",
                       "-o", tmp_path / "o.png")
    assert code == 0, err  # the fetched pair is the default
    served["/rel/decoder.pth"] = (root / "vgg_normalised.pth").read_bytes()  # the wrong file at that URL
    monkeypatch.setenv("DFI_HOME", str(tmp_path / "home2"))
    code, _, err = cli("-q", "weights", "fetch", "adain")
    assert code == 1 and "not pytorch-AdaIN's decoder.pth" in err, err


def test_gatys_can_start_from_the_adain_result(pair, tmp_path, cli, monkeypatch):
    from PIL import Image

    from dfi.style.pretrained import adain_paths

    root, _, _, content, styles = pair
    monkeypatch.setenv("DFI_HOME", str(tmp_path / "home"))
    for i, image in enumerate([content, styles[0]]):
        Image.fromarray(image.transpose(1, 2, 0).astype(np.uint8)).save(tmp_path / f"{i}.png")
    common = ["-q", "style", tmp_path / "0.png", tmp_path / "1.png", "--weights", "untrained", "--device", "cpu",
              "--size", "32", "--iterations", "1"]
    code, _, err = cli(*common, "--init", "adain", "-o", tmp_path / "a.png")
    assert code == 1 and "run 'dfi weights fetch adain'" in err, err
    paths = adain_paths()
    paths["encoder"].parent.mkdir(parents=True)
    assert cli("weights", "convert", root / "vgg_normalised.pth", "-o", paths["encoder"])[0] == 0
    assert cli("weights", "convert", root / "decoder.pth", "-o", paths["decoder"])[0] == 0
    outs = {}
    for init in ("adain", "content"):
        outs[init] = tmp_path / f"{init}.png"
        code, _, err = cli(*common, "--init", init, "-o", outs[init])
        assert code == 0, err
    one_pass = tmp_path / "one.png"
    code, _, err = cli("style", tmp_path / "0.png", tmp_path / "1.png", "--device", "cpu", "--size", "32",
                       "--method", "adain", "-o", one_pass)
    assert code == 0, err
    a, c, o = (np.asarray(Image.open(p), dtype=float) for p in (outs["adain"], outs["content"], one_pass))
    assert np.abs(a - o).mean() < np.abs(c - o).mean()  # one L-BFGS step stays near its start


def test_a_folder_in_is_a_folder_out(pair, tmp_path, cli):
    from PIL import Image

    root, _, _, content, styles = pair
    (tmp_path / "in" / "sub").mkdir(parents=True)
    Image.fromarray(content.transpose(1, 2, 0).astype(np.uint8)).save(tmp_path / "in" / "a.png")
    Image.fromarray(content[:, :32, :24].transpose(1, 2, 0).astype(np.uint8)).save(tmp_path / "in" / "sub" / "b.png")
    Image.fromarray(styles[0].transpose(1, 2, 0).astype(np.uint8)).save(tmp_path / "s.png")
    enc, dec = tmp_path / "enc.npz", tmp_path / "dec.npz"
    assert cli("weights", "convert", root / "vgg_normalised.pth", "-o", enc)[0] == 0
    assert cli("weights", "convert", root / "decoder.pth", "-o", dec)[0] == 0
    code, _, err = cli("-q", "style", tmp_path / "in", tmp_path / "s.png", "--method", "adain", "--weights", enc,
                       "--decoder", dec, "--size", "40", "--device", "cpu", "-o", tmp_path / "out")
    assert code == 0, err
    assert Image.open(tmp_path / "out" / "a.png").size == (32, 40)
    assert Image.open(tmp_path / "out" / "sub" / "b.png").size == (30, 40)  # long side to --size
    one = tmp_path / "one.png"
    assert cli("-q", "style", tmp_path / "in" / "a.png", tmp_path / "s.png", "--method", "adain", "--weights", enc,
               "--decoder", dec, "--size", "40", "--device", "cpu", "-o", one)[0] == 0
    np.testing.assert_array_equal(np.asarray(Image.open(one)), np.asarray(Image.open(tmp_path / "out" / "a.png")))
    code, _, err = cli("style", tmp_path / "in", tmp_path / "s.png", "--method", "adain", "-o", tmp_path / "in" / "o")
    assert code == 2 and "inside the CONTENT folder" in err
    (tmp_path / "in" / "c.png").write_bytes(b"not an image")  # one bad file: the others still written
    code, _, err = cli("-q", "style", tmp_path / "in", tmp_path / "s.png", "--method", "adain", "--weights", enc,
                       "--decoder", dec, "--size", "40", "--device", "cpu", "-o", tmp_path / "out2")
    assert code == 1 and "1 of 3 images could not be read (the first: image" in err and "c.png" in err, err
    assert sorted(p.name for p in (tmp_path / "out2").rglob("*.png")) == ["a.png", "b.png"]


def test_a_video_frame_by_frame_and_the_flicker_remedy(pair, tmp_path, cli, write_video):
    from dfi.video import io as vio

    root, _, _, content, styles = pair
    enc, dec = tmp_path / "enc.npz", tmp_path / "dec.npz"
    assert cli("weights", "convert", root / "vgg_normalised.pth", "-o", enc)[0] == 0
    assert cli("weights", "convert", root / "decoder.pth", "-o", dec)[0] == 0
    from PIL import Image
    Image.fromarray(styles[0].transpose(1, 2, 0).astype(np.uint8)).save(tmp_path / "s.png")
    wide = np.concatenate([content, content[:, :, ::-1]], axis=2)  # a pan across 64 columns
    frames = [np.ascontiguousarray(wide[:, :, 2 * i:2 * i + 32]) for i in range(4)]
    write_video(tmp_path / "in.mp4", frames, audio=False)
    outs = {}
    for blend in ("0", "0.8"):
        outs[blend] = tmp_path / f"out{blend.replace('.', '_')}"  # PNG frames: exact
        code, _, err = cli("-q", "style", tmp_path / "in.mp4", tmp_path / "s.png", "--method", "adain", "--weights",
                           enc, "--decoder", dec, "--size", "40", "--device", "cpu", "--temporal-blend", blend,
                           "-o", outs[blend])
        assert code == 0, err
        info = vio.probe(outs[blend])
        assert info.count == 4 and info.size == (40, 32)
    plain, blended = ([f for _, f in zip(range(4), vio.read_frames(vio.probe(outs[b])))] for b in ("0", "0.8"))
    np.testing.assert_array_equal(plain[0], blended[0])  # the first frame has nothing to follow
    assert np.abs(plain[3] - blended[3]).mean() > 0.1
    code, _, err = cli("style", tmp_path / "in.mp4", tmp_path / "s.png", "--temporal-blend", "0.5",
                       "-o", tmp_path / "g.mp4")
    assert code == 2 and "--temporal-blend is for --method adain or wct" in err


def test_a_size_that_will_not_fit_is_refused_naming_what_fits(pair, tmp_path, cli, monkeypatch):
    from PIL import Image

    import dfi.core.backend as backend
    from dfi.style.adain import transfer_bytes

    root, _, _, content, styles = pair
    encoder, decoder = _dfi(root)
    small, large = transfer_bytes(encoder, decoder.net, (40, 32)), transfer_bytes(encoder, decoder.net, (80, 64))
    assert large == 4 * small
    enc, dec = tmp_path / "enc.npz", tmp_path / "dec.npz"
    assert cli("weights", "convert", root / "vgg_normalised.pth", "-o", enc)[0] == 0
    assert cli("weights", "convert", root / "decoder.pth", "-o", dec)[0] == 0
    for i, image in enumerate([content, styles[0]]):
        Image.fromarray(image.transpose(1, 2, 0).astype(np.uint8)).save(tmp_path / f"{i}.png")
    monkeypatch.setattr(backend, "available_memory", lambda device: small + 1)
    out = tmp_path / "o.png"
    code, _, err = cli("style", tmp_path / "0.png", tmp_path / "1.png", "--method", "adain", "--weights", enc,
                       "--decoder", dec, "--size", "80", "--device", "cpu", "-o", out)
    assert code == 1 and "the largest --size that fits is about 40" in err and not out.exists(), err


def test_an_encoder_of_mismatched_shapes_is_refused_naming_the_layer():
    from dfi.core.errors import FileFormatError

    state = adain_encoder_state()
    state["9.weight"] = state["9.weight"][:, :3]  # conv2_1 reading 3 channels after conv1_2's 8
    with pytest.raises(FileFormatError, match="encoder layer conv2_1: weights"):
        adain_encoder(state, "odd.pth")

"""The published stylizers from the command line: fetch (a local server standing in for the
hosts, or --from), convert, --list-styles, --sheet, styles and mixes, fine-tuning, and one
line with exit 2 for what is not a stylizer."""
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from file_formats import fast_neural_style_state, magenta_tensors, write_tf_checkpoint, write_torch

from dfi.nets.pretrained import PRETRAINED, PretrainedSource
from data_tools.download import Mirror

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    write_tf_checkpoint(root / "monet.ckpt", magenta_tensors(n_styles=3), snappy=True)
    write_tf_checkpoint(root / "varied.ckpt", magenta_tensors(n_styles=5, nan=True))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for k, style in enumerate(("candy", "mosaic", "rain_princess", "udnie")):
            write_torch(root / f"{style}.pth", fast_neural_style_state(seed=k), legacy=True)
            archive.write(root / f"{style}.pth", f"saved_models/{style}.pth")
    (root / "saved_models.zip").write_bytes(buf.getvalue())
    rng = np.random.default_rng(0)
    photo = np.kron(rng.uniform(0, 255, (4, 5, 3)), np.ones((9, 8, 1))).astype(np.uint8)
    Image.fromarray(photo).save(root / "photo.png")
    return root


def _record(path):
    with np.load(path) as data:
        return json.loads(str(data["__dfi_stylizer__"]))


def test_convert_list_styles_stylise_and_mix(files, tmp_path, cli):
    model = tmp_path / "varied.npz"
    code, out, err = cli("weights", "convert", files / "varied.ckpt", "-o", model)
    assert code == 0, err
    assert "repaired transformer/contract/conv1/weights: 243 non-finite values set to 0" in err
    record = _record(model)
    assert record["licence"] == "Apache-2.0" and record["converted_from"] == "magenta"
    assert record["styles"] == [f"style {k}" for k in range(5)] and record["architecture"]["variant"] == "magenta"
    code, out, err = cli("stylize", "--model", model, "--list-styles")
    assert code == 0 and out.splitlines() == [f"{k}\tstyle {k}" for k in range(5)], err
    one, mixed = tmp_path / "one.png", tmp_path / "mix.png"
    assert cli("-q", "stylize", files / "photo.png", "--model", model, "--style", "4", "-o", one)[0] == 0
    assert cli("-q", "stylize", files / "photo.png", "--model", model, "--mix", "1:0.5,3:0.5", "-o", mixed)[0] == 0
    a, b = (np.asarray(Image.open(p), dtype=float) for p in (one, mixed))
    assert a.shape == b.shape == (36, 40, 3) and np.isfinite(a).all() and np.abs(a - b).mean() > 1


def test_sheet_shows_every_style_numbered(files, tmp_path, cli):
    model, sheet = tmp_path / "monet.npz", tmp_path / "sheet.png"
    assert cli("weights", "convert", files / "monet.ckpt", "-o", model)[0] == 0
    code, out, err = cli("-q", "stylize", files / "photo.png", "--model", model, "--sheet", sheet)
    assert code == 0, err
    assert Image.open(sheet).size == (2 * 40 + 4, 2 * 36 + 4)  # input + 3 styles on a 2×2 grid
    code, _, err = cli("stylize", files / "photo.png", "--model", model, "--sheet", sheet, "-o", tmp_path / "x.png")
    assert code == 2 and "--sheet renders every style" in err


def test_fetch_from_a_server_and_from_a_file(files, tmp_path, cli, http_server, monkeypatch):
    base, served, *_ = http_server
    served["/saved_models.zip"] = (files / "saved_models.zip").read_bytes()
    served["/page.html"] = (b"<html>moved</html>", "text/html")
    entry = PRETRAINED["fast-neural-style"]
    monkeypatch.setitem(PRETRAINED, "fast-neural-style", PretrainedSource(
        entry.name, entry.filename, (Mirror(base + "/page.html", filename="page.zip"), Mirror(base + "/saved_models.zip")),
        entry.description, entry.licence))
    monkeypatch.setenv("DFI_HOME", str(tmp_path / "home"))
    code, out, err = cli("-q", "weights", "fetch", "fast-neural-style")
    assert code == 0, err
    names = [p.rsplit("/", 1)[1] for p in out.split()]
    assert names == ["candy.npz", "mosaic.npz", "rain_princess.npz", "udnie.npz"]
    assert _record(tmp_path / "home" / "stylizers" / "udnie.npz")["licence"] == "BSD-3-Clause"
    code, out, err = cli("-q", "stylize", files / "photo.png", "--model", "mosaic", "-o", tmp_path / "m.png")
    assert code == 0, err
    code, out, err = cli("-q", "weights", "fetch", "magenta-monet", "--from", files / "monet.ckpt")
    assert code == 0 and out.strip().endswith("stylizers/magenta-monet.npz"), err
    assert cli("stylize", "--model", "magenta-monet", "--list-styles")[1].count("\n") == 3
    code, _, err = cli("stylize", "--model", "magenta-varied", "--list-styles")
    assert code == 1 and "not fetched yet; run 'dfi weights fetch magenta-varied'" in err
    code, _, err = cli("weights", "fetch", "magenta-varied", "--from", files / "candy.pth")
    assert code == 2 and "not a Magenta pastiche generator checkpoint" in err


def test_finetune_adds_styles_to_a_converted_magenta_model(files, tmp_path, cli):
    model, tuned = tmp_path / "monet.npz", tmp_path / "tuned.npz"
    assert cli("weights", "convert", files / "monet.ckpt", "-o", model)[0] == 0
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(tmp_path / "flat.png")
    (tmp_path / "content").mkdir()
    for k in range(2):
        Image.open(files / "photo.png").rotate(90 * k).save(tmp_path / "content" / f"{k}.png")
    code, _, err = cli("-q", "train-stylizer", "--finetune", model, "--style", tmp_path / "flat.png", "--content",
                       tmp_path / "content", "-o", tuned, "--iterations", "2", "--weights", "untrained",
                       "--device", "cpu", "--size", "32", "--batch-size", "1", "--lr", "0.01")
    assert code == 0, err
    with np.load(model) as before, np.load(tuned) as after:
        assert _record(tuned)["architecture"]["variant"] == "magenta" and _record(tuned)["architecture"]["n_styles"] == 4
        for key in before.files:
            if key != "__dfi_stylizer__":
                np.testing.assert_array_equal(before[key], after[key], err_msg=key)  # the old styles and weights
        assert not np.array_equal(after["/styles/3/c1_gamma"], np.ones_like(after["/styles/3/c1_gamma"]))


@pytest.mark.parametrize("make, words", [
    ("v2", "a TensorFlow V2 checkpoint (m.ckpt.data-00000-of-00001, m.ckpt.index)"),
    ("truncated", "truncated"),
    ("other-pth", "no torchvision key"),
])
def test_what_is_not_a_stylizer_is_one_line_and_exit_2(files, tmp_path, cli, make, words):
    if make == "v2":
        for part in ("m.ckpt.index", "m.ckpt.data-00000-of-00001"):
            (tmp_path / part).write_bytes(b"\0" * 64)
        given = tmp_path / "m.ckpt.index"
    elif make == "truncated":
        given = tmp_path / "cut.ckpt"
        given.write_bytes((files / "monet.ckpt").read_bytes()[:-30])
    else:
        given = tmp_path / "net.pth"
        write_torch(given, {"encoder.0.weight": np.zeros((2, 3, 3, 3), np.float32)}, legacy=False)
    code, out, err = cli("weights", "convert", given, "-o", tmp_path / "out.npz")
    assert code == 2 and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("argv, words", [
    (["--style", "40"], "style 40 is not in this model; it has styles 0–2"),
    (["--mix", "1:0.5,50:0.5"], "style 50 is not in this model"),
])
def test_styles_outside_the_model_are_refused(files, tmp_path, cli, argv, words):
    model = tmp_path / "monet.npz"
    assert cli("weights", "convert", files / "monet.ckpt", "-o", model)[0] == 0
    out = tmp_path / "o.png"
    code, _, err = cli("stylize", files / "photo.png", "--model", model, *argv, "-o", out)
    assert code == 2 and words in err and not out.exists(), err

"""``dfi train-stylizer`` and ``dfi stylize`` end to end: training with checkpoints, samples, an
exact resume and fine-tuning; stylising an image, a folder and a video; one-line errors."""
import json

import numpy as np
import pytest
from PIL import Image

TRAIN = ["--weights", "untrained", "--device", "cpu", "--size", "32", "--batch-size", "2", "--width", "0.25",
         "--lr", "0.01"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from data_tools.synth import make_style_image

    root = tmp_path_factory.mktemp("stylize")
    rng = np.random.default_rng(0)
    (root / "content" / "sub").mkdir(parents=True)
    for i in range(5):
        small = rng.uniform(0, 255, (5, 5, 3)).astype(np.uint8)
        where = root / "content" / ("sub" if i == 4 else "") / f"c{i}.png"
        Image.fromarray(small).resize((36 + 4 * i, 33 + 2 * (i % 2)), Image.BILINEAR).save(where)
    make_style_image((40, 40), kind="strokes").save(root / "a.png")
    make_style_image((40, 40), kind="mosaic").save(root / "b.png")
    make_style_image((40, 40), kind="waves").save(root / "c.png")
    return root


def _params(path) -> dict:
    with np.load(path) as data:
        return {k: data[k] for k in data.files if k != "__dfi_stylizer__"}


def _record(path) -> dict:
    with np.load(path) as data:
        return json.loads(str(data["__dfi_stylizer__"]))


@pytest.fixture(scope="module")
def model(inputs, tmp_path_factory):
    """A two-style model trained for 4 steps (checkpoints and samples every 2)."""
    from dfi.cli import main

    out = tmp_path_factory.mktemp("model") / "m.npz"
    code = main([str(a) for a in ["-q", "train-stylizer", "--style", inputs / "a.png", "--style", inputs / "b.png",
                                  "--content", inputs / "content", "-o", out, "--iterations", "4",
                                  "--checkpoint-every", "2", "--sample-every", "2", *TRAIN]])
    assert code == 0
    return out


def test_training_writes_the_model_samples_and_no_checkpoint(model):
    record = _record(model)
    assert record["styles"] == ["a.png", "b.png"] and record["training"]["iterations"] == 4
    assert record["training"]["weights"] == "untrained" and record["architecture"]["width"] == 0.25
    samples = sorted(p.name for p in model.parent.glob("m_sample_*.png"))
    assert samples == ["m_sample_000002.png", "m_sample_000004.png"]
    rows = Image.open(model.parent / samples[0])
    assert rows.size == (3 * 32 + 2 * 4, 2 * 32 + 4)  # content + 2 styles, two content images
    assert not (model.parent / "m.npz.ckpt").exists()


def test_an_interrupted_run_resumes_to_the_same_model(inputs, model, tmp_path, cli, monkeypatch):
    from dfi.style import feedforward

    run = feedforward.Trainer.run

    def interrupted(self, until):
        for step in run(self, until):
            if step.step == 3:
                raise KeyboardInterrupt
            yield step
    argv = ["-q", "train-stylizer", "--style", inputs / "a.png", "--style", inputs / "b.png", "--content",
            inputs / "content", "-o", tmp_path / "m.npz", "--iterations", "4", "--checkpoint-every", "2", *TRAIN]
    monkeypatch.setattr(feedforward.Trainer, "run", interrupted)
    assert cli(*argv)[0] == 130
    assert (tmp_path / "m.npz.ckpt").is_file() and not (tmp_path / "m.npz").exists()
    monkeypatch.setattr(feedforward.Trainer, "run", run)
    code, _, err = cli(*argv, "--resume")
    assert code == 0, err
    expected, got = _params(model), _params(tmp_path / "m.npz")
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    code, _, err = cli(*argv, "--resume")
    assert code == 1 and "--resume: no checkpoint" in err


def test_fine_tuning_adds_a_style_and_keeps_the_others(inputs, model, tmp_path, cli):
    out = tmp_path / "more.npz"
    code, _, err = cli("-q", "train-stylizer", "--finetune", model, "--style", inputs / "c.png", "--content",
                       inputs / "content", "-o", out, "--iterations", "2", *TRAIN)
    assert code == 0, err
    assert _record(out)["styles"] == ["a.png", "b.png", "c.png"]
    before, after = _params(model), _params(out)
    assert set(after) - set(before) == {k for k in after if k.startswith("/styles/2/")} != set()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_stylize_an_image_of_any_size_a_folder_and_a_mix(inputs, model, tmp_path, cli):
    image = inputs / "content" / "c1.png"
    code, out, err = cli("-q", "stylize", image, "-o", tmp_path / "one.jpg", "--model", model, "--style", "1")
    assert code == 0, err
    assert Image.open(tmp_path / "one.jpg").size == Image.open(image).size  # 40x35: not a multiple of 4
    code, _, err = cli("-q", "stylize", inputs / "content", "-o", tmp_path / "all", "--model", model,
                       "--mix", "0:0.5,1:0.5", "--preserve-color", "luminance", "--batch-size", "2")
    assert code == 0, err
    written = sorted(str(p.relative_to(tmp_path / "all")) for p in (tmp_path / "all").rglob("*.png"))
    assert written == ["c0.png", "c1.png", "c2.png", "c3.png", "sub/c4.png"]
    for name in written:
        assert Image.open(tmp_path / "all" / name).size == Image.open(inputs / "content" / name).size


def test_stylize_a_folder_with_an_unreadable_image_writes_the_others_and_fails(inputs, model, tmp_path, cli):
    import shutil

    folder = tmp_path / "in"
    shutil.copytree(inputs / "content", folder)
    (folder / "c2.png").write_bytes(b"\x89PNG broken")
    code, _, err = cli("-q", "stylize", folder, "-o", tmp_path / "all", "--model", model, "--style", "0",
                       "--batch-size", "2")
    assert code == 1 and "dfi: warning: skipping image" in err and "c2.png" in err.splitlines()[0], err
    assert "dfi: error: 1 of 5 images could not be read" in err.splitlines()[-1], err
    written = sorted(str(p.relative_to(tmp_path / "all")) for p in (tmp_path / "all").rglob("*.png"))
    assert written == ["c0.png", "c1.png", "c3.png", "sub/c4.png"]


def test_stylize_a_video_keeps_its_frames(inputs, model, tmp_path, cli, write_video):
    from dfi.video.io import probe

    rng = np.random.default_rng(0)
    frames = [np.repeat(np.repeat(rng.uniform(0, 255, (3, 6, 8)), 6, 1), 6, 2).astype(np.float32) for _ in range(5)]
    write_video(tmp_path / "in.mp4", frames, audio=False)
    code, _, err = cli("-q", "stylize", tmp_path / "in.mp4", "-o", tmp_path / "out.mp4", "--model", model,
                       "--style", "0", "--batch-size", "2")
    assert code == 0, err
    got = probe(tmp_path / "out.mp4")
    assert got.count == 5 and got.size == (36, 48)


def test_stylize_a_folder_of_frames_into_a_video(inputs, model, tmp_path, cli):
    """As dfi style does: a folder of frames with -o VIDEO is a video."""
    pytest.importorskip("av")
    from dfi.video.io import probe

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 40, 3), 60 * i, np.uint8)).save(frames / f"f{i:02d}.png")
    code, _, err = cli("-q", "stylize", frames, "-o", tmp_path / "out.mp4", "--model", model, "--style", "1")
    assert code == 0, err
    assert probe(tmp_path / "out.mp4").count == 3


def test_a_one_style_model_needs_no_style_number(inputs, tmp_path, cli):
    from dfi.nets.stylizer import TransformNet
    from dfi.style.feedforward import save_model

    one = tmp_path / "one.npz"
    save_model(one, TransformNet(1, width=0.25), styles=["a.png"], settings={})
    code, _, err = cli("-q", "stylize", inputs / "a.png", "--model", one, "-o", tmp_path / "o.png")
    assert code == 0 and (tmp_path / "o.png").is_file(), err


def test_training_reads_every_image_format_of_the_content_folder(tmp_path):
    from dfi.style.feedforward import content_images

    Image.new("RGB", (20, 20)).save(tmp_path / "a.bmp")
    Image.new("RGB", (20, 20)).save(tmp_path / "b.webp")
    assert [p.name for p in content_images(tmp_path)] == ["a.bmp", "b.webp"]


@pytest.mark.parametrize("args, code, match", [
    (["--style", "2"], 2, "style 2 is not in this model; it has styles 0–1"),
    (["--style", "0", "--mix", "1:1"], 2, "give one of --style K and --mix K:W,…, not both"),
    ([], 2, "has 2 styles; give --style K or --mix K:W,…"),
    (["--mix", "0:0,1:0"], 2, "a mix whose weights are all 0 has no style"),
    (["--mix", "0:1e30"], 2, "weight 1e+30 is outside -10…10"),
    (["--mix", "0:nan"], 2, "weight nan is not a finite number"),
    (["--mix", "0:half"], 2, "--mix '0:half': give style:weight pairs"),
    (["--style", "0", "--model", "{image}"], 2, "not a dfi stylizer model (not an .npz file)"),
    (["--style", "0", "--model", "{missing}"], 1, "--model {missing}: no such file"),
    (["--style", "0", "-o", "{image}"], 2, "is also an input (INPUT); refusing to write over it"),
    (["--style", "0", "-o", "{tmp}/out.txt"], 2, "use an image extension"),
])
def test_stylize_errors_are_one_line(inputs, model, tmp_path, cli, args, code, match):
    values = {"image": inputs / "content" / "c0.png", "missing": tmp_path / "none.npz", "tmp": tmp_path}
    options = {"-o": str(tmp_path / "o.png"), "--model": str(model)}
    rest = []
    for key, value in zip(args[::2], args[1::2]):
        if key in options:
            options[key] = value.format(**values)
        else:
            rest += [key, value]
    got, _, err = cli("-q", "stylize", values["image"], *[x for kv in options.items() for x in kv], *rest)
    assert got == code and match.format(**values) in err and err.count("\n") == 1, err
    assert not (tmp_path / "o.png").exists()


def test_train_errors_are_one_line(inputs, tmp_path, cli):
    base = ["-q", "train-stylizer", "--content", inputs / "content", *TRAIN]
    code, _, err = cli(*base, "-o", tmp_path / "m.npz")
    assert code == 2 and "the following arguments are required: --style" in err  # shown as required
    code, _, err = cli(*base, "--style", inputs / "a.png", "-o", tmp_path / "m.pt")
    assert code == 2 and "-o " in err and "a model file ends in .npz" in err
    code, _, err = cli(*base, "--style", inputs / "a.png", "-o", tmp_path / "m.npz", "--size", "30")
    assert code == 2 and "--size 30 must be a multiple of 4" in err
    code, _, err = cli("-q", "train-stylizer", "--content", tmp_path / "empty", "--style", inputs / "a.png",
                       "-o", tmp_path / "m.npz", *TRAIN)
    assert code == 1 and "not a folder" in err
    assert not list(tmp_path.iterdir())


def test_training_that_will_not_fit_is_refused_before_it_starts(inputs, tmp_path, cli, monkeypatch):
    from dfi.core import backend

    monkeypatch.setattr(backend, "available_memory", lambda device: 10 * 2 ** 20)
    code, _, err = cli("-q", "train-stylizer", "--style", inputs / "a.png", "--content", inputs / "content",
                       "-o", tmp_path / "m.npz", *TRAIN)
    assert code == 1 and "training at --size 32 with --batch-size 2 needs about" in err and "lower either" in err
    assert not list(tmp_path.iterdir())

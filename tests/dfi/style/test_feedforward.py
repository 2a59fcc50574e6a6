"""Feed-forward stylisation: training lowers the loss, resumes exactly, touches only the
trained style's normalisation; model files; stylising any size and in a mix."""
import json

import numpy as np
import pytest
from PIL import Image

from dfi.core.errors import SettingError
from dfi.nets.stylizer import TransformNet
from dfi.style.feedforward import (ModelFileError, Stylizer, TrainConfig, Trainer, batch_for, content_images,
                                   load_model, save_model)

SIZE = 32


@pytest.fixture(scope="module")
def content_dir(tmp_path_factory):
    """Eight smooth random photos of different sizes."""
    folder = tmp_path_factory.mktemp("content")
    rng = np.random.default_rng(0)
    for i in range(8):
        small = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
        Image.fromarray(small).resize((40 + 6 * i, 36 + 3 * i), Image.BILINEAR).save(folder / f"c{i}.png")
    return folder


def _styles():
    from data_tools.synth import make_style_image

    return [np.asarray(make_style_image((48, 48), kind=kind), np.float32).transpose(2, 0, 1).copy()
            for kind in ("strokes", "mosaic", "waves")]


def _trainer(tiny_net, content_dir, *, n_styles=2, lr=1e-2, **settings):
    config = TrainConfig(size=SIZE, batch_size=2, iterations=100, lr=lr, width=0.25, **settings)
    transform = TransformNet(n_styles, width=0.25, seed=0)
    return Trainer(tiny_net, transform, _styles()[:n_styles], content_images(content_dir), config)


def _held_out_loss(trainer, style=0) -> float:
    x = np.stack([np.asarray(Image.open(p).resize((SIZE, SIZE)), np.float32).transpose(2, 0, 1)
                  for p in sorted(trainer.files)[-2:]])
    import chainer
    with chainer.no_backprop_mode():
        return float(sum(term.array.mean() for term in trainer.loss_terms(style, x).values()))


def test_training_lowers_the_loss(tiny_net, content_dir):
    trainer = _trainer(tiny_net, content_dir, n_styles=1)
    before = _held_out_loss(trainer)
    steps = list(trainer.run(30))
    after = _held_out_loss(trainer)
    assert [s.step for s in steps] == list(range(1, 31))
    assert set(steps[0].terms) == {"content", "style", "tv"}
    assert np.isclose(steps[-1].loss, sum(steps[-1].terms.values()), rtol=1e-5)
    assert after < 0.5 * before, (before, after)


def test_resume_from_a_checkpoint_is_exact(tiny_net, content_dir, tmp_path):
    whole = _trainer(tiny_net, content_dir)
    list(whole.run(6))
    first = _trainer(tiny_net, content_dir)
    list(first.run(3))
    first.save_checkpoint(tmp_path / "m.npz.ckpt")
    second = _trainer(tiny_net, content_dir)
    second.load_checkpoint(tmp_path / "m.npz.ckpt")
    assert second.step == 3
    last = list(second.run(6))
    assert [s.step for s in last] == [4, 5, 6]
    for (name, a), (_, b) in zip(sorted(whole.transform.namedparams()), sorted(second.transform.namedparams())):
        np.testing.assert_array_equal(a.array, b.array, err_msg=name)


def test_a_step_on_style_k_changes_only_style_ks_normalisation(tiny_net, content_dir):
    trainer = _trainer(tiny_net, content_dir, n_styles=3)
    style, _ = batch_for(0, trainer.files, trainer.trained, trainer.config)
    before = {name: param.array.copy() for name, param in trainer.transform.namedparams()}
    step, = trainer.run(1)
    assert step.style == style
    for name, param in trainer.transform.namedparams():
        changed = not np.array_equal(param.array, before[name])
        if name.startswith("/styles/"):
            assert changed == name.startswith(f"/styles/{style}/"), name
        else:
            assert changed, name  # the shared convolutions learn from every style


def test_fine_tuning_trains_only_the_new_styles(tiny_net, content_dir):
    transform = TransformNet(1, width=0.25, seed=0)
    new = transform.add_styles(1)
    config = TrainConfig(size=SIZE, batch_size=2, iterations=3, lr=1e-2, width=0.25, trained_styles=tuple(new))
    trainer = Trainer(tiny_net, transform, _styles()[1:2], content_images(content_dir), config, style_offset=1)
    before = {name: param.array.copy() for name, param in transform.namedparams()}
    steps = list(trainer.run(3))
    assert {s.style for s in steps} == {1}
    for name, param in transform.namedparams():
        assert (not np.array_equal(param.array, before[name])) == name.startswith("/styles/1/"), name


def test_a_model_file_round_trips_and_records_its_settings(tmp_path):
    net = TransformNet(2, width=0.25, seed=3)
    save_model(tmp_path / "m.npz", net, styles=["a.jpg", "b.jpg"], settings={"size": 256})
    loaded, record = load_model(tmp_path / "m.npz")
    for (name, a), (_, b) in zip(sorted(net.namedparams()), sorted(loaded.namedparams())):
        np.testing.assert_array_equal(a.array, b.array, err_msg=name)
    assert record["styles"] == ["a.jpg", "b.jpg"] and record["training"] == {"size": 256}
    assert record["architecture"]["n_styles"] == 2 and record["architecture"]["width"] == 0.25
    assert record["dfi"] and record["format"] == "dfi-stylizer"
    assert Stylizer.load(tmp_path / "m.npz").styles == ["a.jpg", "b.jpg"]


def _damaged(tmp_path, kind):
    path = tmp_path / f"{kind}.npz"
    if kind == "not-npz":
        path.write_bytes(b"\x89PNG\r\n\x1a\n not a model")
    elif kind == "foreign":
        np.savez(path, conv1_1_W=np.zeros((2, 2)))
    elif kind == "record":
        np.savez(path, __dfi_stylizer__=np.array(json.dumps({"format": "other"})))
    else:  # a parameter of the wrong shape
        save_model(path, TransformNet(1, width=0.25), styles=["a"], settings={})
        with np.load(path) as data:
            arrays = dict(data)
        arrays["/c1/W"] = np.zeros((1, 1), np.float32)
        np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("kind, match", [("not-npz", "not an .npz file"), ("foreign", "no __dfi_stylizer__ record"),
                                         ("record", "not a dfi stylizer's"), ("shape", "/c1/W is missing or of")])
def test_bad_model_files_give_one_line_errors(tmp_path, kind, match):
    with pytest.raises(ModelFileError, match=match) as info:
        load_model(_damaged(tmp_path, kind))
    assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model(tmp_path / "missing.npz")


@pytest.mark.parametrize("shape", [(3, 17, 23), (3, 5, 7), (2, 3, 33, 9), (3, 1, 1)])
def test_any_size_comes_back_at_its_size(shape):
    model = Stylizer(TransformNet(2, width=0.25))
    image = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    out = model.stylize(image, style=1)
    assert out.shape == shape and np.isfinite(out).all() and 0 <= out.min() and out.max() <= 255


def test_mixes_and_colour_preservation():
    from dfi.core.color import to_space

    net = TransformNet(2, width=0.25, seed=1)
    net.styles[1].c1_beta.array[...] = 1.0
    model = Stylizer(net)
    image = np.random.default_rng(0).uniform(0, 255, (3, 20, 24)).astype(np.float32)
    np.testing.assert_allclose(model.stylize(image, mix={0: 1.0}), model.stylize(image, style=0), atol=1e-3)
    assert not np.allclose(model.stylize(image, style=0), model.stylize(image, style=1))
    kept = model.stylize(image, style=1, preserve_color="yuv")
    inside = ((kept > 0.5) & (kept < 254.5)).all(axis=0)  # clipping to the gamut moves the rest
    assert inside.mean() > 0.5
    np.testing.assert_allclose(to_space(kept, "yuv")[1:, inside], to_space(image, "yuv")[1:, inside], atol=0.01)
    with pytest.raises(SettingError, match="exactly one of style= and mix="):
        model.stylize(image)
    with pytest.raises(SettingError, match="--preserve-color 'histogram' is not one of none, luminance, yuv"):
        model.stylize(image, style=0, preserve_color="histogram")


@pytest.mark.parametrize("setting, match", [({"size": 30}, "--size 30 must be a multiple of 4"),
                                            ({"width": 0.0}, "--width 0.0 must be above 0"),
                                            ({"lr": float("nan")}, "--lr nan must be a finite number"),
                                            ({"content_layer": "conv5_1"}, "--content-layer 'conv5_1'")])
def test_bad_training_settings(setting, match):
    with pytest.raises(SettingError, match=match):
        TrainConfig(**setting)


def test_training_on_a_gpu_refuses_columns_past_2_31_before_any_work():
    import types

    gpu_vgg = types.SimpleNamespace(device=types.SimpleNamespace(xp=object()))  # not NumPy: a GPU
    with pytest.raises(SettingError, match="col2im_gpu"):
        Trainer(gpu_vgg, TransformNet(1), [], [], TrainConfig(size=512, batch_size=4))


def test_the_training_memory_check_counts_three_column_buffers(tiny_net):
    from dfi.cli import stylize as cli_stylize
    from dfi.nets import stylizer

    transform, config = TransformNet(1, width=0.25), TrainConfig(size=64, batch_size=2)
    with_columns = cli_stylize.training_bytes(tiny_net, transform, config)
    largest = max(stylizer.column_elements(transform, 64, 2).values())
    original = stylizer.column_elements
    try:
        stylizer.column_elements = lambda *args: {"c2": 0}
        without = cli_stylize.training_bytes(tiny_net, transform, config)
    finally:
        stylizer.column_elements = original
    assert with_columns - without == 3 * 4 * largest == 3 * 4 * 8 * 81 * 64 * 64 * 2

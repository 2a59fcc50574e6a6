"""Mistakes are refused before any work (issue 'fail before the work'): outputs that cannot
be written, every batch cell, one exit-code rule, messages that name the file."""
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def files(synth_lfw, tmp_path_factory):
    from data_tools.index import load_index
    from data_tools.synth import make_style_image

    result, index_file = synth_lfw
    root = tmp_path_factory.mktemp("inputs")
    make_style_image((40, 40), kind="strokes").save(root / "a.png")
    make_style_image((40, 40), kind="mosaic").save(root / "b.png")
    (root / "content").mkdir()
    make_style_image((40, 40), kind="waves").save(root / "content" / "c.png")
    (root / "model.npz").write_bytes(b"not opened before the outputs are checked")
    row = load_index(index_file).table.iloc[0]
    return {"face": f"{row['person']}/{int(row['imagenum'])}", "index": index_file, "root": root,
            "images": result.images_dir, "attributes": result.attributes_file}


def _commands(f):
    """(name, argv with {out} for the output, the output's kind)."""
    r = f["root"]
    edit = ["--index", f["index"], "--attribute", "smiling", "--weights", "untrained", "--device", "cpu"]
    return [
        ("edit", ["edit", f["face"], *edit, "-o", "{out}.png"], "file"),
        ("sweep", ["sweep", f["face"], *edit, "-o", "{out}.png"], "file"),
        ("style", ["style", r / "a.png", r / "b.png", "--weights", "untrained", "-o", "{out}.png"], "file"),
        ("invert", ["invert", r / "a.png", "--weights", "untrained", "-o", "{out}.png"], "file"),
        ("train-stylizer", ["train-stylizer", "--style", r / "a.png", "--content", r / "content",
                            "--weights", "untrained", "-o", "{out}.npz"], "file"),
        ("train-decoder", ["train-decoder", "--images", r / "content", "--weights", "untrained", "-o", "{out}.npz"],
         "file"),
        ("stylize", ["stylize", r / "a.png", "--model", r / "model.npz", "--style", "0", "-o", "{out}.png"], "file"),
        ("data index", ["data", "index", "--images", f["images"], "--attributes", f["attributes"],
                        "-o", "{out}.csv"], "file"),
        ("weights convert", ["weights", "convert", r / "model.npz", "-o", "{out}.npz"], "file"),
        ("data align", ["data", "align", r / "content", "-o", "{out}"], "folder"),
        ("data synth", ["data", "synth", "{out}"], "folder"),
        ("demo", ["demo", "-o", "{out}", "--device", "cpu"], "folder"),
        ("data features", ["data", "features", "--index", f["index"], "--store", "{out}.zarr"], "folder"),
    ]


def _refuse(*args, **kwargs):
    raise AssertionError("work started before the checks")


@pytest.fixture
def no_network(monkeypatch):
    """Loading a network or downloading fails the test (the checks come first)."""
    import data_tools.download
    import dfi.nets.weights

    monkeypatch.setattr(dfi.nets.weights, "load_vgg19", _refuse)
    monkeypatch.setattr(dfi.nets.weights, "fetch_weights", _refuse)
    monkeypatch.setattr(data_tools.download, "fetch", _refuse)


@pytest.fixture
def no_work(no_network, monkeypatch):
    """Nor reading or building an index."""
    import data_tools.index

    monkeypatch.setattr(data_tools.index, "load_index", _refuse)
    monkeypatch.setattr(data_tools.index, "build_index", _refuse)


@pytest.mark.parametrize("case", ["a folder where a file goes", "a file where a folder goes",
                                  "a parent that is a file", "a folder that cannot be written"])
def test_outputs_that_cannot_be_written_are_refused_before_any_work(files, tmp_path, cli, no_work, case):
    if case == "a folder that cannot be written" and os.geteuid() == 0:
        pytest.skip("root writes into any folder")
    (tmp_path / "a_file").write_text("")
    locked = tmp_path / "locked"
    locked.mkdir()
    for name, argv, kind in _commands(files):
        if case == "a folder where a file goes" and kind != "file" or case == "a file where a folder goes" \
                and kind != "folder":
            continue
        suffix = next((str(a).split("{out}")[1] for a in argv if "{out}" in str(a)), "")
        if case == "a folder where a file goes":
            out = tmp_path / "taken"
            (tmp_path / f"taken{suffix}").mkdir(exist_ok=True)
            words = "is a folder, not a file"
        elif case == "a file where a folder goes":
            out = tmp_path / "a_file_out"
            (tmp_path / f"a_file_out{suffix}").write_text("")
            words = "is a file, not a folder"
        elif case == "a parent that is a file":
            out, words = tmp_path / "a_file" / "sub" / "out", "a_file is a file, not a folder"
        else:
            locked.chmod(0o555)
            out, words = locked / "out", "cannot write in"
        typed = str(out) + suffix
        code, _, err = cli("-q", *[str(a).replace("{out}", str(out)) for a in argv])
        locked.chmod(0o755)
        assert code == 2, (name, err)
        assert err.count("\n") == 1 and typed in err and words in err, (name, err)
        assert ".part" not in err


def test_demo_refuses_a_device_before_writing_its_dataset(tmp_path, cli):
    code, _, err = cli("-q", "demo", "-o", tmp_path / "demo", "--device", "cuda")
    assert code == 2 and "--device 'cuda'" in err
    assert not (tmp_path / "demo").exists()


def test_a_replaced_output_keeps_its_permission_bits(tmp_path):
    from data_tools.fsutil import write_text_atomic

    target = tmp_path / "out.txt"
    target.write_text("old")
    target.chmod(0o640)
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o640
    fresh = tmp_path / "fresh.txt"
    write_text_atomic(fresh, "x")
    assert (fresh.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: options whose text dfi parses itself (the others are paths, names of files, addresses)
PARSED_TEXT = {"--attribute", "--layers", "--crop", "--device", "--content-layers", "--style-layers", "--layer",
               "--mix", "--input"}


def _base_commands(f, tmp):
    """A valid command line for every command (nothing runs past the checks: see no_work)."""
    r = f["root"]
    manifest = tmp / "rows.csv"
    manifest.write_text(f"input,output\n{f['face']},out/0.png\n")
    styles = tmp / "styles.csv"
    styles.write_text(f"input,output\n{r / 'a.png'},out/s.png\n")
    edit = ["--index", f["index"], "--attribute", "smiling"]
    return {
        "data synth": ["data", "synth", tmp / "synth"],
        "data download": ["data", "download", "lfw", "--data-dir", tmp / "data"],
        "data index": ["data", "index", "--images", f["images"], "--attributes", f["attributes"], "-o", tmp / "i.csv"],
        "data align": ["data", "align", r / "content", "-o", tmp / "aligned"],
        "data neighbors": ["data", "neighbors", "--index", f["index"], "--input", f["face"], "--attribute", "smiling"],
        "data features": ["data", "features", "--index", f["index"], "--store", tmp / "s.zarr", "--workers", "1"],
        "edit": ["edit", f["face"], *edit, "-o", tmp / "o.png"],
        "sweep": ["sweep", f["face"], *edit, "-o", tmp / "o.png"],
        "style": ["style", r / "a.png", r / "b.png", "-o", tmp / "o.png"],
        "invert": ["invert", r / "a.png", "-o", tmp / "o.png"],
        "train-stylizer": ["train-stylizer", "--style", r / "a.png", "--content", r / "content", "-o", tmp / "m.npz"],
        "train-decoder": ["train-decoder", "--index", f["index"], "-o", tmp / "d.npz"],
        "stylize": ["stylize", r / "a.png", "--model", r / "model.npz", "--style", "0", "-o", tmp / "o.png"],
        "batch edit": ["batch", "edit", manifest, *edit],
        "batch style": ["batch", "style", styles, "--style", r / "b.png"],
        "weights fetch": ["weights", "fetch", "caffe", "--data-dir", tmp / "data"],
        "weights convert": ["weights", "convert", r / "model.npz", "-o", tmp / "w.npz"],
        "demo": ["demo", "-o", tmp / "demo"],
        "app": ["app", "--index", f["index"], "--port", "1"],
    }


def test_every_malformed_option_value_exits_2_with_one_line(files, tmp_path, cli, no_network):
    """Walks the parser: for every command, each option that takes a value, given one that
    cannot mean anything, is refused as a usage error (exit 2, one line) before any work."""
    import argparse

    from dfi.cli.main import _leaves, build_parser

    bases = _base_commands(files, tmp_path)
    tried = 0
    for leaf in _leaves(build_parser()):
        command = leaf.prog.split(" ", 1)[1]
        base = [str(a) for a in bases[command]]
        for action in leaf._actions:
            if not action.option_strings or action.nargs == 0 or isinstance(action, argparse._HelpAction):
                continue
            option = action.option_strings[-1]
            if action.type is Path or action.type is None and action.choices is None and option not in PARSED_TEXT:
                continue  # a path, a file name or an address
            argv = list(base)
            if option == "--mix":  # instead of --style
                argv.remove("--style"), argv.remove("0")
            if option in argv:
                argv[argv.index(option) + 1] = "@@"
            else:
                argv += [option, "@@"]
            code, _, err = cli("-q", *argv)
            tried += 1
            assert code == 2 and err.count("\n") == 1 and err.startswith("dfi: error:"), (command, option, err)
            assert "dfi: error: dfi" not in err
    assert tried > 60


@pytest.mark.parametrize("argv, words", [
    (["edit", "{face}", "--index", "{index}", "--attribute", "smiling,,", "-o", "{tmp}/o.png"], "empty term"),
    (["data", "neighbors", "--index", "{index}", "--input", "Wim Zell", "--attribute", "smiling"],
     "is not of the form 'Person Name/N'"),
    (["edit", "{face}", "--index", "{tmp}", "--attribute", "smiling", "-o", "{tmp}/o.png"],
     "a folder, not an index file"),
])
def test_usage_mistakes_are_usage_errors(files, tmp_path, cli, no_network, argv, words):
    values = {"face": files["face"], "index": files["index"], "tmp": tmp_path}
    code, _, err = cli("-q", *[a.format(**values) for a in argv])
    assert code == 2 and words in err and err.count("\n") == 1, err


def test_dfi_version(cli, capsys):
    from dfi import __version__

    with pytest.raises(SystemExit) as stop:
        from dfi.cli.main import build_parser
        build_parser().parse_args(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"dfi {__version__}"


@pytest.mark.parametrize("content, words", [
    ('person,imagenum,path,Smiling\n"Ann,1,a.jpg,0.5\n', "not a readable dfi index"),
    ("person,imagenum,path,Smiling\nAnn,1,a.jpg,\n", "not a readable dfi index"),
    ("person,imagenum,path\nAnn,1,a.jpg\n", "no attribute columns"),
])
def test_a_broken_index_is_named_with_the_fix(files, tmp_path, cli, no_network, content, words):
    import json

    index = tmp_path / "bad.csv"
    index.write_text(content)
    (tmp_path / "bad.csv.meta.json").write_text(json.dumps({"images_root": str(tmp_path)}))
    code, _, err = cli("-q", "edit", files["face"], "--index", index, "--attribute", "smiling", "-o", tmp_path / "o.png")
    assert code in (1, 2) and words in err and str(index) in err and err.count("\n") == 1, err
    assert "rebuild it with 'dfi data index'" in err and "could not convert" not in err


def test_a_foreign_vector_file_is_named_without_numpys_advice(files, tmp_path, cli, no_network):
    vector = tmp_path / "v.npz"
    vector.write_bytes(np.random.default_rng(0).bytes(300))
    code, _, err = cli("-q", "edit", files["root"] / "a.png", "--vector", vector, "--crop", "none", "-o", tmp_path / "o.png")
    assert code == 1 and "not an attribute vector" in err and "allow_pickle" not in err, err


def test_warnings_are_one_line_above_a_progress_bar(capsys):
    import warnings

    from tqdm import tqdm

    from dfi.core.errors import show_warning

    with warnings.catch_warnings(), tqdm(total=3, file=__import__("sys").stderr) as bar:
        warnings.showwarning = show_warning
        bar.update(1)
        warnings.warn("using an untrained (random, seeded) VGG-19", UserWarning)
    err = capsys.readouterr().err
    assert "dfi: warning: using an untrained (random, seeded) VGG-19\n" in err
    assert "UserWarning" not in err and "warnings.warn(" not in err


@pytest.mark.parametrize("which", ["content", "style", "mask"])
def test_images_too_small_to_mean_anything_are_refused(files, tmp_path, cli, no_network, which):
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1), (200, 10, 10)).save(tiny)
    r = files["root"]
    if which == "mask":
        argv = ["edit", r / "a.png", "--vector", _vector(tmp_path), "--crop", "none", "--mask", tiny,
                "-o", tmp_path / "o.png"]
    else:
        images = [tiny, r / "b.png"] if which == "content" else [r / "a.png", tiny]
        argv = ["style", *images, "-o", tmp_path / "o.png"]
    code, _, err = cli("-q", *argv)
    assert code == 2 and "is 1x1: smaller than 16 px on a side" in err and str(tiny) in err, err


def _vector(folder):
    from dfi.edit.attributes import save_vector

    path = folder / "v.npz"
    save_vector(path, {"conv3_1": np.zeros((1, 4, 2, 2), np.float32)}, {})
    return path


def test_help_says_outputs_are_replaced_and_names_what_each_command_has():
    from dfi.cli.main import _leaves, build_parser

    for leaf in _leaves(build_parser()):
        for action in leaf._actions:
            if "-o" in action.option_strings and leaf.prog not in ("dfi demo", "dfi data align"):
                assert "replaced" in action.help, leaf.prog
    batch_style = next(p for p in _leaves(build_parser()) if p.prog == "dfi batch style").format_help()
    assert "alpha" not in batch_style and "--texture" not in batch_style and "attribute" not in batch_style
    train = next(p for p in _leaves(build_parser()) if p.prog == "dfi train-stylizer").format_usage()
    assert "--style IMAGE" in train and "[--style IMAGE]" not in train


def test_the_alpha_error_gives_each_scalings_range():
    from dfi.core.errors import SettingError
    from dfi.edit.settings import check_alphas

    with pytest.raises(SettingError, match=r"0\.1–0\.5 with the default --scaling norm"):
        check_alphas([50])

"""Mistakes are refused before any work (issue 'fail before the work'): outputs that cannot
be written, every batch cell, one exit-code rule, messages that name the file."""
import os

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
        ("stylize", ["stylize", r / "a.png", "--model", r / "model.npz", "--style", "0", "-o", "{out}.png"], "file"),
        ("data index", ["data", "index", "--images", f["images"], "--attributes", f["attributes"],
                        "-o", "{out}.csv"], "file"),
        ("weights convert", ["weights", "convert", r / "model.npz", "-o", "{out}.npz"], "file"),
        ("data align", ["data", "align", r / "content", "-o", "{out}"], "folder"),
        ("data synth", ["data", "synth", "{out}"], "folder"),
        ("demo", ["demo", "-o", "{out}", "--device", "cpu"], "folder"),
        ("data features", ["data", "features", "--index", f["index"], "--store", "{out}.zarr"], "folder"),
    ]


@pytest.fixture
def no_work(monkeypatch):
    """Loading a network or reading an index fails the test (the checks come first)."""
    import data_tools.index
    import dfi.nets.weights

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the outputs were checked")
    monkeypatch.setattr(dfi.nets.weights, "load_vgg19", refuse)
    monkeypatch.setattr(data_tools.index, "load_index", refuse)
    monkeypatch.setattr(data_tools.index, "build_index", refuse)


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

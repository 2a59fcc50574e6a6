"""What every command owes its user: inputs never overwritten, usage errors exit 2 before any
folder is made, the umask honoured, progress shown (and hidden with -q anywhere), greyscale
kept, pipes closed quietly, a help text for every option."""
import argparse
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_tools.index import load_index

FAST = ["--weights", "untrained", "--device", "cpu", "--size", "32", "--k", "4", "--iterations", "2"]


@pytest.fixture(scope="module")
def face(synth_lfw):
    result, index_file = synth_lfw
    index = load_index(index_file)
    row = int(np.flatnonzero((index.table["Smiling"] < -0.5).to_numpy())[0])
    return index.image_path(row), index_file


def test_outputs_never_overwrite_inputs(face, tmp_path, cli):
    photo, index_file = face
    copy = tmp_path / "photo.jpg"
    copy.write_bytes(photo.read_bytes())
    mask = tmp_path / "mask.png"
    Image.new("L", (250, 250), 255).save(mask)
    before = {p: p.read_bytes() for p in (copy, mask)}
    common = ["--index", index_file, "--attribute", "smiling", "--no-align", *FAST]
    for argv, words in [(["edit", copy, *common, "-o", copy], "-o {copy} is also an input (INPUT)"),
                        (["edit", copy, *common, "--mask", mask, "-o", mask], "is also an input (--mask)"),
                        (["edit", copy, *common, "--show-landmarks", copy, "-o", tmp_path / "x.png"],
                         "--show-landmarks"),
                        (["sweep", copy, *common, "--alphas", "0.3", "-o", copy], "-o (grid)"),
                        (["style", copy, mask, *FAST[:4], "-o", mask], "is also an input (IMAGE 2)"),
                        (["invert", copy, *FAST[:4], "-o", tmp_path / "." / "photo.jpg"], "IMAGE 1")]:
        code, _, err = cli("--quiet", *argv)
        assert code == 2 and "refusing to write over it" in err, (argv, err)
        assert words.format(copy=copy) in err or words in err, err
    sweep_image = tmp_path / "g_alpha0.3.jpg"  # a per-alpha image of the sweep would land on the input
    sweep_image.write_bytes(photo.read_bytes())
    code, _, err = cli("--quiet", "sweep", sweep_image, *common, "--alphas", "0.3", "-o", tmp_path / "g.jpg")
    assert code == 2 and "-o (alpha 0.3)" in err
    assert {p: p.read_bytes() for p in (copy, mask)} == before


@pytest.mark.parametrize("argv, words", [
    (["--alpha", "11"], "alpha 11.0 is out of range"),
    (["--size", "20000"], "--size 20000 must be between 16 and 2048"),
    (["--crop", "10,10,5,5"], "--crop '10,10,5,5' must be four whole numbers"),
    (["--crop", "0,0,12,40"], "the box must be at least 16x16 px"),
    (["--device", "tpu"], "--device 'tpu' is not one of"),
    (["--layers", "conv9_9"], "unknown layer"),
    (["--attribute", "smilng"], "did you mean 'Smiling'"),
])
def test_usage_errors_exit_2_and_make_no_folder(face, tmp_path, cli, argv, words):
    photo, index_file = face
    attribute = [] if "--attribute" in argv else ["--attribute", "smiling"]
    out = tmp_path / "new" / "deeper" / "out.png"
    code, _, err = cli("edit", photo, "--index", index_file, *attribute, *FAST, *argv, "-o", out)
    assert code == 2 and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "new").exists()


def test_outputs_follow_the_umask_and_greyscale_stays_greyscale(face, tmp_path, cli):
    photo, index_file = face
    grey = tmp_path / "grey.png"
    Image.open(photo).convert("L").save(grey)
    old = os.umask(0o027)
    try:
        code, _, err = cli("--quiet", "sweep", grey, "--index", index_file, "--attribute", "smiling",
                           "--no-align", "--alphas", "0.3", *FAST, "-o", tmp_path / "out" / "g.png")
    finally:
        os.umask(old)
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o750
    for name in ("g.png", "g_alpha0.3.png", "g.json", "g.gif"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o640, name
    for name in ("g.png", "g_alpha0.3.png"):
        with Image.open(tmp_path / "out" / name) as im:
            assert im.mode == "L", name


def test_progress_is_shown_and_quiet_works_after_the_command(face, tmp_path, cli):
    photo, index_file = face
    argv = ["edit", photo, "--index", index_file, "--attribute", "smiling", "--no-align", *FAST]
    code, _, err = cli(*argv, "-o", tmp_path / "a.png")
    assert code == 0 and "features (smiling)" in err and "reconstructing" in err
    code, _, err = cli(*argv, "-o", tmp_path / "b.png", "-q")
    assert code == 0 and "features" not in err and "reconstructing" not in err


def test_too_few_neighbours_for_a_photo_warn(face, tmp_path, cli):
    photo, index_file = face
    copy = tmp_path / "not-indexed.jpg"  # a photo outside the index: neighbours by pixel similarity
    copy.write_bytes(photo.read_bytes())
    code, _, err = cli("--quiet", "edit", copy, "--index", index_file, "--attribute", "smiling",
                       "--crop", "40,20,210,190", *FAST[:-4], "--iterations", "1", "--k", "100000",
                       "-o", tmp_path / "a.png")
    assert code == 0, err
    assert "warning: only" in err and "source faces for 'smiling' (asked for --k 100000)" in err


def test_decompression_bomb_names_the_file(tmp_path, monkeypatch):
    from dfi.core.image import read_image

    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match=f"image {path}: Image size .* decompression"):
        read_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)  # between the limit and twice it: a warning
    with pytest.warns(UserWarning, match=f"image {path}: Image size"):
        read_image(path)


def test_a_closed_pipe_ends_quietly(synth_lfw):
    result, index_file = synth_lfw
    table = load_index(index_file).table
    spec = f"{table['person'].iloc[0]}/{int(table['imagenum'].iloc[0])}"
    command = (f"{sys.executable} -m dfi data neighbors --index '{index_file}' --input '{spec}' "
               f"--attribute smiling -k 20 --json | head -c 0")  # the reader is gone before dfi writes
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True)
    assert done.stderr == ""
    assert done.returncode == 141  # like any Unix tool stopped by SIGPIPE


def test_every_option_has_a_help_text_and_demo_takes_o():
    from dfi.cli.main import _leaves, build_parser

    parser = build_parser()
    missing = [f"{p.prog} {a.option_strings or a.dest}" for p in _leaves(parser) for a in p._actions
               if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not missing
    assert build_parser().parse_args(["demo", "-o", "x"]).out.name == "x"
    assert build_parser().parse_args(["demo", "--out", "y"]).out.name == "y"

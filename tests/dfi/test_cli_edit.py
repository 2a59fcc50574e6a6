"""dfi edit / sweep / demo end to end on the synthetic LFW with the untrained network."""
import json

import numpy as np
import pytest
from PIL import Image

from data_tools.index import load_index

FAST = ["--weights", "untrained", "--device", "cpu", "--size", "32", "--k", "4",
        "--iterations", "4"]


@pytest.fixture(scope="module")
def face(synth_lfw):
    result, index_file = synth_lfw
    table = load_index(index_file).table
    row = table[table["Smiling"] < -0.5].iloc[0]
    return f"{row['person']}/{int(row['imagenum'])}", index_file, result


def test_sweep_writes_everything(face, tmp_path, cli):
    spec, index_file, result = face
    out = tmp_path / "sweep" / "grid.png"
    code, stdout, err = cli("--quiet", "sweep", spec, "--index", index_file, "--attribute", "smiling",
                            "--alphas", "0.2,0.4", *FAST, "-o", out)
    assert code == 0, err
    record = json.loads(out.with_suffix(".json").read_text())
    assert [r["alpha"] for r in record["losses"]] == [0.2, 0.4]
    assert len(record["neighbors"]["smiling"]["sources"]) == 4
    assert record["settings"]["k"] == 4 and record["timings_s"]["total"] > 0
    for alpha in ("0.2", "0.4"):
        with Image.open(tmp_path / "sweep" / f"grid_alpha{alpha}.png") as im:
            assert im.size == (250, 250)  # full size, not the 32 px working size
    with Image.open(out) as im:
        assert im.size == (3 * 250 + 2 * 4, 250)
    with Image.open(out.with_suffix(".gif")) as im:
        assert im.n_frames == 3
    assert not list((tmp_path / "sweep").glob("*.part"))


def test_edit_from_file_and_vector_reuse(face, tmp_path, cli):
    spec, index_file, result = face
    index = load_index(index_file)
    path = index.image_path(index.locate(*spec.rsplit("/", 1)[:1], int(spec.rsplit("/", 1)[1])))
    vector = tmp_path / "smile.npz"
    code, _, err = cli("--quiet", "edit", path, "--index", index_file, "--attribute", "smiling",
                       "--save-vector", vector, *FAST, "-o", tmp_path / "a.png")
    assert code == 0, err
    assert vector.is_file()
    code, _, err = cli("--quiet", "edit", path, "--vector", vector, *FAST, "--alpha", "0.8",
                       "-o", tmp_path / "b.jpg")
    assert code == 0, err
    original = np.asarray(Image.open(path), dtype=float)
    edited = np.asarray(Image.open(tmp_path / "b.jpg"), dtype=float)
    assert edited.shape == original.shape
    outside = np.ones(original.shape[:2], bool)
    outside[20:190, 40:210] = False  # the LFW crop: nothing outside it changes (beyond JPEG noise)
    assert np.abs(edited - original)[outside].mean() < 3.0


FAST_OPTIONS = dict(zip(FAST[::2], FAST[1::2]))


@pytest.mark.parametrize("input_, options, match", [
    ("missing.jpg", {}, "no such image file"),
    ("{spec}", {"--alpha": "50"}, "alpha 50.0 is out of range"),
    ("{spec}", {"--alpha": "nan"}, "alpha nan is out of range"),
    ("{spec}", {"--crop": "10,10,5,5"}, "--crop '10,10,5,5' must be four whole numbers"),
    ("{spec}", {"--crop": "0,0,400,400"}, "does not fit in the 250x250 image"),
    ("{spec}", {"--layers": "conv9_9"}, "unknown layer 'conv9_9'"),
    ("{spec}", {"--scaling": "max"}, "invalid choice: 'max'"),
    ("{spec}", {"--device": "gpu:3"}, "--device 'gpu:3'"),
    ("{spec}", {"--weights": "{bad}"}, "is not a caffemodel, torch .pth or npz"),
    ("{spec}", {"--weights": "caffe", "--data-dir": "{tmp}"}, "not fetched yet; run 'dfi weights fetch caffe'"),
])
def test_bad_inputs_fail_with_one_line(face, tmp_path, cli, input_, options, match):
    spec, index_file, _ = face
    bad = tmp_path / "weights.bin"
    bad.write_bytes(b"not weights at all")
    values = {k: v.format(spec=spec, bad=bad, tmp=tmp_path) for k, v in {**FAST_OPTIONS, **options}.items()}
    flat = [item for pair in values.items() for item in pair]
    code, _, err = cli("--quiet", "edit", input_.format(spec=spec), "--index", index_file,
                       "--attribute", "smiling", *flat, "-o", tmp_path / "out.png")
    assert code in (1, 2)
    assert match in err and err.count("\n") == 1 and err.startswith("dfi: error:"), err
    assert not (tmp_path / "out.png").exists()


def test_corrupt_image_and_unknown_attribute(face, tmp_path, cli):
    spec, index_file, _ = face
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, _, err = cli("--quiet", "edit", corrupt, "--index", index_file, "--attribute", "smiling",
                       *FAST, "-o", tmp_path / "o.png")
    assert code == 1 and "cannot be read as an image" in err
    code, _, err = cli("--quiet", "edit", spec, "--index", index_file, "--attribute", "smilng",
                       *FAST, "-o", tmp_path / "o.png")
    assert code == 1 and "did you mean 'Smiling'" in err
    code, _, err = cli("--quiet", "edit", spec, "--attribute", "smiling", *FAST, "-o", tmp_path / "o.png")
    assert code == 2 and "--attribute needs --index" in err
    assert not (tmp_path / "o.png").exists()


def test_demo_runs_offline(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("DFI_HOME", str(tmp_path / "home"))
    code, _, err = cli("--quiet", "demo", "--out", tmp_path / "demo", "--iterations", "2")
    assert code == 0, err
    assert (tmp_path / "demo" / "smile_sweep.png").is_file()
    record = json.loads((tmp_path / "demo" / "smile_sweep.json").read_text())
    assert record["weights"] == "untrained" and record["iterations_run"] <= 2
    assert "synthetic LFW" in err and "smile_sweep.png" in err

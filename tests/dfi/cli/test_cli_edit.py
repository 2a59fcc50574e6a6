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
                       "--no-align", "-o", tmp_path / "b.jpg")
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


def test_a_sweep_refuses_an_alpha_given_twice(face, tmp_path, cli):
    spec, index_file, _ = face
    code, _, err = cli("--quiet", "sweep", spec, "--index", index_file, "--attribute", "smiling",
                       "--alphas", "0.2,0.1,0.20", *FAST, "-o", tmp_path / "g.png")
    assert code == 2 and "alpha 0.2 is given twice" in err and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


def test_corrupt_image_and_unknown_attribute(face, tmp_path, cli):
    spec, index_file, _ = face
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, _, err = cli("--quiet", "edit", corrupt, "--index", index_file, "--attribute", "smiling",
                       *FAST, "-o", tmp_path / "o.png")
    assert code == 1 and "cannot be read as an image" in err
    code, _, err = cli("--quiet", "edit", spec, "--index", index_file, "--attribute", "smilng",
                       *FAST, "-o", tmp_path / "o.png")
    assert code == 2 and "did you mean 'Smiling'" in err
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
    meta = json.loads((tmp_path / "demo" / "synthetic-lfw" / "index.csv.meta.json").read_text())
    assert meta["images_without_row"] == 0  # so no warning about the data it made itself


@pytest.fixture(scope="module")
def photo(synth_lfw, tmp_path_factory):
    """A 600×400 PNG photo with a non-smiling synthetic face, enlarged and off-centre."""
    from dfi.face.detect import MIN_SCORE, detect_faces
    from dfi.core.image import read_image, write_image
    from tests.dfi.face.test_align import _place

    result, index_file = synth_lfw
    table = load_index(index_file).table
    for rel in table.loc[table["Smiling"] < -0.5, "path"]:
        image = read_image(result.images_dir / rel)
        placed = _place(image, np.array([[1.3, 0, 280], [0, 1.3, 40]]), (400, 600))
        if any(d.score >= MIN_SCORE for d in detect_faces(placed)):
            path = tmp_path_factory.mktemp("photo") / "photo.png"
            write_image(path, placed)
            return path, index_file
    pytest.fail("no synthetic face was detected")


def test_edit_any_photo_aligns_and_changes_only_the_face(photo, tmp_path, cli):
    from dfi.face.align import apply, invert

    path, index_file = photo
    out = tmp_path / "grid.png"
    code, _, err = cli("--quiet", "sweep", path, "--index", index_file, "--attribute", "smiling",
                       "--alphas", "3", *FAST, "--show-landmarks", tmp_path / "landmarks.jpg", "-o", out)
    assert code == 0, err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["alignment"]["face"] == 1 and record["alignment"]["faces_found"] == 1
    original = np.asarray(Image.open(path), dtype=float)
    edited = np.asarray(Image.open(tmp_path / "grid_alpha3.png"), dtype=float)
    assert edited.shape == original.shape == (400, 600, 3)
    # what changes lies inside the LFW crop (40,20,210,190) of the frame, mapped into the photo
    corners = apply(invert(np.array(record["alignment"]["matrix"])), [[40, 20], [210, 190]])
    (left, top), (right, bottom) = np.floor(corners.min(0)) - 2, np.ceil(corners.max(0)) + 2
    changed = np.abs(edited - original).sum(axis=2) > 0
    rows, cols = np.nonzero(changed)
    assert changed.any() and left <= cols.min() and cols.max() <= right and top <= rows.min() \
        and rows.max() <= bottom
    assert 260 < left and bottom < 400  # (the face was placed at x ≥ 280)
    with Image.open(tmp_path / "landmarks.jpg") as im:
        assert im.size == (600, 400)


def test_photo_options_and_errors(photo, tmp_path, cli):
    from data_tools.synth import make_style_image

    path, index_file = photo
    common = ["--index", index_file, "--attribute", "smiling", *FAST]
    # a hand-placed crop of a photo that is not 250×250 (the neighbours keep the LFW crop)
    code, _, err = cli("--quiet", "edit", path, *common, "--crop", "250,20,560,330", "-o", tmp_path / "c.png")
    assert code == 0, err
    faceless = tmp_path / "painting.png"
    make_style_image((320, 240), kind="waves").save(faceless)
    for argv, match, status in [([faceless], "no face found in ", 1), ([path, "--face", "2"], "--face 2: ", 2),
                                ([path, "--no-align", "--face", "1"], "--face and --show-landmarks need face alignment", 2),
                                ([path, "--show-landmarks", tmp_path / "x.txt"], "--show-landmarks ", 2),
                                ]:
        code, _, err = cli("--quiet", "edit", *argv, *common, "-o", tmp_path / "o.png")
        assert code == status and match in err and err.count("\n") == 1, err
    code, _, err = cli("--quiet", "edit", faceless, *common, "-o", tmp_path / "o.png")
    assert "--crop l,t,r,b" in err
    assert not (tmp_path / "o.png").exists()

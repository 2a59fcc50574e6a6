import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from data_tools.attributes import LFW_ATTRIBUTE_NAMES, read_lfw_attributes
from data_tools.index import build_index, load_index, meta_path
from data_tools.synth import FACE_CENTRE, make_synthetic_lfw


def test_synth_layout_and_format(synth_lfw):
    result, _ = synth_lfw
    paths = sorted(p.relative_to(result.images_dir).as_posix() for p in result.images_dir.rglob("*.jpg"))
    assert paths == sorted(result.table["path"])
    for rel in paths[:5]:
        folder, name = rel.split("/")
        assert name.startswith(folder + "_") and name[-8:-4].isdigit()
        with Image.open(result.images_dir / rel) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (250, 250))
    with tarfile.open(result.archive) as tar:
        names = tar.getnames()
    assert all(n.split("/")[0] == "lfw-deepfunneled" for n in names)
    lines = result.attributes_file.read_text().splitlines()
    assert lines[0].startswith("#") and lines[1].split("\t")[:3] == ["#", "person", "imagenum"]
    assert len(lines[1].split("\t")) == 76 and all(len(l.split("\t")) == 75 for l in lines[2:])
    parsed = read_lfw_attributes(result.attributes_file)
    assert len(parsed) == len(result.table) - len(result.dropped)
    assert list(parsed.columns[3:]) == list(LFW_ATTRIBUTE_NAMES)


def test_synth_is_seeded(tmp_path):
    a = make_synthetic_lfw(tmp_path / "a", n_people=3, seed=5)
    b = make_synthetic_lfw(tmp_path / "b", n_people=3, seed=5)
    assert a.attributes_file.read_bytes() == b.attributes_file.read_bytes()
    rel = a.table["path"].iloc[0]
    assert (a.images_dir / rel).read_bytes() == (b.images_dir / rel).read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        make_synthetic_lfw(tmp_path / "a", n_people=3)


def _mean_pixels(result, mask, box):
    left, top, right, bottom = box
    crops = [np.asarray(Image.open(result.images_dir / p), dtype=np.float64)[top:bottom, left:right]
             for p in result.table.loc[mask, "path"]]
    return np.mean(crops, axis=0)


def test_attributes_are_visible_in_pixels(synth_lfw):
    result, _ = synth_lfw
    t = result.table
    cx, cy = map(int, FACE_CENTRE)
    mouth = (cx - 20, cy + 18, cx + 20, cy + 42)
    # smiles are curved (ink at the corners above the middle); a frown is the reverse
    smile = _mean_pixels(result, t["Smiling"] > 0, mouth)
    frown = _mean_pixels(result, t["Frowning"] > 0, mouth)
    assert np.abs(smile - frown).mean() > 4.0
    eyes = (cx - 34, cy - 20, cx + 34, cy)
    glasses = _mean_pixels(result, t["Eyeglasses"] > 0, eyes)
    plain = _mean_pixels(result, t["No Eyewear"] > 0, eyes)
    assert glasses.mean() < plain.mean() - 5  # dark frames
    hair = (cx - 30, cy - 66, cx + 30, cy - 50)
    grey = _mean_pixels(result, (t["Gray Hair"] > 0) & (t["Bald"] < 0), hair)
    black = _mean_pixels(result, t["Black Hair"] > 0, hair)
    assert grey.mean() > black.mean() + 60
    assert (t["Smiling"] > 0).sum() > 5 and (t["Senior"] > 0).sum() > 3


def test_index_reports_missing_and_unlisted(synth_lfw, tmp_path):
    result, index_file = synth_lfw
    index = load_index(index_file)
    assert index.meta["images_without_row"] == len(result.dropped)
    assert len(index.table) == len(result.table) - len(result.dropped)
    assert (index.image_path(0)).is_file()
    meta = json.loads(meta_path(index_file).read_text())
    assert meta["attributes_sha256"] and meta["rows"] == len(index.table)
    # a row whose image is gone is dropped and reported, not fatal
    text = result.attributes_file.read_text() + "Ghost Person\t1\t" + "\t".join(["0.5"] * 73) + "\n"
    attrs = tmp_path / "lfw_attributes.txt"
    attrs.write_text(text)
    rebuilt = build_index(result.images_dir, attrs)
    assert rebuilt.meta["rows_without_image"] == 1
    assert "Ghost Person" not in set(rebuilt.table["person"])


def test_index_cli(synth_lfw, tmp_path, cli):
    result, _ = synth_lfw
    out_file = tmp_path / "idx" / "lfw.csv"
    code, out, err = cli("data", "index", "--images", result.images_dir,
                         "--attributes", result.attributes_file, "-o", out_file)
    assert code == 0, err
    assert "images without a row" in out and out_file.is_file() and meta_path(out_file).is_file()
    code, _, err = cli("data", "index", "--images", tmp_path / "none", "--attributes",
                       result.attributes_file, "-o", tmp_path / "x.csv")
    assert code == 1 and "not a folder" in err and not (tmp_path / "x.csv").exists()
    bad = tmp_path / "bad.txt"
    bad.write_text("# c\n#\tperson\timagenum\tMale\nA B\t1\n")
    code, _, err = cli("data", "index", "--images", result.images_dir, "--attributes", bad,
                       "-o", tmp_path / "y.csv")
    assert code == 1 and "bad.txt:3: expected 3 tab-separated fields, found 2" in err
    assert not (tmp_path / "y.csv").exists()


def test_synth_cli(tmp_path, cli):
    code, out, err = cli("data", "synth", tmp_path / "s", "--people", "2", "--seed", "3")
    assert code == 0 and "people" in out
    code, _, err = cli("data", "synth", tmp_path / "s", "--people", "2")
    assert code == 1 and "already exists" in err
    code, _, err = cli("data", "synth", tmp_path / "t", "--people", "0")
    assert code == 2 and "must be at least 1" in err


def test_synth_survives_a_person_losing_every_row_and_reports_true_landmarks(tmp_path):
    # seed 3 with 20 people drops the only image of one person from the attribute file
    result = make_synthetic_lfw(tmp_path, n_people=20, seed=3)
    listed = set(read_lfw_attributes(result.attributes_file)["person"])
    counts = result.table["path"].str.split("/").str[0].value_counts()
    gone = {p.split("/")[0] for p in result.dropped if counts[p.split("/")[0]] == 1}
    assert gone and not {name.replace("_", " ") for name in gone} & listed
    assert set(result.landmarks) == set(result.table["path"])
    left, right, mouth = next(iter(result.landmarks.values()))
    assert 30 < right[0] - left[0] < 50 and 30 < mouth[1] - left[1] < 50

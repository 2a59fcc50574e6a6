"""``dfi data align``: plain (unaligned) LFW becomes deep-funneled-like, resumably."""
import json

import numpy as np
import pytest
from PIL import Image

from data_tools.index import build_index
from data_tools.synth import make_synthetic_lfw
from dfi.core.image import read_image
from dfi.face.align import LFW_TEMPLATE, measure_template


@pytest.fixture(scope="module")
def plain_lfw(tmp_path_factory):
    root = tmp_path_factory.mktemp("plain")
    result = make_synthetic_lfw(root, n_people=6, seed=2, layout="plain")
    blank = result.images_dir / "Blank_Wall" / "Blank_Wall_0001.jpg"
    blank.parent.mkdir()
    Image.new("RGB", (250, 250), (128, 128, 128)).save(blank)
    return result


def _template_error(folder, names):
    measured, found = measure_template(read_image(folder / n) for n in names)
    return np.linalg.norm(measured - LFW_TEMPLATE, axis=1).max(), found


def test_synthetic_plain_lfw_is_unaligned_with_known_landmarks(plain_lfw):
    assert plain_lfw.images_dir.name == "lfw" and plain_lfw.archive.name == "lfw.tgz"
    offsets = [np.abs(points - LFW_TEMPLATE).max() for points in plain_lfw.landmarks.values()]
    assert np.median(offsets) > 5  # faces really moved, scaled and turned


def test_align_folder_places_faces_like_deep_funneled_and_resumes(plain_lfw, tmp_path, cli):
    src, dst = plain_lfw.images_dir, tmp_path / "lfw-deepfunneled"
    code, out, err = cli("--quiet", "data", "align", src, "-o", dst, "--workers", "2")
    assert code == 0, err
    report = json.loads((dst / "align-report.json").read_text())
    faces = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.jpg"))
    # every image is aligned or listed as faceless (HOG misses a few of the drawn faces)
    assert sorted(faces + report["no_face"]) == sorted([*plain_lfw.landmarks, "Blank_Wall/Blank_Wall_0001.jpg"])
    assert "Blank_Wall/Blank_Wall_0001.jpg" in report["no_face"]
    assert report["aligned"] == len(faces) >= 0.8 * len(plain_lfw.landmarks)
    assert f"{len(faces)} images into" in out and f"{len(report['no_face'])} without a face" in out
    with Image.open(dst / faces[0]) as im:
        assert im.size == (250, 250)
    # the aligned faces sit on the template; the plain ones did not
    error_after, found = _template_error(dst, faces)
    error_before, _ = _template_error(src, faces)
    assert found == len(faces)
    assert error_after < 3.0 < error_before
    # the index works on the result
    assert len(build_index(dst, plain_lfw.attributes_file).table) > 0
    # a second run skips every finished file and touches none
    stamps = {f: (dst / f).stat().st_mtime_ns for f in faces}
    code, out, err = cli("--quiet", "data", "align", src, "-o", dst)
    assert code == 0 and f"aligned 0 images into {dst} ({len(faces)} were already done)" in out
    assert stamps == {f: (dst / f).stat().st_mtime_ns for f in faces}


def test_align_refuses_bad_folders(plain_lfw, tmp_path, cli):
    code, _, err = cli("data", "align", tmp_path / "missing", "-o", tmp_path / "out")
    assert code == 1 and "not a folder" in err
    code, _, err = cli("data", "align", plain_lfw.images_dir, "-o", plain_lfw.images_dir / "inside")
    assert code == 2 and "must not be SRC or inside it" in err
    assert not (plain_lfw.images_dir / "inside").exists()
    empty = tmp_path / "empty"
    (empty / "Nobody").mkdir(parents=True)
    code, _, err = cli("data", "align", empty, "-o", tmp_path / "out")
    assert code == 1 and "no .png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp images" in err
    assert not (tmp_path / "out").exists()

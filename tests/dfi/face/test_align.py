"""Alignment: similarity fit, warps with exact pixel conventions, paste-back, and face
detection on synthetic faces with known geometry and on a real packaged photograph."""
import numpy as np
import pytest
from PIL import Image

from dfi.face.align import (LFW_TEMPLATE, _warp, align_face, apply, draw_landmarks, face_mask, invert,
                       paste_back, similarity_transform, warp_to_frame)
from dfi.face.detect import NoFaceError, detect_faces
from dfi.core.image import read_image, resize


def _similarity(angle, scale, tx, ty):
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


def test_similarity_transform_recovers_a_known_one_and_fits_noise():
    truth = _similarity(0.3, 1.7, 40.0, -12.0)
    src = np.array([[10.0, 20.0], [50.0, 22.0], [31.0, 60.0], [5.0, 5.0]])
    assert np.allclose(similarity_transform(src, apply(truth, src)), truth, atol=1e-9)
    # a reflection is not a similarity: the fit stays a rotation
    mirrored = src * [-1, 1]
    fit = similarity_transform(src, mirrored)
    assert np.linalg.det(fit[:, :2]) > 0
    noisy = apply(truth, src) + np.random.default_rng(0).normal(0, 0.5, src.shape)
    assert np.abs(apply(similarity_transform(src, noisy), src) - noisy).max() < 2.0
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((3, 2)), src[:3])
    with pytest.raises(ValueError, match="matching"):
        similarity_transform(src, src[:3])


def test_warp_pixel_conventions_are_exact():
    image = np.random.default_rng(0).uniform(0, 255, (3, 20, 30)).astype(np.float32)
    assert np.array_equal(_warp(image, np.array([[1.0, 0, 0], [0, 1, 0]]), (20, 30)), image)
    shifted = _warp(image, np.array([[1.0, 0, 2], [0, 1, 1]]), (20, 30))
    assert np.allclose(shifted[:, :19, :28], image[:, 1:, 2:])
    rotated = _warp(image, np.array([[-1.0, 0, 29], [0, -1, 19]]), (20, 30))
    assert np.allclose(rotated, image[:, ::-1, ::-1])
    assert np.allclose(invert(invert(_similarity(0.2, 2, 3, 4))), _similarity(0.2, 2, 3, 4))


def test_round_trip_leaves_the_photo_unchanged_outside_the_mask():
    from dfi.core.image import resize
    rng = np.random.default_rng(1)
    photo = np.clip(resize(rng.normal(128, 40, (3, 15, 21)).astype(np.float32), (300, 420)), 0, 255)
    landmarks = apply(_similarity(-0.2, 1.1, 0, 0), LFW_TEMPLATE - 125) + [260, 140]
    matrix = similarity_transform(landmarks, LFW_TEMPLATE)
    frame = warp_to_frame(photo, matrix)
    assert frame.shape == (3, 250, 250)
    assert np.allclose(apply(matrix, landmarks), LFW_TEMPLATE, atol=1e-6)
    mask = face_mask()
    edited = frame + 30.0 * (mask > 0)
    out = paste_back(photo, edited, frame, matrix, mask)
    weight = _warp(mask[None], matrix, photo.shape[1:])[0]
    support = _warp(np.ones((1, 250, 250)), matrix, photo.shape[1:])[0] > 0
    assert np.array_equal(out[:, ~support], photo[:, ~support])  # exactly untouched
    assert np.array_equal(out[:, weight == 0], photo[:, weight == 0])
    assert (weight > 0).mean() < 0.5
    # an unedited round trip changes nothing; the edit shows inside at full strength
    assert np.array_equal(paste_back(photo, frame, frame, matrix, mask), photo)
    inside = weight > 0.99
    diff = (out - photo)[:, inside]
    assert abs(np.median(diff) - 30) < 0.5 and np.percentile(diff, 5) > 25  # (a few clip at 255)
    # where the frame sees past the photo's edges, the border is repeated (no black bars)
    far = warp_to_frame(photo, np.array([[1.0, 0, 600], [0, 1.0, 600]]))  # frame ⊂ above-left
    assert np.allclose(far, photo[:, :1, :1], atol=1e-3)
    # a large photo is shrunk before warping (no aliasing) and gives the same frame
    big = np.stack([np.kron(c, np.ones((4, 4), np.float32)) for c in photo])
    big_matrix = similarity_transform(landmarks * 4 + 1.5, LFW_TEMPLATE)
    assert np.abs(warp_to_frame(big, big_matrix) - frame).mean() < 2.0


def _place(face: np.ndarray, matrix: np.ndarray, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A photo of ``size`` (H, W) with ``face`` warped in by ``matrix`` (face → photo) over a
    smooth random background."""
    rng = np.random.default_rng(seed)
    background = np.clip(resize(rng.normal(120, 50, (3, 4, 5)).astype(np.float32), size), 0, 255)
    inverse = invert(matrix)
    placed = _warp(face, inverse, size)
    inside = _warp(np.ones((1, *face.shape[1:]), np.float32), inverse, size)[0] > 0.999
    return np.clip(np.where(inside, placed, background), 0, 255).astype(np.float32)


@pytest.fixture(scope="module")
def synth_faces(synth_lfw):
    """(image, true landmarks) for the synthetic faces the detector finds, and the rate."""
    result, _ = synth_lfw
    faces, missed = [], 0
    for rel, truth in sorted(result.landmarks.items())[:40]:
        image = read_image(result.images_dir / rel)
        found = detect_faces(image)
        if found:
            faces.append((image, truth, found[0]))
        else:
            missed += 1
    return faces, missed


def test_landmarks_on_synthetic_faces_match_their_geometry(synth_faces):
    faces, missed = synth_faces
    assert len(faces) >= 0.8 * (len(faces) + missed)
    errors = np.array([np.linalg.norm(d.landmarks - truth, axis=1) for _, truth, d in faces])
    assert np.median(errors[:, :2]) < 2.0  # eye centres
    assert np.median(errors[:, 2]) < 5.0  # the mouth centre depends on the drawn expression
    # the transform to the frame is accurate: eyes land within a few pixels of the template
    landed = np.array([apply(similarity_transform(d.landmarks, LFW_TEMPLATE), truth)
                       for _, truth, d in faces])
    eye_error = np.linalg.norm(landed[:, :2] - LFW_TEMPLATE[:2] - (landed[:, :2].mean(1, keepdims=True)
                                                                   - LFW_TEMPLATE[:2].mean(0)), axis=2)
    assert np.median(np.linalg.norm(landed - LFW_TEMPLATE, axis=2)) < 4.0
    assert np.median(eye_error) < 3.0


def test_alignment_recovers_known_placements(synth_faces):
    faces, _ = synth_faces
    errors, misses = [], 0
    for image, truth, _ in sorted(faces, key=lambda f: -f[2].score)[:5]:
        ideal = apply(similarity_transform(truth, LFW_TEMPLATE), truth)  # best any fit can do
        for angle, scale, tx, ty in [(0.0, 1.0, 100, 50), (0.0, 1.5, 330, 20), (0.1, 1.3, 260, 80),
                                     (0.2, 1.5, 330, 20)]:
            c, s = np.cos(angle) * scale, np.sin(angle) * scale
            placement = np.array([[c, -s, tx], [s, c, ty]])  # off-centre, rotated, enlarged
            try:
                alignment = align_face(_place(image, placement, (480, 720)))
            except NoFaceError:
                misses += 1
                continue
            assert len(alignment.detections) == 1 and alignment.frame.shape == (3, 250, 250)
            landed = apply(alignment.matrix, apply(placement, truth))
            errors.append(np.linalg.norm(landed - ideal, axis=1).max())
    assert misses <= 2, misses  # (HOG is trained on real faces; roll beyond ~10° costs hits)
    assert np.median(errors) < 3.5 and max(errors) < 8.0, np.round(errors, 1)  # frame px; eyes 40 apart


def test_landmark_picture(synth_faces):
    faces, _ = synth_faces
    image, _, _ = max(faces, key=lambda f: f[2].score)
    photo = _place(image, np.array([[1.5, 0, 300], [0, 1.5, 60]]), (480, 720))
    alignment = align_face(photo)
    picture = draw_landmarks(photo, alignment)
    assert picture.shape == photo.shape and not np.array_equal(picture, photo)
    assert np.array_equal(picture[:, :40, :200], photo[:, :40, :200].round())  # far from the face


def test_a_packaged_photograph_is_detected_and_aligned():
    data = pytest.importorskip("skimage.data")
    photo = data.astronaut().transpose(2, 0, 1).astype(np.float32)  # 512×512, face off-centre
    alignment = align_face(photo)
    left, top, right, bottom = alignment.detection.box
    assert 150 < left < right < 300 and 50 < top < bottom < 200
    assert np.abs(apply(alignment.matrix, alignment.detection.landmarks) - LFW_TEMPLATE).max() < 3.0
    rotation = np.degrees(np.arctan2(alignment.matrix[1, 0], alignment.matrix[0, 0]))
    assert abs(rotation) < 10 and 0.6 < np.linalg.norm(alignment.matrix[:, 0]) < 1.4


def test_several_faces_largest_first_and_choice(synth_faces):
    faces, _ = synth_faces
    (big, *_), (small, *_) = sorted(faces, key=lambda f: -f[2].score)[:2]
    photo = _place(big, np.array([[1.2, 0, 10], [0, 1.2, 20]]), (340, 640))
    second = _place(small, np.array([[0.9, 0, 380], [0, 0.9, 60]]), (340, 640))
    photo[:, 60:300, 380:620] = second[:, 60:300, 380:620]
    found = detect_faces(photo)
    assert len(found) == 2 and found[0].area > found[1].area and found[0].box[0] < 300
    assert align_face(photo, face=2).detection.box[0] > 300
    with pytest.raises(ValueError, match=r"--face 3: .* has 2 face\(s\); choose 1–2"):
        align_face(photo, face=3)


def test_a_small_face_in_a_large_photo_is_found_at_full_size(synth_faces):
    faces, _ = synth_faces
    image, truth, _ = max(faces, key=lambda f: f[2].score)
    placement = np.array([[1.0, 0, 1700], [0, 1.0, 150]])
    photo = _place(image, placement, (560, 2400))  # shrunk to 1,024 px its face is under 50 px
    found = detect_faces(photo)
    assert len(found) == 1
    assert np.linalg.norm(found[0].landmarks[:2] - apply(placement, truth)[:2], axis=1).max() < 6.0


def test_faceless_tiny_grey_rgba_and_exif_rotated_inputs(synth_faces, tmp_path):
    from data_tools.synth import make_style_image

    faces, _ = synth_faces
    image, truth, _ = max(faces, key=lambda f: f[2].score)
    with pytest.raises(NoFaceError, match=r"no face found in the photo \(256x192\).*--crop"):
        align_face(np.asarray(make_style_image((256, 192), kind="mosaic"), np.float32).transpose(2, 0, 1))
    with pytest.raises(NoFaceError, match=r"\(24x24\)"):
        align_face(resize(image, (24, 24)))
    upright = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8).transpose(1, 2, 0))
    files = {"grey.png": upright.convert("L"), "rgba.png": upright.convert("RGBA"),
             "grey16.png": Image.fromarray(np.asarray(upright.convert("L"), np.uint16) * 257)}
    for name, picture in files.items():
        picture.save(tmp_path / name)
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")  # 16 bits kept in the file
    assert np.array_equal(read_image(tmp_path / "grey16.png"), read_image(tmp_path / "grey.png"))
    rotated = upright.transpose(Image.Transpose.ROTATE_90)
    exif = rotated.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": readers must turn it upright
    rotated.save(tmp_path / "exif.jpg", exif=exif, quality=95)
    assert np.abs(read_image(tmp_path / "exif.jpg") - image).mean() < 4.0  # read upright
    for name in [*files, "exif.jpg"]:
        photo = read_image(tmp_path / name)
        found = detect_faces(photo)
        assert found, name
        # (the 68-point model, trained on photographs, moves a few pixels on re-encoded drawings)
        assert np.linalg.norm(found[0].landmarks[:2] - truth[:2], axis=1).max() < 6.0, name


def test_template_measured_on_the_synthetic_lfw_matches_the_default(synth_lfw):
    from dfi.face.align import measure_template

    result, _ = synth_lfw
    paths = sorted(result.images_dir.rglob("*.jpg"))
    template, found = measure_template((read_image(p) for p in paths), limit=40)
    assert found >= 32
    assert np.linalg.norm(template - LFW_TEMPLATE, axis=1).max() < 2.5
    with pytest.raises(NoFaceError, match="no face found in any"):
        measure_template([np.full((3, 64, 64), 128, np.float32)])

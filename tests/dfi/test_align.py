"""Alignment geometry: similarity fit, warps with exact pixel conventions, paste-back."""
import numpy as np
import pytest

from dfi.align import (LFW_TEMPLATE, _warp, apply, face_mask, invert, paste_back,
                       similarity_transform, warp_to_frame)


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
    from dfi.image import resize
    rng = np.random.default_rng(1)
    photo = np.clip(resize(rng.normal(128, 40, (3, 15, 21)).astype(np.float32), (300, 420)), 0, 255)
    landmarks = apply(_similarity(-0.2, 1.1, 0, 0), LFW_TEMPLATE - 125) + [260, 140]
    matrix = similarity_transform(landmarks, LFW_TEMPLATE)
    frame = warp_to_frame(photo, matrix)
    assert frame.shape == (3, 250, 250)
    assert np.allclose(apply(matrix, landmarks), LFW_TEMPLATE, atol=1e-6)
    mask = face_mask()
    edited = frame + 30.0 * (mask > 0)
    out = paste_back(photo, edited, matrix, mask)
    weight = _warp(mask[None], matrix, photo.shape[1:])[0]
    assert np.array_equal(out[:, weight <= 0], photo[:, weight <= 0])  # exactly untouched
    assert (weight > 0).mean() < 0.5
    # unedited round trip: the inside differs only by interpolation; the edit shows inside
    same = paste_back(photo, frame, matrix, mask)
    inside = weight > 0.99
    assert np.abs(same - photo)[:, inside].mean() < 1.0
    diff = (out - same)[:, inside]
    assert abs(np.median(diff) - 30) < 0.5 and np.percentile(diff, 5) > 25  # (a few clip at 255)

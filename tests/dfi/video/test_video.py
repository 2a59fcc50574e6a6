"""Video: flow on a known pan, consistency masks, the temporal loss's effect, PyAV round trips,
frame folders, resuming, and face videos — all offline on synthetic frames."""

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from dfi.core.image import resize  # noqa: E402
from dfi.video import io as vio  # noqa: E402
from dfi.video.flow import combine_closest_first, consistency, dis_flow, warp  # noqa: E402

FAST = ["--weights", "untrained", "--device", "cpu", "--iterations", "3", "--size", "40"]
SHIFT = 2  # pixels the scene moves left per frame


def _scene(height=120, width=200, seed=0) -> np.ndarray:
    """A smooth random texture with some edges: DIS has something to track everywhere."""
    rng = np.random.default_rng(seed)
    base = resize(rng.uniform(0, 255, (3, height // 8, width // 8)).astype(np.float32), (height, width))
    detail = resize(rng.uniform(-60, 60, (3, height // 3, width // 3)).astype(np.float32), (height, width))
    return np.clip(base + detail, 0, 255).astype(np.float32)


def _pan(count=6, height=64, width=80, seed=0) -> list:
    scene = _scene(seed=seed)
    return [scene[:, 20:20 + height, 10 + SHIFT * i:10 + SHIFT * i + width].copy() for i in range(count)]


def _style_image(path):
    from data_tools.synth import make_style_image

    make_style_image((48, 48), kind="mosaic").save(path)
    return path


def test_dis_flow_recovers_a_known_pan_and_the_mask_marks_the_revealed_band():
    frames = _pan(2)
    backward = dis_flow(frames[1], frames[0])  # frame 1 (x) ≈ frame 0 (x + backward)
    forward = dis_flow(frames[0], frames[1])
    interior = (slice(8, -8), slice(8, -8))
    assert np.abs(backward[interior][..., 0] - SHIFT).mean() < 0.5 and np.abs(backward[interior][..., 1]).mean() < 0.5
    mask = consistency(backward, forward)
    assert mask[interior].mean() > 0.9
    assert mask[:, -SHIFT:].max() < 0.5  # the band that came into view has no source in frame 0
    warped, inside = warp(frames[0], backward)
    assert np.abs(warped - frames[1])[:, 8:-8, 8:-8].mean() < 4.0
    assert not inside[:, -1].any()


def test_the_warped_start_has_no_seam_where_the_frame_revealed_something_new():
    from dfi.video.stylize import warped_start

    frames = _pan(2)
    backward = dis_flow(frames[1], frames[0])
    earlier = np.clip(resize(frames[0][:, ::4, ::4], frames[0].shape[1:]) * 0.5 + 60, 0, 255)  # a smooth "output"
    start = warped_start(earlier, backward)

    def tv(image):
        return (np.diff(image, axis=1) ** 2).mean() + (np.diff(image, axis=2) ** 2).mean()
    assert tv(start) < 1.2 * tv(earlier)  # the raw frame pasted into the band would add a seam
    np.testing.assert_allclose(start[:, 8:-8, -SHIFT:], earlier[:, 8:-8, -1:].repeat(SHIFT, axis=2), atol=2.0)
    np.testing.assert_allclose(start[:, 8:-8, 8:-8], earlier[:, 8:-8, 8 + SHIFT:-8 + SHIFT], atol=2.0)


def test_long_term_masks_are_combined_nearest_first():
    near, far = np.array([[1.0, 0.0, 0.6]]), np.array([[1.0, 1.0, 0.6]])
    combined = combine_closest_first([near, far])
    np.testing.assert_allclose(combined[0], near)
    np.testing.assert_allclose(combined[1], [[0.0, 1.0, 0.0]])


def _warping_error(outputs) -> float:
    """Mean |out_i − out_{i−1} moved by the known pan| inside the frames."""
    errors = [np.abs(b[:, 4:-4, 4:-4 - SHIFT] - a[:, 4:-4, 4 + SHIFT:-4]).mean()
              for a, b in zip(outputs, outputs[1:])]
    return float(np.mean(errors))


def test_the_temporal_loss_makes_stylised_frames_consistent(tiny_net):
    from dfi.core.reconstruct import ReconstructConfig
    from dfi.style.gatys import StyleConfig
    from dfi.video.stylize import VideoConfig, stylize_video

    frames = _pan(5)
    style = resize(_scene(seed=3), (48, 48))
    config = StyleConfig(scales=(80,), style_weight=5.0, reconstruct=ReconstructConfig(iterations=40, ftol=0))

    def run(video, init="content"):
        from dataclasses import replace
        return [r.image for r in stylize_video(tiny_net, iter(frames), [style], replace(config, init=init),
                                               video, (64, 80))]
    consistent = _warping_error(run(VideoConfig(temporal_weight=0.05)))
    from_noise = _warping_error(run(VideoConfig(temporal_weight=0.0, init="noise"), init="noise"))
    from_content = _warping_error(run(VideoConfig(temporal_weight=0.0, init="content")))
    assert consistent <= 0.5 * from_noise
    assert consistent <= from_content


@pytest.mark.parametrize("pts", [None, [0, 100, 250, 300, 480]], ids=["constant-rate", "variable-rate"])
def test_mp4_round_trip_keeps_frames_rate_timestamps_and_audio(tmp_path, cli, pts, write_video):
    frames = _pan(5)
    source = tmp_path / "in.mp4"
    write_video(source, frames, pts=pts)
    out = tmp_path / "out.mp4"
    code, _, err = cli("--quiet", "style", source, _style_image(tmp_path / "s.png"), *FAST, "-o", out)
    assert code == 0, err
    info_in, info_out = vio.probe(source), vio.probe(out)
    assert info_out.count == info_in.count == 5 and info_out.size == info_in.size
    in_times = [float(p * info_in.time_base) for p in info_in.pts]
    out_times = [float(p * info_out.time_base) for p in info_out.pts]
    np.testing.assert_allclose(out_times, in_times, atol=1e-3)  # a variable rate keeps its timestamps
    if pts is None:
        assert info_out.rate == info_in.rate == 10
    with av.open(str(out)) as container:
        assert len(container.streams.audio) == 1
    assert not list(tmp_path.glob(".out.mp4*"))  # the work folder is gone


def test_folder_in_folder_out_keeps_names_and_resumes_after_an_interrupt(tmp_path, cli, monkeypatch):
    source = tmp_path / "frames"
    source.mkdir()
    names = [f"shot_{i:03d}.png" for i in (3, 7, 11, 12, 20)]
    for name, frame in zip(names, _pan(5)):
        Image.fromarray(frame.transpose(1, 2, 0).astype(np.uint8)).save(source / name)
    style = _style_image(tmp_path / "s.png")
    out = tmp_path / "out"
    writes = {"n": 0}
    original = vio.FrameStore.write

    def write_then_stop(self, index, image, **kwargs):
        original(self, index, image, **kwargs)
        writes["n"] += 1
        if writes["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(vio.FrameStore, "write", write_then_stop)
    code, _, _ = cli("--quiet", "style", source, style, *FAST, "-o", out)
    assert code == 130
    assert sorted(p.name for p in out.glob("*.png")) == names[:2]
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    stamps = {n: (out / n).stat().st_mtime_ns for n in names[:2]}
    monkeypatch.setattr(vio.FrameStore, "write", original)
    code, _, err = cli("--quiet", "style", source, style, *FAST, "-o", out)
    assert code == 0, err
    assert err.splitlines()[0] == f"dfi: resuming {out}: frames 1–2 of 5 are done, continuing from frame 3"
    assert sorted(p.name for p in out.iterdir()) == names  # the run's bookkeeping is gone too
    assert {n: (out / n).stat().st_mtime_ns for n in names[:2]} == stamps  # finished frames untouched
    with Image.open(out / names[0]) as im:
        assert im.size == (80, 64)  # the input's size
    # the same folder with other settings is refused, not mixed
    code, _, err = cli("--quiet", "style", source, style, *FAST[:-2], "--size", "32", "-o", out)
    assert code == 2 and "not empty" in err


@pytest.mark.parametrize("kind", ["corrupt", "empty", "sizes"])
def test_bad_videos_give_one_line_errors(tmp_path, cli, kind):
    style = _style_image(tmp_path / "s.png")
    if kind == "corrupt":
        source = tmp_path / "bad.mp4"
        source.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    else:
        source = tmp_path / "frames"
        source.mkdir()
        if kind == "sizes":
            Image.new("RGB", (40, 30)).save(source / "a.png")
            Image.new("RGB", (40, 32)).save(source / "b.png")
    code, _, err = cli("--quiet", "style", source, style, *FAST, "-o", tmp_path / "out.mp4")
    assert code == 1 and err.count("\n") == 1, err
    assert {"corrupt": "cannot be read as a video", "empty": "no frames", "sizes": "differ in size"}[kind] in err
    assert not (tmp_path / "out.mp4").exists() and not list(tmp_path.glob(".out.mp4*"))


def test_smoothed_landmarks_jitter_less_than_raw_ones():
    from dfi.video.face import smooth_landmarks

    rng = np.random.default_rng(0)
    t = np.arange(40)
    path = np.stack([100 + 2 * t, 80 + 0.5 * t], axis=1)[:, None, :] + [[0, 0], [40, 0], [20, 40]]
    raw = path + rng.normal(0, 1.5, path.shape)
    raw[[5, 6]] = np.nan  # frames where no face was found
    smooth = smooth_landmarks(raw)

    def jitter(points):
        return np.abs(np.diff(points, n=2, axis=0)).mean()
    assert np.isfinite(smooth).all()
    assert jitter(smooth) < 0.3 * jitter(np.where(np.isfinite(raw), raw, path))
    assert np.abs(smooth - path).mean() < np.abs(raw[np.isfinite(raw)] - path[np.isfinite(raw)]).mean()


def test_a_face_video_is_edited_frame_by_frame(synth_lfw, tmp_path, cli, write_video):
    from data_tools.index import load_index
    from dfi.core.image import read_image
    from tests.dfi.face.test_align import _place, _similarity

    result, index_file = synth_lfw
    index = load_index(index_file)
    row = int(np.flatnonzero((index.table["Smiling"] < -0.5).to_numpy())[0])
    face = read_image(index.image_path(row))
    frames = [_place(face, _similarity(0.02 * i, 1.0, 40 + 3 * i, 30), (320, 360), seed=1) for i in range(4)]
    source = tmp_path / "face.mp4"
    write_video(source, frames, audio=False)
    out = tmp_path / "edited.mp4"
    code, _, err = cli("--quiet", "edit", source, "--index", index_file, "--attribute", "smiling", "--alpha", "0.4",
                       "--weights", "untrained", "--device", "cpu", "--size", "32", "--k", "4",
                       "--iterations", "2", "-o", out)
    assert code == 0, err
    info = vio.probe(out)
    assert info.count == 4 and info.size == (320, 360)
    code, _, err = cli("--quiet", "edit", source, "--index", index_file,
                       "--attribute", "smiling", "--crop", "0,0,100,100", *FAST, "-o", tmp_path / "x.mp4")
    assert code == 2 and "--crop is for photos" in err


def test_a_face_video_with_a_decoder_fast_and_warm(synth_lfw, tmp_path, cli, write_video):
    """--fast: every frame one encode + decode (no optimisation); --decoder alone: the first
    frame starts from the decoded change, then L-BFGS as without one."""
    from data_tools.index import load_index
    from dfi.core.image import read_image
    from tests.dfi.face.test_align import _place, _similarity

    result, index_file = synth_lfw
    index = load_index(index_file)
    decoder = tmp_path / "dec.npz"
    code, _, err = cli("-q", "train-decoder", "--index", index_file, "-o", decoder, "--iterations", "1",
                       "--weights", "untrained", "--device", "cpu", "--size", "32", "--batch-size", "2",
                       "--width", "0.25")
    assert code == 0, err
    row = int(np.flatnonzero((index.table["Smiling"] < -0.5).to_numpy())[0])
    face = read_image(index.image_path(row))
    frames = [_place(face, _similarity(0.02 * i, 1.0, 40 + 3 * i, 30), (320, 360), seed=1) for i in range(3)]
    source = tmp_path / "face.mp4"
    write_video(source, frames, audio=False)
    common = ["--index", index_file, "--attribute", "smiling", "--alpha", "0.4", "--weights", "untrained",
              "--device", "cpu", "--size", "32", "--k", "4", "--decoder", decoder]
    outs = {}
    for name, extra in (("fast", ["--fast"]), ("zero", ["--iterations", "0"]), ("warm", ["--iterations", "2"])):
        outs[name] = tmp_path / f"{name}.mp4"
        code, _, err = cli("--quiet", "edit", source, *common, *extra, "-o", outs[name])
        assert code == 0, err
        assert vio.probe(outs[name]).count == 3
    fast = [f for _, f in zip(range(3), vio.read_frames(vio.probe(outs["fast"])))]
    warm = [f for _, f in zip(range(3), vio.read_frames(vio.probe(outs["warm"])))]
    zero = [f for _, f in zip(range(3), vio.read_frames(vio.probe(outs["zero"])))]
    assert all(np.array_equal(a, b) for a, b in zip(fast, zero))  # --iterations 0 is --fast
    assert fast[0].shape == frames[0].shape and np.abs(fast[0] - warm[0]).mean() > 0.1

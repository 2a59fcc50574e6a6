"""Shared fixtures: a synthetic LFW, a local HTTP server, GPU skipping."""
from __future__ import annotations

import http.server
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import dfi._compat  # noqa: F401  (NumPy 2 shim: before any test module imports chainer)

# tests/file_formats.py (writers of real formats) is imported by name from the test modules
sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(config, items):
    from dfi.core.backend import gpu_count

    has_gpu = gpu_count() > 0  # CuPy, a device, and Chainer's CUDA backend loaded
    skip = pytest.mark.skip(reason="needs CuPy, a CUDA device and Chainer's CUDA backend")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def synth_lfw(tmp_path_factory):
    """A small synthetic LFW (30 people) and its index, shared by the whole session."""
    from data_tools.index import build_index, save_index
    from data_tools.synth import make_synthetic_lfw

    root = tmp_path_factory.mktemp("synth")
    result = make_synthetic_lfw(root, n_people=30, seed=1)
    index = build_index(result.images_dir, result.attributes_file)
    save_index(index, root / "index.csv")
    return result, root / "index.csv"


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}  # path (with its query) -> bytes, or (bytes, content type)
    log: list = []
    cut_after: dict = {}  # path -> bytes to send once before dropping the connection

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        body = self.files.get(self.path)
        kind = "application/octet-stream"
        if isinstance(body, tuple):
            body, kind = body
        range_header = self.headers.get("Range")
        self.log.append((self.path, range_header))
        if body is None:
            self.send_error(404)
            return
        start = 0
        if range_header and range_header.startswith("bytes="):
            start = int(range_header[6:].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = self.cut_after.pop(self.path, None)
        if cut is not None:
            self.wfile.write(body[start:start + cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body[start:])


@pytest.fixture
def http_server():
    """Serve in-memory files on 127.0.0.1; returns (base_url, files, log, cut_after)."""
    handler = type("Handler", (_Handler,), {"files": {}, "log": [], "cut_after": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler.files, handler.log, handler.cut_after
    finally:
        server.shutdown()
        server.server_close()


def run_cli(argv, capsys):
    """Run ``dfi`` in-process; return (exit code, stdout, stderr)."""
    from dfi.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli(capsys):
    return lambda *argv: run_cli(argv, capsys)




def _cupy_or_skip():
    cupy = pytest.importorskip("cupy")
    return cupy


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def device(request):
    """Run a check body once on the CPU and once on a GPU (skipped without one)."""
    from dfi.core.backend import parse_device

    if request.param == "gpu":
        _cupy_or_skip()
    return parse_device(request.param)


@pytest.fixture(scope="session")
def tiny_net():
    """A narrow VGG-19 (same layers and pick API, 1/8 of the channels), seeded."""
    from dfi.nets.vgg import untrained_vgg19

    return untrained_vgg19(width=0.125, seed=0)


def _write_video(path, frames, *, rate=10, audio=True, pts=None):
    """An H.264 mp4 of CHW RGB frames (optionally at timestamps ``pts`` in ms, with a tone)."""
    import av
    from fractions import Fraction

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[2], frames[0].shape[1], "yuv420p"
        stream.options = {"crf": "10"}
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        sound = out.add_stream("aac", rate=8000) if audio else None
        for i, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(np.clip(frame.transpose(1, 2, 0), 0, 255).astype(np.uint8), "rgb24")
            if pts is not None:
                picture.pts, picture.time_base = pts[i], Fraction(1, 1000)
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if sound is not None:
            samples = (np.sin(np.arange(8000 * len(frames) // rate) * 0.05) * 0.3).astype(np.float32)[None]
            for start in range(0, samples.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(samples[:, start:start + 1024], format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = 8000, start
                for packet in sound.encode(chunk):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)


@pytest.fixture
def write_video():
    """``write_video(path, frames, rate=10, audio=True, pts=None)``: a small mp4 (needs PyAV)."""
    pytest.importorskip("av")
    return _write_video

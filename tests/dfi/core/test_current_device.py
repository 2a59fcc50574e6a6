"""``--device gpu:N`` works on GPU N: the chosen device is current wherever dfi works.

CuPy makes every new array and launches every kernel on the *current* device of the calling
thread (GPU 0 unless something made another one current); Chainer makes a device current
only while it copies an array there. Here a fake GPU stands in for ``@cupy:N``: it records
``use()`` per thread, and what it sends becomes a NumPy subclass that notes, for every array
made from it (each operation's result, view or copy), which fake device was current then.
An edit, a style run, a stylize, a training step and a batch worker's rows must make every
such array while device N is current.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest

import dfi._compat  # noqa: F401
import chainer

N = 3
_CURRENT = threading.local()  # the fake CUDA runtime's current device, per thread (0 at first)
WRONG: list = []  # (device current, shape) of arrays made while another device was current


def _current() -> int:
    return getattr(_CURRENT, "index", 0)


@contextlib.contextmanager
def _current_is(index: int):
    before, _CURRENT.index = _current(), index
    try:
        yield
    finally:
        _CURRENT.index = before


class OnDevice(np.ndarray):
    """An array "on a GPU": every array made from it notes the device current then."""

    def __array_finalize__(self, obj):
        if _current() != N and len(WRONG) < 20:
            WRONG.append((_current(), self.shape))


class FakeGpu(chainer.backend.CpuDevice):
    """``@cupy:N`` as Chainer's GpuDevice behaves: ``send`` copies onto device N (current
    only during the copy), ``use`` makes N current in the calling thread."""

    def __init__(self):
        super().__init__()
        self.used_in: set = set()

    @property
    def name(self):
        return f"@cupy:{N}"

    def __eq__(self, other):
        return isinstance(other, FakeGpu)

    __hash__ = chainer.backend.CpuDevice.__hash__

    def send_array(self, array):
        if isinstance(array, OnDevice):
            return array
        with _current_is(N):  # chainer's `with device:` around the copy
            return np.array(array, dtype=getattr(array, "dtype", None)).view(OnDevice)

    def use(self):
        self.used_in.add(threading.current_thread().name)
        _CURRENT.index = N

    def create_context(self):
        return _current_is(N)


@pytest.fixture
def gpu(monkeypatch):
    """``--device gpu:3`` parses to the fake GPU; each test starts with device 0 current."""
    import dfi.core.backend as backend

    fake = FakeGpu()
    monkeypatch.setattr(backend, "parse_device", lambda spec="auto": fake)
    WRONG.clear()
    _CURRENT.index = 0
    yield fake
    _CURRENT.index = 0


def _on_device_n(fake):
    assert fake.used_in, "device N was never made current"
    assert not WRONG, f"arrays made while GPU {WRONG[0][0]} was current, not GPU {N}: {WRONG[:5]}"


@pytest.fixture(scope="module")
def face(synth_lfw):
    from data_tools.index import load_index

    result, index_file = synth_lfw
    row = load_index(index_file).table.iloc[0]
    return f"{row['person']}/{int(row['imagenum'])}", index_file


RUN = ["--weights", "untrained", "--device", f"gpu:{N}", "--iterations", "2"]


def test_an_edit_works_on_the_chosen_gpu(gpu, face, tmp_path, cli):
    spec, index_file = face
    code, _, err = cli("-q", "sweep", spec, "--index", index_file, "--attribute", "smiling", "--alphas", "0.3",
                       "--size", "32", "--k", "2", *RUN, "-o", tmp_path / "g.png")
    assert code == 0, err
    _on_device_n(gpu)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    from data_tools.synth import make_style_image

    root = tmp_path_factory.mktemp("pictures")
    make_style_image((32, 32), kind="strokes").save(root / "style.png")
    make_style_image((36, 32), kind="mosaic").save(root / "content.png")
    (root / "content").mkdir()
    make_style_image((40, 40), kind="waves").save(root / "content" / "c.png")
    return root


def test_a_style_run_works_on_the_chosen_gpu(gpu, pictures, tmp_path, cli):
    code, _, err = cli("-q", "style", pictures / "content.png", pictures / "style.png", "--size", "32", *RUN,
                       "-o", tmp_path / "s.png")
    assert code == 0, err
    _on_device_n(gpu)


def test_training_and_stylizing_work_on_the_chosen_gpu(gpu, pictures, tmp_path, cli):
    model = tmp_path / "m.npz"
    code, _, err = cli("-q", "train-stylizer", "--style", pictures / "style.png", "--content", pictures / "content",
                       "--size", "32", "--batch-size", "1", "--width", "0.25", *RUN, "-o", model)
    assert code == 0, err
    _on_device_n(gpu)
    gpu.used_in.clear()
    code, _, err = cli("-q", "stylize", pictures / "content.png", "--model", model, "--style", "0",
                       "--device", f"gpu:{N}", "-o", tmp_path / "out.png")
    assert code == 0, err
    _on_device_n(gpu)


def test_the_library_makes_its_device_current_for_each_call(gpu, pictures, tiny_net):
    """Stylizer and Trainer, called from a thread where another device is current."""
    from dfi.nets.stylizer import TransformNet
    from dfi.style.feedforward import Stylizer, Trainer, content_images, style_images
    from dfi.style.settings import TrainConfig

    net = TransformNet(1, width=0.25)
    model = Stylizer(net, device=gpu)
    assert model.stylize(np.full((3, 20, 20), 128, np.float32), style=0).shape == (3, 20, 20)
    vgg = type(tiny_net)(tiny_net.params, pooling=tiny_net.pooling).to_device(gpu)
    config = TrainConfig(size=32, batch_size=1, iterations=1, seed=0)
    transform = TransformNet(1, width=0.25)
    transform.to_device(gpu)
    trainer = Trainer(vgg, transform, style_images([pictures / "style.png"], 32),
                      content_images(pictures / "content"), config)
    assert [step.step for step in trainer.run(1)] == [1]
    assert not gpu.used_in  # nothing was left current: each call entered and left the device
    assert not WRONG, f"arrays made while GPU {WRONG[0][0]} was current: {WRONG[:5]}"


def test_a_batch_worker_makes_the_device_current_in_each_task_thread(gpu):
    """Dask runs each task in an executor thread: the cached VGG's device is made current
    in whichever thread asks for it, the first time and every later time."""
    from dfi.batch import cluster

    cluster._LOCAL_CACHE.clear()
    seen = []

    def task():
        cluster.cached_vgg("untrained", f"gpu:{N}", 0, None)
        seen.append(_current())

    for _ in range(2):
        thread = threading.Thread(target=task)
        thread.start()
        thread.join()
    cluster._LOCAL_CACHE.clear()
    assert seen == [N, N] and len(gpu.used_in) == 2


def test_the_pages_editor_works_on_the_chosen_gpu_in_any_thread(gpu, face, pictures, tmp_path, monkeypatch):
    """Gradio answers each request in a worker thread of its own, where GPU 0 is current:
    the fast edit, the sweep, the refined α and a Gatys style all work on device N there.
    (The stand-in's arrays are NumPy's, so the kernels would hand NumPy-only pieces to their
    helper threads, which a GPU's arrays never take: one thread here.)"""
    import dfi.core.reconstruct as reconstruct
    from dfi.app.editor import Editor
    from dfi.nets import threads
    from dfi.edit.decoding import inference_decoder
    from dfi.edit.settings import EditConfig, reconstruct_config
    from dfi.nets.decoder import Decoder, dfi_spec
    from dfi.nets.vgg import untrained_vgg19
    from data_tools.index import load_index

    monkeypatch.setattr(threads, "thread_count", lambda: 1)
    monkeypatch.setattr(reconstruct, "device_of", lambda x: gpu)  # (Chainer takes the stand-in's arrays for NumPy's)
    spec, index_file = face
    net = untrained_vgg19(width=0.25).to_device(gpu)
    channels = {name: w.shape[0] for name, (w, _) in net.params.items()}
    config = EditConfig(k=2, size=32, reconstruct=reconstruct_config(iterations=2))
    editors = [Editor(net, config, load_index(index_file), uploads=tmp_path, decoder=decoder)
               for decoder in (inference_decoder(Decoder(dfi_spec(channels, width=0.25)), net, config.layers), None)]
    how, failed = [], []

    def request(run):
        try:
            how.append(getattr(run(), "how", "styled"))  # (a style is a plain image)
        except Exception as exc:  # (a worker thread's error, reported below)
            failed.append(repr(exc))
    content, style = str(pictures / "content.png"), str(pictures / "style.png")
    for run in (lambda: editors[0].edit(None, spec, "smiling", 0.3),
                lambda: editors[0].refine(None, spec, "smiling", 0.3),
                lambda: editors[1].edit(None, spec, "smiling", 0.3),
                lambda: editors[1].style(content, [style], "gatys")):
        thread = threading.Thread(target=request, args=(run,))
        thread.start()
        thread.join()
    assert not failed and how == ["fast", "refined", "sweep", "styled"], failed
    assert not WRONG, f"arrays made while GPU {WRONG[0][0]} was current: {WRONG[:5]}"


def test_the_edit_pipeline_makes_its_device_current_for_each_call(gpu, face, tmp_path, monkeypatch):
    """A library user's thread, where GPU 0 is current: the attribute vector, a sweep's
    setup (the face's features, the targets, the decoded starts and their shares) before
    the optimiser's loop, and ``Decoder.decode`` work on device N."""
    import dfi.core.reconstruct as reconstruct
    from dfi.app.editor import Editor
    from dfi.edit.pipeline import sweep
    from dfi.edit.settings import EditConfig, reconstruct_config
    from dfi.nets import threads
    from dfi.nets.decoder import Decoder, dfi_spec
    from dfi.nets.features import extract
    from dfi.nets.vgg import untrained_vgg19
    from data_tools.index import load_index

    monkeypatch.setattr(threads, "thread_count", lambda: 1)  # (as above)
    monkeypatch.setattr(reconstruct, "device_of", lambda x: gpu)  # (Chainer takes the stand-in's arrays for NumPy's)
    spec, index_file = face
    net = untrained_vgg19(width=0.25).to_device(gpu)
    decoder = Decoder(dfi_spec({name: w.shape[0] for name, (w, _) in net.params.items()}, width=0.25))
    config = EditConfig(k=2, size=32, reconstruct=reconstruct_config(iterations=2))
    faces = Editor(net, config, load_index(index_file), uploads=tmp_path)  # (its face and vector caches only)
    on_gpu = Decoder(decoder.spec)
    on_gpu.to_device(gpu)
    done = []

    def work():
        key, one = faces.face(None, spec)
        vector = faces.vector(key, one, "smiling")
        done.append(len(list(sweep(net, one, [vector], [0.3], config, decoder=decoder, fast=True))))
        done.append(len(list(sweep(net, one, [vector], [0.3], config, decoder=decoder))))
        done.append(on_gpu.decode(extract(net, gpu.send(one.working[None]), config.layers)).shape[0])
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert done == [1, 2, 1] and not gpu.used_in
    assert not WRONG, f"arrays made while GPU {WRONG[0][0]} was current: {WRONG[:5]}"


@pytest.mark.gpu
def test_on_a_real_second_gpu_every_array_of_an_edit_is_there(face, tmp_path, cli):
    """With two or more GPUs: an edit on the last one leaves its output arrays there and
    needs no peer access (CuPy warns or fails when a kernel reads another device's memory)."""
    import warnings

    import cupy

    from dfi.core.backend import gpu_count

    if gpu_count() < 2:
        pytest.skip("needs two GPUs")
    spec, index_file = face
    last = gpu_count() - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", cupy._util.PerformanceWarning)
        code, _, err = cli("-q", "sweep", spec, "--index", index_file, "--attribute", "smiling", "--alphas", "0.3",
                           "--size", "32", "--k", "2", "--weights", "untrained", "--device", f"gpu:{last}",
                           "--iterations", "2", "-o", tmp_path / "g.png")
    assert code == 0, err
    assert cupy.cuda.Device().id == last  # the CLI left the chosen device current

"""``dfi app`` served for real on 127.0.0.1: driven through gradio_client and in headless
Chromium (Selenium), with the synthetic LFW, the untrained network and a tiny decoder."""
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import importlib.util

if importlib.util.find_spec("gradio") is None:  # (found, not imported: dfi app imports it itself)
    pytest.skip("the app extra (Gradio) is not installed", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(index_file, decoder, **extra):
    from dfi.cli.main import build_parser

    argv = ["app", "--index", str(index_file), "--weights", "untrained", "--device", "cpu", "--size", "32",
            "--k", "4", "--iterations", "2", "--port", str(_free_port())]
    if decoder is not None:
        argv += ["--decoder", str(decoder)]
    args = build_parser().parse_args(argv)
    for key, value in extra.items():
        setattr(args, key, value)
    return args


@pytest.fixture(scope="module")
def decoder(synth_lfw, tmp_path_factory):
    from dfi.cli import main

    _, index_file = synth_lfw
    out = tmp_path_factory.mktemp("app") / "dec.npz"
    assert main([str(a) for a in ["-q", "train-decoder", "--index", index_file, "-o", out, "--iterations", "1",
                                  "--weights", "untrained", "--device", "cpu", "--size", "32", "--batch-size",
                                  "2", "--width", "0.25"]]) == 0
    return out


@pytest.fixture(scope="module")
def server(synth_lfw, decoder):
    from dfi.cli.app import serve

    _, index_file = synth_lfw
    page, url, stop = serve(_args(index_file, decoder), block=False)
    yield url
    stop()


@pytest.fixture(scope="module")
def face(synth_lfw):
    from data_tools.index import load_index

    _, index_file = synth_lfw
    index = load_index(index_file)
    row = int(np.flatnonzero((index.table["Smiling"] < -0.5).to_numpy())[0])
    return index.image_path(row)


def test_the_api_edits_a_face_in_one_pass_and_names_its_operations(server, face):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/edit", "/sweep", "/style"} <= names
    path, note = client.predict(handle_file(str(face)), None, "Smiling", 0.4, 1, api_name="/edit")
    edited = np.asarray(Image.open(path).convert("RGB"), dtype=float)
    original = np.asarray(Image.open(face).convert("RGB"), dtype=float)
    assert note.startswith("fast edit at α 0.4") and edited.shape == original.shape
    assert np.abs(edited - original).mean() > 0.2
    again, _ = client.predict(handle_file(str(face)), None, "Smiling", 0.1, 1, api_name="/edit")
    assert np.abs(np.asarray(Image.open(again).convert("RGB"), dtype=float) - edited).mean() > 0.05
    with pytest.raises(Exception, match="did you mean"):
        client.predict(handle_file(str(face)), None, "smilling", 0.4, 1, api_name="/edit")
    path, _ = client.predict(handle_file(str(face)), None, "Smiling", 0.4, 1, api_name="/edit")  # still serving
    assert Path(path).is_file()


def test_without_a_decoder_the_sweep_is_computed_once(synth_lfw, face):
    from dfi.app.editor import ALPHAS
    from dfi.cli.app import serve
    from gradio_client import Client, handle_file

    _, index_file = synth_lfw
    page, url, stop = serve(_args(index_file, None), block=False)
    try:
        client = Client(url, verbose=False)
        runs, run = [], stop.editor._run
        stop.editor._run = lambda *a, **k: runs.append(a[2]) or run(*a, **k)  # count the optimisations
        _, note = client.predict(handle_file(str(face)), None, "Smiling", 0.33, 1, api_name="/edit")
        assert note == "sweep edit at α 0.3 (the nearest computed α)"
        _, note = client.predict(handle_file(str(face)), None, "Smiling", 0.5, 1, api_name="/edit")
        assert note.startswith("sweep edit at α 0.5")
        rows = client.predict(handle_file(str(face)), None, "Smiling", 1, api_name="/sweep")
        assert len(rows) == len(ALPHAS) and runs == [ALPHAS]  # one sweep served all three
        assert stop.folder.is_dir() and oct(stop.folder.stat().st_mode & 0o777) == "0o700"
    finally:
        stop()
    assert not stop.folder.exists()  # the private upload folder goes with the server


def _browser():
    from dfi.app import browser

    if not browser.available():
        pytest.skip(f"no browser: install Debian's chromium and chromium-driver ({browser.INSTALL}) to run the "
                    "page in a real browser")
    return browser.headless()


def test_in_a_real_browser_the_slider_edits_the_uploaded_face(server, face):
    from dfi.app import browser

    driver = _browser()
    try:
        wait = browser.open_page(driver, server)
        browser.edit_face(driver, wait, face, "Smiling")  # (it waits for the detected face)
        browser.move_slider(driver, "alpha", 0.45)
        wait.until(lambda d: browser.image_pixels(d, "result") is not None)
        first = browser.image_pixels(driver, "result")
        original = np.asarray(Image.open(face).convert("RGB"), dtype=float)
        assert first.shape == original.shape and np.abs(first - original).mean() > 0.2
        browser.move_slider(driver, "alpha", 0.1)
        wait.until(lambda d: (p := browser.image_pixels(d, "result")) is not None and np.abs(p - first).mean() > 0.05)
    finally:
        driver.quit()


def test_in_a_real_browser_a_bad_upload_is_one_line_and_the_server_goes_on(server, face, tmp_path):
    from selenium.webdriver.common.by import By

    from dfi.app import browser

    bad = tmp_path / "not_an_image.png"
    bad.write_text("this is text, not a picture\n")
    driver = _browser()
    try:
        wait = browser.open_page(driver, server)
        browser.upload(driver, "photo", bad)
        browser.move_slider(driver, "alpha", 0.3)
        wait.until(lambda d: any("cannot be read as an image" in e.text
                                 for e in d.find_elements(By.CSS_SELECTOR, ".toast-message-text")))
        texts = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".toast-message-text") if e.text]
        assert all("\n" not in t and t.startswith("image not_an_image.png: cannot be read as an image")
                   for t in texts), texts
    finally:
        driver.quit()
    from gradio_client import Client, handle_file
    path, _ = Client(server, verbose=False).predict(handle_file(str(face)), None, "Smiling", 0.4, 1, api_name="/edit")
    assert Path(path).is_file()


def test_refine_optimises_and_reports_progress(server, face):
    from gradio_client import Client, handle_file

    path, note = Client(server, verbose=False).predict(handle_file(str(face)), None, "Smiling", 0.4, 1,
                                                       api_name="/refine")
    assert note.startswith("refined at α 0.4 (") and Path(path).is_file()


def test_the_editor_reports_each_iteration(synth_lfw, face, tmp_path):
    from dfi.app.editor import Editor
    from dfi.cli.app import _settings
    from dfi.nets.vgg import untrained_vgg19

    _, index_file = synth_lfw
    args = _args(index_file, None)
    config, index = _settings(args)
    seen = []
    editor = Editor(untrained_vgg19(width=0.25), config, index, uploads=tmp_path)
    result = editor.refine(str(face), None, "Smiling", 0.3, progress=seen.append)
    assert result.how == "refined" and seen and seen == sorted(seen) and 0 < seen[-1] <= 1


def test_the_style_tab_runs_gatys_wct_and_a_models_styles(synth_lfw, tmp_path, face):
    from file_formats import magenta_tensors, write_tf_checkpoint
    from gradio_client import Client, handle_file

    from dfi.cli import main
    from dfi.cli.app import serve

    result, index_file = synth_lfw
    write_tf_checkpoint(tmp_path / "m.ckpt", magenta_tensors(n_styles=2))
    assert main(["weights", "convert", str(tmp_path / "m.ckpt"), "-o", str(tmp_path / "m.npz")]) == 0
    level = tmp_path / "conv1_1.npz"
    assert main([str(a) for a in ["-q", "train-decoder", "--images", result.images_dir, "--layers", "conv1_1", "-o",
                                  level, "--iterations", "1", "--weights", "untrained", "--device", "cpu",
                                  "--size", "32", "--batch-size", "2", "--width", "0.25"]]) == 0
    page, url, stop = serve(_args(index_file, None, model=str(tmp_path / "m.npz"), wct_decoder=[level]), block=False)
    try:
        client = Client(url, verbose=False)
        style = handle_file(str(face))
        for method in ("gatys", "wct", "model: 1 style 1"):
            path = client.predict(handle_file(str(face)), [style, style], method, 0.8, "none", "3,1", api_name="/style")
            picture = np.asarray(Image.open(path).convert("RGB"))
            assert max(picture.shape[:2]) == 32 and picture.std() > 1, method
        with pytest.raises(Exception, match="style weights"):
            client.predict(handle_file(str(face)), [style], "gatys", 1.0, "none", "a,b", api_name="/style")
    finally:
        stop()

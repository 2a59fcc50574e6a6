"""The notebooks run, the command reference matches the parser, the gallery script works."""
import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_three_notebooks_committed_without_outputs():
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_attribute_vectors.ipynb",
                                           "03_style.ipynb"]
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("DFI_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("DFI_NOTEBOOK_DIR", str(tmp_path / "data"))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # the last cell shows a picture
    assert any("image/png" in o.get("data", {}) for o in notebook.cells[-1].outputs)


def test_command_reference_is_generated_from_the_parser():
    make_docs = _script("make_docs")
    assert make_docs.main(["--check"]) == 0, "run: python scripts/make_docs.py"
    text = make_docs.render()
    for command in ("dfi data synth", "dfi sweep", "dfi style", "dfi invert", "dfi weights convert"):
        assert f"## `{command}`" in text


@pytest.mark.slow
def test_gallery_script_renders_every_picture(tmp_path):
    gallery = _script("gallery")
    assert gallery.main(["--quick", "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["inversion.png", "photo_edit.png", "senior_sweep.png", "smile_sweep.png",
                     "style_modes.png", "stylizer.png", "texture.png", "video.gif"]
    with Image.open(tmp_path / "style_modes.png") as im:
        assert im.size == (6 * 32 + 5 * 4, 32)  # content, style and four colour modes
    with Image.open(tmp_path / "stylizer.png") as im:
        assert im.size == (6 * 32 + 5 * 4, 32)  # content, two styles, each style, a mix

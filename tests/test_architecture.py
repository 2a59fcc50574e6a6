"""The package's shape: imports run one way, no module is too long, dfi/ keeps only entry points."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 450

#: what each part of dfi may import from dfi (besides itself); see docs/architecture.md
ALLOWED = {
    "_compat": set(),
    "core": {"_compat"},
    "nets": {"_compat", "core"},
    "face": {"_compat", "core"},
    "edit": {"_compat", "core", "nets", "face"},
    "style": {"_compat", "core", "nets"},
    "video": {"_compat", "core", "nets", "face", "edit", "style"},
    "batch": {"_compat", "core", "nets", "face", "edit", "style", "video"},
    "app": {"_compat", "core", "nets", "face", "edit", "style"},
    "cli": {"_compat", "core", "nets", "face", "edit", "style", "video", "batch", "app", "cli"},
}


def _modules(package: str):
    return sorted((ROOT / package).rglob("*.py"))


def _part(path: Path) -> str:
    """The part of dfi a file belongs to: its subpackage, or its module name at the top."""
    rel = path.relative_to(ROOT / "dfi").parts
    return rel[0] if len(rel) > 1 else Path(rel[0]).stem


def _imports(source: str, package: str):
    """Absolute dotted names of every import in ``source`` (function-level ones too), for a
    module of ``package``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                module = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                module = node.module
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def _file_imports(path: Path):
    return _imports(path.read_text(), ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1]))


def _wrong_imports(part: str, names) -> list[str]:
    allowed = ALLOWED[part] | {part}
    return [name for name in names
            if name.startswith("dfi.") and name.split(".")[1] in ALLOWED and name.split(".")[1] not in allowed]


def test_imports_run_one_way():
    wrong = []
    for path in _modules("dfi"):
        part = _part(path)
        if part not in ("__init__", "__main__"):
            wrong += [f"{path.relative_to(ROOT)} imports {name}"
                      for name in _wrong_imports(part, _file_imports(path))]
    assert not wrong, "\n".join(wrong)


def test_data_tools_never_imports_chainer_or_dfi():
    for path in _modules("data_tools"):
        names = {name.split(".")[0] for name in _file_imports(path)}
        assert not names & {"chainer", "cupy", "dfi"}, path


def test_help_and_usage_errors_load_no_network_stack():
    """Building the parser (``dfi --help``, a usage error) loads no Chainer, CuPy, OpenCV or
    PyAV: the defaults it shows come from the settings modules."""
    import subprocess
    import sys

    code = ("import sys; from dfi.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('chainer', 'cupy', 'cv2', 'av', 'dask', 'zarr') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_edit_and_sweep_refuse_bad_settings_before_loading_chainer(tmp_path):
    """An α out of range, --attribute without --index, a bad --size: answered (exit 2)
    before Chainer loads, so in a fraction of a second."""
    import os
    import subprocess
    import sys

    runs = [["sweep", "face.png", "-o", "out.png", "--alphas", "0.2,20", "--attribute", "smiling"],
            ["edit", "face.png", "-o", "out.png", "--alpha", "0.4", "--attribute", "smiling"],
            ["edit", "face.png", "-o", "out.png", "--alpha", "0.4", "--vector", "w.npz", "--size", "8"]]
    (tmp_path / "w.npz").write_bytes(b"")
    code = ("import sys; from dfi.cli.main import main\n"
            f"codes = [main(args) for args in {runs!r}]\n"
            "print(codes, sorted(m for m in ('chainer', 'cupy', 'cv2', 'av') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.strip() == "[2, 2, 2] []", done.stdout + done.stderr
    assert "alpha 20.0 is out of range" in done.stderr and "--attribute needs --index" in done.stderr
    assert "--size 8 must be between" in done.stderr


def test_no_module_is_too_long():
    long = {str(p.relative_to(ROOT)): n for p in _modules("dfi") + _modules("data_tools")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long


def test_dfi_keeps_only_entry_points_at_the_top():
    top = sorted(p.name for p in (ROOT / "dfi").glob("*.py"))
    assert len(top) <= 6, top
    subpackages = [p for p in (ROOT / "dfi").iterdir() if (p / "__init__.py").is_file()]
    assert len(subpackages) >= 5
    for package in subpackages:  # each says what it owns and what may import it
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc and "May import" in doc and "never" in doc, package.name


@pytest.mark.parametrize("source, part", [("def f():\n    from ..cli import main\n", "core"),
                                          ("from dfi.edit.pipeline import sweep\n", "nets"),
                                          ("from ..style import gatys\n", "edit")])
def test_the_direction_check_finds_a_wrong_import(source, part):
    assert _wrong_imports(part, _imports(source, f"dfi.{part}"))

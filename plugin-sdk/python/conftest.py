"""pytest set-up for warren_plugin: the bindings componentize-py generates from
warren's WIT (world `plugin`), importable in plain CPython, on sys.path.

Run from the repository: target/examples-venv/bin/python -m pytest plugin-sdk/python
(the venv plugins/examples/build makes has componentize-py and pytest)."""

import pathlib
import shutil
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
WIT = HERE.parent / "wit"
_made = []


def generate(world: str) -> pathlib.Path:
    """Generates the Python bindings of `world` into a new folder and returns it."""
    tool = shutil.which("componentize-py") or str(pathlib.Path(sys.executable).parent / "componentize-py")
    out = pathlib.Path(tempfile.mkdtemp(prefix=f"warren-bindings-{world}-"))
    _made.append(out)
    subprocess.run([tool, "-d", str(WIT), "-w", world, "bindings", str(out / "b")],
                   check=True, capture_output=True)
    return out / "b"


def pytest_configure(config):
    sys.path[:0] = [str(generate("plugin")), str(HERE)]


def pytest_unconfigure(config):
    for folder in _made:
        shutil.rmtree(folder, ignore_errors=True)

"""The QGIS plugin runs in QGIS's own Python, which is 3.8 in some QGIS 3.22 builds (its
``qgisMinimumVersion``): every module compiles there, and the runner, which needs no QGIS, imports
(it used ``functools.cache``, Python 3.9+, and the plugin failed to load)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

PLUGIN = REPO / "qgis_plugin"

CHECK = """
import pathlib, sys
sys.path.insert(0, sys.argv[1])
for path in sorted(pathlib.Path(sys.argv[1], "geosr_processing").glob("*.py")):
    compile(path.read_text(encoding="utf-8"), str(path), "exec")
import geosr_processing.runner
print("ok", sys.version_info[:2])
"""


def _python(version: str) -> str | None:
    """A Python ``version`` interpreter that runs: on the PATH, or installed by pyenv (whose shims fail for
    versions not selected)."""
    found = [shutil.which(f"python{version}"), *map(str, Path.home().glob(f".pyenv/versions/{version}.*/bin/python"))]
    for python in filter(None, found):
        ran = subprocess.run([python, "-c", "pass"], capture_output=True, timeout=60)
        if ran.returncode == 0:
            return python
    return None


@pytest.mark.parametrize("version", ["3.8", "3.9"])
def test_the_plugin_compiles_and_its_runner_imports_on_old_pythons(version):
    python = _python(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine")
    done = subprocess.run([python, "-B", "-c", CHECK, str(PLUGIN)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")

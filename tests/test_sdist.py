"""The source distribution holds what its tests need: the suite, its conftest and QGIS tests, the plugin,
notebooks, examples, benchmark scripts, dev constraints and the Makefile (it held only tests/test_*.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile

import pytest
from conftest import REPO

NEEDED = ["tests", "qgis_plugin", "notebooks", "examples", "benchmarks", "requirements", ".ci", "Makefile", "geosr"]


def _files(*args: str) -> list[str]:
    return subprocess.run(
        ["git", "ls-files", *args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout")
def test_the_sdist_holds_every_tracked_file_its_tests_need(tmp_path):
    needed = {path for path in _files(*NEEDED) if not path.startswith("benchmarks/candidates/")}
    assert "tests/conftest.py" in needed and "Makefile" in needed
    # built from a copy of the checkout's files, as from a clean clone: setuptools also packs whatever a
    # SOURCES.txt left in the checkout by an earlier build lists
    source = tmp_path / "source"
    for path in _files() + _files("--others", "--exclude-standard"):
        if (REPO / path).is_file():
            (source / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / path, source / path)
    built = subprocess.run(
        [sys.executable, "-c", f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path)!r}))"],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    name = built.stdout.split()[-1]
    with tarfile.open(tmp_path / name) as sdist:
        inside = {member.name.split("/", 1)[1] for member in sdist.getmembers() if member.isfile()}
    assert not needed - inside, sorted(needed - inside)[:10]
    # the candidate weights (5 MB) stay out, and no cache or statistics file gets in
    assert not any(p.startswith("benchmarks/candidates/") or "__pycache__" in p or p.endswith(".pyc") for p in inside)

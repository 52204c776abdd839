"""Fixtures for the QGIS plugin tests: a headless QGIS with the plugin loaded, geosr, tiny models.

Test modules load them with ``pytest_plugins = ["plugin_fixtures"]``; this folder has no
``conftest.py`` because pytest would import it under the same module name as ``tests/conftest.py``.

The QGIS tests run in the Python that has QGIS (Debian: ``/usr/bin/python3`` with ``python3-qgis``),
usually without torch or geosr: geosr runs as the executable in ``GEOSR_EXECUTABLE`` (default
``.venv/bin/geosr``), and test models are made by the ``python`` beside it. ``make test-qgis`` runs
them with ``--confcutdir=tests/qgis`` so that ``tests/conftest.py`` (which needs torch) is not
loaded. QGIS is imported only inside fixtures, so ``test_runner.py`` also runs in geosr's own
environment (``make test``), where the QGIS tests skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def jacksboro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the bundled real DEM (SRTM 3 arc-seconds, 403 x 344 px, int16 metres, EPSG:4326).

    A copy, because QGIS saves statistics in a ``.aux.xml`` file beside the rasters it opens.
    """
    return Path(shutil.copy(REPO / "examples" / "jacksboro_fault_dem.tif", tmp_path_factory.mktemp("input")))


@pytest.fixture(scope="session")
def plugin_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin as a user installs it: the zip ``make plugin`` builds, extracted (what ``QGIS_PLUGINPATH`` names)."""
    from build_zip import build

    folder = tmp_path_factory.mktemp("plugins")
    with zipfile.ZipFile(build(tmp_path_factory.mktemp("dist"))) as archive:
        archive.extractall(folder)
    return folder


@pytest.fixture(scope="session")
def geosr_executable() -> Path:
    """The geosr command line the plugin runs: ``$GEOSR_EXECUTABLE``, else the dev venv's."""
    path = Path(os.environ.get("GEOSR_EXECUTABLE") or REPO / ".venv" / "bin" / "geosr")
    if not path.is_file():
        pytest.fail(f"no geosr executable at {path}: run `make setup` or set GEOSR_EXECUTABLE")
    return path


@pytest.fixture(scope="session")
def make_model(geosr_executable: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``make_model(depth, width)``: a random VDSR file made by geosr's own Python (torch may not import here)."""
    folder = tmp_path_factory.mktemp("models")
    python = geosr_executable.with_name("python")

    def make(depth: int, width: int) -> Path:
        path = folder / f"random_d{depth}_w{width}.safetensors"
        if not path.exists():
            code = f"from geosr.testing import random_model; random_model({str(path)!r}, depth={depth}, width={width})"
            subprocess.run([str(python), "-c", code], check=True, timeout=300)
        return path

    return make


@pytest.fixture(scope="session")
def tiny_model(make_model: Any) -> Path:
    """A 1-band random VDSR of depth 4 and width 8: fast, right for checking the plumbing."""
    return make_model(4, 8)


@pytest.fixture(scope="session")
def qgis_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway QGIS profile for this process and the ``qgis_process`` it starts: no user setting leaks in."""
    profile = tmp_path_factory.mktemp("qgis-profile")
    os.environ["XDG_DATA_HOME"] = str(profile / "data")
    os.environ["XDG_CONFIG_HOME"] = str(profile / "config")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    return profile


@pytest.fixture(scope="session")
def qgis_app(qgis_profile: Path) -> Iterator[Any]:
    """A headless QGIS with Processing and the plugin (through its ``classFactory``) loaded."""
    from qgis.core import QgsApplication

    QgsApplication.setPrefixPath(os.environ.get("QGIS_PREFIX_PATH", "/usr"), True)
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append(os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
    from processing.core.Processing import Processing

    Processing.initialize()
    import geosr_processing

    plugin = geosr_processing.classFactory(None)
    plugin.initProcessing()
    yield app
    plugin.unload()
    app.exitQgis()


@pytest.fixture
def processing(qgis_app: Any, geosr_executable: Path) -> Iterator[Any]:
    """QGIS's ``processing`` module, with the geosr executable set in the provider's Processing setting."""
    import processing as qgis_processing
    from geosr_processing.algorithm import EXECUTABLE_SETTING
    from processing.core.ProcessingConfig import ProcessingConfig

    ProcessingConfig.setSettingValue(EXECUTABLE_SETTING, str(geosr_executable))
    yield qgis_processing
    ProcessingConfig.setSettingValue(EXECUTABLE_SETTING, "")


@pytest.fixture
def warnings_feedback() -> Any:
    """A QgsProcessingFeedback that keeps the warnings pushed to it (``.warnings``), for processing.run."""
    pytest.importorskip("qgis.core", reason="QGIS's Python bindings are not importable here: run `make test-qgis`")
    from qgis.core import QgsProcessingFeedback

    class Feedback(QgsProcessingFeedback):
        def __init__(self) -> None:
            super().__init__()
            self.warnings: list[str] = []

        def pushWarning(self, warning: str) -> None:  # noqa: N802
            self.warnings.append(warning)
            super().pushWarning(warning)

    return Feedback()


def qgis_process_program() -> str:
    """The qgis_process program. Debian's ``qgis_process`` wrapper passes ``--noversioncheck`` (from
    /etc/default/qgis), which qgis_process 3.22 rejects, so its ``qgis_process.bin`` is called directly."""
    found = shutil.which("qgis_process.bin") or shutil.which("qgis_process")
    if found is None:
        pytest.fail("qgis_process is not installed (Debian: apt-get install qgis)")
    return found


@pytest.fixture
def run_qgis_process(plugin_folder: Path, geosr_executable: Path, tmp_path: Path) -> Any:
    """A function running ``qgis_process ARGUMENTS`` with the plugin and geosr found, in a QGIS profile of its
    own (``plugins enable`` fails for a plugin already enabled in the session's profile) and outside geosr's
    virtualenv: run from an activated one, qgis_process starts its Python from the venv's and crashes (SIGSEGV),
    so it must see the system's, as a user's shell outside the venv does."""
    env = dict(os.environ, QGIS_PLUGINPATH=str(plugin_folder), GEOSR_EXECUTABLE=str(geosr_executable))
    env.update(XDG_DATA_HOME=str(tmp_path / "profile" / "data"), XDG_CONFIG_HOME=str(tmp_path / "profile" / "config"))
    venv = env.pop("VIRTUAL_ENV", None)
    for name in ("PYTHONHOME", "PYTHONPATH"):
        env.pop(name, None)
    if venv:
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(venv))

    def call(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [qgis_process_program(), *arguments], capture_output=True, text=True, env=env, timeout=300
        )

    return call

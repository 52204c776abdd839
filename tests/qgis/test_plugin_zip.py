"""The installable plugin zip (``make plugin``): one ``geosr_processing/`` folder, no Python caches."""

from __future__ import annotations

import configparser
import zipfile

from build_zip import PLUGIN, build


def test_zip_holds_the_plugin_folder_and_nothing_else(tmp_path):
    (PLUGIN / "__pycache__").mkdir(exist_ok=True)  # as left by any test run
    metadata = configparser.ConfigParser()
    metadata.read(PLUGIN / "metadata.txt", encoding="utf-8")
    archive = build(tmp_path / "dist")
    assert archive == tmp_path / "dist" / f"geosr_processing-{metadata['general']['version']}.zip"
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        assert zipped.testzip() is None
    expected = ["__init__.py", "algorithm.py", "icon.svg", "metadata.txt", "plugin.py", "provider.py", "runner.py"]
    # QGIS's plugin repository requires the licence inside the plugin folder
    assert names == {f"geosr_processing/{name}" for name in [*expected, "LICENSE"]}
    with zipfile.ZipFile(archive) as zipped:
        assert zipped.read("geosr_processing/LICENSE").decode().startswith("MIT License")
    assert metadata["general"]["license"] == "MIT"

"""Build the plugin zip that QGIS installs (Plugins > Manage and Install Plugins > Install from ZIP).

``python qgis_plugin/build_zip.py [FOLDER]`` writes ``FOLDER/geosr_processing-<version>.zip`` (default
folder ``dist``) holding the ``geosr_processing/`` folder without Python caches, with the repository's
LICENSE inside it (QGIS's plugin repository requires one), and prints its path.
"""

from __future__ import annotations

import configparser
import sys
import zipfile
from pathlib import Path

PLUGIN = Path(__file__).resolve().with_name("geosr_processing")
LICENSE = PLUGIN.parent.parent / "LICENSE"


def build(folder: str | Path = "dist") -> Path:
    """Write the plugin zip into ``folder`` (created if needed) and return its path."""
    metadata = configparser.ConfigParser()
    metadata.read(PLUGIN / "metadata.txt", encoding="utf-8")
    archive = Path(folder) / f"{PLUGIN.name}-{metadata['general']['version']}.zip"
    archive.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in PLUGIN.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in files:
            zipped.write(path, path.relative_to(PLUGIN.parent).as_posix())
        zipped.write(LICENSE, f"{PLUGIN.name}/LICENSE")
    return archive


if __name__ == "__main__":
    print(build(*sys.argv[1:2]))

"""cdcpipe.pipeline.spark_daemon: which sys.path the executors' Python workers import from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyspark

from cdcpipe.pipeline.spark_daemon import installed_path

LIB = Path(pyspark.__file__).parent / "python" / "lib"
ZIPS = [str(LIB / "pyspark.zip"), *map(str, LIB.glob("py4j-*-src.zip"))]
SITE = str(Path(pyspark.__file__).parent.parent)


def test_archives_are_dropped_when_the_packages_are_installed():
    assert all(Path(z).exists() for z in ZIPS)
    assert installed_path([*ZIPS, "/nonexistent", SITE]) == ["/nonexistent", SITE]


def test_nothing_changes_where_only_the_archives_have_pyspark():
    assert installed_path([*ZIPS, "/nonexistent"]) is None  # like the official Spark image
    assert installed_path([SITE]) is None  # no archives at all


def test_the_daemon_imports_pyspark_from_site_packages():
    """Spark runs `python -m cdcpipe.pipeline.spark_daemon` with the archives first on PYTHONPATH and
    tells the daemon to exit by closing its stdin (it then signals its own process group,
    hence a session of its own)."""
    env = {"PYTHONPATH": ":".join(ZIPS), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-v", "-m", "cdcpipe.pipeline.spark_daemon"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        start_new_session=True,
    )  # stdout: its port, binary
    log = out.stderr.decode("utf-8", "replace")
    assert "import 'pyspark.daemon'" in log, log[-2000:]
    loaded = [line for line in log.splitlines() if "pyspark" in line and "daemon.py" in line]
    assert loaded and all(".zip" not in line for line in loaded), loaded
    assert any(SITE in line for line in loaded), loaded

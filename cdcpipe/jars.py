"""Resolve the JVM artifacts of ``cdcpipe/jvm/pom.xml`` into the jars directory.

Each Maven profile of the manifest becomes one directory under ``Settings.jars``:

    kafka/                                   broker + Connect worker classpath
    plugins/debezium-connector-postgres/     Connect plugin
    plugins/apicurio-converter/              Connect plugin (converter)
    apicurio-registry/                       Quarkus app (quarkus-run.jar)
    cassandra/                               cassandra-all + runtime dependencies
    spark/                                   Kafka source and Avro for pyspark

Maven caches downloads in its local repository (~/.m2 unless MAVEN_OPTS says otherwise),
so only the first resolution needs the network. A stamp holding the manifest's hash
makes later calls a no-op until the manifest changes.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import CdcpipeError, MissingDependency
from .settings import Settings

MANIFEST = Path(__file__).resolve().parent / "jvm" / "pom.xml"

#: profile -> (Maven goal, directory under the jars dir)
PROFILES: dict[str, tuple[str, str]] = {
    "kafka": ("dependency:copy-dependencies", "kafka"),
    "debezium": ("package", "plugins"),
    "apicurio-converter": ("dependency:copy-dependencies", "plugins/apicurio-converter"),
    "apicurio-registry": ("package", "apicurio-registry"),
    "cassandra": ("dependency:copy-dependencies", "cassandra"),
    "spark": ("dependency:copy-dependencies", "spark"),
}


def manifest_version(prop: str) -> str:
    """A version property of the manifest, e.g. ``manifest_version('debezium.version')``."""
    match = re.search(rf"<{re.escape(prop)}>([^<]+)</{re.escape(prop)}>", MANIFEST.read_text())
    if not match:
        raise CdcpipeError(f"{MANIFEST} has no <{prop}> property")
    return match.group(1).strip()


def _stamp(settings: Settings) -> Path:
    return settings.jars / ".manifest.sha256"


def _digest() -> str:
    return hashlib.sha256(MANIFEST.read_bytes()).hexdigest()


def resolved(settings: Settings) -> bool:
    stamp = _stamp(settings)
    return stamp.exists() and stamp.read_text().strip() == _digest()


def resolve(settings: Settings, *, force: bool = False, quiet: bool = False) -> None:
    """Run Maven for every profile unless the jars dir already matches the manifest."""
    if resolved(settings) and not force:
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingDependency(
            "Maven ('mvn') is needed once to fetch the JVM artifacts. Install it (Debian/Ubuntu: apt-get install maven) and run again."
        )
    if settings.jars.exists():
        shutil.rmtree(settings.jars)
    settings.jars.mkdir(parents=True)
    for profile, (goal, subdir) in PROFILES.items():
        target = settings.jars / subdir
        argv = [mvn, "-B", "-q", "-f", str(MANIFEST), "-P", profile, goal]
        if goal == "package":
            argv.append(f"-Djars.dir={target}")
        else:
            argv += ["-DincludeScope=runtime", f"-DoutputDirectory={target}"]
        if not quiet:
            print(f"  resolving {profile} -> {target}", file=sys.stderr, flush=True)
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise CdcpipeError(
                f"Maven could not resolve profile '{profile}' of {MANIFEST}:\n"
                + "\n".join(line for line in done.stdout.splitlines() if "ERROR" in line)[:4000]
            )
    # Maven leaves a target/ beside the manifest for the 'package' profiles.
    shutil.rmtree(MANIFEST.parent / "target", ignore_errors=True)
    _stamp(settings).write_text(_digest())


def require(settings: Settings) -> None:
    """Fail with a clear message when the jars have not been resolved."""
    if not resolved(settings):
        raise MissingDependency(
            f"The JVM artifacts in {settings.jars} are missing or older than {MANIFEST}. "
            "Run 'make jars' (or '.venv/bin/cdcpipe jars') once; it needs Maven and network access."
        )

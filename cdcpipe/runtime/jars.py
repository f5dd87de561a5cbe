"""Resolve the JVM artifacts of ``cdcpipe/jvm/pom.xml`` into the jars directory.

Each Maven profile of the manifest becomes one directory under ``Settings.jars``:

    kafka/                                   broker + Connect worker classpath
    plugins/debezium-connector-postgres/     Connect plugin
    plugins/apicurio-converter/              Connect plugin (converter)
    apicurio-registry/                       Quarkus app (quarkus-run.jar)
    cassandra/                               cassandra-all + runtime dependencies
    spark/                                   Kafka source and Avro for pyspark
    spark-extras/                            the project's classes for Spark's JVMs (the UIs'
                                             login filter, the job's checkpoint file manager),
                                             compiled here from jvm/spark/ (javac)
    guard/                                   the registry's owner-only accept agent, compiled
                                             here from jvm/guard/ (javac)

Maven caches downloads in its local repository (~/.m2 unless MAVEN_OPTS says otherwise),
so only the first resolution needs the network. A stamp holding the manifest's hash
makes later calls a no-op until the manifest changes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CdcpipeError, MissingDependency
from ..settings import Settings
from . import java

MANIFEST = Path(__file__).resolve().parents[1] / "jvm" / "pom.xml"


@dataclass(frozen=True)
class ProjectJar:
    """Java this project compiles itself (javac, once per change of its sources)."""

    #: the source tree under cdcpipe/jvm/
    sources: Path
    #: the jar, relative to the jars directory
    jar: Path
    #: the jars javac compiles against, as classpath entries, given the jars directory
    classpath: Callable[[Path], list[str]]
    #: extra manifest lines, given the jars directory and the jar's own path
    manifest: Callable[[Path, Path], dict[str, str]] = field(default=lambda jars, jar: {})

    def source_files(self) -> list[Path]:
        return sorted(self.sources.rglob("*.java"))

    def resource_files(self) -> list[Path]:
        """What the jar carries as it is: the files under the source tree's META-INF/ (a
        ServiceLoader manifest, say), nothing else (no stray class or editor file)."""
        return sorted(p for p in (self.sources / "META-INF").rglob("*") if p.is_file())

    def digest(self) -> str:
        """Of its sources, this module (its classpath, manifest and flags) and the Maven
        manifest (the versions of what it is compiled against)."""
        digest = hashlib.sha256(Path(__file__).read_bytes() + MANIFEST.read_bytes())
        for source in self.source_files() + self.resource_files():
            digest.update(str(source.relative_to(self.sources)).encode() + b"\0" + source.read_bytes())
        return digest.hexdigest()


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


def spark_extras_jar(settings: Settings) -> Path:
    """The jar of the project's classes for Spark's JVMs: the UIs' login filter
    (:data:`cdcpipe.pipeline.logins.UI_LOGIN_FILTER`) and the job's checkpoint file manager."""
    return settings.jars / SPARK_EXTRAS.jar


def guard_jar(settings: Settings) -> Path:
    """The Java agent that lets only the stack's own account connect to a port
    (``cdcpipe/jvm/guard/cdcpipe/guard/OwnerOnlyAgent.java`` says why and how)."""
    return settings.jars / GUARD.jar


def _stamped(stamp: Path, digest: str) -> bool:
    return stamp.exists() and stamp.read_text().strip() == digest


def resolved(settings: Settings) -> bool:
    return _stamped(_stamp(settings), _digest()) and not _stale_project_jars(settings) and _stamped(_manifests_stamp(settings), _digest())


def _stale_project_jars(settings: Settings) -> list[Path]:
    """The project jars that are missing or older than their sources."""
    return [
        settings.jars / built.jar
        for built in PROJECT_JARS
        if not ((settings.jars / built.jar).exists() and _stamped((settings.jars / built.jar).with_suffix(".sha256"), built.digest()))
    ]


def _manifests_stamp(settings: Settings) -> Path:
    return settings.jars / "plugins" / ".manifests-synced"


def sync_plugin_manifests(settings: Settings, *, quiet: bool = False) -> None:
    """Give every Connect plugin a ServiceLoader manifest, once per resolution.

    The workers run with ``plugin.discovery=service_load``: they find plugins by their
    manifests instead of scanning every class of every jar by reflection, which took a worker
    60 s to start on an idle 2-core machine and 132 s under load (seen on the cluster
    topology, where a restarted worker then missed its start timeout). Debezium's jars carry
    manifests; Apicurio's converter has none, so Kafka's own tool (``connect-plugin-path
    sync-manifests``, KIP-898) adds a small shim jar that declares it.
    """
    stamp = _manifests_stamp(settings)
    if _stamped(stamp, _digest()):
        return
    if not quiet:
        print("  writing Connect plugin manifests (once)", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=settings.jars) as scratch:  # the tool's temporary jars: not the shared /tmp
        argv = [
            java.java_bin(),
            f"-Djava.io.tmpdir={scratch}",
            "-cp",
            java.classpath(settings.jars / "kafka"),
            "org.apache.kafka.tools.ConnectPluginPath",
            "sync-manifests",
            "--plugin-path",
            str(settings.jars / "plugins"),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise CdcpipeError(f"connect-plugin-path sync-manifests failed:\n{(done.stdout + done.stderr)[-3000:]}")
    stamp.write_text(_digest())


def _javac() -> str:
    from .java import java_bin

    beside_java = Path(java_bin()).resolve().parent / "javac"
    found = str(beside_java) if beside_java.exists() else shutil.which("javac")
    if found is None:
        raise MissingDependency(
            "javac (a JDK, not only a JRE) is needed once to compile the project's own Java classes. "
            "Install it (Debian/Ubuntu: apt-get install openjdk-17-jdk-headless) and run again."
        )
    return found


def _pyspark_jars() -> Path:
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise MissingDependency("pyspark is not installed in this environment; run 'make venv'")
    jars = Path(spec.origin).parent / "jars"
    if not any(jars.glob("spark-sql_*.jar")):
        raise CdcpipeError(f"no spark-sql jar in {jars}: is pyspark 4 installed whole?")
    return jars


def _asm_jar(jars: Path) -> Path:
    """The ASM library Apicurio's app bundles, which the guard agent rewrites Netty with."""
    found = sorted((jars / PROFILES["apicurio-registry"][1] / "lib" / "main").glob("org.ow2.asm.asm-[0-9]*.jar"))
    if not found:
        raise CdcpipeError(f"no ASM jar in {jars / PROFILES['apicurio-registry'][1]}/lib/main: is the registry resolved whole?")
    return found[-1]


SPARK_EXTRAS = ProjectJar(
    sources=MANIFEST.parent / "spark",
    jar=Path("spark-extras") / "cdcpipe-spark.jar",
    classpath=lambda jars: [str(_pyspark_jars() / "*")],
)
GUARD = ProjectJar(
    sources=MANIFEST.parent / "guard",
    jar=Path("guard") / "cdcpipe-guard.jar",
    classpath=lambda jars: [str(_asm_jar(jars))],
    # The agent loads ASM from the boot class path (a path relative to the agent's jar).
    manifest=lambda jars, jar: {
        "Premain-Class": "cdcpipe.guard.OwnerOnlyAgent",
        "Boot-Class-Path": os.path.relpath(_asm_jar(jars), jar.parent),
    },
)
#: The Connect worker's Avro converter (Apicurio's, with its schema work once per schema). It
#: sits in Apicurio's plugin directory so that one plugin class loader sees both, and carries
#: its own ServiceLoader manifest (the workers run with plugin.discovery=service_load).
CONVERTER = ProjectJar(
    sources=MANIFEST.parent / "connect",
    jar=Path(PROFILES["apicurio-converter"][1]) / "cdcpipe-converter.jar",
    classpath=lambda jars: [str(jars / PROFILES["apicurio-converter"][1] / "*"), str(jars / PROFILES["kafka"][1] / "*")],
)
PROJECT_JARS = (SPARK_EXTRAS, GUARD, CONVERTER)


def build_project_jar(settings: Settings, built: ProjectJar, *, quiet: bool = False) -> Path:
    """Compile one of :data:`PROJECT_JARS` into its jar, unless the jar matches its sources."""
    jar = settings.jars / built.jar
    stamp = jar.with_suffix(".sha256")
    if _stamped(stamp, built.digest()) and jar.exists():
        return jar
    if not quiet:
        print(f"  compiling the project's {built.sources.name} classes -> {jar}", file=sys.stderr, flush=True)
    jar.parent.mkdir(parents=True, exist_ok=True)
    classpath = os.pathsep.join(built.classpath(settings.jars))
    with tempfile.TemporaryDirectory(dir=jar.parent) as classes:
        done = subprocess.run(
            [_javac(), "--release", "17", "-nowarn", "-cp", classpath, "-d", classes, *map(str, built.source_files())],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise CdcpipeError(f"javac could not compile {built.sources}:\n{done.stderr[-4000:]}")
        manifest = {"Manifest-Version": "1.0", **built.manifest(settings.jars, jar)}
        tmp = jar.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
            out.writestr("META-INF/MANIFEST.MF", b"".join(_manifest_line(k, v) for k, v in manifest.items()) + b"\r\n")
            for path in sorted(Path(classes).rglob("*.class")):
                out.write(path, str(path.relative_to(classes)))
            for path in built.resource_files():
                out.write(path, str(path.relative_to(built.sources)))
        os.replace(tmp, jar)
    stamp.write_text(built.digest())
    return jar


def _manifest_line(key: str, value: str) -> bytes:
    """``key: value`` as the jar specification wants it: lines of at most 72 bytes, longer ones
    continued on lines that start with a space."""
    text = f"{key}: {value}".encode()
    lines = [text[:72]] + [b" " + text[i : i + 71] for i in range(72, len(text), 71)]
    return b"".join(line + b"\r\n" for line in lines)


def build_project_jars(settings: Settings, *, quiet: bool = False) -> None:
    for built in PROJECT_JARS:
        build_project_jar(settings, built, quiet=quiet)


def resolve(settings: Settings, *, force: bool = False, quiet: bool = False) -> None:
    """Run Maven for every profile unless the jars dir already matches the manifest, then
    compile the project's own Java (:data:`PROJECT_JARS`) unless their jars are current."""
    if not force and _stamped(_stamp(settings), _digest()):
        build_project_jars(settings, quiet=quiet)
        sync_plugin_manifests(settings, quiet=quiet)
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
    build_project_jars(settings, quiet=quiet)
    sync_plugin_manifests(settings, quiet=quiet)


def require(settings: Settings) -> None:
    """Fail with a clear message when the jars have not been resolved."""
    if resolved(settings):
        return
    if _stamped(_stamp(settings), _digest()) and _stamped(_manifests_stamp(settings), _digest()):
        stale = ", ".join(map(str, _stale_project_jars(settings)))
        raise MissingDependency(
            f"The project's own Java ({stale}) is missing or older than its sources. "
            "Run 'make jars' (or '.venv/bin/cdcpipe jars'); it needs only javac, no network."
        )
    raise MissingDependency(
        f"The JVM artifacts in {settings.jars} are missing or older than {MANIFEST}. "
        "Run 'make jars' (or '.venv/bin/cdcpipe jars') once; it needs Maven and network access."
    )
